//! Node credentials used off their node.
//!
//! A kubelet authenticates as `system:node:NAME` and writes only what
//! belongs to its node: the Node `NAME`, its Lease `kube-node-lease/NAME`,
//! the pods bound to it (status, mirror pods, deletes). It never writes
//! another node's objects, and never writes a Secret or a ConfigMap (the
//! Node authorizer lets it read those of its own pods, nothing more).
//!
//! Attack caught: a node credential taken off its node (the kubelet's client
//! certificate or bootstrap kubeconfig read from a compromised host, a node
//! identity minted through an approved CSR) and used to move sideways:
//! marking another node unschedulable or rewriting its addresses, faking the
//! status of pods on other nodes, holding another node's lease (the node
//! lifecycle controller then believes a dead node alive, or evicts a live
//! one's pods), writing Secrets. The NodeRestriction admission plugin refuses
//! most of these, so the event usually carries a `403`: the attempt is the
//! signal, and it is reported although nothing changed (see
//! [`crate::classify::classify`]).
//!
//! Matched by the user name alone: GKE's entries carry no groups, and a
//! `system:node:` name outside `system:nodes` is no less a node credential.
//! Pods are matched by the `spec.nodeName` their bodies show, exactly as the
//! `node_self` quiet rule does, so the two never both apply ([`pod_nodes`]).
//! A pod write whose bodies name no node (a `Metadata`-level event, a status
//! patch logged without its response, most refused writes) cannot be told
//! apart and is not judged here.
//!
//! Noise: none expected from healthy kubelets; a node renamed in place (its
//! old name in the certificate, the new one in the objects) trips it until
//! its credential is reissued.
//!
//! Reads are not judged: the policy decides "not a mutation" before anything
//! else (reads are most of the stream), and telling a kubelet's reads of its
//! own pods' Secrets from others' needs the pod-to-Secret graph.

use std::borrow::Cow;

use crate::decode::Event;
use crate::model::{Risk, Severity};

pub const RULE: &str = "node_credentials_off_node";

const NODE_PREFIX: &str = "system:node:";

/// The node a request's credential belongs to, by its user name.
pub fn node_of<'e>(ev: &'e Event<'_>) -> Option<&'e str> {
    ev.username()
        .strip_prefix(NODE_PREFIX)
        .filter(|n| !n.is_empty())
}

/// A write by a node credential to what is not its node's: the object, the
/// node it belongs to and why, as a risk. `None` for everyone else.
pub fn off_node(ev: &Event<'_>) -> Option<Risk> {
    let node = node_of(ev)?;
    if !matches!(
        ev.verb(),
        "create" | "update" | "patch" | "delete" | "deletecollection"
    ) {
        return None;
    }
    let (path, value) = match (ev.api_group(), ev.resource()) {
        ("", "nodes") => other_name(ev, node).map(|n| ("metadata.name", n.to_owned()))?,
        ("coordination.k8s.io", "leases") if ev.namespace() == "kube-node-lease" => {
            other_name(ev, node).map(|n| ("metadata.name", n.to_owned()))?
        }
        ("", "pods") => {
            let other = pod_nodes(ev).find(|n| n != node)?;
            ("spec.nodeName", other.into_owned())
        }
        ("", resource @ ("secrets" | "configmaps")) => (
            "",
            format!("a kubelet never writes {resource}; node {node} did"),
        ),
        _ => return None,
    };
    Some(Risk {
        rule: RULE.into(),
        path: path.to_owned(),
        value: serde_json::Value::from(value),
        severity: Severity::Critical,
    })
}

/// The object's name when it is not `node`'s own (an unnamed request, a
/// collection, names nothing).
fn other_name<'e>(ev: &'e Event<'_>, node: &str) -> Option<&'e str> {
    Some(ev.name()).filter(|n| !n.is_empty() && *n != node)
}

