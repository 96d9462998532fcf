//! The audit webhook over real HTTP against a running `driftwatch serve`:
//! DESIGN.md "Contracts / HTTP" and "Audit semantics" (EventList items without
//! kind/apiVersion, stages, redelivery, the `200` only once findings are out).

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};

use crate::common::{
    ARGOCD_CONFIG as CONFIG, ARGOCD_SA, ARGOCD_UA, Ev, GZIP, KUBECTL, Service, audit_ids, corpus,
    event_list, get_text, gzip, post_bytes, post_json, wait_until,
};

const HUMAN: &str = "alice@example.com";
const HUMAN_GROUPS: &[&str] = &["devs", "system:authenticated"];
const KCM_UA: &str = "kube-controller-manager/v1.31.2 (linux/amd64) kubernetes/5864a46/system:serviceaccount:kube-system:replicaset-controller";
const KUBELET_UA: &str = "kubelet/v1.31.2 (linux/amd64) kubernetes/5864a46";
const NODE: (&str, &[&str], &str) = (
    "system:node:worker-1",
    &["system:nodes", "system:authenticated"],
    KUBELET_UA,
);
const SA_GROUPS: &[&str] = &["system:serviceaccounts", "system:authenticated"];

// ---------------------------------------------------------------------------
// A realistic webhook batch.

/// The shape of a real auditID (a UUID), unique per tag and number.
fn audit_id(tag: &str, n: usize) -> String {
    let t = tag
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    format!("{t:08x}-{:04x}-4000-8000-{:012x}", n % 0xffff, n)
}

/// `verb` on `uri` by `who` (user, groups, user agent), from the node
/// network.
fn req(id: String, verb: &str, who: (&str, &[&str], &str), uri: &str) -> Ev {
    let (user, groups, ua) = who;
    Ev::new(verb, uri)
        .audit_id(&id)
        .by(user, groups)
        .ua(ua)
        .source_ips(&["10.0.0.7"])
}

/// A human's `kubectl patch` of a deployment: a finding every time it succeeds.
fn human_patch(tag: &str, n: usize) -> Ev {
    let uri = format!(
        "/apis/apps/v1/namespaces/shop/deployments/checkout-{n}?fieldManager=kubectl-patch"
    );
    req(
        audit_id(tag, n),
        "patch",
        (HUMAN, HUMAN_GROUPS, KUBECTL),
        &uri,
    )
    .body(json!({"spec": {"replicas": 5}}))
}

/// A realistic webhook batch of exactly 400 events, and the auditIDs of the
/// requests that must produce a finding.
struct Batch {
    body: Value,
    expected: BTreeSet<String>,
}

