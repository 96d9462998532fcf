//! Crash safety (issue 5, item 6): batches stream through the webhook from
//! several client threads, the service is SIGKILLed while requests are in
//! flight, restarted on the same data directory, and `/api/v1/changes` must
//! then hold every acknowledged event exactly once.
//!
//! What follows from DESIGN.md ("`200` only once the batch is durably
//! accepted", at-least-once delivery with retries of whole batches):
//! - a batch answered `200` before the kill is stored, each event once;
//! - a batch left without an answer (the kill reset its connection) may or
//!   may not be stored, but never twice;
//! - once every unanswered batch is posted again, as the API server would,
//!   every event ever sent is stored exactly once.
//!
//! The kill point is random: the number of batches acknowledged in a cycle
//! before the kill, and a short delay after it, come from a seed printed
//! at the start (set `DRIFTWATCH_CRASH_SEED` to replay one).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

use crate::common::Service;

const CONFIG: &str = r#"
cluster: prod-eu-1
pipelines:
  - name: argocd
    users: ["system:serviceaccount:argocd:argocd-application-controller"]
    user_agents: ["^argocd-application-controller/"]
"#;

/// Client threads, like several API servers (or one with parallel sends).
const THREADS: usize = 4;
/// Events per batch.
const BATCH_EVENTS: usize = 50;
/// Kill/restart cycles.
const CYCLES: usize = 3;
/// Batches each thread prepares per cycle: more than it can send before
/// the kill, so that it is still sending when the kill comes.
const BATCHES_PER_THREAD: usize = 120;

// ---------------------------------------------------------------------------
// A small deterministic generator (splitmix64): the kill point is random,
// and reproducible from the printed seed.

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

fn seed() -> u64 {
    if let Some(s) = std::env::var("DRIFTWATCH_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        return s;
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    nanos ^ u64::from(std::process::id()).rotate_left(32)
}

// ---------------------------------------------------------------------------
// Audit events as the API server's webhook backend sends them: EventList
// items (no kind/apiVersion), stage ResponseComplete, out-of-band changes
// by people with kubectl, so that every one of them is stored.

fn rfc3339(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%S.%6fZ").to_string()
}

/// A UUID-shaped audit ID, unique per (run, cycle, thread, batch, event).
fn audit_id(run: u64, cycle: usize, thread: usize, batch: usize, i: usize) -> String {
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        run as u32,
        cycle,
        thread,
        batch % 0x1000,
        (batch as u64) << 16 | i as u64
    )
}

