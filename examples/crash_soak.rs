//! Crash soak: streams audit batches into a real `driftwatch serve` from
//! several client threads, SIGKILLs it at random points while requests are
//! in flight, restarts it on the same data directory, and counts what the
//! kills cost: events acknowledged (`200`) but not stored (lost), events
//! stored twice (doubled), and batches left unanswered that the client then
//! retried, as the API server would.
//!
//! ```text
//! cargo build --release
//! cargo run --release --example crash_soak -- --kills 20
//! cargo run --release --example crash_soak -- --bin target/release/driftwatch --kills 20 --seed 42
//! ```
//!
//! After every restart the store (`GET /api/v1/changes`, every page) is
//! checked against the acknowledgements; then every batch that was not
//! acknowledged is posted again, byte for byte, plus a few acknowledged
//! ones (a redelivery after a lost answer), and the store is checked again:
//! every event ever sent exactly once. Exit status 0 when nothing was lost
//! or doubled, 1 otherwise, 2 on a usage or setup error. The service listens
//! on 127.0.0.1 only; nothing leaves the machine.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use clap::Parser;
use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

#[derive(Debug, Parser)]
#[command(
    name = "crash_soak",
    about = "SIGKILLs a loopback driftwatch under webhook load and counts lost and doubled events."
)]
struct Args {
    /// The driftwatch binary to run.
    #[arg(long, default_value = "target/release/driftwatch")]
    bin: PathBuf,
    /// How many times to SIGKILL and restart the service.
    #[arg(long, default_value_t = 20)]
    kills: usize,
    /// Client threads posting at once.
    #[arg(long, default_value_t = 4)]
    threads: usize,
    /// Events per batch (the API server sends up to 400).
    #[arg(long, default_value_t = 100)]
    batch_size: usize,
    /// Fewest batches acknowledged in a cycle before its kill.
    #[arg(long, default_value_t = 10)]
    min_acks: usize,
    /// Most batches acknowledged in a cycle before its kill.
    #[arg(long, default_value_t = 150)]
    max_acks: usize,
    /// Seed of the kill points (random when absent; printed either way).
    #[arg(long)]
    seed: Option<u64>,
    /// Data directory (kept); a fresh temporary one when absent (deleted).
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

/// The findings of every run of the service, appended.
const FINDINGS: &str = "findings.jsonl";

const CONFIG: &str = r#"
cluster: prod-eu-1
pipelines:
  - name: argocd
    users: ["system:serviceaccount:argocd:argocd-application-controller"]
    user_agents: ["^argocd-application-controller/"]
"#;

fn main() -> ExitCode {
    let args = Args::parse();
    if args.kills == 0
        || args.threads == 0
        || args.batch_size == 0
        || args.min_acks == 0
        || args.max_acks < args.min_acks
    {
        eprintln!(
            "crash_soak: --kills, --threads, --batch-size and --min-acks must be positive, --max-acks >= --min-acks"
        );
        return ExitCode::from(2);
    }
    match soak(&args) {
        Ok(report) => {
            report.print();
            if report.lost == 0 && report.doubled == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("crash_soak: {e:#}");
            ExitCode::from(2)
        }
    }
}

// ---------------------------------------------------------------------------
// The service.

struct Service {
    child: Child,
    addr: SocketAddr,
    logs: Arc<Mutex<Vec<String>>>,
}

impl Service {
    fn start(bin: &Path, dir: &Path) -> Result<Service> {
        let config = dir.join("driftwatch.yaml");
        std::fs::write(&config, CONFIG)?;
        let mut child = Command::new(bin)
            .arg("serve")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(dir.join("data"))
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            // Findings (stdout) of every run, one file: counted at the end.
            .stdout(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(dir.join(FINDINGS))?,
            )
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("spawning {}", bin.display()))?;
        let stderr = child.stderr.take().context("stderr")?;
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        {
            let logs = Arc::clone(&logs);
            // Keeps reading to the end: a full pipe would stall the service.
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if let Some(rest) = line.split("http://").nth(1)
                        && let Some(addr) = rest.split("/audit/webhook").next()
                    {
                        let _ = addr_tx.send(addr.to_owned());
                    }
                    let mut logs = logs.lock().unwrap_or_else(|e| e.into_inner());
                    if logs.len() >= 200 {
                        logs.remove(0);
                    }
                    logs.push(line);
                }
            });
        }
        let addr = match addr_rx.recv_timeout(Duration::from_secs(30)) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "the service did not report its address within 30 s; logs: {:?}",
                    logs.lock().unwrap_or_else(|e| e.into_inner())
                );
            }
        };
        let addr: SocketAddr = addr
            .parse()
            .with_context(|| format!("the service reported an unreadable address {addr:?}"))?;
        if !addr.ip().is_loopback() {
            let _ = child.kill();
            let _ = child.wait();
            bail!("the service listens on {addr}, not on loopback");
        }
        Ok(Service { child, addr, logs })
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// SIGKILL: no shutdown, no flush.
    fn kill(mut self) -> Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------
