//! Credentials minted by hand: approved or signed certificate requests,
//! long-lived service-account token Secrets, and kube-system service
//! accounts that mount their tokens.

use serde::Deserialize;
use serde_json::Value;

use super::path::Path;
use super::{Ctx, Op, Sink};
use crate::model::Severity::{Critical, High, Medium};

/// The signer whose certificates authenticate to the API server with any
/// subject, `O=system:masters` included. The subject sits in
/// `spec.request` (a PEM CSR), not parsed here: any manual approval for
/// this signer is treated as the worst case.
const CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client";

/// Identities that sign CSRs in a stock cluster.
const SIGNERS: &[&str] = &[
    "system:kube-controller-manager",
    "system:serviceaccount:kube-system:certificate-controller",
    "eks:certificate-controller",
];

pub fn csr(ctx: &Ctx<'_>, sink: &mut Sink) {
    if ctx.op == Op::Delete {
        return;
    }
    match ctx.ev.subresource() {
        "approval" => approval(ctx, sink),
        "status" if !SIGNERS.contains(&ctx.ev.username()) => {
            if let Some(cert) = ctx.at("/status/certificate") {
                sink.push(
                    "csr_signed",
                    &Path::of("status.certificate"),
                    cert.clone(),
                    High,
                );
            }
        }
        _ => {}
    }
}

fn approval(ctx: &Ctx<'_>, sink: &mut Sink) {
    let Some(conditions) = ctx.at("/status/conditions").and_then(Value::as_array) else {
        return;
    };
    let signer = ctx.at("/spec/signerName").and_then(Value::as_str);
    let severity = if signer == Some(CLIENT_SIGNER) {
        Critical
    } else {
        High
    };
    for (i, condition) in conditions.iter().enumerate() {
        let approved = condition.get("type").and_then(Value::as_str) == Some("Approved")
            && condition.get("status").and_then(Value::as_str) != Some("False");
        if approved {
            let at = Path::of("status").key("conditions").item(conditions, i);
            sink.push("csr_approved", &at, condition.clone(), severity);
        }
    }
}

/// A token Secret never expires, unlike a TokenRequest; made by a person,
/// it is a credential kept outside any rotation.
pub fn secrets(ctx: &Ctx<'_>, sink: &mut Sink) {
    /// Only the type: `data` is skipped by the parser, never kept.
    #[derive(Deserialize)]
    struct Typed<'a> {
        #[serde(borrow, default, rename = "type")]
        kind: Option<std::borrow::Cow<'a, str>>,
    }
    if ctx.ev.verb() != "create" || !ctx.by_person() {
        return;
    }
    let typed = [ctx.ev.response_object, ctx.ev.request_object]
        .into_iter()
        .flatten()
        .find_map(|raw| serde_json::from_str::<Typed<'_>>(raw.get()).ok());
    let kind = typed.and_then(|t| t.kind);
    if kind.as_deref() == Some("kubernetes.io/service-account-token") {
        let value = Value::from("kubernetes.io/service-account-token");
        sink.push(
            "service_account_token_secret",
            &Path::of("type"),
            value,
            High,
        );
    }
}