/// One out-of-band change; `n` picks the kind of change, the person and
/// the object.
fn drift_event(audit_id: &str, n: usize, at: Timestamp) -> Value {
    let ns = ["shop", "payments", "search"][n % 3];
    let app = format!("api-{}", n % 17);
    let (user, groups, ua, ip) = if n.is_multiple_of(2) {
        (
            "alice@example.com",
            json!(["oidc:shop-devs", "system:authenticated"]),
            "kubectl/v1.31.2 (linux/amd64) kubernetes/5864a46",
            "192.168.10.24",
        )
    } else {
        (
            "bob@example.com",
            json!(["oidc:sre", "system:authenticated"]),
            "kubectl.exe/v1.30.4 (windows/amd64) kubernetes/a51b3b7",
            "10.20.0.7",
        )
    };
    let received = at - SignedDuration::from_micros(6_250);
    let mut ev = json!({
        "level": "Metadata",
        "auditID": audit_id,
        "stage": "ResponseComplete",
        "user": {"username": user, "groups": groups},
        "sourceIPs": [ip],
        "userAgent": ua,
        "requestReceivedTimestamp": rfc3339(received),
        "stageTimestamp": rfc3339(at),
        "annotations": {
            "authorization.k8s.io/decision": "allow",
            "authorization.k8s.io/reason": "RBAC: allowed by ClusterRoleBinding \"cluster-admins\""
        }
    });
    let (verb, uri, object_ref, code) = match n % 6 {
        0 => {
            let replicas = 2 + n % 7;
            ev["level"] = json!("Request");
            ev["requestObject"] = json!({"spec": {"replicas": replicas}});
            (
                "patch",
                format!(
                    "/apis/apps/v1/namespaces/{ns}/deployments/{app}?fieldManager=kubectl-edit&fieldValidation=Strict"
                ),
                json!({"resource": "deployments", "namespace": ns, "name": app,
                       "apiGroup": "apps", "apiVersion": "v1"}),
                200,
            )
        }
        1 => {
            ev["level"] = json!("Request");
            ev["requestObject"] = json!({
                "kind": "ConfigMap", "apiVersion": "v1",
                "metadata": {"name": format!("{app}-config"), "namespace": ns},
                "data": {"LOG_LEVEL": if n % 4 == 1 { "debug" } else { "info" }}
            });
            (
                "update",
                format!(
                    "/api/v1/namespaces/{ns}/configmaps/{app}-config?fieldManager=kubectl-client-side-apply"
                ),
                json!({"resource": "configmaps", "namespace": ns,
                       "name": format!("{app}-config"), "apiVersion": "v1"}),
                200,
            )
        }
        2 => {
            let pod = format!("{app}-7d9f8c6b5-{:05x}", n % 0xfffff);
            (
                "delete",
                format!("/api/v1/namespaces/{ns}/pods/{pod}"),
                json!({"resource": "pods", "namespace": ns, "name": pod, "apiVersion": "v1"}),
                200,
            )
        }
        3 => (
            "create",
            format!(
                "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings?fieldManager=kubectl-create"
            ),
            json!({"resource": "rolebindings", "namespace": ns, "name": format!("debug-{app}"),
                   "apiGroup": "rbac.authorization.k8s.io", "apiVersion": "v1"}),
            201,
        ),
        4 => (
            "patch",
            format!("/api/v1/namespaces/{ns}/secrets/{app}-tls?fieldManager=kubectl-patch"),
            json!({"resource": "secrets", "namespace": ns, "name": format!("{app}-tls"),
                   "apiVersion": "v1"}),
            200,
        ),
        _ => {
            let pod = format!("{app}-7d9f8c6b5-x2k4q");
            (
                // kubectl exec over WebSocket: verb get, 101 Switching Protocols.
                "get",
                format!(
                    "/api/v1/namespaces/{ns}/pods/{pod}/exec?command=sh&container=app&stdin=true&stdout=true&tty=true"
                ),
                json!({"resource": "pods", "namespace": ns, "name": pod,
                       "subresource": "exec", "apiVersion": "v1"}),
                101,
            )
        }
    };
    ev["verb"] = json!(verb);
    ev["requestURI"] = json!(uri);
    ev["objectRef"] = object_ref;
    ev["responseStatus"] = json!({"metadata": {}, "code": code});
    ev
}

/// One webhook POST body and the audit IDs in it.
struct Batch {
    name: String,
    body: Vec<u8>,
    ids: Vec<String>,
}

fn batch(run: u64, cycle: usize, thread: usize, b: usize) -> Batch {
    let now = Timestamp::now();
    let ids: Vec<String> = (0..BATCH_EVENTS)
        .map(|i| audit_id(run, cycle, thread, b, i))
        .collect();
    let items: Vec<Value> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let at = now + SignedDuration::from_micros(i as i64 * 137);
            drift_event(id, thread * 7919 + b * BATCH_EVENTS + i, at)
        })
        .collect();
    let list = json!({
        "kind": "EventList",
        "apiVersion": "audit.k8s.io/v1",
        "metadata": {},
        "items": items
    });
    Batch {
        name: format!("cycle {cycle} thread {thread} batch {b}"),
        body: serde_json::to_vec(&list).expect("an EventList serializes"),
        ids,
    }
}

// ---------------------------------------------------------------------------
// Posting.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// `200`: the service says the batch is durably accepted.
    Acked,
    /// Any other status (`429`/`503` when overloaded): not accepted, retried.
    Refused(u16),
    /// The request was sent (or a pooled connection was used) and no answer
    /// came: the kill reset the connection. Maybe stored, maybe not.
    Unanswered,
    /// No connection at all (the service was already gone): not stored.
    NoConnection,
}

struct Poster {
    rt: tokio::runtime::Runtime,
    client: reqwest::Client,
}

impl Poster {
    fn new() -> Result<Poster> {
        Ok(Poster {
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?,
            client: driftwatch::http::client_builder()
                .no_proxy()
                .timeout(Duration::from_secs(30))
                .build()?,
        })
    }

    fn post(&self, url: &str, body: &[u8]) -> Outcome {
        let req = self
            .client
            .post(url)
            .header("content-type", "application/json")
            .body(body.to_vec());
        self.rt.block_on(async {
            match req.send().await {
                Ok(r) => {
                    let code = r.status().as_u16();
                    // The answer counts only once it is read whole.
                    match r.bytes().await {
                        Ok(_) if code == 200 => Outcome::Acked,
                        Ok(_) => Outcome::Refused(code),
                        Err(_) => Outcome::Unanswered,
                    }
                }
                Err(e) if e.is_connect() => Outcome::NoConnection,
                Err(_) => Outcome::Unanswered,
            }
        })
    }

