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
const ADMISSION: &[&str] = &[
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

/// What severity is judged on.
pub struct Target<'e> {
    pub resource: &'e str,
    pub group: &'e str,
    pub namespace: &'e str,
    pub verb: &'e str,
    pub finding_type: FindingType,
}

pub fn severity(policy: &Policy, s: &Target<'_>) -> Severity {
    for o in &policy.severity_overrides {
        let resource_ok = o.resources.is_empty()
            || o.resources
                .iter()
                .any(|r| resource_matches(r, s.resource, s.group));
        let namespace_ok = o.namespaces.is_empty() || o.namespaces.iter().any(|n| n == s.namespace);
        let type_ok = o.types.is_empty() || o.types.contains(&s.finding_type);
        if resource_ok && namespace_ok && type_ok {
            return o.severity;
        }
    }
    builtin(s)
}

fn builtin(s: &Target<'_>) -> Severity {
    let critical = (RBAC.contains(&s.resource)
        && matches!(s.group, "rbac.authorization.k8s.io" | ""))
        || (ADMISSION.contains(&s.resource)
            && matches!(s.group, "admissionregistration.k8s.io" | ""))
        || s.finding_type.involves_pipeline();
    if critical {
        return Severity::Critical;
    }
    let high = s.resource == "secrets"
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
    if drift.severity < Severity::High {
        drift.severity = Severity::High;
        drift
            .reasons
            .push(format!("the object is managed by {managed}"));
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
        }
    }

    #[test]
    fn managed_objects_are_at_least_high() {
        let argo = ManagedBy {
            tool: "argocd".to_owned(),
            name: Some("shop".to_owned()),
        };
        let mut d = drift(Severity::Medium);
        raise_for_managed(&mut d, &argo);
        assert_eq!(d.severity, Severity::High);
        assert_eq!(d.reasons[1], "the object is managed by argocd (shop)");
        let mut d = drift(Severity::Critical);
        raise_for_managed(&mut d, &argo);
        assert_eq!((d.severity, d.reasons.len()), (Severity::Critical, 1));
    }
}
