//! The listener under abuse (issue 16): many connections slowly sending
//! gzip, one HTTP/2 connection with many streams, a body sent a byte at a
//! time, refusals over HTTP/2, and a JSON body on every error answer.
//! Memory is read from the service's `/proc/PID/status` (`VmHWM`, its peak
//! resident set), never timed.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use bytes::Bytes;
use serde_json::Value;

use crate::common::{
    Answer, RawHttp, Service, addr, client, get_text, gzip, gzip_without_trailer, h2_answer,
    h2_webhook_post, h2c, metric, send, webhook_head,
};

const MIB: usize = 1024 * 1024;
/// The goal of issue 16: whatever the client does.
const RSS_BOUND_KIB: u64 = 512 * 1024;
/// Attacks run on the default limits, with a shorter body deadline so that
/// each round of stalled uploads ends sooner.
const ATTACK_CONFIG: &str = "server:\n  body_read_timeout: 5s\n";
/// Every answer an attack may get: cut at the deadline (the uploads that got
/// room in the budget) or refused for want of room.
const ATTACK_ANSWERS: &[u16] = &[408, 503];
/// Far longer than any answer takes; only a hang reaches it.
const ANSWER_WITHIN: Duration = Duration::from_secs(120);

type Stream = tokio::task::JoinHandle<Result<Answer>>;

/// A webhook POST on `connection` that sends `bomb` and never ends: the
/// upload stays open until the answer.
async fn stalled_stream(
    connection: &h2::client::SendRequest<Bytes>,
    addr: &str,
    headers: &[(&str, &str)],
    bomb: &Bytes,
) -> Result<Stream> {
    let mut c = connection.clone().ready().await?;
    let (response, mut body) = c.send_request(h2_webhook_post(addr, headers)?, false)?;
    body.send_data(bomb.clone(), false)?;
    Ok(tokio::spawn(async move {
        let answer = tokio::time::timeout(ANSWER_WITHIN, h2_answer(response)).await?;
        drop(body);
        answer
    }))
}

async fn answers_of(streams: Vec<Stream>) -> Result<Vec<Answer>> {
    let mut answers = Vec::new();
    for s in streams {
        answers.push(s.await??);
    }
    Ok(answers)
}

/// A body that inflates to just under the default `max_body_bytes` and
/// never ends: before issue 16, each one pinned 16 MiB until the client
/// left.
fn stalled_bomb() -> Result<Bytes> {
    Ok(Bytes::from(gzip_without_trailer(16 * MIB - 4096)?))
}

fn is_error_body(json: &Value) -> bool {
    json["error"].as_str().is_some_and(|e| !e.trim().is_empty())
}

/// Counts answers by status, failing on one outside `allowed` or without
/// a JSON error.
fn tally(answers: Vec<Answer>, allowed: &[u16]) -> Result<Vec<(u16, usize)>> {
    let mut counts: Vec<(u16, usize)> = allowed.iter().map(|&c| (c, 0)).collect();
    for a in answers {
        ensure!(
            is_error_body(&a.json),
            "{} without an error: {}",
            a.status,
            a.json
        );
        let slot = counts
            .iter_mut()
            .find(|(c, _)| *c == a.status)
            .with_context(|| format!("unexpected {}: {}", a.status, a.json))?;
        slot.1 += 1;
    }
    Ok(counts)
}

fn count(tally: &[(u16, usize)], code: u16) -> usize {
    tally
        .iter()
        .find(|(c, _)| *c == code)
        .map_or(0, |(_, n)| *n)
}

/// The service's peak resident set, checked against the bound.
fn assert_peak_within_bound(svc: &Service, what: &str) -> Result<()> {
    let hwm = svc.status_kib("VmHWM").context("VmHWM")?;
    eprintln!("listener attack: {what}: peak RSS {} MiB", hwm / 1024);
    ensure!(
        hwm < RSS_BOUND_KIB,
        "{what}: peak RSS {hwm} KiB over {RSS_BOUND_KIB} KiB"
    );
    Ok(())
}