    fn get_json(&self, url: &str) -> Result<Value> {
        self.rt.block_on(async {
            let r = self.client.get(url).send().await?;
            let status = r.status().as_u16();
            let text = r.text().await?;
            ensure!(status == 200, "GET {url}: {status} {text}");
            serde_json::from_str(&text).with_context(|| format!("GET {url}: not JSON: {text}"))
        })
    }
}

/// How many times each audit ID is stored, following the cursor through
/// every page of `/api/v1/changes`.
fn stored(poster: &Poster, svc: &Service) -> Result<HashMap<String, usize>> {
    let mut counts = HashMap::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10_000 {
        let mut url = svc.url("/api/v1/changes?limit=1000");
        if let Some(c) = &cursor {
            url.push_str("&cursor=");
            url.push_str(c);
        }
        let page = poster.get_json(&url)?;
        let items = page["items"]
            .as_array()
            .with_context(|| format!("no items in {page}"))?;
        for item in items {
            let id = item["audit_id"]
                .as_str()
                .with_context(|| format!("a change without audit_id: {item}"))?;
            *counts.entry(id.to_owned()).or_insert(0) += 1;
        }
        match &page["next"] {
            Value::Null => return Ok(counts),
            Value::String(next) => cursor = Some(next.clone()),
            other => bail!("next is neither a string nor null: {other}"),
        }
    }
    bail!("more than 10,000 pages of changes")
}

/// Every batch sent so far, with its last outcome.
struct Ledger {
    batches: Vec<(Batch, Outcome)>,
}

impl Ledger {
    /// Checks the store against what the service acknowledged: every event
    /// of an acknowledged batch exactly once, no event twice, nothing that
    /// was never sent.
    fn check(&self, counts: &HashMap<String, usize>, when: &str) -> Result<()> {
        let mut sent = 0usize;
        for (b, outcome) in &self.batches {
            for id in &b.ids {
                sent += 1;
                let n = counts.get(id).copied().unwrap_or(0);
                ensure!(n <= 1, "{when}: {id} of {} is stored {n} times", b.name);
                if *outcome == Outcome::Acked {
                    ensure!(
                        n == 1,
                        "{when}: {id} of {} was acknowledged (200) but is not stored",
                        b.name
                    );
                }
            }
        }
        let total: usize = counts.values().sum();
        ensure!(
            total <= sent,
            "{when}: {total} changes stored, but only {sent} events were ever sent"
        );
        Ok(())
    }
}

