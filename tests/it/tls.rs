//! TLS and client authentication of the webhook and the query API, through
//! reqwest on rustls (the client `who-changed --server` uses) against the
//! running service, with certificates made here.

use std::cell::RefCell;
use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use serde_json::json;

use crate::common::{Ev, Pki, Service, wait_until};

/// A client that trusts only `ca`, with an optional client certificate.
fn client(ca: &Path, identity: Option<(&Path, &Path)>, http1: bool) -> Result<reqwest::Client> {
    let certs = reqwest::Certificate::from_pem_bundle(&std::fs::read(ca)?)?;
    let mut b = driftwatch::http::client_builder()
        .tls_certs_only(certs)
        .timeout(Duration::from_secs(20));
    if http1 {
        b = b.http1_only();
    }
    if let Some((cert, key)) = identity {
        let mut pem = std::fs::read(cert)?;
        pem.push(b'\n');
        pem.extend(std::fs::read(key)?);
        b = b.identity(reqwest::Identity::from_pem(&pem)?);
    }
    Ok(b.build()?)
}

/// HTTP code (0 when the connection or handshake failed, with the error
/// chain as the body) and body. A POST when `body` is given.
fn request(
    url: &str,
    ca: &Path,
    identity: Option<(&Path, &Path)>,
    token: Option<&str>,
    body: Option<&str>,
) -> Result<(u16, String)> {
    let client = client(ca, identity, true)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut req = match body {
            Some(b) => client
                .post(url)
                .header("content-type", "application/json")
                .body(b.to_owned()),
            None => client.get(url),
        };
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        match req.send().await {
            Ok(r) => {
                let code = r.status().as_u16();
                Ok((code, r.text().await?))
            }
            Err(e) => {
                let mut message = e.to_string();
                let mut source = std::error::Error::source(&e);
                while let Some(cause) = source {
                    message.push_str(&format!(": {cause}"));
                    source = cause.source();
                }
                Ok((0, message))
            }
        }
    })
}

/// `kubectl edit` of a ConfigMap: one finding.
fn event(audit_id: &str) -> String {
    Ev::new(
        "patch",
        "/api/v1/namespaces/shop/configmaps/settings?fieldManager=kubectl-edit",
    )
    .audit_id(audit_id)
    .by("alice@example.com", &["system:authenticated"])
    .source_ips(&["10.0.0.7"])
    .body(json!({"data": {"mode": "debug"}}))
    .line()
}

const TOKEN_EU: &str = "eu-token-0123456789abcdef";
const TOKEN_ANY: &str = "any-token-0123456789abcdef";
/// A query token that names its holder.
const TOKEN_ONCALL: &str = "oncall-token-0123456789abcdef";

fn config(pki: &Pki, mtls: bool) -> Result<String> {
    let tokens = pki.path("tokens");
    std::fs::write(
        &tokens,
        format!("# token cluster\n{TOKEN_EU} prod-eu-1\n{TOKEN_ANY}\n"),
    )?;
    let query_tokens = pki.path("query-tokens");
    std::fs::write(
        &query_tokens,
        format!("query-token-0123456789abcdef\n{TOKEN_ONCALL} oncall@example.com\n"),
    )?;
    let mut yaml = format!(
        "server:\n  tls:\n    cert_file: {}\n    key_file: {}\n    reload_interval: 1s\n",
        pki.path("tls.crt").display(),
        pki.path("tls.key").display()
    );
    if mtls {
        yaml.push_str(&format!(
            "    client_ca_file: {}\n",
            pki.path("ca.crt").display()
        ));
        yaml.push_str("  auth:\n    client_clusters:\n      kube-apiserver-prod-eu-1: prod-eu-1\n      kube-apiserver-prod-us-2: prod-us-2\n");
    } else {
        yaml.push_str(&format!(
            "  auth:\n    bearer_tokens_file: {}\n    query_tokens_file: {}\n",
            tokens.display(),
            query_tokens.display()
        ));
    }
    Ok(yaml)
}