/// 300 connections, each sending 16 KB of gzip that inflates to 16 MiB
/// and then stalling: 4.65 GB before issue 16.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_connections_slowly_sending_gzip_stay_within_the_memory_bound() -> Result<()> {
    const CONNECTIONS: usize = 300;
    let svc = Service::start(Some(ATTACK_CONFIG))?;
    let addr = addr(&svc);
    let bomb = stalled_bomb()?;
    let head = webhook_head(&addr, bomb.len() + 8, &["Content-Encoding: gzip"]);
    let uploads: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            let (addr, head, bomb) = (addr.clone(), head.clone(), bomb.clone());
            tokio::spawn(async move {
                let mut c = RawHttp::connect(&addr).await?;
                c.send(head.as_bytes()).await?;
                c.send(&bomb).await?;
                tokio::time::timeout(ANSWER_WITHIN, c.response()).await?
            })
        })
        .collect();
    let mut answers = Vec::new();
    for u in uploads {
        answers.push(u.await??);
    }
    let tally = tally(answers, ATTACK_ANSWERS)?;
    eprintln!("listener attack: {CONNECTIONS} stalled gzip uploads answered {tally:?}");
    ensure!(
        count(&tally, 503) > 0,
        "the budget was never spent: {tally:?}"
    );
    ensure!(
        count(&tally, 408) > 0,
        "no upload was cut at its deadline: {tally:?}"
    );
    let waited = metric(&svc, "driftwatch_connection_limit_waits_total", "")
        .await?
        .unwrap_or(0.0);
    ensure!(waited > 0.0, "300 connections never reached the cap of 128");
    let budget = metric(&svc, "driftwatch_bodies_refused_total", "reason=\"budget\"")
        .await?
        .unwrap_or(0.0);
    ensure!(
        budget as usize == count(&tally, 503),
        "budget refusals counted {budget}"
    );
    assert_peak_within_bound(&svc, "300 connections of stalled gzip")
}

/// One HTTP/2 connection opening stream after stream of stalled gzip: 200
/// streams held 3.08 GB before issue 16. The server allows 16 at a time; a
/// client library queues the rest, so 64 make four rounds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_http2_connection_with_many_streams_stays_within_the_memory_bound() -> Result<()> {
    const STREAMS: usize = 64;
    let svc = Service::start(Some(ATTACK_CONFIG))?;
    let addr = addr(&svc);
    let bomb = stalled_bomb()?;
    let connection = h2c(&addr).await?;
    let mut streams = Vec::new();
    for _ in 0..STREAMS {
        let headers = [("content-encoding", "gzip")];
        streams.push(stalled_stream(&connection, &addr, &headers, &bomb).await?);
    }
    let answers = answers_of(streams).await?;
    // Read once answers came, so the server's settings certainly did.
    let max_streams = connection.current_max_send_streams();
    ensure!(max_streams == 16, "the server allows {max_streams} streams");
    let tally = tally(answers, ATTACK_ANSWERS)?;
    eprintln!("listener attack: {STREAMS} stalled HTTP/2 streams answered {tally:?}");
    ensure!(
        count(&tally, 503) > 0,
        "the budget was never spent: {tally:?}"
    );
    assert_peak_within_bound(&svc, "one HTTP/2 connection of stalled streams")
}

/// Everything at once: every connection slot, every stream of each, each
/// with a large head (just inside the header limit) and a stalled gzip
/// upload. What the listener can be made to hold is the sum of its bounds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_connection_and_stream_at_once_stays_within_the_memory_bound() -> Result<()> {
    const CONNECTIONS: usize = 128;
    const STREAMS: usize = 16;
    let svc = Service::start(Some(ATTACK_CONFIG))?;
    let addr = addr(&svc);
    let bomb = stalled_bomb()?;
    let padding = "p".repeat(12 * 1024);
    let mut streams = Vec::new();
    for _ in 0..CONNECTIONS {
        let connection = h2c(&addr).await?;
        for _ in 0..STREAMS {
            let headers = [
                ("content-encoding", "gzip"),
                ("x-padding", padding.as_str()),
            ];
            streams.push(stalled_stream(&connection, &addr, &headers, &bomb).await?);
        }
    }
    let answers = answers_of(streams).await?;
    let tally = tally(answers, ATTACK_ANSWERS)?;
    eprintln!("listener attack: {CONNECTIONS}x{STREAMS} stalled streams answered {tally:?}");
    ensure!(
        count(&tally, 503) > 0,
        "the budget was never spent: {tally:?}"
    );
    assert_peak_within_bound(&svc, "every connection and stream at once")
}

