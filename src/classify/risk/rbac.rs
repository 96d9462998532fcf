//! RBAC grants that are as good as cluster-admin, or a step to it. A role
//! that grants none of these (read-only access to workloads) has no risk,
//! so the engine can lower it from the blanket critical of its kind.

use serde_json::Value;

use super::path::Path;
use super::{Ctx, Sink};
use crate::model::Severity::{self, Critical, High};

/// A permission one rule of a role may grant, by (apiGroup, resource,
/// subresource) and the verbs that make it dangerous (`*` always does).
struct Grant {
    rule: &'static str,
    group: &'static str,
    resource: &'static str,
    sub: &'static str,
    verbs: &'static [&'static str],
    severity: Severity,
}

const GRANTS: &[Grant] = &[
    // Every Secret, service-account tokens included (a `list` returns them all).
    grant(
        "rbac_secrets_access",
        "secrets",
        "",
        &["get", "list", "watch"],
        High,
    ),
    // The kubelet API: `/run` and `/exec` on every pod of the node, as the
    // kubelet; `get` is enough over WebSocket.
    grant(
        "rbac_nodes_proxy",
        "nodes",
        "proxy",
        &["get", "create"],
        Critical,
    ),
    grant("rbac_pod_exec", "pods", "exec", &["get", "create"], High),
    grant("rbac_pod_exec", "pods", "attach", &["get", "create"], High),
    // A pod can mount any service account of its namespace and any host path.
    grant("rbac_create_pods", "pods", "", &["create"], High),
    grant(
        "rbac_token_request",
        "serviceaccounts",
        "token",
        &["create"],
        High,
    ),
];

const fn grant(
    rule: &'static str,
    resource: &'static str,
    sub: &'static str,
    verbs: &'static [&'static str],
    severity: Severity,
) -> Grant {
    Grant {
        rule,
        group: "",
        resource,
        sub,
        verbs,
        severity,
    }
}

/// Verbs that lift RBAC's own guard: `escalate` writes roles with more
/// than one holds, `bind` binds them, `impersonate` acts as anyone.
const ESCALATION_VERBS: &[(&str, &str)] = &[
    ("escalate", "rbac_escalate"),
    ("bind", "rbac_bind"),
    ("impersonate", "rbac_impersonate"),
];

/// Write verbs: `*` on every resource with one of these is cluster-admin.
const WRITES: &[&str] = &["create", "update", "patch", "delete", "deletecollection"];

pub fn roles(ctx: &Ctx<'_>, sink: &mut Sink) {
    let Some(rules) = ctx.at("/rules").and_then(Value::as_array) else {
        return;
    };
    for (i, rule) in rules.iter().enumerate() {
        if sink.full() {
            return;
        }
        let at = Path::root().key("rules").item(rules, i);
        let verbs = strings(rule, "verbs");
        let resources = strings(rule, "resources");
        if resources.is_empty() {
            // nonResourceURLs: /metrics, /healthz... no objects behind them.
            continue;
        }
        wildcards(rule, &at, &verbs, &resources, sink);
        for (verb, id) in ESCALATION_VERBS {
            if verbs.contains(verb) {
                sink.push(id, &at.key("verbs"), rule["verbs"].clone(), Critical);
            }
        }
        let groups = strings(rule, "apiGroups");
        for g in GRANTS {
            let verb_ok = verbs.iter().any(|v| *v == "*" || g.verbs.contains(v));
            let group_ok = groups.iter().any(|x| *x == "*" || *x == g.group);
            if verb_ok && group_ok && resources.iter().any(|r| covers(r, g.resource, g.sub)) {
                sink.push(
                    g.rule,
                    &at.key("resources"),
                    rule["resources"].clone(),
                    g.severity,
                );
            }
        }
    }
}

/// `verbs: ["*"]` is every verb, escalation included; `resources: ["*"]`
/// with a write verb is every kind. `apiGroups: ["*"]` alone widens, it
/// does not grant: a read-only role over all groups is common
/// (monitoring) and is judged by the grants above.
fn wildcards(rule: &Value, at: &Path, verbs: &[&str], resources: &[&str], sink: &mut Sink) {
    if verbs.contains(&"*") {
        sink.push(
            "rbac_wildcard",
            &at.key("verbs"),
            rule["verbs"].clone(),
            Critical,
        );
    }
    if resources.contains(&"*") && verbs.iter().any(|v| *v == "*" || WRITES.contains(v)) {
        let value = rule["resources"].clone();
        sink.push("rbac_wildcard", &at.key("resources"), value, Critical);
    }
}

/// Whether a role's resource entry covers `resource` (`sub` empty) or its
/// subresource: `*`, `pods`, `pods/*`, `*/exec`, `pods/exec`.
fn covers(entry: &str, resource: &str, sub: &str) -> bool {
    if entry == "*" {
        return true;
    }
    match (entry.split_once('/'), sub) {
        (None, "") => entry == resource,
        (Some((r, s)), sub) if !sub.is_empty() => {
            (r == resource || r == "*") && (s == sub || s == "*")
        }
        _ => false,
    }
}

