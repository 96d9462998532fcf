//! The cluster the stream describes: 12 nodes, a few apps per namespace,
//! the control plane's controllers, Argo CD, Flux, operators that read, and
//! four people with kubectl.

use std::collections::BTreeMap;
use std::rc::Rc;

use super::request::{Identity, UserInfo};
use crate::rng::Rng;

pub const K8S_VERSION: &str = "v1.31.2";
pub const K8S_COMMIT: &str = "5864a46";
pub const KUBECTL_UA: &str = "kubectl/v1.31.2 (linux/amd64) kubernetes/5864a46";
pub const ARGOCD_UA: &str = "argocd-application-controller/v2.13.1+af54ef8 (linux/amd64)";
pub const FLUX_UA: &str = "kustomize-controller/v1.4.0 (linux/amd64)";
const CONTROL_PLANE_IP: &str = "10.0.0.10";

const NAMESPACES: &[&str] = &[
    "shop",
    "payments",
    "search",
    "checkout",
    "catalog",
    "identity",
    "data",
    "monitoring",
];
const APPS: &[&str] = &[
    "api", "web", "worker", "gateway", "cart", "redis", "indexer", "notifier",
];
const HUMANS: &[(&str, &str, &str)] = &[
    ("alice@example.com", "oidc:platform-team", "10.20.3.14"),
    ("bob@example.com", "oidc:developers", "10.20.7.201"),
    ("carol@example.com", "oidc:developers", "10.20.1.9"),
    ("dave@example.com", "oidc:sre", "172.16.4.33"),
];
const CONTROLLERS: &[&str] = &[
    "deployment-controller",
    "replicaset-controller",
    "statefulset-controller",
    "endpointslice-controller",
    "job-controller",
    "generic-garbage-collector",
    "horizontal-pod-autoscaler",
    "daemon-set-controller",
];
/// Operators that list and watch: (namespace, service account, user agent, pod IP).
const READERS: &[(&str, &str, &str, &str)] = &[
    (
        "monitoring",
        "prometheus-k8s",
        "Prometheus/2.54.1",
        "10.42.2.51",
    ),
    (
        "monitoring",
        "kube-state-metrics",
        "kube-state-metrics/v2.13.0 (linux/amd64) kubernetes/7c8d1f2",
        "10.42.1.12",
    ),
    (
        "kube-system",
        "coredns",
        "coredns/v1.11.3 (linux/amd64) kubernetes/0f5aa5b",
        "10.42.0.5",
    ),
    (
        "ingress-nginx",
        "ingress-nginx",
        "nginx-ingress-controller/v1.11.2 (linux/amd64) ingress-nginx/46e76e5",
        "10.42.3.8",
    ),
    (
        "cert-manager",
        "cert-manager",
        "cert-manager-controller/v1.16.1 (linux/amd64) cert-manager/2a2c8ac2e2cc",
        "10.42.5.40",
    ),
];

pub struct Node {
    pub name: String,
    pub ident: Rc<Identity>,
}

pub struct App {
    pub ns: &'static str,
    pub name: &'static str,
    pub rs_hash: String,
    pub pods: Vec<String>,
    pub replicas: u64,
    pub image_tag: String,
    pub deploy_uid: String,
}

