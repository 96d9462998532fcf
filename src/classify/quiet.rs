//! The built-in quiet rules: writes that automation makes all day and that
//! a person's change cannot hide behind. Each is narrow, states the risk it
//! creates, and can be turned off (`quiet_rules`). Anything they do not
//! cover is judged as before.

use foldhash::HashSet;
use serde_json::Value;

use crate::decode::Event;

/// One built-in rule; its spelling is a metric label and a config key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Quiet {
    StatusByServiceAccount,
    NodeSelf,
    LeaderLockRenewal,
    KubeletScrape,
    CaBundleInjection,
}

impl Quiet {
    pub const ALL: [Quiet; 5] = [
        Quiet::StatusByServiceAccount,
        Quiet::NodeSelf,
        Quiet::LeaderLockRenewal,
        Quiet::KubeletScrape,
        Quiet::CaBundleInjection,
    ];

    /// Position in [`Quiet::ALL`], for per-rule counters.
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Quiet::StatusByServiceAccount => "status_by_service_accounts",
            Quiet::NodeSelf => "node_self",
            Quiet::LeaderLockRenewal => "leader_lock_renewals",
            Quiet::KubeletScrape => "kubelet_scrapes",
            Quiet::CaBundleInjection => "ca_bundle_injectors",
        }
    }

    /// What someone holding a covered identity can do without a finding.
    pub fn risk(self) -> &'static str {
        match self {
            Quiet::StatusByServiceAccount => {
                "a service account can write false status (a Ready condition, a load balancer address, a Gatekeeper constraint's violations); CSR status, which issues certificates, is never covered"
            }
            Quiet::NodeSelf => {
                "a stolen kubelet credential can rewrite its own Node and the status of pods bound to it; never another node's objects"
            }
            Quiet::LeaderLockRenewal => {
                "anyone allowed to write a lock can keep renewing it; a change of holder is reported, but the first write driftwatch sees of a lock after it starts is not compared"
            }
            Quiet::KubeletScrape => {
                "metrics and stats of every pod on a node are readable by whoever scrapes; exec, run, attach, logs and configz through the kubelet stay critical"
            }
            Quiet::CaBundleInjection => {
                "a declared injector can replace the CA a webhook, CRD conversion or APIService trusts, and so stand up its own endpoint; repointing the URL or service is still reported"
            }
        }
    }
}

/// Which built-in rules are on, and the declared CA injectors.
#[derive(Debug, Clone)]
pub struct QuietRules {
    pub on: HashSet<Quiet>,
    /// Usernames allowed to patch only `caBundle` fields.
    pub ca_bundle_injectors: HashSet<String>,
}

/// The injectors of the common charts, each as its chart installs it.
pub const DEFAULT_CA_INJECTORS: &[&str] = &[
    "system:serviceaccount:cert-manager:cert-manager-cainjector",
    "system:serviceaccount:istio-system:istiod",
    "system:serviceaccount:kyverno:kyverno-admission-controller",
    "system:serviceaccount:gatekeeper-system:gatekeeper-admin",
    "system:serviceaccount:linkerd:linkerd-destination",
];

impl Default for QuietRules {
    fn default() -> Self {
        QuietRules {
            on: Quiet::ALL.into_iter().collect(),
            ca_bundle_injectors: DEFAULT_CA_INJECTORS
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
        }
    }
}

const SA_PREFIX: &str = "system:serviceaccount:";
const NODE_PREFIX: &str = "system:node:";

impl QuietRules {
    /// The rule that covers this write on who did it and what it touched,
    /// before field changes are known.
    pub fn by_identity(&self, ev: &Event<'_>) -> Option<Quiet> {
        if ev.impersonated_user.is_some() {
            return None;
        }
        let user = ev.username();
        if self.on.contains(&Quiet::StatusByServiceAccount) && status_by_service_account(ev, user) {
            return Some(Quiet::StatusByServiceAccount);
        }
        if self.on.contains(&Quiet::NodeSelf)
            && let Some(node) = user.strip_prefix(NODE_PREFIX)
            && node_self(ev, node)
        {
            return Some(Quiet::NodeSelf);
        }
        None
    }

    /// Rules decided by the write's field changes: `paths` are the changed
    /// fields (known ones only), `changes` their old and new values.
    pub fn by_fields(&self, ev: &Event<'_>, changes: &[crate::model::Change]) -> Option<Quiet> {
        if ev.impersonated_user.is_some() || changes.is_empty() {
            return None;
        }
        if self.on.contains(&Quiet::LeaderLockRenewal) && lock_renewal(ev, changes) {
            return Some(Quiet::LeaderLockRenewal);
        }
        if self.on.contains(&Quiet::CaBundleInjection)
            && self.ca_bundle_injectors.contains(ev.username())
            && ca_bundle_only(ev, changes)
        {
            return Some(Quiet::CaBundleInjection);
        }
        None
    }

    /// Whether a field rule could apply, so that the engine computes the
    /// changes of a write it would otherwise not look into.
    pub fn may_cover_by_fields(&self, ev: &Event<'_>) -> bool {
        matches!(ev.verb(), "update" | "patch")
            && ev.subresource().is_empty()
            && (is_lock_kind(ev) || ca_bundle_kind(ev))
    }
}