fn strings<'v>(rule: &'v Value, key: &str) -> Vec<&'v str> {
    rule.get(key)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// Subjects that mean "anyone": no credential, or any credential at all.
const PUBLIC: &[&str] = &[
    "system:anonymous",
    "system:unauthenticated",
    "system:authenticated",
];

pub fn bindings(ctx: &Ctx<'_>, sink: &mut Sink) {
    let role = ctx
        .at("/roleRef/name")
        .and_then(Value::as_str)
        .filter(|_| ctx.at("/roleRef/kind").and_then(Value::as_str) == Some("ClusterRole"));
    // `admin` bound cluster-wide is every namespace's Secrets and RBAC;
    // in one namespace it is that namespace's (still a takeover of it).
    let severity = match (role, ctx.ev.resource()) {
        (Some("cluster-admin"), _) | (Some("admin"), "clusterrolebindings") => Some(Critical),
        (Some("admin"), _) => Some(High),
        _ => None,
    };
    if let (Some(severity), Some(name)) = (severity, role) {
        sink.push(
            "rbac_bind_admin",
            &Path::of("roleRef.name"),
            Value::from(name),
            severity,
        );
    }
    let Some(subjects) = ctx.at("/subjects").and_then(Value::as_array) else {
        return;
    };
    for (i, subject) in subjects.iter().enumerate() {
        let name = subject.get("name").and_then(Value::as_str).unwrap_or("");
        if PUBLIC.contains(&name) {
            let at = Path::root().key("subjects").item(subjects, i).key("name");
            sink.push("rbac_bind_public", &at, Value::from(name), Critical);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::Ev;
    use super::*;

    fn role(resource: &'static str, rules: &str) -> Vec<(&'static str, String, Severity)> {
        let body = format!(
            r#"{{"kind":"ClusterRole","apiVersion":"rbac.authorization.k8s.io/v1","metadata":{{"name":"r"}},"rules":{rules}}}"#
        );
        Ev {
            group: "rbac.authorization.k8s.io",
            resource,
            name: "r",
            request: Some(&body),
            ..Ev::default()
        }
        .risks()
    }

    #[test]
    fn a_read_only_role_has_no_risk() {
        // Panther's "node-viewer" and "pod-admin" near misses, and the
        // monitoring shape with apiGroups "*".
        let got = role(
            "clusterroles",
            r#"[{"apiGroups":[""],"resources":["nodes","pods","pods/log","services"],"verbs":["get","list","watch"]},{"apiGroups":["*"],"resources":["deployments","configmaps"],"verbs":["get","list"]},{"nonResourceURLs":["/metrics"],"verbs":["get"]}]"#,
        );
        assert!(got.is_empty(), "{got:?}");
    }

    #[test]
    fn wildcards() {
        let got = role(
            "clusterroles",
            r#"[{"apiGroups":["*"],"resources":["*"],"verbs":["*"]}]"#,
        );
        let rules: Vec<_> = got.iter().map(|r| (r.0, r.1.as_str())).collect();
        assert_eq!(
            rules[..2],
            [
                ("rbac_wildcard", "rules[0].verbs"),
                ("rbac_wildcard", "rules[0].resources")
            ]
        );
        // `*` covers the grants too, all on one path.
        assert!(rules.contains(&("rbac_nodes_proxy", "rules[0].resources")));
        assert!(rules.contains(&("rbac_secrets_access", "rules[0].resources")));
        // Read-only over everything is every Secret, not a wildcard grant.
        let read_all = role(
            "clusterroles",
            r#"[{"apiGroups":[""],"resources":["*"],"verbs":["get","list"]}]"#,
        );
        let ids: Vec<_> = read_all.iter().map(|r| r.0).collect();
        assert!(!ids.contains(&"rbac_wildcard"), "{ids:?}");
        assert!(ids.contains(&"rbac_secrets_access"));
    }

    #[test]
    fn escalation_verbs() {
        let got = role(
            "roles",
            r#"[{"apiGroups":["rbac.authorization.k8s.io"],"resources":["clusterroles"],"verbs":["bind","escalate"]},{"apiGroups":[""],"resources":["users","groups"],"verbs":["impersonate"]}]"#,
        );
        assert_eq!(
            got,
            [
                ("rbac_escalate", "rules[0].verbs".to_owned(), Critical),
                ("rbac_bind", "rules[0].verbs".to_owned(), Critical),
                ("rbac_impersonate", "rules[1].verbs".to_owned(), Critical),
            ]
        );
    }

    #[test]
    fn dangerous_grants() {
        // Panther's nodes/proxy and nodes/* fixtures, Elastic's pods/exec.
        let cases = [
            (
                r#"["nodes/proxy"]"#,
                r#"["get"]"#,
                "rbac_nodes_proxy",
                Critical,
            ),
            (r#"["nodes/*"]"#, r#"["get"]"#, "rbac_nodes_proxy", Critical),
            (r#"["secrets"]"#, r#"["list"]"#, "rbac_secrets_access", High),
            (r#"["pods/exec"]"#, r#"["create"]"#, "rbac_pod_exec", High),
            (r#"["pods/attach"]"#, r#"["get"]"#, "rbac_pod_exec", High),
            (r#"["pods"]"#, r#"["create"]"#, "rbac_create_pods", High),
            (
                r#"["serviceaccounts/token"]"#,
                r#"["create"]"#,
                "rbac_token_request",
                High,
            ),
        ];
        for (resources, verbs, id, severity) in cases {
            let rules =
                format!(r#"[{{"apiGroups":[""],"resources":{resources},"verbs":{verbs}}}]"#);
            assert_eq!(
                role("clusterroles", &rules),
                [(id, "rules[0].resources".to_owned(), severity)],
                "{resources} {verbs}"
            );
        }
        // Near misses: pods/log, nodes without proxy, secrets in another
        // group, deleting pods, reading service accounts.
        let misses = [
            (
                r#"[""]"#,
                r#"["pods/log","nodes","nodes/stats"]"#,
                r#"["get"]"#,
            ),
            (r#"["example.com"]"#, r#"["secrets"]"#, r#"["get"]"#),
            (r#"[""]"#, r#"["pods"]"#, r#"["get","delete"]"#),
            (r#"[""]"#, r#"["serviceaccounts"]"#, r#"["get","list"]"#),
        ];
        for (groups, resources, verbs) in misses {
            let rules =
                format!(r#"[{{"apiGroups":{groups},"resources":{resources},"verbs":{verbs}}}]"#);
            assert!(role("roles", &rules).is_empty(), "{resources} {verbs}");
        }
    }

    #[test]
    fn a_patch_adding_a_rule_is_judged_on_that_rule() {
        let after = r#"{"kind":"ClusterRole","rules":[{"apiGroups":[""],"resources":["secrets"],"verbs":["get"]},{"apiGroups":[""],"resources":["pods"],"verbs":["get"]}]}"#;
        let ev = |patch: &'static str| Ev {
            verb: "patch",
            group: "rbac.authorization.k8s.io",
            resource: "clusterroles",
            name: "r",
            request: Some(patch),
            response: Some(after),
            ..Ev::default()
        };
        // Adds the harmless second rule: the secrets rule was there before.
        assert!(ev(r#"[{"op":"add","path":"/rules/-","value":{"apiGroups":[""],"resources":["pods"],"verbs":["get"]}}]"#).risks().is_empty());
        assert!(
            ev(r#"{"metadata":{"labels":{"team":"a"}}}"#)
                .risks()
                .is_empty()
        );
        // A merge patch replaces the whole list: every rule counts.
        assert_eq!(ev(r#"{"rules":[]}"#).rules(), ["rbac_secrets_access"]);
    }

    fn binding(resource: &'static str, body: &str) -> Vec<(&'static str, String, Severity)> {
        Ev {
            group: "rbac.authorization.k8s.io",
            resource,
            namespace: if resource == "rolebindings" {
                "shop"
            } else {
                ""
            },
            request: Some(body),
            ..Ev::default()
        }
        .risks()
    }

    #[test]
    fn bindings_to_admin_and_to_everyone() {
        // Panther's k8s_clusterrolebinding_privileged and anonymous access.
        let admin = r#"{"kind":"ClusterRoleBinding","roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"ClusterRole","name":"cluster-admin"},"subjects":[{"kind":"User","name":"mallory@example.com"}]}"#;
        assert_eq!(
            binding("clusterrolebindings", admin),
            [("rbac_bind_admin", "roleRef.name".to_owned(), Critical)]
        );
        let ns_admin = r#"{"roleRef":{"kind":"ClusterRole","name":"admin"},"subjects":[{"kind":"User","name":"bob"}]}"#;
        assert_eq!(binding("rolebindings", ns_admin)[0].2, High);
        let public = r#"{"roleRef":{"kind":"ClusterRole","name":"view"},"subjects":[{"kind":"Group","apiGroup":"rbac.authorization.k8s.io","name":"system:unauthenticated"},{"kind":"User","name":"system:anonymous"}]}"#;
        assert_eq!(
            binding("clusterrolebindings", public),
            [
                (
                    "rbac_bind_public",
                    "subjects[name=system:unauthenticated].name".to_owned(),
                    Critical
                ),
                (
                    "rbac_bind_public",
                    "subjects[name=system:anonymous].name".to_owned(),
                    Critical
                ),
            ]
        );
        // Near misses: view to a person; a Role that happens to be called
        // cluster-admin is not the ClusterRole.
        let view = r#"{"roleRef":{"kind":"ClusterRole","name":"view"},"subjects":[{"kind":"Group","name":"dev-team"}]}"#;
        assert!(binding("clusterrolebindings", view).is_empty());
        let fake = r#"{"roleRef":{"kind":"Role","name":"cluster-admin"},"subjects":[{"kind":"User","name":"bob"}]}"#;
        assert!(binding("rolebindings", fake).is_empty());
    }
}
