//! The HTTP and syslog sinks against real receivers on loopback
//! (tests/it/receivers.rs), driven through the real binary: what each
//! preset sends, retries, a receiver that is down while the webhook keeps
//! answering `200`, the outbox limit, and an outbox that outlives a
//! restart.

use std::path::Path;

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};

use crate::common::{ARGOCD_CONFIG, Ev, Pki, Service, block_on, metric, post_events, wait_until};
use crate::receivers::{Recorded, RecordingHttp, SyslogReceiver};

const CLUSTER: &str = "prod-eu-1";

/// Alice's `kubectl patch` of deployment `NAME`: one finding each.
fn patch(name: &str) -> Ev {
    Ev::new(
        "patch",
        &format!("/apis/apps/v1/namespaces/shop/deployments/{name}?fieldManager=kubectl-patch"),
    )
    .body(json!({"spec": {"replicas": 5}}))
}

fn config(sinks: &str) -> String {
    format!("{ARGOCD_CONFIG}sinks:\n{sinks}")
}

fn token_file(dir: &Path, token: &str) -> Result<String> {
    let path = dir.join("token");
    std::fs::write(&path, format!("{token}\n"))?;
    Ok(path.display().to_string())
}

/// Posts each batch (its own webhook request, answered `200`) and returns
/// the ids of the findings the service wrote on stdout, in order.
fn post(svc: &Service, batches: &[Vec<Ev>]) -> Result<Vec<String>> {
    let mut n = 0;
    for batch in batches {
        let refs: Vec<&Ev> = batch.iter().collect();
        block_on(post_events(svc, &refs))?;
        n += batch.len();
    }
    let findings = svc.wait_for_findings(n)?;
    ensure!(findings.len() == n, "one finding per event: {findings:#?}");
    ids(&findings)
}

fn ids(items: &[Value]) -> Result<Vec<String>> {
    items
        .iter()
        .map(|f| f["id"].as_str().map(str::to_owned).context("an id"))
        .collect()
}

/// The ids in the JSON arrays of the generic preset's `200` requests.
fn delivered_ids(requests: &[Recorded]) -> Vec<String> {
    requests
        .iter()
        .filter(|r| r.status == 200)
        .filter_map(|r| r.json().ok())
        .filter_map(|v| v.as_array().cloned())
        .flatten()
        .filter_map(|f| f["id"].as_str().map(str::to_owned))
        .collect()
}

fn metric_now(svc: &Service, name: &str, labels: &str) -> Result<f64> {
    Ok(block_on(metric(svc, name, labels))?.unwrap_or(0.0))
}

#[test]
fn the_generic_preset_posts_json_arrays_with_the_bearer_token_and_retries_500s() -> Result<()> {
    let receiver = RecordingHttp::start()?;
    receiver.fail_next(2, 500, None);
    let tokens = tempfile::tempdir()?;
    let svc = Service::start(Some(&config(&format!(
        "  http:\n    - name: hook\n      url: {}\n      token_file: {}\n      batch_max_wait: 200ms\n      retry_initial_backoff: 50ms\n",
        receiver.url("/findings"),
        token_file(tokens.path(), "s3cret")?,
    ))))?;
    let posted = post(
        &svc,
        &[vec![
            patch("checkout-1"),
            patch("checkout-2"),
            patch("checkout-3"),
        ]],
    )?;

    let requests = receiver.wait_for("every finding delivered", |r| {
        (delivered_ids(r).len() >= posted.len()).then(|| r.to_vec())
    })?;
    assert_eq!(delivered_ids(&requests), posted);
    let statuses: Vec<u16> = requests.iter().map(|r| r.status).collect();
    assert_eq!(&statuses[..2], [500, 500], "{statuses:?}");
    for r in &requests {
        assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/findings"));
        assert_eq!(r.header("authorization"), "Bearer s3cret");
        assert_eq!(r.header("content-type"), "application/json");
        let items = r.json()?;
        let items = items.as_array().context("a JSON array")?;
        assert!(
            items.iter().all(|f| f["schema"] == "driftwatch.finding/v1"),
            "{items:#?}"
        );
    }
    assert!(metric_now(&svc, "driftwatch_sink_retries_total", "sink=\"hook\"")? >= 2.0);
    let sent = metric_now(&svc, "driftwatch_sink_sent_records_total", "sink=\"hook\"")?;
    assert_eq!(sent, posted.len() as f64);

    // A rotated token is used from the next send on, without a restart.
    token_file(tokens.path(), "rotated")?;
    let more = post_more(&svc, &[patch("checkout-4")], posted.len())?;
    let last = receiver.wait_for("the finding after the rotation", |r| {
        let ids = delivered_ids(r);
        ids.ends_with(&more).then(|| r.last().cloned()).flatten()
    })?;
    assert_eq!(last.header("authorization"), "Bearer rotated");
    Ok(())
}