fn realistic_batch(tag: &str) -> Batch {
    let mut evs: Vec<Ev> = Vec::new();
    let mut n = 0usize;
    let mut next = || {
        n += 1;
        n
    };

    // 200 reads: more than half of a real stream, humans and controllers alike.
    let readers: [(&str, &[&str], &str); 4] = [
        (HUMAN, HUMAN_GROUPS, KUBECTL),
        NODE,
        (
            "system:serviceaccount:kube-system:replicaset-controller",
            SA_GROUPS,
            KCM_UA,
        ),
        (ARGOCD_SA, SA_GROUPS, ARGOCD_UA),
    ];
    let read_paths = [
        "/api/v1/namespaces/shop/pods",
        "/apis/apps/v1/namespaces/shop/deployments",
        "/api/v1/namespaces/shop/configmaps",
        "/api/v1/namespaces/shop/secrets",
    ];
    for i in 0..200 {
        let verb = ["get", "list", "watch"][i % 3];
        let mut uri = read_paths[i % read_paths.len()].to_owned();
        if verb == "get" {
            uri.push_str(&format!("/object-{i}"));
        }
        evs.push(req(
            audit_id(tag, next()),
            verb,
            readers[i % readers.len()],
            &uri,
        ));
    }

    // 140 writes by Kubernetes itself: the system baseline and noise kinds.
    for i in 0..140 {
        let id = audit_id(tag, next());
        let sa = |name: &str| format!("system:serviceaccount:kube-system:{name}");
        let ev = match i % 7 {
            0 => req(
                id,
                "update",
                (&sa("replicaset-controller"), SA_GROUPS, KCM_UA),
                &format!("/apis/apps/v1/namespaces/shop/replicasets/checkout-{i}-7d9f8b6c5/status"),
            ),
            1 => req(
                id,
                "update",
                (&sa("deployment-controller"), SA_GROUPS, KCM_UA),
                &format!("/apis/apps/v1/namespaces/shop/deployments/checkout-{i}/status"),
            ),
            2 => req(
                id,
                "create",
                (
                    "system:kube-scheduler",
                    &["system:authenticated"],
                    "kube-scheduler/v1.31.2 (linux/amd64) kubernetes/5864a46/scheduler",
                ),
                &format!("/api/v1/namespaces/shop/pods/checkout-{i}-7d9f8b6c5-x2k4q/binding"),
            ),
            3 => req(
                id,
                "patch",
                NODE,
                &format!("/api/v1/namespaces/shop/pods/checkout-{i}-7d9f8b6c5-x2k4q/status"),
            ),
            4 => req(
                id,
                "update",
                (
                    "system:kube-controller-manager",
                    &["system:authenticated"],
                    "kube-controller-manager/v1.31.2 (linux/amd64) kubernetes/5864a46/leader-election",
                ),
                "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/kube-controller-manager",
            ),
            5 => req(
                id,
                "delete",
                (&sa("generic-garbage-collector"), SA_GROUPS, KCM_UA),
                &format!("/api/v1/namespaces/shop/pods/checkout-{i}-5c6b7d8e9-old"),
            ),
            _ => req(
                id,
                "update",
                (&sa("endpointslice-controller"), SA_GROUPS, KCM_UA),
                &format!(
                    "/apis/discovery.k8s.io/v1/namespaces/shop/endpointslices/checkout-{i}-abcde"
                ),
            ),
        };
        evs.push(ev);
    }

    // 10 Argo CD syncs: the sanctioned pipeline.
    for i in 0..10 {
        let uri = format!(
            "/apis/apps/v1/namespaces/shop/deployments/catalog-{i}?fieldManager=argocd-controller"
        );
        evs.push(
            req(
                audit_id(tag, next()),
                "patch",
                (ARGOCD_SA, SA_GROUPS, ARGOCD_UA),
                &uri,
            )
            .body(json!({"spec": {"replicas": 5}})),
        );
    }

    // 20 successful `kubectl patch` by a human, each also seen at
    // RequestReceived (which is never acted on): 20 findings.
    let mut expected = BTreeSet::new();
    for _ in 0..20 {
        let done = human_patch(tag, 10_000 + next());
        expected.insert(done.id());
        evs.push(done.clone().stage("RequestReceived"));
        evs.push(done);
    }

    // 5 dry runs (`kubectl diff`) and 5 denied patches by the same human: no change.
    for i in 0..10 {
        let query = if i < 5 {
            "dryRun=All&fieldManager=kubectl-client-side-apply"
        } else {
            "fieldManager=kubectl-patch"
        };
        let uri = format!("/apis/apps/v1/namespaces/shop/deployments/checkout-{i}?{query}");
        let ev = req(
            audit_id(tag, next()),
            "patch",
            (HUMAN, HUMAN_GROUPS, KUBECTL),
            &uri,
        )
        .body(json!({"spec": {"replicas": 5}}));
        evs.push(if i < 5 { ev } else { ev.code(403) });
    }

    assert_eq!(
        evs.len(),
        400,
        "the batch is meant to be a full webhook batch"
    );
    // A fixed shuffle: stages of one request need not be adjacent or in order.
    let len = evs.len();
    let mut order: Vec<usize> = (0..len).collect();
    order.sort_by_key(|i| (i * 7919) % len);
    let body = event_list(order.iter().map(|&i| evs[i].item()));
    Batch { body, expected }
}