pub struct Cluster {
    pub nodes: Vec<Node>,
    pub apps: Vec<App>,
    pub controllers: Vec<(&'static str, Rc<Identity>)>,
    pub scheduler: Rc<Identity>,
    pub kcm: Rc<Identity>,
    pub apiserver: Rc<Identity>,
    pub argocd: Rc<Identity>,
    pub flux: Rc<Identity>,
    pub readers: Vec<Rc<Identity>>,
    pub humans: Vec<Rc<Identity>>,
}

fn identity(
    username: &str,
    uid: Option<String>,
    groups: &[&str],
    extra: BTreeMap<String, Vec<String>>,
    user_agent: &str,
    source_ip: &str,
    allow_reason: String,
) -> Rc<Identity> {
    Rc::new(Identity {
        user: UserInfo {
            username: username.to_owned(),
            uid,
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
            extra,
        },
        user_agent: user_agent.to_owned(),
        source_ip: source_ip.to_owned(),
        allow_reason,
    })
}

fn rbac_reason(kind: &str, binding: &str, role: &str, subject: &str) -> String {
    format!("RBAC: allowed by {kind} \"{binding}\" of ClusterRole \"{role}\" to {subject}")
}

/// A service account's bound token; `pod` is (pod, node) for a token
/// projected into a pod.
fn service_account(
    rng: &mut Rng,
    ns: &str,
    name: &str,
    pod: Option<(&str, &str)>,
    user_agent: &str,
    source_ip: &str,
    reason: String,
) -> Rc<Identity> {
    let uid = rng.uuid();
    let mut extra = BTreeMap::new();
    let mut put = |k: &str, v: String| extra.insert(k.to_owned(), vec![v]);
    put(
        "authentication.kubernetes.io/credential-id",
        format!("JTI={}", rng.uuid()),
    );
    let (pod_uid, node_uid) = (rng.uuid(), rng.uuid());
    if let Some((pod, node)) = pod {
        put("authentication.kubernetes.io/node-name", node.to_owned());
        put("authentication.kubernetes.io/node-uid", node_uid);
        put("authentication.kubernetes.io/pod-name", pod.to_owned());
        put("authentication.kubernetes.io/pod-uid", pod_uid);
    }
    identity(
        &format!("system:serviceaccount:{ns}:{name}"),
        Some(uid),
        &[
            "system:serviceaccounts",
            &format!("system:serviceaccounts:{ns}"),
            "system:authenticated",
        ],
        extra,
        user_agent,
        source_ip,
        reason,
    )
}

/// A control-plane component's own user (`system:kube-scheduler`...).
fn component(user: &str, binary: &str) -> Rc<Identity> {
    identity(
        user,
        None,
        &["system:authenticated"],
        BTreeMap::new(),
        &format!("{binary}/{K8S_VERSION} (linux/amd64) kubernetes/{K8S_COMMIT}/leader-election"),
        CONTROL_PLANE_IP,
        rbac_reason(
            "ClusterRoleBinding",
            user,
            user,
            &format!("User \"{user}\""),
        ),
    )
}

impl Cluster {
    pub fn new(rng: &mut Rng) -> Cluster {
        let nodes: Vec<Node> = (0..12)
            .map(|i| {
                let ip = format!("10.0.{}.{}", 1 + i % 3, 20 + i * 7);
                let name = format!("ip-{}.eu-west-1.compute.internal", ip.replace('.', "-"));
                let ident = identity(
                    &format!("system:node:{name}"),
                    None,
                    &["system:nodes", "system:authenticated"],
                    BTreeMap::new(),
                    &format!("kubelet/{K8S_VERSION} (linux/amd64) kubernetes/{K8S_COMMIT}"),
                    &ip,
                    String::new(),
                );
                Node { name, ident }
            })
            .collect();
        let mut apps = Vec::new();
        for ns in NAMESPACES {
            for name in APPS.iter().take(3 + rng.below(4) as usize) {
                let rs_hash = rng.suffix(10);
                let replicas = rng.range(2, 6);
                let pods = (0..replicas)
                    .map(|_| format!("{name}-{rs_hash}-{}", rng.suffix(5)))
                    .collect();
                apps.push(App {
                    ns,
                    name,
                    rs_hash,
                    pods,
                    replicas,
                    image_tag: format!("1.{}.{}", rng.range(10, 60), rng.below(10)),
                    deploy_uid: rng.uuid(),
                });
            }
        }
        let controllers = CONTROLLERS
            .iter()
            .map(|&sa| {
                let role = format!("system:controller:{sa}");
                let ua = format!(
                    "kube-controller-manager/{K8S_VERSION} (linux/amd64) kubernetes/{K8S_COMMIT}/system:serviceaccount:kube-system:{sa}"
                );
                let subject = format!("ServiceAccount \"{sa}/kube-system\"");
                let reason = rbac_reason("ClusterRoleBinding", &role, &role, &subject);
                let ident = service_account(
                    rng,
                    "kube-system",
                    sa,
                    None,
                    &ua,
                    CONTROL_PLANE_IP,
                    reason,
                );
                (sa, ident)
            })
            .collect();
        let apiserver = identity(
            "system:apiserver",
            Some(rng.uuid()),
            &["system:authenticated"],
            BTreeMap::new(),
            &format!("kube-apiserver/{K8S_VERSION} (linux/amd64) kubernetes/{K8S_COMMIT}"),
            "::1",
            String::new(),
        );
        let argocd = service_account(
            rng,
            "argocd",
            "argocd-application-controller",
            Some(("argocd-application-controller-0", &nodes[4].name)),
            ARGOCD_UA,
            "10.42.4.17",
            rbac_reason(
                "ClusterRoleBinding",
                "argocd-application-controller",
                "argocd-application-controller",
                "ServiceAccount \"argocd-application-controller/argocd\"",
            ),
        );
        let flux_pod = format!("kustomize-controller-{}-{}", rng.suffix(10), rng.suffix(5));
        let flux = service_account(
            rng,
            "flux-system",
            "kustomize-controller",
            Some((&flux_pod, &nodes[7].name)),
            FLUX_UA,
            "10.42.7.33",
            rbac_reason(
                "ClusterRoleBinding",
                "cluster-reconciler-flux-system",
                "cluster-admin",
                "ServiceAccount \"kustomize-controller/flux-system\"",
            ),
        );
        let readers = READERS
            .iter()
            .map(|&(ns, sa, ua, ip)| {
                let pod = format!("{sa}-{}-{}", rng.suffix(10), rng.suffix(5));
                let node = rng.pick(&nodes).name.clone();
                let subject = format!("ServiceAccount \"{sa}/{ns}\"");
                let reason = rbac_reason("ClusterRoleBinding", sa, sa, &subject);
                service_account(rng, ns, sa, Some((&pod, &node)), ua, ip, reason)
            })
            .collect();
        let humans = HUMANS
            .iter()
            .map(|&(user, group, ip)| {
                let subject = format!("Group \"{group}\" in namespace \"shop\"");
                identity(
                    user,
                    None,
                    &[group, "system:authenticated"],
                    BTreeMap::new(),
                    KUBECTL_UA,
                    ip,
                    rbac_reason("RoleBinding", "edit", "edit", &subject),
                )
            })
            .collect();
        Cluster {
            nodes,
            apps,
            controllers,
            scheduler: component("system:kube-scheduler", "kube-scheduler"),
            kcm: component("system:kube-controller-manager", "kube-controller-manager"),
            apiserver,
            argocd,
            flux,
            readers,
            humans,
        }
    }

    pub fn controller(&self, name: &str) -> Rc<Identity> {
        let found = self.controllers.iter().find(|(n, _)| *n == name);
        Rc::clone(&found.unwrap_or(&self.controllers[0]).1)
    }
}
