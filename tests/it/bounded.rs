//! Decoding is bounded by the body, not by what it says (issue 16): each
//! attack of the report against the running service on loopback, with
//! memory asserted on the service's peak RSS (`VmHWM`) and logs on their
//! bytes and lines, never on time.
//!
//! - gzip inside a body (no `Content-Encoding`) inflated to 64 MiB, and a
//!   double-gzipped 40 MB user agent was stored and printed;
//! - one event of any size was accepted whole;
//! - 8M bad lines in 16 KB of gzip held the pipeline for 27 s and 1.5 GB,
//!   and `replay` printed a line for each;
//! - a cut line of a Secret was echoed in the answer and the log;
//! - times that are no times were stored; a 1970 stamp was deleted by the
//!   first retention pass; `since=9999-12-31T23:59:59Z` was refused.

use anyhow::{Context, Result, ensure};
use jiff::Timestamp;
use serde_json::{Value, json};

use crate::common::{
    Answer, Ev, GZIP, Service, event_list, get_json, get_ok, gzip, gzip_repeated, log_file, metric,
    post_bytes, run, temp_file, wait_until,
};

const MIB: usize = 1024 * 1024;

/// Peak resident memory allowed to the service in these tests: the
/// attacks cost 1.4 to 5.4 GB before.
const RSS_BOUND_KIB: u64 = 256 * 1024;

/// A patch by alice with kubectl: a finding, and a row in the history.
fn drift(id: &str) -> Ev {
    Ev::new(
        "patch",
        &format!("/apis/apps/v1/namespaces/shop/deployments/{id}?fieldManager=kubectl-patch"),
    )
    .audit_id(id)
}

fn error_of(a: &Answer) -> &str {
    a.json["error"].as_str().unwrap_or_default()
}

fn messages(a: &Answer) -> Vec<String> {
    a.json["rejected"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["message"].as_str().map(str::to_owned))
        .collect()
}