fn status_by_service_account(ev: &Event<'_>, user: &str) -> bool {
    user.starts_with(SA_PREFIX)
        && ev.subresource() == "status"
        && matches!(ev.verb(), "update" | "patch")
        && ev.resource() != "certificatesigningrequests"
}

/// A kubelet's own Node, its lease, and pods bound to it (matched by the
/// name in the username, so GKE's events without groups match too).
fn node_self(ev: &Event<'_>, node: &str) -> bool {
    if node.is_empty() {
        return false;
    }
    match (ev.api_group(), ev.resource()) {
        ("", "nodes") => ev.name() == node,
        ("coordination.k8s.io", "leases") => {
            ev.namespace() == "kube-node-lease" && ev.name() == node
        }
        ("", "pods") => matches!(ev.subresource(), "" | "status") && bound_to(ev, node),
        _ => false,
    }
}

/// Its bodies bind the pod to `node` and to no other node: the same reading
/// as the `node_credentials_off_node` risk, so that a write is never both
/// quiet and off its node.
fn bound_to(ev: &Event<'_>, node: &str) -> bool {
    let mut named = false;
    for n in super::risk::node::pod_nodes(ev) {
        if n != node {
            return false;
        }
        named = true;
    }
    named
}

/// The change path of the leader record of ConfigMap and Endpoints locks.
const LEADER_PATH: &str = "metadata.annotations[\"control-plane.alpha.kubernetes.io/leader\"]";

fn is_lock_kind(ev: &Event<'_>) -> bool {
    matches!(
        (ev.api_group(), ev.resource()),
        ("coordination.k8s.io", "leases") | ("", "configmaps") | ("", "endpoints")
    )
}

/// Only the renew time moved: for a Lease `spec.renewTime`, for the older
/// ConfigMap and Endpoints locks the `renewTime` inside the leader annotation.
fn lock_renewal(ev: &Event<'_>, changes: &[crate::model::Change]) -> bool {
    if !matches!(ev.verb(), "update" | "patch") || !is_lock_kind(ev) {
        return false;
    }
    let lease = ev.resource() == "leases";
    changes.iter().all(|c| {
        if lease {
            c.path == "spec.renewTime"
        } else {
            c.path == LEADER_PATH && same_holder(&c.old, &c.new)
        }
    })
}

/// Two leader records (JSON in a string) that differ in renew time only.
fn same_holder(old: &Value, new: &Value) -> bool {
    let parse = |v: &Value| -> Option<Value> {
        let mut record: Value = serde_json::from_str(v.as_str()?).ok()?;
        record.as_object_mut()?.remove("renewTime");
        Some(record)
    };
    matches!((parse(old), parse(new)), (Some(a), Some(b)) if a == b)
}

fn ca_bundle_kind(ev: &Event<'_>) -> bool {
    matches!(
        (ev.api_group(), ev.resource()),
        (
            "admissionregistration.k8s.io",
            "validatingwebhookconfigurations" | "mutatingwebhookconfigurations"
        ) | ("apiextensions.k8s.io", "customresourcedefinitions")
            | ("apiregistration.k8s.io", "apiservices")
    )
}

fn ca_bundle_only(ev: &Event<'_>, changes: &[crate::model::Change]) -> bool {
    ca_bundle_kind(ev)
        && changes.iter().all(|c| {
            let p = c.path.as_str();
            p == "spec.caBundle"
                || p == "spec.conversion.webhook.clientConfig.caBundle"
                || (p.starts_with("webhooks[") && p.ends_with("].clientConfig.caBundle"))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod_write(request: &str, response: &str) -> String {
        format!(
            r#"{{"verb":"patch","user":{{"username":"system:node:pool-1-a"}},"objectRef":{{"resource":"pods","namespace":"shop","name":"web-1","subresource":"status"}},"requestObject":{request},"responseObject":{response}}}"#
        )
    }

    /// `node_self` covers a pod write only when every body that names a
    /// node names the writer's: the complement of the off-node risk.
    #[test]
    fn node_self_and_the_off_node_risk_never_both_apply() {
        let on = |node: &str| format!(r#"{{"kind":"Pod","spec":{{"nodeName":"{node}"}}}}"#);
        let status = r#"{"status":{"phase":"Running"}}"#;
        let cases = [
            (pod_write(status, &on("pool-1-a")), true),
            (pod_write(&on("pool-1-a"), &on("pool-1-a")), true),
            (pod_write(status, &on("pool-1-b")), false),
            (pod_write(&on("pool-1-b"), &on("pool-1-a")), false),
            (pod_write(status, "null"), false),
        ];
        for (json, quiet) in cases {
            let ev: Event<'_> = serde_json::from_str(&json).unwrap();
            let covered = QuietRules::default().by_identity(&ev) == Some(Quiet::NodeSelf);
            let off = super::super::risk::node::off_node(&ev).is_some();
            assert_eq!(covered, quiet, "{json}");
            assert!(!(covered && off), "{json}");
        }
    }
}
