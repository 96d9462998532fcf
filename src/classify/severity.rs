//! Severity: the highest matching rule wins, then config overrides.

use super::policy::{Policy, resource_matches};
use super::verdict::{FindingType, Severity};

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

pub struct Subject<'e> {
    pub resource: &'e str,
    pub group: &'e str,
    pub namespace: &'e str,
    pub verb: &'e str,
    pub finding_type: FindingType,
}

pub fn severity(policy: &Policy, s: &Subject<'_>) -> Severity {
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

fn builtin(s: &Subject<'_>) -> Severity {
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
