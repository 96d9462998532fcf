//! Severity: config overrides first, else the highest matching built-in
//! rule; then what the object is (a pipeline-managed object is at least
//! high) once correlation knows it.

use super::policy::{Policy, resource_matches};
use super::verdict::{Drift, FindingType, Severity};
use crate::model::ManagedBy;

const RBAC: &[&str] = &[
    "roles",
    "rolebindings",
    "clusterroles",
    "clusterrolebindings",
];
/// Webhook configurations first: an unreadable one is taken for the worst.
pub(super) const ADMISSION: &[&str] = &[
    "validatingwebhookconfigurations",
    "mutatingwebhookconfigurations",
    "validatingadmissionpolicies",
    "validatingadmissionpolicybindings",
    "mutatingadmissionpolicies",
    "mutatingadmissionpolicybindings",
];
const WORKLOAD_AND_CONFIG: &[&str] = &[
    "pods",
    "deployments",
    "replicasets",
    "statefulsets",
    "daemonsets",
    "jobs",
    "cronjobs",
    "replicationcontrollers",
    "horizontalpodautoscalers",
    "poddisruptionbudgets",
    "configmaps",
    "services",
    "ingresses",
    "ingressclasses",
    "networkpolicies",
    "serviceaccounts",
    "persistentvolumeclaims",
    "persistentvolumes",
    "storageclasses",
    "namespaces",
    "resourcequotas",
    "limitranges",
    "priorityclasses",
    "customresourcedefinitions",
];

/// An RBAC object (events that omit the group still count).
pub(super) fn is_rbac(resource: &str, group: &str) -> bool {
    RBAC.contains(&resource) && matches!(group, "rbac.authorization.k8s.io" | "")
}

/// What severity is judged on.
pub struct Target<'e> {
    pub resource: &'e str,
    pub group: &'e str,
    pub namespace: &'e str,
    pub verb: &'e str,
    pub finding_type: FindingType,
}

pub fn severity(policy: &Policy, s: &Target<'_>) -> Severity {
    overridden(policy, s).unwrap_or_else(|| builtin(s))
}

/// The first configured override that matches.
pub fn overridden(policy: &Policy, s: &Target<'_>) -> Option<Severity> {
    for o in &policy.severity_overrides {
        let resource_ok = o.resources.is_empty()
            || o.resources
                .iter()
                .any(|r| resource_matches(r, s.resource, s.group));
        let namespace_ok = o.namespaces.is_empty() || o.namespaces.iter().any(|n| n == s.namespace);
        let type_ok = o.types.is_empty() || o.types.contains(&s.finding_type);
        if resource_ok && namespace_ok && type_ok {
            return Some(o.severity);
        }
    }
    None
}

/// What an object is, before what it holds: RBAC and admission objects are
/// `high` and become `critical` by what they grant or where they send
/// requests (see [`super::risk`]), so a read-only Role no longer ranks with
/// a cluster-admin binding.
fn builtin(s: &Target<'_>) -> Severity {
    if s.finding_type.involves_pipeline() {
        return Severity::Critical;
    }
    let control = is_rbac(s.resource, s.group)
        || (ADMISSION.contains(&s.resource)
            && matches!(s.group, "admissionregistration.k8s.io" | ""))
        || s.resource == "apiservices"
        || s.resource == "certificatesigningrequests";
    let high = control
        || s.resource == "secrets"
        || matches!(s.verb, "delete" | "deletecollection")
        || s.finding_type == FindingType::InteractiveAccess;
    if high {
        return Severity::High;
    }
    if WORKLOAD_AND_CONFIG.contains(&s.resource) {
        return Severity::Medium;
    }
    Severity::Low
}

/// A change to an object that a GitOps tool manages is at least `high`: the
/// tool will revert it, or someone made it to stick against the pipeline.
/// Called once correlation knows the object's markers (from this event's
/// bodies or an earlier one's).
pub fn raise_for_managed(drift: &mut Drift, managed: &ManagedBy) {
    raise_severity_for_managed(&mut drift.severity, &mut drift.reasons, managed);
}

/// The same rule on a finding already assembled: live-object context
/// learns the markers after judging (see [`crate::context`]).
pub fn raise_severity_for_managed(
    severity: &mut Severity,
    reasons: &mut Vec<String>,
    managed: &ManagedBy,
) {
    if *severity < Severity::High {
        *severity = Severity::High;
        reasons.push(format!("the object is managed by {managed}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drift(severity: Severity) -> Drift {
        Drift {
            finding_type: FindingType::OutOfBandChange,
            severity,
            pipeline: None,
            reasons: vec!["identity matches no sanctioned pipeline".to_owned()],
            pending: Default::default(),
            risks: Vec::new(),
        }
    }

    #[test]
    fn managed_objects_are_at_least_high() {
        let argo = ManagedBy::new("argocd", Some("shop".to_owned()));
        let mut d = drift(Severity::Medium);
        raise_for_managed(&mut d, &argo);
        assert_eq!(d.severity, Severity::High);
        assert_eq!(d.reasons[1], "the object is managed by argocd (shop)");
        let mut d = drift(Severity::Critical);
        raise_for_managed(&mut d, &argo);
        assert_eq!((d.severity, d.reasons.len()), (Severity::Critical, 1));
    }
}
