//! The Kubernetes identities that change the cluster as part of its normal
//! operation. Exact names only: a wildcard such as `kube-system:*` would
//! sanction anyone who can create a pod in `kube-system`.

pub const USERS: &[&str] = &[
    "system:apiserver",
    "system:kube-controller-manager",
    "system:kube-scheduler",
    "system:cloud-controller-manager",
    "system:kube-proxy",
];

/// Controller service accounts of `kube-system`.
pub const KUBE_SYSTEM_CONTROLLERS: &[&str] = &[
    "deployment-controller",
    "replicaset-controller",
    "statefulset-controller",
    "daemon-set-controller",
    "job-controller",
    "cronjob-controller",
    "endpoint-controller",
    "endpointslice-controller",
    "endpointslicemirroring-controller",
    "namespace-controller",
    "generic-garbage-collector",
    "horizontal-pod-autoscaler",
    "persistent-volume-binder",
    "attachdetach-controller",
    "pod-garbage-collector",
    "node-controller",
    "service-controller",
    "disruption-controller",
    "ttl-after-finished-controller",
    "root-ca-cert-publisher",
    "service-account-controller",
    "token-cleaner",
    "bootstrap-signer",
    "expand-controller",
    "ephemeral-volume-controller",
    "clusterrole-aggregation-controller",
    "resourcequota-controller",
    "pvc-protection-controller",
    "pv-protection-controller",
    "certificate-controller",
    "legacy-service-account-token-cleaner",
];

/// Kubelets authenticate as `system:node:<name>` in group `system:nodes`.
pub const NODE_PREFIX: &str = "system:node:";
pub const NODES_GROUP: &str = "system:nodes";

/// Every exact username of the baseline, nodes excepted.
pub fn usernames() -> impl Iterator<Item = String> {
    USERS.iter().map(|u| (*u).to_owned()).chain(
        KUBE_SYSTEM_CONTROLLERS
            .iter()
            .map(|sa| format!("system:serviceaccount:kube-system:{sa}")),
    )
}