#[test]
fn sigkill_under_load_loses_no_acknowledged_event_and_doubles_none() -> Result<()> {
    let started = Instant::now();
    let seed = seed();
    eprintln!("crash test seed: {seed} (DRIFTWATCH_CRASH_SEED={seed} to replay)");
    let mut rng = Rng(seed);
    let run = rng.next();
    let poster = Poster::new()?;
    let mut ledger = Ledger {
        batches: Vec::new(),
    };
    let mut svc = Service::start(Some(CONFIG))?;
    // Requests that the kill caught on the wire (sent, never answered).
    let mut cut_off = 0usize;
    // Unanswered batches found stored after the restart: processed and
    // committed, the answer lost with the process.
    let mut stored_unanswered = 0usize;

    for cycle in 0..CYCLES {
        let kill_after = rng.range(6, 30) as usize;
        let delay_us = rng.range(0, 3_000);
        let url = svc.url("/audit/webhook");

        // Prepared before the clock starts, so that the threads only post.
        let prepared: Vec<Vec<Batch>> = (0..THREADS)
            .map(|t| {
                (0..BATCHES_PER_THREAD)
                    .map(|b| batch(run, cycle, t, b))
                    .collect()
            })
            .collect();

        let acked = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let results = Arc::new(Mutex::new(Vec::<(Batch, Outcome)>::new()));
        let mut threads = Vec::new();
        for batches in prepared {
            let (url, acked, stop, results) = (
                url.clone(),
                Arc::clone(&acked),
                Arc::clone(&stop),
                Arc::clone(&results),
            );
            threads.push(std::thread::spawn(move || -> Result<()> {
                let poster = Poster::new()?;
                for b in batches {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let outcome = poster.post(&url, &b.body);
                    if outcome == Outcome::Acked {
                        acked.fetch_add(1, Ordering::SeqCst);
                    }
                    let dead = matches!(outcome, Outcome::Unanswered | Outcome::NoConnection);
                    results.lock().unwrap().push((b, outcome));
                    if dead {
                        break;
                    }
                }
                Ok(())
            }));
        }

        // Bounded wait for the random kill point, then SIGKILL mid-stream.
        let deadline = Instant::now() + Duration::from_secs(30);
        while acked.load(Ordering::SeqCst) < kill_after {
            ensure!(
                Instant::now() < deadline,
                "cycle {cycle}: only {} of {kill_after} batches acknowledged within 30 s; logs: {:?}",
                acked.load(Ordering::SeqCst),
                svc.logs.lock().unwrap()
            );
            ensure!(
                threads.iter().any(|t| !t.is_finished()),
                "cycle {cycle}: every client thread stopped before the kill: {:?}",
                results
                    .lock()
                    .unwrap()
                    .iter()
                    .map(|(b, o)| (b.name.clone(), *o))
                    .collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_micros(delay_us));
        let acked_at_kill = acked.load(Ordering::SeqCst);
        let dir = svc.kill_keeping_dir()?;
        stop.store(true, Ordering::SeqCst);
        for t in threads {
            t.join().expect("a client thread panicked")?;
        }
        let results = std::mem::take(&mut *results.lock().unwrap());
        let unanswered = results
            .iter()
            .filter(|(_, o)| *o == Outcome::Unanswered)
            .count();
        let refused = results
            .iter()
            .filter(|(_, o)| matches!(o, Outcome::Refused(_)))
            .count();
        cut_off += unanswered;
        let this_cycle: Vec<String> = results.iter().map(|(b, _)| b.name.clone()).collect();
        ledger.batches.extend(results);

        // Restart on the same data directory: acknowledged events are all
        // there, once; unanswered ones at most once.
        svc = Service::start_in(dir, Some(CONFIG))?;
        let counts = stored(&poster, &svc)?;
        ledger.check(&counts, &format!("cycle {cycle}, after the restart"))?;
        for (b, o) in &ledger.batches {
            if *o == Outcome::Unanswered && this_cycle.contains(&b.name) {
                let n = b.ids.iter().filter(|id| counts.contains_key(*id)).count();
                if n > 0 {
                    stored_unanswered += 1;
                }
            }
        }
        eprintln!(
            "cycle {cycle}: killed after {acked_at_kill} acknowledged batches (target {kill_after}, +{delay_us} µs); \
             {unanswered} unanswered, {refused} refused; {} changes stored",
            counts.values().sum::<usize>()
        );

        // The API server retries what was not acknowledged: the same bytes.
        // It also redelivers batches whose answer it missed after the
        // service had committed them (a timeout); the kill rarely lands in
        // that window, so two acknowledged batches of this cycle are sent
        // again to the fresh process, whose in-memory filter is empty.
        let retry_url = svc.url("/audit/webhook");
        let acked_now: Vec<usize> = ledger
            .batches
            .iter()
            .enumerate()
            .filter(|(_, (b, o))| *o == Outcome::Acked && this_cycle.contains(&b.name))
            .map(|(i, _)| i)
            .collect();
        for _ in 0..2 {
            let i = acked_now[rng.range(0, acked_now.len() as u64 - 1) as usize];
            let b = &ledger.batches[i].0;
            let outcome = poster.post(&retry_url, &b.body);
            ensure!(
                outcome == Outcome::Acked,
                "{}: redelivery answered {outcome:?}",
                b.name
            );
        }
        for (b, outcome) in ledger.batches.iter_mut() {
            if *outcome == Outcome::Acked {
                continue;
            }
            for attempt in 0.. {
                *outcome = poster.post(&retry_url, &b.body);
                if *outcome == Outcome::Acked {
                    break;
                }
                ensure!(
                    attempt < 50,
                    "{}: retry not acknowledged after 50 attempts: {outcome:?}",
                    b.name
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        let counts = stored(&poster, &svc)?;
        ledger.check(&counts, &format!("cycle {cycle}, after the retries"))?;
        let sent: usize = ledger.batches.iter().map(|(b, _)| b.ids.len()).sum();
        ensure!(
            counts.len() == sent && counts.values().all(|n| *n == 1),
            "cycle {cycle}: after the retries {} of {sent} events are stored",
            counts.len()
        );
    }

    // The kills hit a live stream: some requests were cut off on the wire.
    ensure!(
        cut_off > 0,
        "no request was in flight at any of the {CYCLES} kills"
    );
    eprintln!(
        "{CYCLES} kills: {} batches, {cut_off} cut off ({stored_unanswered} of them stored before their answer was lost), in {:.1} s",
        ledger.batches.len(),
        started.elapsed().as_secs_f64()
    );
    svc.stop()?;
    Ok(())
}