#[test]
fn bearer_tokens_guard_the_webhook_and_bind_clusters() -> Result<()> {
    let pki = Pki::new()?;
    let svc = Service::start(Some(&config(&pki, false)?))?;
    assert!(svc.base.starts_with("https://"), "{}", svc.base);
    let ca = pki.path("ca.crt");
    let hook = svc.url("/audit/webhook");

    let (code, body) = request(&hook, &ca, None, None, Some(&event("no-token")))?;
    assert_eq!(code, 401, "{body} {:?}", svc.logs.lock().unwrap());
    assert!(body.contains("bearer token is required"), "{body}");
    let (code, _) = request(
        &hook,
        &ca,
        None,
        Some("wrong-token-0123456789abcdef"),
        Some(&event("bad-token")),
    )?;
    assert_eq!(code, 401);

    // The EU token writes as prod-eu-1, whatever the path says.
    let (code, body) = request(&hook, &ca, None, Some(TOKEN_EU), Some(&event("eu-1")))?;
    assert_eq!(code, 200, "{body}");
    let (code, body) = request(
        &svc.url("/audit/webhook/prod-us-2"),
        &ca,
        None,
        Some(TOKEN_EU),
        Some(&event("eu-as-us")),
    )?;
    assert_eq!(code, 403, "{body}");
    // A token bound to no cluster writes only as the default one; the
    // refusal says how to bind it or let it name any.
    let (code, body) = request(
        &svc.url("/audit/webhook/prod-us-2"),
        &ca,
        None,
        Some(TOKEN_ANY),
        Some(&event("any-us")),
    )?;
    assert_eq!(code, 403, "{body}");
    let refusal: serde_json::Value = serde_json::from_str(&body)?;
    let error = refusal["error"].as_str().unwrap_or_default();
    assert!(error.contains("bound to no cluster"), "{error}");
    assert!(
        error.contains("server.auth.allow_any_cluster: true"),
        "{error}"
    );
    let (code, body) = request(&hook, &ca, None, Some(TOKEN_ANY), Some(&event("any")))?;
    assert_eq!(code, 200, "{body}");

    let findings = svc.wait_for_findings(2)?;
    let clusters: Vec<(String, String)> = findings
        .iter()
        .map(|f| {
            (
                f["audit_id"].as_str().unwrap_or("").to_owned(),
                f["cluster"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        clusters,
        vec![
            ("eu-1".to_owned(), "prod-eu-1".to_owned()),
            ("any".to_owned(), "default".to_owned())
        ],
        "refused requests never reached the pipeline"
    );

    // The query API wants its own token; health and metrics do not.
    let (code, _) = request(&svc.url("/api/v1/changes"), &ca, None, None, None)?;
    assert_eq!(code, 401);
    let (code, _) = request(&svc.url("/api/v1/changes"), &ca, None, Some(TOKEN_EU), None)?;
    assert_eq!(code, 401, "webhook tokens do not open the query API");
    let (code, body) = request(
        &svc.url("/api/v1/changes"),
        &ca,
        None,
        Some("query-token-0123456789abcdef"),
        None,
    )?;
    assert_eq!(code, 200, "{body}");
    let (code, metrics) = request(&svc.url("/metrics"), &ca, None, None, None)?;
    assert_eq!(code, 200);
    assert!(
        metrics.contains("driftwatch_auth_refused_total{reason=\"missing_token\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("driftwatch_auth_refused_total{reason=\"bad_token\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("driftwatch_auth_refused_total{reason=\"cluster_mismatch\"}"),
        "{metrics}"
    );

    // Plain HTTP to the TLS port gets no answer.
    let plain = svc.base.replace("https://", "http://");
    let (code, _) = request(&format!("{plain}/healthz"), &ca, None, None, None)?;
    assert_eq!(code, 0);
    Ok(())
}

#[test]
fn client_certificates_are_required_and_bound_to_clusters() -> Result<()> {
    let pki = Pki::new()?;
    let svc = Service::start(Some(&config(&pki, true)?))?;
    let ca = pki.path("ca.crt");
    let hook = svc.url("/audit/webhook");
    let eu = (
        pki.path("kube-apiserver-prod-eu-1.crt"),
        pki.path("kube-apiserver-prod-eu-1.key"),
    );
    let us = (
        pki.path("kube-apiserver-prod-us-2.crt"),
        pki.path("kube-apiserver-prod-us-2.key"),
    );
    let rogue = (pki.path("rogue.crt"), pki.path("rogue.key"));

    // No certificate, or one from an unknown CA: refused in the handshake.
    let (code, _) = request(&hook, &ca, None, None, Some(&event("anonymous")))?;
    assert_eq!(code, 0);
    let (code, _) = request(
        &hook,
        &ca,
        Some((&rogue.0, &rogue.1)),
        None,
        Some(&event("rogue")),
    )?;
    assert_eq!(code, 0);

    let (code, body) = request(
        &hook,
        &ca,
        Some((&eu.0, &eu.1)),
        None,
        Some(&event("from-eu")),
    )?;
    assert_eq!(code, 200, "{body}");
    let (code, _) = request(
        &svc.url("/audit/webhook/prod-eu-1"),
        &ca,
        Some((&us.0, &us.1)),
        None,
        Some(&event("us-as-eu")),
    )?;
    assert_eq!(code, 403, "one API server cannot write as another");
    let (code, _) = request(
        &svc.url("/audit/webhook/prod-us-2"),
        &ca,
        Some((&us.0, &us.1)),
        None,
        Some(&event("from-us")),
    )?;
    assert_eq!(code, 200);
    // A certificate the CA signed but `client_clusters` does not map writes
    // only as the default cluster.
    let unmapped = (
        pki.path("kube-apiserver-unmapped.crt"),
        pki.path("kube-apiserver-unmapped.key"),
    );
    let (code, body) = request(
        &svc.url("/audit/webhook/prod-eu-1"),
        &ca,
        Some((&unmapped.0, &unmapped.1)),
        None,
        Some(&event("unmapped-as-eu")),
    )?;
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("server.auth.client_clusters"), "{body}");
    let (code, body) = request(
        &hook,
        &ca,
        Some((&unmapped.0, &unmapped.1)),
        None,
        Some(&event("unmapped")),
    )?;
    assert_eq!(code, 200, "{body}");

    let findings = svc.wait_for_findings(3)?;
    let got: Vec<(&str, &str)> = findings
        .iter()
        .map(|f| {
            (
                f["audit_id"].as_str().unwrap_or(""),
                f["cluster"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("from-eu", "prod-eu-1"),
            ("from-us", "prod-us-2"),
            ("unmapped", "default")
        ]
    );
    let (_, metrics) = request(&svc.url("/metrics"), &ca, Some((&eu.0, &eu.1)), None, None)?;
    assert!(
        metrics.contains("driftwatch_auth_refused_total{reason=\"tls_handshake\"}"),
        "{metrics}"
    );
    Ok(())
}

/// `server.auth.allow_any_cluster: true`: a caller bound to no cluster
/// names any; a bound one stays bound.
#[test]
fn unbound_callers_name_any_cluster_only_when_allowed() -> Result<()> {
    let pki = Pki::new()?;
    let yaml = config(&pki, false)? + "    allow_any_cluster: true\n";
    let svc = Service::start(Some(&yaml))?;
    let ca = pki.path("ca.crt");
    let us = svc.url("/audit/webhook/prod-us-2");
    let (code, body) = request(&us, &ca, None, Some(TOKEN_ANY), Some(&event("any-us")))?;
    assert_eq!(code, 200, "{body}");
    let (code, body) = request(&us, &ca, None, Some(TOKEN_EU), Some(&event("eu-us")))?;
    assert_eq!(code, 403, "{body}");
    let f = svc.wait_for_findings(1)?;
    assert_eq!(
        (f.len(), &f[0]["audit_id"], &f[0]["cluster"]),
        (1, &json!("any-us"), &json!("prod-us-2"))
    );
    Ok(())
}

#[test]
fn certificates_reload_without_a_restart() -> Result<()> {
    let pki = Pki::new()?;
    let svc = Service::start(Some(&config(&pki, false)?))?;
    let ca = pki.path("ca.crt");
    let (code, _) = request(&svc.url("/healthz"), &ca, None, None, None)?;
    assert_eq!(code, 200);

    // Replace the server certificate with one from a new CA.
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "driftwatch renewed CA");
    let new_ca = CertifiedIssuer::self_signed(params, KeyPair::generate()?)?;
    let new_ca_path = pki.path("new-ca.crt");
    std::fs::write(&new_ca_path, new_ca.pem())?;
    let server = CertificateParams::new(vec!["127.0.0.1".to_owned()])?;
    let key = KeyPair::generate()?;
    let cert = server.signed_by(&key, &new_ca)?;
    // Key first, then certificate: each write alone is a mismatched pair,
    // which must be refused until both are in place.
    std::fs::write(pki.path("tls.key"), key.serialize_pem())?;
    std::fs::write(pki.path("tls.crt"), cert.pem())?;

    let last_error = RefCell::new(String::new());
    wait_until(
        Duration::from_secs(15),
        || {
            format!(
                "the new certificate to be picked up: {} {:?}",
                last_error.borrow(),
                svc.logs.lock().unwrap()
            )
        },
        || match request(&svc.url("/healthz"), &new_ca_path, None, None, None) {
            Ok((200, _)) => Some(Ok(())),
            Ok((_, err)) => {
                *last_error.borrow_mut() = err;
                None
            }
            Err(e) => Some(Err(e)),
        },
    )??;
    let (code, _) = request(&svc.url("/healthz"), &ca, None, None, None)?;
    assert_eq!(code, 0, "the old CA no longer verifies the server");
    Ok(())
}

#[test]
fn http2_over_tls_carries_webhook_batches() -> Result<()> {
    let pki = Pki::new()?;
    let svc = Service::start(Some(&config(&pki, false)?))?;
    let client = client(&pki.path("ca.crt"), None, false)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (version, code) = rt.block_on(async {
        let r = client
            .post(svc.url("/audit/webhook"))
            .bearer_auth(TOKEN_ANY)
            .body(event("over-h2"))
            .send()
            .await?;
        anyhow::Ok((r.version(), r.status().as_u16()))
    })?;
    assert_eq!((version, code), (reqwest::Version::HTTP_2, 200));
    // Refused before its body is read, a 3 MB upload still gets its answer
    // (not a stream reset) over HTTP/2 negotiated by ALPN.
    let big = vec![b' '; 3 << 20];
    for _ in 0..10 {
        let (version, code, body) = rt.block_on(async {
            let r = client
                .post(svc.url("/audit/webhook"))
                .body(big.clone())
                .send()
                .await?;
            anyhow::Ok((r.version(), r.status().as_u16(), r.text().await?))
        })?;
        assert_eq!((version, code), (reqwest::Version::HTTP_2, 401), "{body}");
        assert!(body.contains("bearer token is required"), "{body}");
    }
    let f = svc.wait_for_findings(1)?;
    assert_eq!(f.len(), 1);
    assert_eq!(f[0]["audit_id"], "over-h2");
    Ok(())
}

/// `who-changed --server` reaches a driftwatch that wants TLS, a query token
/// and (second server) a client certificate; a drift accepted with a token
/// that names its holder is attributed to the holder, whatever the body says.
#[test]
fn who_changed_and_accepts_go_through_tls_tokens_and_client_certificates() -> Result<()> {
    let pki = Pki::new()?;
    let ca = pki.path("ca.crt");
    let svc = Service::start(Some(&config(&pki, false)?))?;
    let (code, body) = request(
        &svc.url("/audit/webhook"),
        &ca,
        None,
        Some(TOKEN_ANY),
        Some(&event("edit-1")),
    )?;
    assert_eq!(code, 200, "{body}");
    let server = svc.base.clone();
    let ca_arg = ca.display().to_string();
    let who = |token: Option<&str>| {
        let mut args = vec![
            "who-changed",
            "cm/settings",
            "-n",
            "shop",
            "-o",
            "json",
            "--server",
            &server,
            "--ca-cert",
            &ca_arg,
        ];
        if let Some(t) = token {
            args.extend(["--token", t]);
        }
        crate::common::run(&args, None)
    };
    let denied = who(None)?;
    assert_ne!(denied.code, 0);
    assert!(denied.stderr.contains("401"), "{}", denied.stderr);
    let found = who(Some("query-token-0123456789abcdef"))?;
    assert_eq!(found.code, 0, "{}", found.stderr);
    let items = found.findings();
    assert_eq!(items.len(), 1, "{}", found.stdout);
    assert_eq!(items[0]["actor"]["username"], "alice@example.com");
    let drift = items[0]["drift"]["id"].as_str().unwrap().to_owned();

    // Attribution of an accept: from the named token, not from the body.
    let accept = svc.url(&format!("/api/v1/drifts/{drift}/accept"));
    let (code, body) = request(
        &accept,
        &ca,
        None,
        Some(TOKEN_ONCALL),
        Some(r#"{"by": "mallory", "reason": "hotfix"}"#),
    )?;
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("oncall@example.com"), "{body}");
    let (code, body) = request(
        &accept,
        &ca,
        None,
        Some(TOKEN_ONCALL),
        Some(r#"{"reason": "hotfix agreed in the incident channel"}"#),
    )?;
    assert_eq!(code, 200, "{body}");
    let drift: serde_json::Value = serde_json::from_str(&body)?;
    assert_eq!(drift["state"], "accepted");
    assert_eq!(drift["closed_by"]["actor"], "oncall@example.com");
    let (code, body) = request(
        &accept,
        &ca,
        None,
        Some("query-token-0123456789abcdef"),
        Some(r#"{"reason": "no name"}"#),
    )?;
    assert_eq!(code, 400, "a token without a name needs `by`: {body}");
    drop(svc);

    // Mutual TLS: the listener wants a client certificate for every route.
    let svc = Service::start(Some(&config(&pki, true)?))?;
    let (cert, key) = (
        pki.path("kube-apiserver-prod-eu-1.crt"),
        pki.path("kube-apiserver-prod-eu-1.key"),
    );
    let (code, body) = request(
        &svc.url("/audit/webhook"),
        &ca,
        Some((&cert, &key)),
        None,
        Some(&event("edit-2")),
    )?;
    assert_eq!(code, 200, "{body}");
    let (cert, key) = (cert.display().to_string(), key.display().to_string());
    let base = svc.base.clone();
    let args = [
        "who-changed",
        "cm/settings",
        "-n",
        "shop",
        "-o",
        "json",
        "--server",
        &base,
        "--ca-cert",
        &ca_arg,
    ];
    let refused = crate::common::run(&args, None)?;
    assert_ne!(
        refused.code, 0,
        "no client certificate: refused in the handshake"
    );
    let mut with_cert = args.to_vec();
    with_cert.extend(["--client-cert", &cert, "--client-key", &key]);
    let found = crate::common::run(&with_cert, None)?;
    assert_eq!(found.code, 0, "{}", found.stderr);
    let items = found.findings();
    assert_eq!(items.len(), 1, "{}", found.stdout);
    assert_eq!(items[0]["cluster"], "prod-eu-1");
    Ok(())
}
