//! The crash harness shared by `tests/it/crash.rs` (a few kills, with
//! assertions) and `examples/crash_soak.rs` (a long soak, with a report).
//!
//! One [`Soak::cycle`]: client threads stream webhook batches of
//! out-of-band changes into the service; once a random number of batches is
//! acknowledged, and a random short delay later, the service is SIGKILLed
//! while requests are in flight, then restarted on the same data directory.
//! The store (`GET /api/v1/changes`, every page) is then checked against
//! what was acknowledged; every batch that was not acknowledged is posted
//! again, byte for byte, as the API server would, plus a few acknowledged
//! ones (a redelivery after a lost answer); and the store is checked again.
//!
//! What DESIGN.md promises ("`200` only once the batch is durably
//! accepted", at-least-once delivery with retries of whole batches):
//! - a batch answered `200` before the kill is stored, each event once;
//! - a batch left without an answer may or may not be stored, never twice;
//! - once every batch is acknowledged, every event ever sent is stored
//!   exactly once.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

use crate::gojson;
use crate::rng::Rng;
use crate::time::rfc3339_micros;

/// A sanctioned Argo CD pipeline: every event the harness sends is out of
/// band from it, so every one of them is stored.
pub const CONFIG: &str = r#"
cluster: prod-eu-1
pipelines:
  - name: argocd
    users: ["system:serviceaccount:argocd:argocd-application-controller"]
    user_agents: ["^argocd-application-controller/"]
"#;

/// The service under test, as the harness drives it.
pub trait Target {
    /// The URL of `path` on the running service.
    fn url(&self, path: &str) -> String;
    /// SIGKILL: no shutdown, no flush.
    fn kill(&mut self) -> Result<()>;
    /// Starts the service again on the same data directory, and waits until
    /// it listens.
    fn restart(&mut self) -> Result<()>;
    /// Recent log lines, for error messages.
    fn logs(&self) -> String;
}

/// The knobs of a soak.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Client threads posting at once, like several API servers.
    pub threads: usize,
    /// Events per batch (the API server sends up to 400).
    pub batch_size: usize,
    /// Batches each thread prepares per cycle: more than it can send before
    /// the kill, so that it is still sending when the kill comes.
    pub batches_per_thread: usize,
    /// Batches acknowledged in a cycle before its kill: drawn in this range.
    pub acks_before_kill: (usize, usize),
    /// Then a delay before the kill, drawn in `0..=max_kill_delay_us`.
    pub max_kill_delay_us: u64,
    /// How long the acknowledgements before the kill may take.
    pub ack_timeout: Duration,
    /// Attempts at a retried batch before the cycle fails.
    pub retry_attempts: usize,
    /// Acknowledged batches of the cycle posted again after the retries.
    pub redeliveries: usize,
}

// ---------------------------------------------------------------------------
// Audit events: out-of-band changes by people with kubectl, as the webhook
// backend sends them (EventList items, no kind/apiVersion).

/// A UUID-shaped audit ID, unique per (run, cycle, thread, batch, event).
pub fn audit_id(run: u64, cycle: usize, thread: usize, batch: usize, i: usize) -> String {
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        run as u32,
        cycle,
        thread,
        batch % 0x1000,
        (batch as u64) << 20 | i as u64
    )
}