// Audit events: out-of-band changes by people with kubectl, as EventList
// items (no kind/apiVersion), so that every event is stored.

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

fn rfc3339(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%S.%6fZ").to_string()
}

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

struct Batch {
    body: Vec<u8>,
    ids: Vec<String>,
}

fn batch(run: u64, cycle: usize, thread: usize, b: usize, size: usize) -> Result<Batch> {
    let now = Timestamp::now();
    let ids: Vec<String> = (0..size)
        .map(|i| {
            format!(
                "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
                run as u32,
                cycle,
                thread,
                b % 0x1000,
                (b as u64) << 20 | i as u64
            )
        })
        .collect();
    let items: Vec<Value> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let at = now + SignedDuration::from_micros(i as i64 * 37);
            drift_event(id, thread * 7919 + b * size + i, at)
        })
        .collect();
    let body = serde_json::to_vec(&json!({
        "kind": "EventList",
        "apiVersion": "audit.k8s.io/v1",
        "metadata": {},
        "items": items
    }))?;
    Ok(Batch { body, ids })
}

// ---------------------------------------------------------------------------
// The client.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Acked,
    /// Answered, but not `200` (`429`/`503`): not accepted.
    Refused(u16),
    /// Sent, no answer: the kill cut it off. Maybe stored.
    Unanswered,
    /// No connection: the service was already gone.
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
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(60))
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
            serde_json::from_str(&text).with_context(|| format!("GET {url}: not JSON"))
        })
    }

    /// Audit ID -> times stored, over every page of `/api/v1/changes`.
    fn stored(&self, svc: &Service) -> Result<HashMap<String, usize>> {
        let mut counts = HashMap::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut url = svc.url("/api/v1/changes?limit=1000");
            if let Some(c) = &cursor {
                url.push_str("&cursor=");
                url.push_str(c);
            }
            let page = self.get_json(&url)?;
            let items = page["items"].as_array().context("a page without items")?;
            for item in items {
                let id = item["audit_id"]
                    .as_str()
                    .context("a change without audit_id")?;
                *counts.entry(id.to_owned()).or_insert(0) += 1;
            }
            match &page["next"] {
                Value::String(next) if !items.is_empty() => cursor = Some(next.clone()),
                Value::Null => return Ok(counts),
                other => bail!("unexpected next cursor {other} after {} items", items.len()),
            }
        }
    }
}

// ---------------------------------------------------------------------------
// The soak.

#[derive(Default)]
struct Report {
    kills: usize,
    batches_sent: usize,
    batches_acked: usize,
    events_acked: usize,
    events_sent: usize,
    /// Events acknowledged, then missing from the store (checked after
    /// every restart and after every retry round).
    lost: usize,
    /// Events stored more than once (same checks).
    doubled: usize,
    /// Sent, cut off by the kill, never answered.
    unanswered: usize,
    /// ... of which the store held the events after the restart.
    unanswered_stored: usize,
    /// ... of which the store held some events but not all.
    unanswered_partial: usize,
    /// Answered with something other than 200 (overload).
    refused: usize,
    /// Could not connect (service already gone).
    not_connected: usize,
    retried: usize,
    retry_attempts: usize,
    redelivered_acked: usize,
    events_stored_final: usize,
    /// Finding lines on stdout, over every run.
    findings: usize,
    /// Lines that are not whole JSON (a write cut by the kill).
    findings_torn: usize,
    /// Events with more than one finding: emitted, then the kill came
    /// before the store commit, and the retry emitted it again (sinks are
    /// at-least-once; the finding id is the same).
    findings_repeated: usize,
    /// ... of which the repeat carries another finding id.
    findings_repeated_new_id: usize,
    /// Events sent with no finding at all.
    findings_missing: usize,
    stream_seconds: f64,
    /// SIGKILL to listening again.
    restart_seconds: Vec<f64>,
    /// Reading every page of `/api/v1/changes` after each restart.
    scan_seconds: f64,
    total_seconds: f64,
}

