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
//!
//! The harness (client threads, batches, kill cycles, the checks) is
//! `driftwatch_testkit::crash`, shared with `tests/it/crash.rs`; this file
//! is the CLI, the service it runs, and the report.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use clap::Parser;
use driftwatch_testkit::crash::{CONFIG, Ledger, Settings, Soak, Target};
use driftwatch_testkit::rng::clock_seed;
use serde_json::Value;

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
            if report.lost == 0 && report.doubled == 0 && report.unknown == 0 {
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

/// The service, killed and started again on its directory.
struct Restartable {
    bin: PathBuf,
    dir: PathBuf,
    svc: Option<Service>,
}

impl Target for Restartable {
    fn url(&self, path: &str) -> String {
        self.svc.as_ref().map(|s| s.url(path)).unwrap_or_default()
    }

    fn kill(&mut self) -> Result<()> {
        self.svc
            .take()
            .context("the service is not running")?
            .kill()
    }

    fn restart(&mut self) -> Result<()> {
        self.svc = Some(Service::start(&self.bin, &self.dir)?);
        Ok(())
    }

    fn logs(&self) -> String {
        let Some(svc) = &self.svc else {
            return String::new();
        };
        format!("{:?}", svc.logs.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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
    /// Stored audit IDs that were never sent (same checks).
    unknown: usize,
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
        println!("  stored but never sent             {:>9}", self.unknown);
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
    let seed = args.seed.unwrap_or_else(clock_seed);
    eprintln!("crash_soak: seed {seed}");
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
    let mut soak = Soak::new(
        seed,
        Settings {
            threads: args.threads,
            batch_size: args.batch_size,
            batches_per_thread: args.max_acks + 8,
            acks_before_kill: (args.min_acks, args.max_acks),
            max_kill_delay_us: 2_000,
            ack_timeout: Duration::from_secs(120),
            retry_attempts: 100,
            redeliveries: 2,
        },
    )?;
    let mut report = Report::default();
    let (mut lost, mut doubled, mut unknown) = (HashSet::new(), HashSet::new(), HashSet::new());
    let mut target = Restartable {
        bin: args.bin.clone(),
        dir: dir.clone(),
        svc: Some(Service::start(&args.bin, &dir)?),
    };

    for cycle in 0..args.kills {
        let r = soak.cycle(cycle, &mut target)?;
        report.kills += 1;
        report.batches_sent += r.batches_sent;
        report.batches_acked += r.batches_acked;
        report.events_sent += r.events_sent;
        report.events_acked += r.events_acked;
        report.refused += r.refused;
        report.unanswered += r.unanswered;
        report.unanswered_stored += r.unanswered_stored;
        report.unanswered_partial += r.unanswered_partial;
        report.not_connected += r.not_connected;
        report.retried += r.retried;
        report.retry_attempts += r.retry_attempts;
        report.redelivered_acked += r.redelivered;
        report.stream_seconds += r.stream_seconds;
        report.restart_seconds.push(r.restart_seconds);
        report.scan_seconds += r.scan_seconds;
        for (when, check) in [
            ("after the restart", &r.after_restart),
            ("after the retries", &r.after_retries),
        ] {
            if !check.is_clean() {
                eprintln!(
                    "kill {}: {when}, {} acknowledged events missing, {} stored twice, {} never sent",
                    cycle + 1,
                    check.lost.len(),
                    check.doubled.len(),
                    check.unknown.len()
                );
            }
            lost.extend(check.lost.iter().cloned());
            doubled.extend(check.doubled.iter().cloned());
            unknown.extend(check.unknown.iter().cloned());
        }
        report.events_stored_final = r.after_retries.stored;
        eprintln!(
            "kill {:>2}/{}: after {:>3} acks (+{:>4} µs); {} events stored",
            cycle + 1,
            args.kills,
            r.kill_after,
            r.delay_us,
            report.events_stored_final
        );
    }
    drop(target);
    count_findings(&dir.join(FINDINGS), &soak.ledger, &mut report)?;
    report.lost = lost.len();
    report.doubled = doubled.len();
    report.unknown = unknown.len();
    report.total_seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Counts the findings the service wrote on stdout over all its runs.
fn count_findings(path: &Path, ledger: &Ledger, report: &mut Report) -> Result<()> {
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
    for id in ledger.batches.iter().flat_map(|(b, _)| &b.ids) {
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