/// One out-of-band change at `at`; `n` picks the kind of change (deployment
/// edit, configmap apply, pod delete, rolebinding create, secret patch,
/// exec), the person and the object.
pub fn drift_event(audit_id: &str, n: usize, at: Timestamp) -> Value {
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
        "requestReceivedTimestamp": rfc3339_micros(received),
        "stageTimestamp": rfc3339_micros(at),
        "annotations": {
            "authorization.k8s.io/decision": "allow",
            "authorization.k8s.io/reason": "RBAC: allowed by ClusterRoleBinding \"cluster-admins\""
        }
    });
    let (verb, uri, object_ref, code) = match n % 6 {
        0 => {
            ev["level"] = json!("Request");
            ev["requestObject"] = json!({"spec": {"replicas": 2 + n % 7}});
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
#[derive(Debug, Clone)]
pub struct Batch {
    pub name: String,
    pub body: Vec<u8>,
    pub ids: Vec<String>,
}

impl Batch {
    /// Batch `b` of `thread` in `cycle`: `size` drift events, 37 µs apart.
    pub fn new(run: u64, cycle: usize, thread: usize, b: usize, size: usize) -> Batch {
        let now = Timestamp::now();
        let ids: Vec<String> = (0..size)
            .map(|i| audit_id(run, cycle, thread, b, i))
            .collect();
        let items: Vec<Value> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| {
                let at = now + SignedDuration::from_micros(i as i64 * 37);
                drift_event(id, thread * 7919 + b * size + i, at)
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
            body: gojson::to_string(&list).into_bytes(),
            ids,
        }
    }
}

// ---------------------------------------------------------------------------
// Posting.

/// What became of one POST.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
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

/// A blocking HTTP client on its own runtime: one per thread.
pub struct Poster {
    rt: tokio::runtime::Runtime,
    client: reqwest::Client,
}

impl Poster {
    pub fn new() -> Result<Poster> {
        Ok(Poster {
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?,
            client: crate::client_builder()
                .no_proxy()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(60))
                .build()?,
        })
    }

    pub fn post(&self, url: &str, body: &[u8]) -> Outcome {
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

    pub fn get_json(&self, url: &str) -> Result<Value> {
        self.rt.block_on(async {
            let r = self.client.get(url).send().await?;
            let status = r.status().as_u16();
            let text = r.text().await?;
            ensure!(status == 200, "GET {url}: {status} {text}");
            serde_json::from_str(&text).with_context(|| format!("GET {url}: not JSON: {text}"))
        })
    }

    /// How many times each audit ID is stored, following the cursor through
    /// every page of `/api/v1/changes` on `target`.
    pub fn stored(&self, target: &dyn Target) -> Result<HashMap<String, usize>> {
        let mut counts = HashMap::new();
        let mut cursor: Option<String> = None;
        for _ in 0..10_000 {
            let mut url = target.url("/api/v1/changes?limit=1000");
            if let Some(c) = &cursor {
                url.push_str("&cursor=");
                url.push_str(c);
            }
            let page = self.get_json(&url)?;
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
                Value::String(next) if !items.is_empty() => cursor = Some(next.clone()),
                other => bail!("next cursor {other} after {} items", items.len()),
            }
        }
        bail!("more than 10,000 pages of changes")
    }
}

// ---------------------------------------------------------------------------
// Checking the store.

/// The store against the acknowledgements, at one point of a cycle.
#[derive(Debug, Clone, Default)]
pub struct Check {
    /// Events of acknowledged batches that are not stored.
    pub lost: Vec<String>,
    /// Events stored more than once.
    pub doubled: Vec<String>,
    /// Stored audit IDs that were never sent.
    pub unknown: Vec<String>,
    /// Changes stored in all.
    pub stored: usize,
}

impl Check {
    pub fn is_clean(&self) -> bool {
        self.lost.is_empty() && self.doubled.is_empty() && self.unknown.is_empty()
    }

    /// Fails with the first few offending audit IDs unless clean.
    pub fn ensure_clean(&self, when: &str) -> Result<()> {
        let few = |ids: &[String]| ids.iter().take(5).cloned().collect::<Vec<_>>();
        ensure!(
            self.is_clean(),
            "{when}: {} acknowledged events not stored {:?}, {} stored twice {:?}, {} never sent {:?}",
            self.lost.len(),
            few(&self.lost),
            self.doubled.len(),
            few(&self.doubled),
            self.unknown.len(),
            few(&self.unknown)
        );
        Ok(())
    }
}

/// Every batch sent so far, with its last outcome.
#[derive(Default)]
pub struct Ledger {
    pub batches: Vec<(Batch, Outcome)>,
}

impl Ledger {
    pub fn events(&self) -> usize {
        self.batches.iter().map(|(b, _)| b.ids.len()).sum()
    }

    /// Every event of an acknowledged batch stored once, no event twice,
    /// nothing that was never sent.
    pub fn check(&self, counts: &HashMap<String, usize>) -> Check {
        let mut check = Check {
            stored: counts.values().sum(),
            ..Check::default()
        };
        let mut sent = HashSet::new();
        for (b, outcome) in &self.batches {
            for id in &b.ids {
                sent.insert(id.as_str());
                match counts.get(id).copied().unwrap_or(0) {
                    0 if *outcome == Outcome::Acked => check.lost.push(id.clone()),
                    n if n > 1 => check.doubled.push(id.clone()),
                    _ => {}
                }
            }
        }
        check.unknown = counts
            .keys()
            .filter(|id| !sent.contains(id.as_str()))
            .cloned()
            .collect();
        check
    }
}

// ---------------------------------------------------------------------------
// The soak.

/// What one kill cost, and what it took.
#[derive(Debug, Clone, Default)]
pub struct CycleReport {
    /// The drawn kill point: acknowledgements, then a delay.
    pub kill_after: usize,
    pub delay_us: u64,
    pub acked_at_kill: usize,
    /// First attempts, by outcome.
    pub batches_sent: usize,
    pub batches_acked: usize,
    pub events_sent: usize,
    pub events_acked: usize,
    pub refused: usize,
    /// Sent, cut off by the kill, never answered.
    pub unanswered: usize,
    /// ... of which the store held every event after the restart.
    pub unanswered_stored: usize,
    /// ... of which the store held some events but not all.
    pub unanswered_partial: usize,
    pub not_connected: usize,
    /// The store after the restart, then after the retries.
    pub after_restart: Check,
    pub after_retries: Check,
    pub retried: usize,
    pub retry_attempts: usize,
    pub redelivered: usize,
    pub stream_seconds: f64,
    /// SIGKILL to listening again.
    pub restart_seconds: f64,
    /// Reading every page of `/api/v1/changes` after the restart.
    pub scan_seconds: f64,
}

/// A soak: kill cycles against one target, with every batch ever sent.
pub struct Soak {
    pub settings: Settings,
    pub ledger: Ledger,
    rng: Rng,
    run: u64,
    poster: Poster,
}

impl Soak {
    /// Kill points come from `seed`: the same seed, the same kill points.
    pub fn new(seed: u64, settings: Settings) -> Result<Soak> {
        let mut rng = Rng::new(seed);
        let run = rng.next_u64();
        Ok(Soak {
            settings,
            ledger: Ledger::default(),
            rng,
            run,
            poster: Poster::new()?,
        })
    }

    pub fn poster(&self) -> &Poster {
        &self.poster
    }

    /// One kill and restart of `target`, then the retries; see the module
    /// doc. Fails on a setup problem (no acknowledgements in time, a retry
    /// never acknowledged); what the kill cost is in the report.
    pub fn cycle(&mut self, cycle: usize, target: &mut dyn Target) -> Result<CycleReport> {
        let s = self.settings.clone();
        let (lo, hi) = s.acks_before_kill;
        let mut report = CycleReport {
            kill_after: self.rng.range(lo as u64, hi as u64) as usize,
            delay_us: self.rng.range(0, s.max_kill_delay_us),
            ..CycleReport::default()
        };
        let url = target.url("/audit/webhook");
        let acked = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let ready = Arc::new(Barrier::new(s.threads + 1));
        let results = Arc::new(Mutex::new(Vec::<(Batch, Outcome)>::new()));
        let mut threads = Vec::new();
        for t in 0..s.threads {
            let (url, acked, stop, ready, results) = (
                url.clone(),
                Arc::clone(&acked),
                Arc::clone(&stop),
                Arc::clone(&ready),
                Arc::clone(&results),
            );
            let (run, per_thread, size) = (self.run, s.batches_per_thread, s.batch_size);
            threads.push(std::thread::spawn(move || -> Result<()> {
                // Built before the clock starts: the threads only post.
                let built: Vec<Batch> = (0..per_thread)
                    .map(|b| Batch::new(run, cycle, t, b, size))
                    .collect();
                let poster = Poster::new();
                ready.wait();
                let poster = poster?;
                for b in built {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let outcome = poster.post(&url, &b.body);
                    if outcome == Outcome::Acked {
                        acked.fetch_add(1, Ordering::SeqCst);
                    }
                    let dead = matches!(outcome, Outcome::Unanswered | Outcome::NoConnection);
                    results
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push((b, outcome));
                    if dead {
                        break;
                    }
                }
                Ok(())
            }));
        }
        ready.wait();

        // Bounded wait for the random kill point, then SIGKILL mid-stream.
        let streaming = Instant::now();
        while acked.load(Ordering::SeqCst) < report.kill_after {
            let outcomes = || {
                let r = results.lock().unwrap_or_else(|e| e.into_inner());
                r.iter()
                    .map(|(b, o)| (b.name.clone(), *o))
                    .collect::<Vec<_>>()
            };
            ensure!(
                streaming.elapsed() < s.ack_timeout,
                "cycle {cycle}: only {} of {} batches acknowledged within {:?}; logs: {}",
                acked.load(Ordering::SeqCst),
                report.kill_after,
                s.ack_timeout,
                target.logs()
            );
            ensure!(
                threads.iter().any(|t| !t.is_finished()),
                "cycle {cycle}: every client thread stopped before the kill: {:?}",
                outcomes()
            );
            std::thread::sleep(Duration::from_micros(500));
        }
        std::thread::sleep(Duration::from_micros(report.delay_us));
        report.acked_at_kill = acked.load(Ordering::SeqCst);
        target.kill()?;
        let restarting = Instant::now();
        report.stream_seconds = streaming.elapsed().as_secs_f64();
        stop.store(true, Ordering::SeqCst);
        for t in threads {
            t.join()
                .map_err(|_| anyhow::anyhow!("a client thread panicked"))??;
        }
        let results = std::mem::take(&mut *results.lock().unwrap_or_else(|e| e.into_inner()));
        for (b, o) in &results {
            report.batches_sent += 1;
            report.events_sent += b.ids.len();
            match o {
                Outcome::Acked => {
                    report.batches_acked += 1;
                    report.events_acked += b.ids.len();
                }
                Outcome::Refused(_) => report.refused += 1,
                Outcome::Unanswered => report.unanswered += 1,
                Outcome::NoConnection => report.not_connected += 1,
            }
        }
        let first = self.ledger.batches.len();
        self.ledger.batches.extend(results);

        // Restart on the same data directory: acknowledged events are all
        // there, once; unanswered ones at most once.
        target.restart()?;
        report.restart_seconds = restarting.elapsed().as_secs_f64();
        let scanning = Instant::now();
        let counts = self.poster.stored(target)?;
        report.scan_seconds = scanning.elapsed().as_secs_f64();
        report.after_restart = self.ledger.check(&counts);
        for (b, o) in &self.ledger.batches[first..] {
            if *o == Outcome::Unanswered {
                let n = b.ids.iter().filter(|id| counts.contains_key(*id)).count();
                if n == b.ids.len() {
                    report.unanswered_stored += 1;
                } else if n > 0 {
                    report.unanswered_partial += 1;
                }
            }
        }

        // The API server retries what was not acknowledged: the same bytes.
        let retry_url = target.url("/audit/webhook");
        for (b, outcome) in &mut self.ledger.batches {
            if *outcome == Outcome::Acked {
                continue;
            }
            report.retried += 1;
            for attempt in 1.. {
                report.retry_attempts += 1;
                *outcome = self.poster.post(&retry_url, &b.body);
                if *outcome == Outcome::Acked {
                    break;
                }
                ensure!(
                    attempt < s.retry_attempts,
                    "{}: retry not acknowledged after {attempt} attempts: {outcome:?}",
                    b.name
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        // It also redelivers batches whose answer it missed after the
        // service had committed them (a timeout); the kill rarely lands in
        // that window, so acknowledged batches of this cycle are sent again
        // to the fresh process, whose in-memory filter is empty.
        let here = self.ledger.batches.len() - first;
        for _ in 0..s.redeliveries.min(here) {
            let i = first + self.rng.below(here as u64) as usize;
            let b = &self.ledger.batches[i].0;
            let outcome = self.poster.post(&retry_url, &b.body);
            ensure!(
                outcome == Outcome::Acked,
                "{}: redelivery answered {outcome:?}",
                b.name
            );
            report.redelivered += 1;
        }
        report.after_retries = self.ledger.check(&self.poster.stored(target)?);
        Ok(report)
    }
}