fn assert_peak_bounded(svc: &Service, what: &str) -> Result<()> {
    let hwm = svc.status_kib("VmHWM").context("VmHWM")?;
    eprintln!("bounded: {what}: service peak RSS {hwm} KiB");
    ensure!(hwm < RSS_BOUND_KIB, "{what}: peak RSS {hwm} KiB");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_inside_a_body_is_bounded_like_content_encoding() -> Result<()> {
    let svc = Service::start(None)?;
    // 33M bad lines: just under the old 64 MiB inflate limit, in about
    // 64 KB of gzip, sent as the body. It cost 48 s and 5.5 GB.
    let bomb = gzip_repeated(b"x\n", 33_000_000)?;
    eprintln!("bounded: in-body gzip bomb of {} bytes", bomb.len());
    let a = post_bytes(&svc, "/audit/webhook", bomb, &[]).await?;
    ensure!(
        a.status == 413 && error_of(&a).contains("server.max_inflate_ratio"),
        "{} {}",
        a.status,
        a.json
    );

    // A 40 MB user agent, gzipped twice: about 1 KB.
    let huge = drift("huge-user-agent").ua(&format!("kubectl/{}", "x".repeat(40_000_000)));
    let list = event_list([huge.item(), drift("beside-the-huge-one").item()]);
    let inner = gzip(&serde_json::to_vec(&list)?)?;
    let twice = gzip(&inner)?;
    eprintln!(
        "bounded: 40 MB user agent gzipped twice: {} bytes ({} once)",
        twice.len(),
        inner.len()
    );
    // Both layers in the body, and the outer one as Content-Encoding: the
    // inner stream inflates a thousand times its size.
    for headers in [&[][..], GZIP] {
        let a = post_bytes(&svc, "/audit/webhook", twice.clone(), headers).await?;
        ensure!(
            a.status == 413 && error_of(&a).contains("server.max_inflate_ratio"),
            "{headers:?}: {} {}",
            a.status,
            a.json
        );
    }
    ensure!(svc.findings().is_empty(), "a refused body yielded findings");

    // An ordinary batch gzipped in the body is still one.
    let ok = event_list((0..3).map(|i| drift(&format!("gzipped-{i}")).item()));
    let a = post_bytes(
        &svc,
        "/audit/webhook",
        gzip(&serde_json::to_vec(&ok)?)?,
        &[],
    )
    .await?;
    ensure!(
        a.status == 200 && a.json["events"] == json!(3),
        "{}",
        a.json
    );
    svc.wait_for_findings(3)?;
    assert_peak_bounded(&svc, "in-body gzip")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_past_max_event_bytes_is_rejected_by_name_and_the_rest_accepted() -> Result<()> {
    // A body limit that lets the 40 MB event arrive at all.
    let svc = Service::start(Some("server:\n  max_body_bytes: 67108864\n"))?;
    let huge = drift("huge-user-agent").ua(&format!("kubectl/{}", "x".repeat(40_000_000)));
    let list = event_list([
        drift("before-the-huge-one").item(),
        huge.item(),
        drift("after-the-huge-one").item(),
    ]);
    let body = gzip(&serde_json::to_vec(&list)?)?;
    let a = post_bytes(&svc, "/audit/webhook", body, GZIP).await?;
    ensure!(a.status == 200, "{} {:.600}", a.status, a.json.to_string());
    ensure!(
        a.json["events"] == json!(2) && a.json["rejected_count"] == json!(1),
        "{}",
        a.json
    );
    let rejected = &a.json["rejected"][0];
    let message = rejected["message"].as_str().unwrap_or_default();
    ensure!(
        rejected["reason"] == "too_large"
            && rejected["line"] == json!(1)
            && message.starts_with("items[1]: event of ")
            && message.contains("auditID \"huge-user-agent\"")
            && message.contains("server.max_event_bytes (4194304)"),
        "{rejected}"
    );
    let findings = svc.wait_for_findings(2)?;
    let ids: Vec<&str> = findings
        .iter()
        .filter_map(|f| f["audit_id"].as_str())
        .collect();
    ensure!(
        ids == ["before-the-huge-one", "after-the-huge-one"],
        "{ids:?}"
    );
    let stdout: usize = svc.findings.lock().unwrap().iter().map(String::len).sum();
    ensure!(stdout < 64 * 1024, "{stdout} bytes of findings");
    let stored = get_ok(&svc, "/api/v1/changes?name=huge-user-agent").await?;
    ensure!(stored["items"] == json!([]), "{stored}");
    assert_peak_bounded(&svc, "40 MB event")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejections_are_listed_and_logged_up_to_a_bound_and_counted() -> Result<()> {
    let svc = Service::start(None)?;
    // 100,000 bad lines and one event: within the work budget.
    let mut body = b"x\n".repeat(100_000);
    body.extend_from_slice(drift("among-bad-lines").line().as_bytes());
    let a = post_bytes(&svc, "/audit/webhook", gzip(&body)?, GZIP).await?;
    ensure!(
        a.status == 200
            && a.json["events"] == json!(1)
            && a.json["rejected_count"] == json!(100_000)
            && a.json["rejected"].as_array().map(Vec::len) == Some(20),
        "{:.600}",
        a.json.to_string()
    );
    svc.wait_for_finding("among-bad-lines")?;
    // The summary is logged after the listed lines: once it is read, they are.
    let summary = svc.wait_for_log("Rejected more documents in the same body")?;
    let listed = svc.logs_with("Rejected a document that is not an audit event.");
    ensure!(listed.len() == 3, "{listed:#?}");
    ensure!(
        summary.len() == 1 && summary[0].contains("rejected=100000"),
        "{summary:#?}"
    );
    ensure!(
        svc.log_bytes() < 16 * 1024,
        "{} bytes of log",
        svc.log_bytes()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_million_bad_lines_are_refused_within_the_budget() -> Result<()> {
    let svc = Service::start(None)?;
    let before = svc.log_bytes();
    // 16 MiB of bad lines: 8M of them in about 16 KB of gzip.
    let bad = gzip_repeated(b"x\n", 8 * MIB)?;
    eprintln!("bounded: 8M bad lines in {} bytes of gzip", bad.len());
    let good = serde_json::to_vec(&event_list([drift("beside-8m-bad-lines").item()]))?;
    // A good batch sent beside it is accepted: it waits at most one budget.
    let (bad, good) = tokio::join!(
        post_bytes(&svc, "/audit/webhook", bad, GZIP),
        post_bytes(&svc, "/audit/webhook", good, &[]),
    );
    let (bad, good) = (bad?, good?);
    ensure!(good.status == 200, "{} {}", good.status, good.json);
    svc.wait_for_finding("beside-8m-bad-lines")?;
    ensure!(
        bad.status == 422
            && bad.json["limit"] == "server.max_decode_work"
            && error_of(&bad).contains("refused whole"),
        "{} {}",
        bad.status,
        bad.json
    );
    // One line says so; none per rejected line.
    let refused = svc.wait_for_log("Refused a batch")?;
    ensure!(
        refused.len() == 1 && refused[0].contains("decode_budget"),
        "{refused:#?}"
    );
    ensure!(svc.logs_with("Rejected a document").is_empty());
    let logged = svc.log_bytes() - before;
    eprintln!("bounded: 8M bad lines: {logged} bytes of log");
    ensure!(logged < 8 * 1024, "{logged} bytes of log");
    let refusals = metric(&svc, "driftwatch_batches_refused_total", "decode_budget").await?;
    ensure!(refusals == Some(1.0), "{refusals:?}");
    let answered = metric(&svc, "driftwatch_webhook_requests_total", "code=\"422\"").await?;
    ensure!(answered == Some(1.0), "{answered:?}");
    assert_peak_bounded(&svc, "8M bad lines")
}

#[test]
fn replay_lists_the_first_rejections_of_a_file_and_counts_the_rest() -> Result<()> {
    let mut text = "x\n".repeat(1_000_000);
    text.push_str(&drift("after-a-million-bad-lines").line());
    text.push('\n');
    let file = temp_file(".jsonl", &text)?;
    let path = file.path().to_str().context("path")?;
    let out = run(&["replay", path], None)?;
    ensure!(out.code == 1, "exit {}", out.code);
    ensure!(out.findings().len() == 1, "{}", out.stdout);
    let listed: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| {
            l.strip_prefix(path)
                .and_then(|r| r.strip_prefix(':'))
                .is_some_and(|r| r.starts_with(|c: char| c.is_ascii_digit()))
        })
        .collect();
    ensure!(listed.len() == 20, "{listed:#?}");
    ensure!(
        listed[19].starts_with(&format!("{path}:20: not JSON")),
        "{}",
        listed[19]
    );
    let more = format!(
        "{path}: 999980 more document(s) rejected, the last on line 1000000; only the first 20 are listed"
    );
    ensure!(out.stderr.lines().any(|l| l == more), "{}", out.stderr);
    ensure!(out.stderr.contains("rejected: 1000000"), "{}", out.stderr);
    eprintln!(
        "bounded: replay of 1M bad lines: {} bytes of stderr",
        out.stderr.len()
    );
    ensure!(out.stderr.len() < 8 * 1024, "{} bytes", out.stderr.len());
    Ok(())
}

/// A Secret's data, base64, as a line cut out of a manifest shows it.
const SECRET_B64: &str = "aHVudGVyMjpzM2NyM3Q=";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_line_of_a_secret_is_withheld_in_the_answer_the_log_and_replay() -> Result<()> {
    let svc = Service::start(None)?;
    let mut wrong_type = drift("user-is-a-string").0;
    wrong_type["user"] = json!(SECRET_B64);
    let body = format!(
        "{}\n\"data\": {{\"password\": \"{SECRET_B64}\", \"username\": \"YWRtaW4=\"}}\n{}\n",
        drift("before-the-secret").line(),
        serde_json::to_string(&wrong_type)?,
    );
    let a = post_bytes(&svc, "/audit/webhook", body.clone().into_bytes(), &[]).await?;
    ensure!(
        a.status == 200 && a.json["events"] == json!(1),
        "{}",
        a.json
    );
    let shown = messages(&a);
    ensure!(shown.len() == 2, "{shown:?}");
    for m in &shown {
        ensure!(m.contains("<withheld: "), "{m}");
        ensure!(!m.contains("aHVud") && !m.contains("YWRtaW4"), "{m}");
    }
    // The log line names the same id as the answer, and no value.
    let id = shown[0]
        .split("id ")
        .nth(1)
        .and_then(|s| s.split('>').next())
        .context("an id")?;
    svc.wait_for_finding("before-the-secret")?;
    let logged = wait_until(
        std::time::Duration::from_secs(10),
        || "the rejection in the log".to_owned(),
        || Some(svc.logs_with("Rejected a document")).filter(|l| l.len() == 2),
    )?;
    ensure!(logged[0].contains(id), "{logged:#?}");
    ensure!(svc.logs_with("aHVud").is_empty() && svc.logs_with("YWRtaW4").is_empty());

    let file = temp_file(".jsonl", &body)?;
    let out = run(&["replay", file.path().to_str().context("path")?], None)?;
    ensure!(
        out.code == 1 && out.stderr.contains("<withheld: "),
        "{}",
        out.stderr
    );
    ensure!(!out.stderr.contains("aHVud"), "{}", out.stderr);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_whose_times_are_not_rfc_3339_are_rejected_with_their_line() -> Result<()> {
    let svc = Service::start(None)?;
    let now = Timestamp::now();
    let lines = [
        drift("time-yesterday").stage_at("yesterday").line(),
        drift("time-empty").received_at("").line(),
        Ev::at(
            "patch",
            "/api/v1/namespaces/shop/configmaps/now?fieldManager=kubectl-edit",
            now,
        )
        .audit_id("time-now")
        .line(),
        drift("time-unix").stage_at("1700000000").line(),
    ];
    let a = post_bytes(&svc, "/audit/webhook", lines.join("\n").into_bytes(), &[]).await?;
    ensure!(
        a.status == 200 && a.json["events"] == json!(1),
        "{}",
        a.json
    );
    let rejected: Vec<(u64, String, String)> = a.json["rejected"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            (
                r["line"].as_u64().unwrap_or(0),
                r["reason"].as_str().unwrap_or("").to_owned(),
                r["message"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    ensure!(
        rejected.iter().map(|r| r.0).collect::<Vec<_>>() == [1, 2, 4]
            && rejected.iter().all(|r| r.1 == "invalid_time"),
        "{rejected:#?}"
    );
    ensure!(
        rejected[0]
            .2
            .starts_with("stageTimestamp \"yesterday\" is not an RFC 3339 time")
            && rejected[1]
                .2
                .starts_with("requestReceivedTimestamp \"\" is not"),
        "{rejected:#?}"
    );
    svc.wait_for_finding("time-now")?;
    // Nothing of them was stored to match a query forever.
    let recent = get_ok(&svc, "/api/v1/changes?since=1h").await?;
    let ids: Vec<&str> = recent["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["audit_id"].as_str())
        .collect();
    ensure!(ids == ["time-now"], "{ids:?}");
    Ok(())
}

/// The changes of the object named `name`, through the query API.
async fn changes_named(svc: &Service, name: &str) -> Result<Vec<Value>> {
    let page = get_ok(svc, &format!("/api/v1/changes?name={name}")).await?;
    Ok(page["items"].as_array().cloned().unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledged_1970_change_survives_a_restart_and_retention() -> Result<()> {
    let config = "history:\n  retention: 30d\n";
    let svc = Service::start(Some(config))?;
    let epoch: Timestamp = "1970-01-01T00:00:01Z".parse()?;
    let events = [
        Ev::at(
            "patch",
            "/api/v1/namespaces/shop/configmaps/epoch?fieldManager=kubectl-edit",
            epoch,
        )
        .audit_id("stamped-1970"),
        drift("far-future")
            .received_at("9999-12-31T23:59:59.999999Z")
            .stage_at("9999-12-31T23:59:59.999999Z"),
    ];
    let list = event_list(events.iter().map(Ev::item));
    let a = post_bytes(&svc, "/audit/webhook", serde_json::to_vec(&list)?, &[]).await?;
    ensure!(
        a.status == 200 && a.json["findings"] == json!(2),
        "{}",
        a.json
    );
    let (code, dir) = svc.stop_keeping_dir()?;
    ensure!(code == 0, "exit {code}");

    // A backfill of an old log: replay's events are as old as they say, so
    // retention judges them by their own time.
    let old: Timestamp = "2020-01-01T00:00:00Z".parse()?;
    let backfill = log_file(&[Ev::at(
        "patch",
        "/api/v1/namespaces/shop/configmaps/backfill?fieldManager=kubectl-edit",
        old,
    )
    .audit_id("backfilled-2020")])?;
    let data = dir.path().join("data");
    let out = run(
        &[
            "replay",
            "--data-dir",
            data.to_str().context("path")?,
            backfill.path().to_str().context("path")?,
        ],
        None,
    )?;
    ensure!(out.code == 0, "{}", out.stderr);

    // The restarted service runs retention at once.
    let svc = Service::start_in(dir, Some(config))?;
    let mut deleted = None;
    for _ in 0..300 {
        deleted = metric(&svc, "driftwatch_retention_deleted_rows_total", "").await?;
        if deleted.is_some_and(|n| n >= 1.0) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    ensure!(
        deleted == Some(1.0),
        "rows deleted by retention: {deleted:?}"
    );
    ensure!(changes_named(&svc, "backfill").await?.is_empty());
    let kept = changes_named(&svc, "epoch").await?;
    ensure!(kept.len() == 1, "{kept:?}");
    ensure!(
        kept[0]["time"] == "1970-01-01T00:00:01.000000Z" && kept[0]["received"].is_string(),
        "{}",
        kept[0]
    );

    // Query bounds take every time ingest takes.
    let page = get_ok(&svc, "/api/v1/changes?since=9999-12-31T23:59:59Z").await?;
    let ids: Vec<&str> = page["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["audit_id"].as_str())
        .collect();
    ensure!(ids == ["far-future"], "{page}");
    let a = get_json(&svc, "/api/v1/changes?until=0000-01-01T00:00:01Z").await?;
    ensure!(
        a.status == 200 && a.json["items"] == json!([]),
        "{}",
        a.json
    );
    Ok(())
}
