//! NetworkPolicies: removing one, or writing a rule that admits anyone.

use serde_json::Value;

use super::path::Path;
use super::{Ctx, Op, Sink};
use crate::model::Severity::High;

pub fn check(ctx: &Ctx<'_>, sink: &mut Sink) {
    if ctx.op == Op::Delete {
        // The pods it selected are open to whatever the other policies allow.
        let name = Value::from(ctx.name());
        sink.push_always(
            "network_policy_deleted",
            &Path::of("metadata.name"),
            name,
            High,
        );
        return;
    }
    for (direction, peers) in [("ingress", "from"), ("egress", "to")] {
        let Some(rules) = ctx
            .at(&format!("/spec/{direction}"))
            .and_then(Value::as_array)
        else {
            continue;
        };
        let base = Path::of("spec").key(direction);
        for (i, rule) in rules.iter().enumerate() {
            allow_all(rule, peers, &base.item(rules, i), sink);
        }
    }
}

/// A rule with no peers and no ports (`{}`) admits everything; so does a
/// peer that is `0.0.0.0/0`, or every pod of every namespace.
fn allow_all(rule: &Value, peers: &str, at: &Path, sink: &mut Sink) {
    let list = rule
        .get(peers)
        .and_then(Value::as_array)
        .filter(|l| !l.is_empty());
    let ports = rule
        .get("ports")
        .and_then(Value::as_array)
        .is_some_and(|p| !p.is_empty());
    let Some(list) = list else {
        if !ports {
            sink.push("network_policy_allow_all", at, rule.clone(), High);
        }
        return;
    };
    for (j, peer) in list.iter().enumerate() {
        let peer_at = at.key(peers).item(list, j);
        if let Some(cidr) = peer.pointer("/ipBlock/cidr").and_then(Value::as_str)
            && matches!(cidr, "0.0.0.0/0" | "::/0")
        {
            let path = peer_at.key("ipBlock").key("cidr");
            sink.push("network_policy_allow_all", &path, Value::from(cidr), High);
        }
        if every_pod_everywhere(peer) {
            sink.push("network_policy_allow_all", &peer_at, peer.clone(), High);
        }
    }
}

/// `namespaceSelector: {}` selects every namespace; without a
/// `podSelector`, or with an empty one, every pod in them.
fn every_pod_everywhere(peer: &Value) -> bool {
    let empty = |v: &Value| v.as_object().is_some_and(|m| m.is_empty());
    peer.get("namespaceSelector").is_some_and(empty) && peer.get("podSelector").is_none_or(empty)
}

#[cfg(test)]
mod tests {
    use super::super::test_support::Ev;
    use super::*;
    use crate::model::Severity;

    fn policy(spec: &str) -> Vec<(&'static str, String, Severity)> {
        let body = format!(
            r#"{{"kind":"NetworkPolicy","apiVersion":"networking.k8s.io/v1","metadata":{{"name":"np","namespace":"shop"}},"spec":{spec}}}"#
        );
        Ev {
            group: "networking.k8s.io",
            resource: "networkpolicies",
            namespace: "shop",
            request: Some(&body),
            ..Ev::default()
        }
        .risks()
    }

    #[test]
    fn rules_that_allow_all() {
        let got = policy(
            r#"{"podSelector":{},"policyTypes":["Ingress","Egress"],"ingress":[{},{"from":[{"namespaceSelector":{},"podSelector":{}}]}],"egress":[{"to":[{"ipBlock":{"cidr":"0.0.0.0/0","except":["169.254.169.254/32"]}}]}]}"#,
        );
        let paths: Vec<_> = got.iter().map(|r| r.1.as_str()).collect();
        assert_eq!(
            paths,
            [
                "spec.ingress[0]",
                "spec.ingress[1].from[0]",
                "spec.egress[0].to[0].ipBlock.cidr"
            ]
        );
        assert!(
            got.iter()
                .all(|r| r.0 == "network_policy_allow_all" && r.2 == High)
        );
    }

    #[test]
    fn scoped_rules_are_no_risk() {
        // Default deny; pods of the namespace; one namespace; one port from
        // anyone is a public service, not an open policy; a private range.
        let got = policy(
            r#"{"podSelector":{"matchLabels":{"app":"web"}},"ingress":[{"from":[{"podSelector":{}}]},{"from":[{"namespaceSelector":{"matchLabels":{"kubernetes.io/metadata.name":"ingress-nginx"}}}]},{"ports":[{"protocol":"TCP","port":443}]},{"from":[{"ipBlock":{"cidr":"10.0.0.0/8"}}]}],"egress":[]}"#,
        );
        assert!(got.is_empty(), "{got:?}");
    }

    #[test]
    fn deleting_a_policy() {
        let ev = Ev {
            verb: "delete",
            group: "networking.k8s.io",
            resource: "networkpolicies",
            namespace: "shop",
            name: "default-deny",
            ..Ev::default()
        };
        let json = ev.json();
        let parsed: crate::decode::Event<'_> = serde_json::from_str(&json).unwrap();
        let risks = super::super::assess(&parsed);
        assert_eq!(risks.len(), 1);
        assert_eq!(
            (risks[0].rule.as_ref(), risks[0].value.as_str()),
            ("network_policy_deleted", Some("default-deny"))
        );
    }
}