/// Posts one more batch after `before` findings; returns its ids.
fn post_more(svc: &Service, batch: &[Ev], before: usize) -> Result<Vec<String>> {
    let refs: Vec<&Ev> = batch.iter().collect();
    block_on(post_events(svc, &refs))?;
    let findings = svc.wait_for_findings(before + batch.len())?;
    ids(&findings[before..])
}

#[test]
fn a_batch_the_receiver_refuses_is_dropped_and_counted_and_the_next_goes_through() -> Result<()> {
    let receiver = RecordingHttp::start()?;
    receiver.fail_next(1, 400, None);
    let svc = Service::start(Some(&config(&format!(
        "  http:\n    - name: strict\n      url: {}\n      batch_max_wait: 100ms\n",
        receiver.url("/in"),
    ))))?;
    let refused = post(&svc, &[vec![patch("poison-1"), patch("poison-2")]])?;
    receiver.wait_for("the refusal", |r| r.first().map(|_| ()))?;
    let next = post_more(&svc, &[patch("fine-1")], refused.len())?;
    let requests = receiver.wait_for("the next batch", |r| {
        (!delivered_ids(r).is_empty()).then(|| r.to_vec())
    })?;
    assert_eq!(requests[0].status, 400);
    assert_eq!(
        delivered_ids(&requests),
        next,
        "the refused batch is not sent again"
    );
    let dropped = metric_now(
        &svc,
        "driftwatch_sink_refused_records_total",
        "sink=\"strict\"",
    )?;
    assert_eq!(dropped, refused.len() as f64);
    assert!(!svc.logs_with("refused a batch").is_empty());
    Ok(())
}

#[test]
fn splunk_hec_gets_its_envelope_and_token_and_waits_out_a_429() -> Result<()> {
    let receiver = RecordingHttp::start()?;
    receiver.fail_next(1, 429, Some(1));
    let tokens = tempfile::tempdir()?;
    let svc = Service::start(Some(&config(&format!(
        "  http:\n    - name: splunk\n      preset: splunk_hec\n      url: {}\n      format: native\n      token_file: {}\n      batch_max_wait: 200ms\n",
        receiver.url("/services/collector/event"),
        token_file(tokens.path(), "hec-token")?,
    ))))?;
    let posted = post(&svc, &[vec![patch("cart-1"), patch("cart-2")]])?;
    let findings = svc.findings();

    let requests = receiver.wait_for("a 200 after the 429", |r| {
        r.iter().any(|r| r.status == 200).then(|| r.to_vec())
    })?;
    assert_eq!(requests[0].status, 429);
    let ok = &requests[1];
    assert_eq!(ok.path, "/services/collector/event");
    assert_eq!(ok.header("authorization"), "Splunk hec-token");
    let events = ok.json_values()?;
    let got: Vec<&str> = events
        .iter()
        .filter_map(|e| e["event"]["id"].as_str())
        .collect();
    assert_eq!(got, posted);
    for (e, f) in events.iter().zip(&findings) {
        assert_eq!(e["host"], CLUSTER);
        assert_eq!(e["source"], "driftwatch");
        assert_eq!(e["sourcetype"], "driftwatch:native");
        let time = jiff::Timestamp::from_microsecond(
            (e["time"].as_f64().context("time in epoch seconds")? * 1e6).round() as i64,
        )?;
        let finding_time: jiff::Timestamp = f["time"].as_str().context("time")?.parse()?;
        assert_eq!(time, finding_time, "{e}");
    }
    Ok(())
}