/// The nodes a pod write's bodies bind the pod to: the response's
/// `spec.nodeName` (the pod after the write), then the request's (a create,
/// an update, a patch that sets it). The `node_self` quiet rule covers a
/// write whose bodies name only the writer's node; this rule one that names
/// any other: never both.
pub fn pod_nodes<'e>(ev: &'e Event<'_>) -> impl Iterator<Item = Cow<'e, str>> {
    #[derive(serde::Deserialize)]
    struct Pod<'a> {
        #[serde(borrow, default)]
        spec: Option<Spec<'a>>,
    }
    #[derive(serde::Deserialize)]
    struct Spec<'a> {
        #[serde(borrow, default, rename = "nodeName")]
        node_name: Option<Cow<'a, str>>,
    }
    [ev.response_object, ev.request_object]
        .into_iter()
        .flatten()
        // Only what is needed is read; the rest of the body is skipped.
        .filter_map(|raw| serde_json::from_str::<Pod<'_>>(raw.get()).ok())
        .filter_map(|p| p.spec?.node_name)
        .filter(|n| !n.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(
        user: &str,
        verb: &str,
        uri_ref: serde_json::Value,
        bodies: &[(&str, &str)],
    ) -> String {
        let mut doc = serde_json::json!({"verb": verb, "user": {"username": user},
            "objectRef": uri_ref});
        for (key, body) in bodies {
            doc[*key] = serde_json::from_str(body).unwrap();
        }
        doc.to_string()
    }

    fn judge(json: &str) -> Option<(String, serde_json::Value)> {
        let ev: Event<'_> = serde_json::from_str(json).unwrap();
        off_node(&ev).map(|r| {
            assert_eq!(r.severity, Severity::Critical);
            (r.path, r.value)
        })
    }

    const A: &str = "system:node:pool-1-a";

    #[test]
    fn another_nodes_node_lease_and_pods_are_off_node() {
        let node =
            serde_json::json!({"resource": "nodes", "name": "pool-1-b", "subresource": "status"});
        assert_eq!(
            judge(&event(A, "patch", node, &[])),
            Some(("metadata.name".into(), "pool-1-b".into()))
        );
        let lease = serde_json::json!({"resource": "leases", "apiGroup": "coordination.k8s.io",
            "namespace": "kube-node-lease", "name": "pool-1-b"});
        assert!(judge(&event(A, "update", lease, &[])).is_some());
        let pod = serde_json::json!({"resource": "pods", "namespace": "shop", "name": "web-1",
            "subresource": "status"});
        let bound_b = r#"{"kind":"Pod","spec":{"nodeName":"pool-1-b"}}"#;
        assert_eq!(
            judge(&event(
                A,
                "patch",
                pod.clone(),
                &[("responseObject", bound_b)]
            )),
            Some(("spec.nodeName".into(), "pool-1-b".into()))
        );
        // A mirror pod created for another node, refused or not: its
        // request names the node.
        let create = serde_json::json!({"resource": "pods", "namespace": "kube-system"});
        let status = r#"{"kind":"Status","code":403,"reason":"Forbidden"}"#;
        assert!(
            judge(&event(
                A,
                "create",
                create,
                &[("requestObject", bound_b), ("responseObject", status)]
            ))
            .is_some()
        );
        let secret = serde_json::json!({"resource": "secrets", "namespace": "shop", "name": "db"});
        assert_eq!(
            judge(&event(A, "update", secret, &[])).map(|r| r.0),
            Some(String::new())
        );
    }

    #[test]
    fn its_own_objects_reads_and_other_users_are_not() {
        let own =
            serde_json::json!({"resource": "nodes", "name": "pool-1-a", "subresource": "status"});
        assert_eq!(judge(&event(A, "patch", own, &[])), None);
        let lease = serde_json::json!({"resource": "leases", "apiGroup": "coordination.k8s.io",
            "namespace": "kube-node-lease", "name": "pool-1-a"});
        assert_eq!(judge(&event(A, "update", lease, &[])), None);
        let other_ns = serde_json::json!({"resource": "leases", "apiGroup": "coordination.k8s.io",
            "namespace": "kube-system", "name": "pool-1-b"});
        assert_eq!(judge(&event(A, "update", other_ns, &[])), None);
        let pod = serde_json::json!({"resource": "pods", "namespace": "shop", "name": "web-1"});
        let bound_a = r#"{"spec":{"nodeName":"pool-1-a"}}"#;
        assert_eq!(
            judge(&event(
                A,
                "delete",
                pod.clone(),
                &[("responseObject", bound_a)]
            )),
            None
        );
        // Nothing says where the pod runs.
        assert_eq!(
            judge(&event(
                A,
                "patch",
                pod.clone(),
                &[("requestObject", r#"{"status":{}}"#)]
            )),
            None
        );
        let node = serde_json::json!({"resource": "nodes", "name": "pool-1-b"});
        assert_eq!(judge(&event(A, "get", node.clone(), &[])), None);
        assert_eq!(judge(&event("alice", "patch", node.clone(), &[])), None);
        assert_eq!(judge(&event("system:node:", "patch", node, &[])), None);
    }
}