/// Connections that send nothing (or open HTTP/2 and then nothing) are
/// closed after the header timeout, so they cannot keep every slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_do_not_keep_their_slots() -> Result<()> {
    use tokio::io::AsyncReadExt;
    let svc = Service::start(Some(
        "server:\n  max_connections: 2\n  header_read_timeout: 1s\n",
    ))?;
    let addr = addr(&svc);
    let mut silent = tokio::net::TcpStream::connect(&addr).await?;
    let tcp = tokio::net::TcpStream::connect(&addr).await?;
    let (_streams, h2_idle) = h2::client::handshake(tcp).await?;
    // Both slots are taken: this request waits in the backlog until the
    // silent ones are closed.
    let (code, _) = tokio::time::timeout(ANSWER_WITHIN, get_text(&svc, "/healthz")).await??;
    ensure!(code == 200, "GET /healthz: {code}");
    let mut buf = [0u8; 1];
    let n = tokio::time::timeout(ANSWER_WITHIN, silent.read(&mut buf)).await?;
    ensure!(
        matches!(n, Ok(0) | Err(_)),
        "the silent socket is still open: {n:?}"
    );
    // The HTTP/2 connection ends only when the server closes it.
    tokio::time::timeout(ANSWER_WITHIN, h2_idle).await??;
    let waited = metric(&svc, "driftwatch_connection_limit_waits_total", "")
        .await?
        .unwrap_or(0.0);
    ensure!(waited >= 1.0, "the cap was never reached");
    Ok(())
}

/// A body sent a byte at a time, each byte well within the old idle timeout,
/// is cut at its total deadline with `408`, over HTTP/1.1 and HTTP/2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_trickled_a_byte_at_a_time_gets_408_at_its_deadline() -> Result<()> {
    const LENGTH: usize = 64;
    let svc = Service::start(Some("server:\n  body_read_timeout: 2s\n"))?;
    let addr = addr(&svc);
    // Every 1.5 s, under the 2 s timeout: an idle timer would never fire,
    // and 64 bytes would take 96 s.
    let every = Duration::from_millis(1500);

    let mut c = RawHttp::connect(&addr).await?;
    c.send(webhook_head(&addr, LENGTH, &[]).as_bytes()).await?;
    let (answer, sent) = c.trickle(&[b' '; LENGTH], every).await?;
    ensure!(
        sent < LENGTH,
        "the whole body went through before the answer"
    );
    check_deadline_answer(&answer, "HTTP/1.1")?;

    let connection = h2c(&addr).await?;
    let (response, mut body) = connection
        .ready()
        .await?
        .send_request(h2_webhook_post(&addr, &[])?, false)?;
    let trickle = async {
        for _ in 0..LENGTH {
            body.send_data(Bytes::from_static(b" "), false)?;
            tokio::time::sleep(every).await;
        }
        anyhow::bail!("the whole body went through without an answer")
    };
    let answer = tokio::select! {
        answer = h2_answer(response) => answer?,
        failed = trickle => return failed,
    };
    check_deadline_answer(&answer, "HTTP/2")?;
    let cut = metric(
        &svc,
        "driftwatch_bodies_refused_total",
        "reason=\"deadline\"",
    )
    .await?
    .unwrap_or(0.0);
    ensure!(cut == 2.0, "deadline refusals counted {cut}");
    Ok(())
}

fn check_deadline_answer(answer: &Answer, over: &str) -> Result<()> {
    ensure!(
        answer.status == 408,
        "{over}: {} {}",
        answer.status,
        answer.json
    );
    let error = answer.json["error"].as_str().unwrap_or_default();
    ensure!(
        error.contains("server.body_read_timeout"),
        "{over}: {error}"
    );
    Ok(())
}