/// kube-system's service accounts belong to the controllers; one that
/// mounts its token everywhere is a token waiting in every pod's files.
pub fn service_accounts(ctx: &Ctx<'_>, sink: &mut Sink) {
    if ctx.ev.namespace() == "kube-system"
        && ctx.at("/automountServiceAccountToken") == Some(&Value::Bool(true))
    {
        let at = Path::of("automountServiceAccountToken");
        sink.push(
            "kube_system_token_automount",
            &at,
            Value::Bool(true),
            Medium,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::Ev;
    use super::*;
    use crate::model::Severity;

    fn csr_event(
        sub: &'static str,
        user: &'static str,
        body: &str,
    ) -> Vec<(&'static str, String, Severity)> {
        Ev {
            verb: "update",
            group: "certificates.k8s.io",
            resource: "certificatesigningrequests",
            sub,
            name: "mallory",
            user,
            response: Some(body),
            ..Ev::default()
        }
        .risks()
    }

    fn csr_body(signer: &str, condition: &str) -> String {
        format!(
            r#"{{"kind":"CertificateSigningRequest","metadata":{{"name":"mallory"}},"spec":{{"signerName":"{signer}","username":"mallory","groups":["system:authenticated"],"usages":["client auth"],"request":"LS0tLS1CRUdJTiBDRVJUSUZJQ0FURSBSRVFVRVNULS0tLS0K"}},"status":{{"conditions":[{condition}]}}}}"#
        )
    }

    #[test]
    fn approving_a_csr() {
        // Panther's k8s_client_certificate_created: the apiserver-client signer.
        let approved = r#"{"type":"Approved","status":"True","reason":"KubectlApprove","message":"This CSR was approved by kubectl certificate approve."}"#;
        let client = csr_body(CLIENT_SIGNER, approved);
        assert_eq!(
            csr_event("approval", "alice@example.com", &client),
            [(
                "csr_approved",
                "status.conditions[name=Approved]".to_owned(),
                Critical
            )]
        );
        let serving = csr_body("kubernetes.io/kubelet-serving", approved);
        assert_eq!(
            csr_event("approval", "alice@example.com", &serving)[0].2,
            High
        );
        // Denying is no risk; neither is creating the CSR.
        let denied = csr_body(
            CLIENT_SIGNER,
            r#"{"type":"Denied","status":"True","reason":"KubectlDeny"}"#,
        );
        assert!(csr_event("approval", "alice@example.com", &denied).is_empty());
        assert!(csr_event("", "alice@example.com", &client).is_empty());
    }

    #[test]
    fn signing_a_csr_by_hand() {
        let signed = r#"{"kind":"CertificateSigningRequest","spec":{"signerName":"example.com/custom"},"status":{"certificate":"LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg=="}}"#;
        assert_eq!(
            csr_event("status", "alice@example.com", signed)[0].0,
            "csr_signed"
        );
        assert!(csr_event("status", "system:kube-controller-manager", signed).is_empty());
    }

    fn secret(user: &'static str, body: &'static str) -> Vec<&'static str> {
        Ev {
            resource: "secrets",
            namespace: "kube-system",
            user,
            request: Some(body),
            ..Ev::default()
        }
        .rules()
    }

    #[test]
    fn service_account_token_secrets() {
        // Panther's k8s_serviceaccount_token_created shape.
        let token = r#"{"kind":"Secret","metadata":{"name":"admin-token","annotations":{"kubernetes.io/service-account.name":"clusterrole-aggregation-controller"}},"type":"kubernetes.io/service-account-token","data":{"token":"c2VjcmV0"}}"#;
        assert_eq!(
            secret("alice@example.com", token),
            ["service_account_token_secret"]
        );
        assert!(secret("system:serviceaccount:kube-system:token-controller", token).is_empty());
        let opaque = r#"{"kind":"Secret","type":"Opaque","data":{"password":"c2VjcmV0"}}"#;
        assert!(secret("alice@example.com", opaque).is_empty());
    }

    #[test]
    fn a_secrets_data_never_reaches_a_risk() {
        let token = r#"{"kind":"Secret","type":"kubernetes.io/service-account-token","data":{"token":"c2VjcmV0"}}"#;
        let ev = Ev {
            resource: "secrets",
            request: Some(token),
            ..Ev::default()
        };
        let json = ev.json();
        let parsed: crate::decode::Event<'_> = serde_json::from_str(&json).unwrap();
        let out = serde_json::to_string(&super::super::assess(&parsed)).unwrap();
        assert!(!out.contains("c2VjcmV0"), "{out}");
    }

    #[test]
    fn kube_system_service_accounts_that_mount_tokens() {
        let sa = |namespace: &'static str, body: &'static str| Ev {
            resource: "serviceaccounts",
            namespace,
            request: Some(body),
            ..Ev::default()
        };
        let on = r#"{"kind":"ServiceAccount","metadata":{"name":"helper"},"automountServiceAccountToken":true}"#;
        assert_eq!(
            sa("kube-system", on).rules(),
            ["kube_system_token_automount"]
        );
        assert!(sa("shop", on).risks().is_empty());
        let off = r#"{"kind":"ServiceAccount","automountServiceAccountToken":false}"#;
        assert!(sa("kube-system", off).risks().is_empty());
    }
}
