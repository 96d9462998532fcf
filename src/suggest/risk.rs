//! The `risk:` of a proposed allowance: what a holder of the identity's
//! credentials could do silently once it is trusted this way.

use super::propose::{Identity, Proposal, Scope};

/// One sentence per scope, and what still surfaces.
pub fn text(p: &Proposal) -> String {
    let holder = match &p.identity {
        Identity::ServiceAccount { namespace, name } => {
            format!("Anyone holding a token of service account {namespace}:{name}")
        }
        Identity::User(u) => format!("Anyone holding the credentials of user {u}"),
    };
    let scopes: Vec<String> = p.scopes.iter().map(scope).collect();
    let mut notes: Vec<&str> = Vec::new();
    for s in &p.scopes {
        if let Some(n) = consequence(s)
            && !notes.contains(&n)
        {
            notes.push(n);
        }
    }
    let mut out = format!("{holder} can, without a finding: {}.", scopes.join("; "));
    for n in notes {
        out.push(' ');
        out.push_str(n);
    }
    out.push_str(
        " Writes with risky content (high or critical) are still reported, and so is everything outside these scopes.",
    );
    clean(&out)
}

fn scope(s: &Scope) -> String {
    let group = if s.api_group.is_empty() {
        "core".to_owned()
    } else {
        s.api_group.clone()
    };
    let mut out = format!("{} {} ({group})", list(&s.verbs, "or"), s.resource);
    match &s.names {
        Some(names) => out.push_str(&format!(" named {}", list(names, "or"))),
        None => out.push_str(" of any name"),
    }
    match s.namespaces.as_deref() {
        None => out.push_str(" in any namespace"),
        Some([only]) if only.is_empty() => out.push_str(" (cluster-scoped)"),
        Some(ns) => out.push_str(&format!(" in {}", list(ns, "or"))),
    }
    if !s.fields.is_empty() {
        out.push_str(&format!(", changing only {}", list(&s.fields, "and")));
    }
    out
}

/// What such writes can do, for the resources where it is not obvious.
fn consequence(s: &Scope) -> Option<&'static str> {
    let (resource, sub) = match s.resource.split_once('/') {
        Some((r, sub)) => (r, Some(sub)),
        None => (s.resource.as_str(), None),
    };
    Some(match (resource, sub) {
        (_, Some("status")) => {
            "Status is what people and controllers read to learn an object's state: it can be faked."
        }
        (_, Some("scale")) => "Scaling can take a workload down (zero replicas).",
        (_, Some("finalizers")) => "Finalizers can block deletion.",
        ("configmaps", _) => {
            "A ConfigMap configures what reads it: a changed value changes what it does."
        }
        ("endpoints" | "endpointslices", _) => {
            "Endpoints decide where a Service's traffic goes: rewriting them redirects it."
        }
        ("leases", _) => "Holding a lease stops the real controller's loop.",
        ("services" | "ingresses", _) => "Services and Ingresses route traffic.",
        (
            "pods" | "deployments" | "daemonsets" | "statefulsets" | "replicasets" | "jobs"
            | "cronjobs",
            _,
        ) => "Workloads run code; privileged or host access in them is still judged.",
        ("networkpolicies", _) => "Network policies decide what can reach what.",
        _ if s.verbs.iter().any(|v| v.starts_with("delete")) => "Deletes remove objects.",
        _ => return None,
    })
}

/// `a`, `a or b`, `a, b or c`.
fn list(items: &[String], last: &str) -> String {
    match items {
        [] => String::new(),
        [one] => display(one),
        [init @ .., tail] => format!(
            "{} {last} {}",
            init.iter()
                .map(|s| display(s))
                .collect::<Vec<_>>()
                .join(", "),
            display(tail)
        ),
    }
}

fn display(s: &str) -> String {
    if s.is_empty() {
        "\"\"".to_owned()
    } else {
        s.to_owned()
    }
}

/// One line of plain text: a block scalar holds it as written.
fn clean(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_risk_names_every_scope_and_what_still_surfaces() {
        let p = Proposal {
            name: "suggested/kube-system/cluster-autoscaler".into(),
            identity: Identity::ServiceAccount {
                namespace: "kube-system".into(),
                name: "cluster-autoscaler".into(),
            },
            user_agent: None,
            verify_aws_arn: false,
            scopes: vec![Scope {
                api_group: String::new(),
                resource: "configmaps".into(),
                verbs: vec!["patch".into(), "update".into()],
                namespaces: Some(vec!["kube-system".into()]),
                names: Some(vec!["cluster-autoscaler-status".into()]),
                fields: vec!["data.status".into()],
                members: Vec::new(),
                removes: 0,
                notes: Vec::new(),
            }],
            risk: String::new(),
        };
        assert_eq!(
            text(&p),
            "Anyone holding a token of service account kube-system:cluster-autoscaler can, \
             without a finding: patch or update configmaps (core) named cluster-autoscaler-status \
             in kube-system, changing only data.status. A ConfigMap configures what reads it: a \
             changed value changes what it does. Writes with risky content (high or critical) are \
             still reported, and so is everything outside these scopes."
        );
    }
}