/// Refused POSTs that carry a body: before issue 16, HTTP/2 clients saw a
/// stream error instead of the `401` (the unread body was dropped, and h2's
/// reset discarded the queued answer). curl and reqwest, 20 each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_posts_with_a_body_get_their_answer_over_http2() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, "eu-token-0123456789abcdef prod-eu-1\n")?;
    let svc = Service::start(Some(&format!(
        "server:\n  auth:\n    bearer_tokens_file: {}\n",
        tokens.display()
    )))?;
    let url = svc.url("/audit/webhook");
    let body = vec![b'a'; 3 * MIB];
    let file = dir.path().join("body");
    std::fs::write(&file, &body)?;

    for _ in 0..20 {
        let out = std::process::Command::new("curl")
            .args([
                "-s",
                "--http2-prior-knowledge",
                "-X",
                "POST",
                "-w",
                "\n%{http_code}",
            ])
            .args(["-H", "content-type: application/json", "--data-binary"])
            .arg(format!("@{}", file.display()))
            .arg(&url)
            .output()
            .context("running curl (with HTTP/2 support)")?;
        let text = String::from_utf8_lossy(&out.stdout);
        let (json, code) = text.rsplit_once('\n').unwrap_or(("", &text));
        ensure!(
            out.status.success() && code == "401",
            "curl exit {:?}, code {code:?}, body {json:?}, stderr {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
        let json: Value = serde_json::from_str(json)?;
        ensure!(is_error_body(&json), "{json}");
    }

    let h2 = driftwatch::http::client_builder()
        .no_proxy()
        .http2_prior_knowledge()
        .build()?;
    for _ in 0..20 {
        let answer = send(h2.post(&url).body(body.clone()), "POST over HTTP/2").await?;
        ensure!(answer.status == 401, "{} {}", answer.status, answer.json);
    }
    let refused = metric(
        &svc,
        "driftwatch_auth_refused_total",
        "reason=\"missing_token\"",
    )
    .await?
    .unwrap_or(0.0);
    ensure!(refused == 40.0, "refusals counted {refused}");
    Ok(())
}

/// Every error answer has a JSON body saying what went wrong, over HTTP/1.1
/// and HTTP/2: those the router and the HTTP layer make included.
#[tokio::test]
async fn every_error_answer_has_a_json_body() -> Result<()> {
    let svc = Service::start(None)?;
    let h1 = client()?;
    let h2 = driftwatch::http::client_builder()
        .no_proxy()
        .http2_prior_knowledge()
        .build()?;
    for (over, c) in [("HTTP/1.1", &h1), ("HTTP/2", &h2)] {
        let cases = [
            (c.get(svc.url("/nope")), 404),
            (c.delete(svc.url("/healthz")), 405),
            // 5 MB for a reason and a name.
            (
                c.post(svc.url("/api/v1/drifts/d1/accept"))
                    .header("content-type", "application/json")
                    .body(format!("{{\"reason\": \"{}\"}}", "x".repeat(5_000_000))),
                413,
            ),
            (
                c.post(svc.url("/audit/webhook"))
                    .header("content-encoding", "br")
                    .body("{}"),
                415,
            ),
            // Past the 16 KiB default.
            (
                c.get(svc.url("/healthz"))
                    .header("x-big", "a".repeat(20_000)),
                431,
            ),
        ];
        for (request, expected) in cases {
            let what = format!("{over} {expected}");
            let answer = send(request, &what).await?;
            ensure!(
                answer.status == expected,
                "{what}: {} {}",
                answer.status,
                answer.json
            );
            ensure!(is_error_body(&answer.json), "{what}: {}", answer.json);
        }
    }
    let answer = send(h1.delete(svc.url("/healthz")), "DELETE").await?;
    ensure!(answer.status == 405);
    let allow = h1.delete(svc.url("/healthz")).send().await?;
    ensure!(allow.headers().get("allow").is_some(), "405 without Allow");
    Ok(())
}

/// Several gzip members back to back are one body (RFC 1952): what
/// `cat a.gz b.gz` and some log shippers send.
#[tokio::test]
async fn a_multi_member_gzip_body_is_accepted() -> Result<()> {
    let svc = Service::start(None)?;
    let event = |id: &str| {
        crate::common::Ev::new("patch", "/api/v1/namespaces/shop/configmaps/settings")
            .audit_id(id)
            .by("alice@example.com", &["system:authenticated"])
            .line()
    };
    let mut body = gzip(format!("{}\n", event("member-1")).as_bytes())?;
    body.extend(gzip(format!("{}\n", event("member-2")).as_bytes())?);
    let answer =
        crate::common::post_bytes(&svc, "/audit/webhook", body, crate::common::GZIP).await?;
    ensure!(answer.status == 200, "{}", answer.json);
    ensure!(answer.json["events"] == 2, "{}", answer.json);
    Ok(())
}