impl Report {
    fn print(&self) {
        let mut restarts = self.restart_seconds.clone();
        restarts.sort_by(f64::total_cmp);
        let median = restarts.get(restarts.len() / 2).copied().unwrap_or(0.0);
        let max = restarts.last().copied().unwrap_or(0.0);
        println!("crash soak: {} SIGKILLs under load", self.kills);
        println!(
            "  batches sent (first attempts)     {:>9}",
            self.batches_sent
        );
        println!(
            "  batches acknowledged before kill  {:>9}   ({} events)",
            self.batches_acked, self.events_acked
        );
        println!("  events acknowledged and lost      {:>9}", self.lost);
        println!("  events stored twice (doubled)     {:>9}", self.doubled);
        println!(
            "  batches cut off by a kill         {:>9}   ({} already stored at restart, {} partially)",
            self.unanswered, self.unanswered_stored, self.unanswered_partial
        );
        println!("  batches refused (429/503)         {:>9}", self.refused);
        println!(
            "  batches not connected             {:>9}",
            self.not_connected
        );
        println!(
            "  batches retried after restart     {:>9}   ({} attempts)",
            self.retried, self.retry_attempts
        );
        println!(
            "  acked batches redelivered         {:>9}",
            self.redelivered_acked
        );
        println!(
            "  events sent / stored at the end   {:>9} / {}",
            self.events_sent, self.events_stored_final
        );
        println!(
            "  finding lines on stdout           {:>9}   ({} torn, {} without one)",
            self.findings, self.findings_torn, self.findings_missing
        );
        println!(
            "  events with a repeated finding    {:>9}   ({} under another finding id)",
            self.findings_repeated, self.findings_repeated_new_id
        );
        println!(
            "  acknowledged throughput           {:>9.0} events/s while streaming ({:.1} s)",
            self.events_acked as f64 / self.stream_seconds.max(1e-9),
            self.stream_seconds
        );
        println!("  restart until listening           median {median:.2} s, max {max:.2} s");
        println!(
            "  store scans after restarts        {:>9.1} s in all",
            self.scan_seconds
        );
        println!(
            "  total run time                    {:>9.1} s",
            self.total_seconds
        );
    }
}

