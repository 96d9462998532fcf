//! The Kubernetes identities that change the cluster as part of its normal
//! operation. Exact names only: a wildcard such as `kube-system:*` would
//! sanction anyone who can create a pod in `kube-system`.
//!
//! The controller list is derived from the bootstrap RBAC policy
//! (`plugin/pkg/auth/authorizer/rbac/bootstrappolicy/controller_policy.go`,
//! one `system:controller:<name>` role per service account) and the
//! controller-manager's `ClientOrDie`/`NewClient` calls, Kubernetes 1.20
//! through 1.36, and checked against the traffic of a real 1.20 control
//! plane (`scripts/kube-dev-cluster`, see the cluster tests). Controller
//! *names* (`--controllers`) are not service accounts: node-ipam,
//! node-lifecycle and taint-eviction run as `node-controller`,
//! service-cidr as `service-cidrs-controller`.

pub const USERS: &[&str] = &[
    "system:apiserver",
    "system:kube-controller-manager",
    "system:kube-scheduler",
    "system:cloud-controller-manager",
    "system:kube-proxy",
];

/// A controller service account of `kube-system` and the first release
/// that runs it (1.20: the oldest release supported).
pub struct Controller {
    pub name: &'static str,
    pub since: &'static str,
}

const fn c(name: &'static str, since: &'static str) -> Controller {
    Controller { name, since }
}

pub const KUBE_SYSTEM_CONTROLLERS: &[Controller] = &[
    c("attachdetach-controller", "1.20"),
    c("bootstrap-signer", "1.20"),
    c("certificate-controller", "1.20"),
    c("clusterrole-aggregation-controller", "1.20"),
    c("cronjob-controller", "1.20"),
    c("daemon-set-controller", "1.20"),
    c("deployment-controller", "1.20"),
    c("disruption-controller", "1.20"),
    c("endpoint-controller", "1.20"),
    c("endpointslice-controller", "1.20"),
    c("endpointslicemirroring-controller", "1.20"),
    c("ephemeral-volume-controller", "1.20"),
    c("expand-controller", "1.20"),
    c("generic-garbage-collector", "1.20"),
    c("horizontal-pod-autoscaler", "1.20"),
    c("job-controller", "1.20"),
    c("namespace-controller", "1.20"),
    // Also node-ipam, node-lifecycle and taint-eviction, and the cloud
    // controller-manager's node controllers.
    c("node-controller", "1.20"),
    c("persistent-volume-binder", "1.20"),
    c("pod-garbage-collector", "1.20"),
    c("pv-protection-controller", "1.20"),
    c("pvc-protection-controller", "1.20"),
    c("replicaset-controller", "1.20"),
    c("replication-controller", "1.20"),
    c("resourcequota-controller", "1.20"),
    c("root-ca-cert-publisher", "1.20"),
    // In the controller-manager until 1.30, in the cloud controller-manager since.
    c("route-controller", "1.20"),
    c("service-account-controller", "1.20"),
    c("service-controller", "1.20"),
    c("statefulset-controller", "1.20"),
    c("storage-version-garbage-collector", "1.20"),
    c("token-cleaner", "1.20"),
    // Node annotations (ttl): seen writing on the 1.36 control plane.
    c("ttl-controller", "1.20"),
    c("ttl-after-finished-controller", "1.20"),
    c("resource-claim-controller", "1.26"),
    c("legacy-service-account-token-cleaner", "1.28"),
    c("validatingadmissionpolicy-status-controller", "1.28"),
    c("service-cidrs-controller", "1.29"),
    c(
        "kube-apiserver-serving-clustertrustbundle-publisher",
        "1.32",
    ),
    c("selinux-warning-controller", "1.32"),
    c("volumeattributesclass-protection-controller", "1.32"),
    c("device-taint-eviction-controller", "1.33"),
    c("podcertificaterequestcleaner", "1.34"),
    // Not here on purpose: storage-version-migrator-controller (1.30+,
    // alpha, off by default) may patch any resource, so baselining it would
    // trust its credentials for everything; add it per cluster if it runs.
];

/// Kubelets authenticate as `system:node:<name>` in group `system:nodes`.
pub const NODE_PREFIX: &str = "system:node:";
pub const NODES_GROUP: &str = "system:nodes";

/// Every exact username of the baseline, nodes excepted.
pub fn usernames() -> impl Iterator<Item = String> {
    USERS.iter().map(|u| (*u).to_owned()).chain(
        KUBE_SYSTEM_CONTROLLERS
            .iter()
            .map(|sa| format!("system:serviceaccount:kube-system:{}", sa.name)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_exact_and_dated() {
        let mut names: Vec<&str> = KUBE_SYSTEM_CONTROLLERS.iter().map(|c| c.name).collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(names.len(), before, "a controller is listed twice");
        for c in KUBE_SYSTEM_CONTROLLERS {
            assert!(!c.name.contains('*') && !c.name.contains(':'), "{}", c.name);
            assert!(c.since.starts_with("1."), "{}", c.name);
        }
    }
}