// ---------------------------------------------------------------------------
// Talking to the service.

/// Proves that nothing was emitted since `before` findings: stdout is one
/// ordered stream, so once a fresh marker finding shows up, anything emitted
/// earlier is visible too.
async fn assert_nothing_new_since(svc: &Service, before: usize, tag: &str) -> Result<()> {
    let marker = human_patch(tag, 999_999);
    let answer = post_json(svc, "/audit/webhook", &event_list([marker.item()])).await?;
    ensure!(
        answer.status == 200,
        "marker batch refused: {}",
        answer.json
    );
    let found = svc.wait_for_findings(before + 1)?;
    let new: Vec<&Value> = found[before..].iter().collect();
    ensure!(
        new.len() == 1 && new[0]["audit_id"] == json!(marker.id()),
        "unexpected findings were emitted: {new:#?}"
    );
    Ok(())
}

fn is_error_body(json: &Value) -> bool {
    json["error"].as_str().is_some_and(|e| !e.trim().is_empty())
}

// ---------------------------------------------------------------------------
// Tests.

#[tokio::test]
async fn full_batch_is_answered_after_its_findings_are_out() -> Result<()> {
    let svc = Service::start(Some(CONFIG))?;
    let batch = realistic_batch("full");

    let answer = post_json(&svc, "/audit/webhook", &batch.body).await?;
    ensure!(answer.status == 200, "answer: {}", answer.json);
    assert_eq!(answer.json["documents"], json!(1), "{}", answer.json);
    assert_eq!(answer.json["events"], json!(400), "{}", answer.json);
    assert_eq!(answer.json["findings"], json!(20), "{}", answer.json);
    assert_eq!(answer.json["rejected"], json!([]), "{}", answer.json);

    let findings = svc.wait_for_findings(batch.expected.len())?;
    assert_eq!(findings.len(), batch.expected.len(), "{findings:#?}");
    assert_eq!(audit_ids(&findings), batch.expected);
    for f in &findings {
        assert_eq!(f["schema"], "driftwatch.finding/v1", "{f}");
        assert_eq!(f["type"], "out_of_band_change", "{f}");
        // A deployment is a workload object: medium.
        assert_eq!(f["severity"], "medium", "{f}");
        assert_eq!(f["cluster"], "prod-eu-1", "{f}");
        assert_eq!(f["verb"], "patch", "{f}");
        assert_eq!(f["resource"]["group"], "apps", "{f}");
        assert_eq!(f["resource"]["resource"], "deployments", "{f}");
        assert_eq!(f["resource"]["namespace"], "shop", "{f}");
        assert_eq!(f["actor"]["username"], HUMAN, "{f}");
        assert_eq!(f["actor"]["groups"], json!(HUMAN_GROUPS), "{f}");
        assert_eq!(f["actor"]["user_agent"], KUBECTL, "{f}");
        assert_eq!(f["actor"]["client"], "kubectl", "{f}");
        assert_eq!(f["actor"]["field_manager"], "kubectl-patch", "{f}");
        assert_eq!(f["actor"]["impersonated_by"], Value::Null, "{f}");
        assert_eq!(f["pipeline"], Value::Null, "{f}");
        assert!(
            f["reasons"].as_array().is_some_and(|r| !r.is_empty()),
            "{f}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn redelivered_batch_yields_no_new_findings() -> Result<()> {
    let svc = Service::start(Some(CONFIG))?;
    let batch = realistic_batch("redelivery");

    let first = post_json(&svc, "/audit/webhook", &batch.body).await?;
    ensure!(first.status == 200, "first: {}", first.json);
    let findings = svc.wait_for_findings(batch.expected.len())?;
    assert_eq!(audit_ids(&findings), batch.expected);

    // The API server retries a batch it did not see answered.
    let second = post_json(&svc, "/audit/webhook", &batch.body).await?;
    ensure!(second.status == 200, "second: {}", second.json);
    assert_eq!(second.json["events"], json!(400), "{}", second.json);
    assert_eq!(second.json["findings"], json!(0), "{}", second.json);
    assert_nothing_new_since(&svc, batch.expected.len(), "redelivery-marker").await
}

#[tokio::test]
async fn bodies_that_are_not_audit_events_are_refused_with_400() -> Result<()> {
    let svc = Service::start(Some(CONFIG))?;
    let good = serde_json::to_string(&event_list(
        (0..5).map(|n| human_patch("truncated", n).item()),
    ))?;
    let truncated = good[..good.len() / 2].to_owned();
    let bodies: Vec<(&str, String)> = vec![
        ("empty", String::new()),
        ("whitespace", " \n\t\n".to_owned()),
        ("a byte-order mark alone", "\u{feff}\n".to_owned()),
        ("not JSON", "this is not JSON\n".to_owned()),
        ("a JSON string", "\"EventList\"".to_owned()),
        (
            "a Pod",
            r#"{"kind":"Pod","apiVersion":"v1","metadata":{"name":"web"}}"#.to_owned(),
        ),
        ("an object", r#"{"hello":1}"#.to_owned()),
        ("an array of numbers", "[1,2,3]".to_owned()),
        (
            "an EventList of pods",
            r#"{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[{"kind":"Pod","metadata":{"name":"web"}}]}"#
                .to_owned(),
        ),
        ("falco's malformed event", r#"{"kind": 0}"#.to_owned()),
        ("truncated EventList", truncated),
    ];
    for (what, body) in bodies {
        let answer = post_bytes(&svc, "/audit/webhook", body.into_bytes(), &[]).await?;
        assert_eq!(answer.status, 400, "{what}: {}", answer.json);
        assert!(
            is_error_body(&answer.json),
            "{what}: no JSON error: {}",
            answer.json
        );
    }
    assert_nothing_new_since(&svc, 0, "not-events-marker").await
}

#[tokio::test]
async fn oversized_bodies_are_refused_with_413() -> Result<()> {
    let svc = Service::start(Some(CONFIG))?;
    // Realistic JSON lines, 20 MiB: over the 16 MiB default limit.
    let line = serde_json::to_string(&human_patch("big", 1).item())? + "\n";
    let big: Vec<u8> = line.repeat((20 << 20) / line.len() + 1).into_bytes();
    assert!(big.len() > 20 << 20);
    let answer = post_bytes(&svc, "/audit/webhook", big.clone(), &[]).await?;
    assert_eq!(answer.status, 413, "{}", answer.json);
    assert!(is_error_body(&answer.json), "{}", answer.json);

    // Small on the wire, past the limit once decompressed.
    let bomb = gzip(&big)?;
    assert!(bomb.len() < 1 << 20, "the gzip body should be small");
    let answer = post_bytes(&svc, "/audit/webhook", bomb, GZIP).await?;
    assert_eq!(answer.status, 413, "{}", answer.json);
    assert!(is_error_body(&answer.json), "{}", answer.json);

    // The service still takes batches, and neither big body was processed.
    assert_nothing_new_since(&svc, 0, "oversized-marker").await
}

#[tokio::test]
async fn gzip_encoded_batch_is_accepted() -> Result<()> {
    let svc = Service::start(Some(CONFIG))?;
    let batch = realistic_batch("gzip");
    let body = gzip(&serde_json::to_vec(&batch.body)?)?;
    let answer = post_bytes(&svc, "/audit/webhook", body, GZIP).await?;
    ensure!(answer.status == 200, "answer: {}", answer.json);
    assert_eq!(answer.json["events"], json!(400), "{}", answer.json);
    assert_eq!(answer.json["findings"], json!(20), "{}", answer.json);
    let findings = svc.wait_for_findings(batch.expected.len())?;
    assert_eq!(findings.len(), batch.expected.len());
    assert_eq!(audit_ids(&findings), batch.expected);
    Ok(())
}

#[tokio::test]
async fn one_bad_line_does_not_hide_the_good_ones() -> Result<()> {
    let svc = Service::start(Some(CONFIG))?;
    let a = human_patch("bad-line", 1);
    let b = human_patch("bad-line", 2);
    let read = req(
        audit_id("bad-line", 3),
        "list",
        (HUMAN, HUMAN_GROUPS, KUBECTL),
        "/apis/apps/v1/namespaces/shop/deployments",
    );
    let lines = [
        serde_json::to_string(&a.item())?,
        serde_json::to_string(&read.item())?,
        r#"{"kind": 0}"#.to_owned(),
        "garbage, not JSON".to_owned(),
        serde_json::to_string(&b.item())?,
    ];
    let body = lines.join("\n") + "\n";
    let answer = post_bytes(&svc, "/audit/webhook", body.into_bytes(), &[]).await?;
    ensure!(answer.status == 200, "answer: {}", answer.json);
    assert_eq!(answer.json["events"], json!(3), "{}", answer.json);
    assert_eq!(answer.json["findings"], json!(2), "{}", answer.json);
    let rejected: Vec<u64> = answer.json["rejected"]
        .as_array()
        .context("rejected is a list")?
        .iter()
        .filter_map(|r| r["line"].as_u64())
        .collect();
    assert_eq!(rejected, vec![3, 4], "{}", answer.json);

    let findings = svc.wait_for_findings(2)?;
    assert_eq!(findings.len(), 2, "{findings:#?}");
    assert_eq!(audit_ids(&findings), BTreeSet::from([a.id(), b.id()]));
    Ok(())
}

#[tokio::test]
async fn cluster_in_the_path_names_the_cluster() -> Result<()> {
    let svc = Service::start(Some(CONFIG))?;
    let patch = human_patch("cluster", 1);
    let answer = post_json(
        &svc,
        "/audit/webhook/prod-us-2",
        &event_list([patch.item()]),
    )
    .await?;
    ensure!(answer.status == 200, "answer: {}", answer.json);
    let findings = svc.wait_for_findings(1)?;
    assert_eq!(findings.len(), 1, "{findings:#?}");
    assert_eq!(findings[0]["cluster"], "prod-us-2");
    assert_eq!(findings[0]["audit_id"], json!(patch.id()));

    // Without a cluster in the path, the configured one.
    let other = human_patch("cluster", 2);
    let answer = post_json(&svc, "/audit/webhook", &event_list([other.item()])).await?;
    ensure!(answer.status == 200, "answer: {}", answer.json);
    let findings = svc.wait_for_findings(2)?;
    assert_eq!(findings[1]["cluster"], "prod-eu-1");

    let long = "a".repeat(254);
    for bad in ["Prod_EU", "prod%20eu", "prod%2Feu", long.as_str()] {
        let path = format!("/audit/webhook/{bad}");
        let answer = post_json(&svc, &path, &event_list([human_patch("bad", 3).item()])).await?;
        assert_eq!(answer.status, 400, "{path}: {}", answer.json);
        assert!(is_error_body(&answer.json), "{path}: {}", answer.json);
    }
    assert_nothing_new_since(&svc, 2, "cluster-marker").await
}

#[tokio::test]
async fn health_and_metrics() -> Result<()> {
    let svc = Service::start(Some(CONFIG))?;
    assert_eq!(get_text(&svc, "/healthz").await?.0, 200);
    assert_eq!(get_text(&svc, "/readyz").await?.0, 200);

    let batch = realistic_batch("metrics");
    let answer = post_json(&svc, "/audit/webhook", &batch.body).await?;
    ensure!(answer.status == 200, "answer: {}", answer.json);
    let bad = post_bytes(&svc, "/audit/webhook", b"not JSON\n".to_vec(), &[]).await?;
    assert_eq!(bad.status, 400);

    let (code, text) = get_text(&svc, "/metrics").await?;
    assert_eq!(code, 200);
    let samples: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .collect();
    let has = |prefix: &str, needles: &[&str]| {
        samples
            .iter()
            .any(|l| l.starts_with(prefix) && needles.iter().all(|n| l.contains(n)))
    };
    assert!(has("driftwatch_events_received_total", &[]), "{text}");
    assert!(
        has("driftwatch_events_rejected_total{", &["reason=\""]),
        "{text}"
    );
    assert!(
        has("driftwatch_webhook_requests_total{", &["code=\"400\""]),
        "{text}"
    );
    assert!(
        has("driftwatch_webhook_requests_total{", &["code=\"200\""]),
        "{text}"
    );
    assert!(has("driftwatch_findings_total", &[]), "{text}");

    // Identities and object names are never labels.
    for secret in [
        HUMAN,
        "alice",
        "minikube-user",
        "worker-1",
        "argocd-application-controller",
        "replicaset-controller",
        "checkout-",
        "catalog-",
    ] {
        assert!(
            !text.contains(secret),
            "/metrics exposes {secret:?}:\n{text}"
        );
    }
    Ok(())
}

/// An HTTP/1.1 response read off a raw socket: status and body.
fn read_response(stream: &mut TcpStream) -> Result<(u16, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        let n = stream.read(&mut byte)?;
        ensure!(n == 1, "connection closed inside a response head: {buf:?}");
        buf.push(byte[0]);
    }
    let (status, length) = crate::common::response_head(&buf)?;
    let length = length.unwrap_or(0);
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body)?;
    Ok((status, body))
}

/// Its stderr closed (the log collector gone), the service keeps
/// accepting batches and still stops on SIGTERM. A failed log write once
/// panicked the task that logged, and with it the signal handler's.
#[test]
fn a_closed_stderr_neither_stops_the_pipeline_nor_the_sigterm_handler() -> Result<()> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let dir = tempfile::tempdir()?;
    let mut child = Command::new(crate::common::bin())
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(dir.path().join("data"))
        .env("RUST_LOG", "debug")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    drop(child.stderr.take());
    let base = format!("http://127.0.0.1:{port}");
    let ready = wait_until(
        Duration::from_secs(30),
        || "/readyz to answer".to_owned(),
        || crate::common::blocking_get(&format!("{base}/readyz")).ok(),
    );
    let posted = ready.and_then(|_| {
        let ev = Ev::new("patch", "/apis/apps/v1/namespaces/shop/deployments/api")
            .body(json!({"spec": {"replicas": 9}}));
        crate::common::post(
            &format!("{base}/audit/webhook"),
            ev.0.to_string().into_bytes(),
        )
    });
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()?;
    let exited = wait_until(
        Duration::from_secs(30),
        || "the service to exit after SIGTERM".to_owned(),
        || child.try_wait().ok().flatten(),
    );
    if exited.is_err() {
        let _ = child.kill();
    }
    let (code, _) = posted?;
    assert_eq!(code, 200, "a batch accepted with stderr closed");
    assert_eq!(exited?.code(), Some(0), "exit code after SIGTERM");
    Ok(())
}

#[tokio::test]
async fn sigterm_finishes_the_batch_in_flight_and_exits_0() -> Result<()> {
    let svc = Service::start(Some(CONFIG))?;
    let batch = realistic_batch("sigterm");
    let body = serde_json::to_vec(&batch.body)?;
    let addr = svc.base.trim_start_matches("http://").to_owned();

    let mut stream = TcpStream::connect(&addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let head = format!(
        "POST /audit/webhook HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    // The server asks for the body only once the handler reads it: from here
    // on the batch is in flight.
    let (interim, _) = read_response(&mut stream)?;
    assert_eq!(interim, 100, "expected 100 Continue");
    let (most, last) = body.split_at(body.len() - 1);
    stream.write_all(most)?;

    Command::new("kill")
        .args(["-TERM", &svc.child.id().to_string()])
        .status()?;
    // The listener closes once the signal is handled; only then send the
    // last byte, so the batch is certainly in flight during shutdown.
    wait_until(
        Duration::from_secs(10),
        || "the listener to close after SIGTERM".to_owned(),
        || TcpStream::connect(&addr).is_err().then_some(()),
    )?;
    stream.write_all(last)?;

    let (status, answer) = read_response(&mut stream)?;
    let answer: Value = serde_json::from_slice(&answer)?;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["events"], json!(400), "{answer}");
    assert_eq!(answer["findings"], json!(20), "{answer}");
    drop(stream);

    let findings_lines = std::sync::Arc::clone(&svc.findings);
    let code = svc.stop()?;
    assert_eq!(code, 0, "exit code after SIGTERM");
    // The process is gone and its stdout is closed: every finding is in.
    let parsed = || -> Vec<Value> {
        let lines = findings_lines.lock().unwrap();
        lines
            .iter()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    };
    let found = wait_until(
        Duration::from_secs(5),
        || format!("{} findings, found {:?}", batch.expected.len(), parsed()),
        || Some(parsed()).filter(|f| f.len() >= batch.expected.len()),
    )?;
    // Every line on stdout is a whole finding.
    assert_eq!(found.len(), findings_lines.lock().unwrap().len());
    assert_eq!(audit_ids(&found), batch.expected);
    assert_eq!(found.len(), batch.expected.len());
    Ok(())
}

#[tokio::test]
async fn exec_stages_in_two_batches_yield_one_finding() -> Result<()> {
    let svc = Service::start(Some(CONFIG))?;
    let text = std::fs::read_to_string(corpus("falco-trace-files/exec_pod.json"))?;
    let mut started: Value = serde_json::from_str(&text)?;
    // As an EventList item.
    if let Some(obj) = started.as_object_mut() {
        obj.remove("kind");
        obj.remove("apiVersion");
    }
    assert_eq!(started["stage"], "ResponseStarted");
    let mut complete = started.clone();
    complete["stage"] = json!("ResponseComplete");
    complete["stageTimestamp"] = json!("2018-10-26T13:41:02.117431Z");

    let first = post_json(&svc, "/audit/webhook", &event_list([started.clone()])).await?;
    ensure!(first.status == 200, "first: {}", first.json);
    assert_eq!(first.json["findings"], json!(1), "{}", first.json);
    let findings = svc.wait_for_findings(1)?;
    assert_eq!(findings.len(), 1);
    let f = &findings[0];
    assert_eq!(f["type"], "interactive_access", "{f}");
    assert_eq!(f["severity"], "high", "{f}");
    assert_eq!(f["actor"]["username"], "minikube-user", "{f}");
    assert_eq!(f["audit_id"], started["auditID"], "{f}");
    assert_eq!(f["resource"]["subresource"], "exec", "{f}");

    let second = post_json(&svc, "/audit/webhook", &event_list([complete])).await?;
    ensure!(second.status == 200, "second: {}", second.json);
    assert_eq!(second.json["events"], json!(1), "{}", second.json);
    assert_eq!(second.json["findings"], json!(0), "{}", second.json);

    // The other order: ResponseComplete first, then a late ResponseStarted.
    let mut later_complete = started.clone();
    later_complete["auditID"] = json!("5b0c3c1e-2f43-4a7e-9d1c-0c6f5e0b9a11");
    later_complete["requestReceivedTimestamp"] = json!("2018-10-26T13:45:00.000001Z");
    later_complete["stage"] = json!("ResponseComplete");
    let mut later_started = later_complete.clone();
    later_started["stage"] = json!("ResponseStarted");
    let third = post_json(&svc, "/audit/webhook", &event_list([later_complete])).await?;
    ensure!(third.status == 200, "third: {}", third.json);
    let fourth = post_json(&svc, "/audit/webhook", &event_list([later_started])).await?;
    ensure!(fourth.status == 200, "fourth: {}", fourth.json);
    assert_eq!(fourth.json["findings"], json!(0), "{}", fourth.json);

    let findings = svc.wait_for_findings(2)?;
    assert_eq!(
        findings[1]["audit_id"],
        "5b0c3c1e-2f43-4a7e-9d1c-0c6f5e0b9a11"
    );
    assert_nothing_new_since(&svc, 2, "exec-marker").await
}