fn soak(args: &Args) -> Result<Report> {
    let started = Instant::now();
    let seed = args.seed.unwrap_or_else(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        nanos ^ u64::from(std::process::id()).rotate_left(32)
    });
    eprintln!("crash_soak: seed {seed}");
    let mut rng = Rng(seed);
    let run = rng.next();
    ensure!(
        args.bin.is_file(),
        "{} not found: run `cargo build --release` or pass --bin",
        args.bin.display()
    );
    let temp;
    let dir = match &args.data_dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            d.clone()
        }
        None => {
            temp = tempfile::tempdir()?;
            temp.path().to_path_buf()
        }
    };
    let poster = Poster::new()?;
    let mut report = Report::default();
    // Every batch sent, with whether it is acknowledged now.
    let mut ledger: Vec<(Batch, Outcome)> = Vec::new();
    let (mut lost, mut doubled) = (HashSet::new(), HashSet::new());
    let mut svc = Service::start(&args.bin, &dir)?;

    for cycle in 0..args.kills {
        let kill_after = rng.range(args.min_acks as u64, args.max_acks as u64) as usize;
        let delay_us = rng.range(0, 2_000);
        let url = svc.url("/audit/webhook");
        let per_thread = args.max_acks + 8;

        let acked = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let ready = Arc::new(Barrier::new(args.threads + 1));
        let results = Arc::new(Mutex::new(Vec::<(Batch, Outcome)>::new()));
        let mut threads = Vec::new();
        for t in 0..args.threads {
            let (url, acked, stop, ready, results) = (
                url.clone(),
                Arc::clone(&acked),
                Arc::clone(&stop),
                Arc::clone(&ready),
                Arc::clone(&results),
            );
            let size = args.batch_size;
            threads.push(std::thread::spawn(move || -> Result<()> {
                // Built before the clock starts: the threads only post.
                let built: Result<Vec<Batch>> = (0..per_thread)
                    .map(|b| batch(run, cycle, t, b, size))
                    .collect();
                let poster = Poster::new();
                ready.wait();
                let (built, poster) = (built?, poster?);
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
        let streaming = Instant::now();
        let deadline = streaming + Duration::from_secs(120);
        while acked.load(Ordering::SeqCst) < kill_after {
            if Instant::now() > deadline || threads.iter().all(|t| t.is_finished()) {
                bail!(
                    "kill {}: only {} of {kill_after} batches acknowledged; service logs: {:?}",
                    cycle + 1,
                    acked.load(Ordering::SeqCst),
                    svc.logs.lock().unwrap_or_else(|e| e.into_inner())
                );
            }
            std::thread::sleep(Duration::from_micros(500));
        }
        std::thread::sleep(Duration::from_micros(delay_us));
        svc.kill()?;
        let restarting = Instant::now();
        report.stream_seconds += streaming.elapsed().as_secs_f64();
        report.kills += 1;
        stop.store(true, Ordering::SeqCst);
        for t in threads {
            t.join()
                .map_err(|_| anyhow::anyhow!("a client thread panicked"))??;
        }
        let results = std::mem::take(&mut *results.lock().unwrap_or_else(|e| e.into_inner()));
        let first = ledger.len();
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
        ledger.extend(results);

        svc = Service::start(&args.bin, &dir)?;
        report
            .restart_seconds
            .push(restarting.elapsed().as_secs_f64());
        let scanning = Instant::now();
        let counts = poster.stored(&svc)?;
        report.scan_seconds += scanning.elapsed().as_secs_f64();
        let (l, d) = check(&ledger, &counts, &mut lost, &mut doubled);
        if l + d > 0 {
            eprintln!(
                "kill {}: after the restart, {l} acknowledged events missing, {d} stored twice",
                cycle + 1
            );
        }
        for (b, o) in &ledger[first..] {
            if *o == Outcome::Unanswered {
                let n = b.ids.iter().filter(|id| counts.contains_key(*id)).count();
                if n == b.ids.len() {
                    report.unanswered_stored += 1;
                } else if n > 0 {
                    report.unanswered_partial += 1;
                }
            }
        }

        // Retry what was not acknowledged, then redeliver two acknowledged
        // batches (an answer lost after the commit).
        let retry_url = svc.url("/audit/webhook");
        for (b, outcome) in ledger.iter_mut() {
            if *outcome == Outcome::Acked {
                continue;
            }
            report.retried += 1;
            for attempt in 0.. {
                report.retry_attempts += 1;
                *outcome = poster.post(&retry_url, &b.body);
                if *outcome == Outcome::Acked {
                    break;
                }
                ensure!(
                    attempt < 100,
                    "a retried batch was not acknowledged in 100 attempts: {outcome:?}"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        let acked_here: Vec<usize> = (first..ledger.len()).collect();
        for _ in 0..2 {
            let i = acked_here[rng.range(0, acked_here.len() as u64 - 1) as usize];
            let outcome = poster.post(&retry_url, &ledger[i].0.body);
            ensure!(
                outcome == Outcome::Acked,
                "a redelivered batch was answered {outcome:?}"
            );
            report.redelivered_acked += 1;
        }
        let counts = poster.stored(&svc)?;
        // Every batch is acknowledged now: every event must be there, once.
        let (l, d) = check(&ledger, &counts, &mut lost, &mut doubled);
        if l + d > 0 {
            eprintln!(
                "kill {}: after the retries, {l} events missing, {d} stored twice",
                cycle + 1
            );
        }
        report.events_stored_final = counts.values().sum();
        eprintln!(
            "kill {:>2}/{}: after {kill_after:>3} acks (+{delay_us:>4} µs); {} events stored",
            cycle + 1,
            args.kills,
            report.events_stored_final
        );
    }
    drop(svc);
    count_findings(&dir.join(FINDINGS), &ledger, &mut report)?;
    report.lost = lost.len();
    report.doubled = doubled.len();
    report.total_seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Counts the findings the service wrote on stdout over all its runs.
fn count_findings(path: &Path, ledger: &[(Batch, Outcome)], report: &mut Report) -> Result<()> {
    let text = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    // Audit ID -> (findings, their distinct ids).
    let mut per_event: HashMap<String, (usize, HashSet<String>)> = HashMap::new();
    for line in text.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        report.findings += 1;
        match serde_json::from_slice::<Value>(line) {
            Ok(f) => {
                let audit_id = f["audit_id"].as_str().unwrap_or_default().to_owned();
                let e = per_event.entry(audit_id).or_default();
                e.0 += 1;
                e.1.insert(f["id"].as_str().unwrap_or_default().to_owned());
            }
            Err(_) => report.findings_torn += 1,
        }
    }
    for id in ledger.iter().flat_map(|(b, _)| &b.ids) {
        match per_event.get(id) {
            None => report.findings_missing += 1,
            Some((1, _)) => {}
            Some((_, ids)) => {
                report.findings_repeated += 1;
                if ids.len() > 1 {
                    report.findings_repeated_new_id += 1;
                }
            }
        }
    }
    Ok(())
}

/// Adds the acknowledged events that are not stored to `lost`, and those
/// stored more than once to `doubled`; returns how many of each now.
fn check(
    ledger: &[(Batch, Outcome)],
    counts: &HashMap<String, usize>,
    lost: &mut HashSet<String>,
    doubled: &mut HashSet<String>,
) -> (usize, usize) {
    let (mut l, mut d) = (0, 0);
    for (b, outcome) in ledger {
        for id in &b.ids {
            match counts.get(id).copied().unwrap_or(0) {
                0 if *outcome == Outcome::Acked => {
                    l += 1;
                    lost.insert(id.clone());
                }
                n if n > 1 => {
                    d += 1;
                    doubled.insert(id.clone());
                }
                _ => {}
            }
        }
    }
    (l, d)
}