#[test]
fn slack_gets_one_readable_message_per_alert() -> Result<()> {
    let receiver = RecordingHttp::start()?;
    let svc = Service::start(Some(&config(&format!(
        "  http:\n    - name: chat\n      preset: slack\n      url: {}\n",
        receiver.url("/services/T000/B000/XXXX"),
    ))))?;
    post(&svc, &[vec![patch("payments-api")]])?;
    let requests = receiver.wait_for("a Slack message", |r| {
        r.iter().any(|r| r.status == 200).then(|| r.to_vec())
    })?;
    let text = requests[0].json()?["text"]
        .as_str()
        .context("a text field")?
        .to_owned();
    for needle in ["alice@example.com", "payments-api", "shop", CLUSTER] {
        assert!(text.contains(needle), "{needle:?} not in {text:?}");
    }
    assert_eq!(requests[0].header("content-type"), "application/json");
    Ok(())
}

#[test]
fn a_sink_that_is_down_gets_every_finding_in_order_once_it_is_back() -> Result<()> {
    let mut receiver = RecordingHttp::down_at_first()?;
    let svc = Service::start(Some(&config(&format!(
        "  http:\n    - name: siem\n      url: {}\n      batch_max_items: 2\n      batch_max_wait: 100ms\n      retry_initial_backoff: 50ms\n      retry_max_backoff: 200ms\n",
        receiver.url("/in"),
    ))))?;
    // Four webhook batches while the receiver is down: each answered 200.
    let batches: Vec<Vec<Ev>> = (0..4)
        .map(|b| (0..3).map(|i| patch(&format!("web-{b}-{i}"))).collect())
        .collect();
    let posted = post(&svc, &batches)?;
    wait_until(
        std::time::Duration::from_secs(30),
        || "the sink to retry against the receiver that is down".to_owned(),
        || {
            let retries =
                metric_now(&svc, "driftwatch_sink_retries_total", "sink=\"siem\"").ok()?;
            (retries >= 2.0).then_some(())
        },
    )?;
    let waiting = metric_now(&svc, "driftwatch_sink_outbox_records", "sink=\"siem\"")?;
    assert_eq!(waiting, posted.len() as f64);

    receiver.up()?;
    let requests = receiver.wait_for("every finding after the receiver came back", |r| {
        (delivered_ids(r).len() >= posted.len()).then(|| r.to_vec())
    })?;
    assert_eq!(delivered_ids(&requests), posted, "in order, each once");
    assert!(
        requests
            .iter()
            .all(|r| r.json().map_or(0, |v| v.as_array().map_or(0, Vec::len)) <= 2)
    );
    wait_until(
        std::time::Duration::from_secs(10),
        || "the outbox gauge back to 0".to_owned(),
        || {
            let n = metric_now(&svc, "driftwatch_sink_outbox_records", "sink=\"siem\"").ok()?;
            (n == 0.0).then_some(())
        },
    )?;
    Ok(())
}

#[test]
fn past_the_outbox_limit_findings_are_dropped_and_counted() -> Result<()> {
    let receiver = RecordingHttp::down_at_first()?;
    let svc = Service::start(Some(&config(&format!(
        "  http:\n    - name: tiny\n      url: {}\n      outbox_max_bytes: 65536\n",
        receiver.url("/in"),
    ))))?;
    // Native findings are about 1 KiB: 40 batches of 5 pass 64 KiB.
    let batches: Vec<Vec<Ev>> = (0..40)
        .map(|b| (0..5).map(|i| patch(&format!("api-{b}-{i}"))).collect())
        .collect();
    let posted = post(&svc, &batches)?;
    let dropped = metric_now(
        &svc,
        "driftwatch_sink_dropped_findings_total",
        "sink=\"tiny\"",
    )?;
    let kept = metric_now(&svc, "driftwatch_sink_outbox_records", "sink=\"tiny\"")?;
    assert!(dropped > 0.0, "nothing dropped; {kept} kept");
    assert_eq!(dropped + kept, posted.len() as f64);
    let bytes = metric_now(&svc, "driftwatch_sink_outbox_bytes", "sink=\"tiny\"")?;
    assert!(bytes <= 65536.0, "{bytes}");
    svc.wait_for_log("outbox is full")
        .context("a loud log line about the drops")?;
    Ok(())
}

#[test]
fn an_outbox_left_at_shutdown_is_delivered_after_the_restart() -> Result<()> {
    let mut receiver = RecordingHttp::down_at_first()?;
    let yaml = config(&format!(
        "  http:\n    - name: later\n      url: {}\n      batch_max_wait: 100ms\n      retry_initial_backoff: 50ms\n",
        receiver.url("/in"),
    ));
    let svc = Service::start(Some(&yaml))?;
    let posted = post(
        &svc,
        &[vec![patch("db-1"), patch("db-2")], vec![patch("db-3")]],
    )?;
    let (code, dir) = svc.stop_keeping_dir()?;
    assert_eq!(code, 0);
    let outbox = dir.path().join("data/outbox/later");
    ensure!(outbox.is_dir(), "the outbox is at {}", outbox.display());

    receiver.up()?;
    let _svc = Service::start_in(dir, Some(&yaml))?;
    let requests = receiver.wait_for("the findings of before the restart", |r| {
        (delivered_ids(r).len() >= posted.len()).then(|| r.to_vec())
    })?;
    assert_eq!(delivered_ids(&requests), posted);
    Ok(())
}

fn syslog_yaml(name: &str, receiver: &SyslogReceiver, transport: &str, extra: &str) -> String {
    config(&format!(
        "  syslog:\n    - name: {name}\n      address: {}\n      transport: {transport}\n      hostname: dw-test\n{extra}",
        receiver.addr
    ))
}

/// Checks the RFC 5424 header, structured data and CEF message of each
/// finding's message.
fn check_syslog(messages: &[crate::receivers::Syslog], findings: &[Value]) -> Result<()> {
    assert_eq!(messages.len(), findings.len());
    for (m, f) in messages.iter().zip(findings) {
        let severity = match f["severity"].as_str() {
            Some("critical") => 2,
            Some("high") => 3,
            Some("medium") => 4,
            _ => 5,
        };
        assert_eq!(m.pri, 16 * 8 + severity, "local0 and the severity: {m:?}");
        assert_eq!(m.version, 1);
        assert_eq!(m.hostname, "dw-test");
        assert_eq!(m.app_name, "driftwatch");
        assert_eq!(m.msgid, f["type"].as_str().context("type")?);
        assert_eq!(m.timestamp, f["time"].as_str().context("time")?);
        assert_eq!(m.sd_id, "driftwatch@32473");
        assert_eq!(m.params["id"], f["id"].as_str().context("id")?);
        assert_eq!(m.params["cluster"], CLUSTER);
        if let Some(drift) = f["drift"]["id"].as_str() {
            assert_eq!(m.params["drift"], drift);
        }
        assert!(m.msg.starts_with("CEF:0|driftwatch|driftwatch|"), "{m:?}");
    }
    Ok(())
}

#[test]
fn syslog_over_tcp_carries_octet_counted_rfc5424_messages() -> Result<()> {
    let receiver = SyslogReceiver::tcp()?;
    let svc = Service::start(Some(&syslog_yaml("siem", &receiver, "tcp", "")))?;
    post(
        &svc,
        &[vec![patch("a-1"), patch("a-2")], vec![patch("a-3")]],
    )?;
    let messages = receiver.wait_for(3)?;
    check_syslog(&messages, &svc.findings())
}

#[test]
fn syslog_over_tls_verifies_the_receiver_against_its_ca() -> Result<()> {
    let pki = Pki::new()?;
    let receiver = SyslogReceiver::tls(&pki)?;
    let extra = format!("      ca_file: {}\n", pki.path("ca.crt").display());
    let svc = Service::start(Some(&syslog_yaml("siem-tls", &receiver, "tls", &extra)))?;
    post(&svc, &[vec![patch("b-1"), patch("b-2")]])?;
    let messages = receiver.wait_for(2)?;
    check_syslog(&messages, &svc.findings())
}
