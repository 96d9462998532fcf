//! Load generator: posts synthetic audit `EventList` batches to a running
//! driftwatch webhook, the way a busy API server would, and reports
//! throughput, status codes and latency.
//!
//! ```text
//! cargo run --release --example loadgen -- \
//!     --url http://127.0.0.1:8080/audit/webhook --batches 500 --batch-size 400 --concurrency 4
//! cargo run --release --example loadgen -- --batches 500 --write /tmp/batches.jsonl
//! cargo run --release --example loadgen -- --write-policy /tmp/policy.yaml
//! cargo run --release --example loadgen -- --batches 500 --query-clients 4 --query-limit 1000
//! ```
//!
//! With `--query-clients N`, N more tasks page through `GET /api/v1/changes`
//! (following `next` to the end, then starting over) while the batches are
//! posted, as people investigating during an incident would; the report adds
//! their pages, items and bytes per second.
//!
//! Bodies are generated (deterministically, from `--seed`) before the clock
//! starts, so generation cost is not measured. Exit status 0 when every batch
//! was answered `200`, 1 otherwise (or on a usage error). Only loopback targets are
//! accepted, proxies are ignored and redirects are not followed: this tool is
//! for load-testing your own instance, not anyone else's.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use driftwatch_testkit::synth;

#[derive(Debug, Parser)]
#[command(
    name = "loadgen",
    about = "Posts synthetic audit EventList batches to a driftwatch webhook on loopback."
)]
struct Args {
    /// Webhook URL; the host must be a loopback address or `localhost`.
    #[arg(long, default_value = "http://127.0.0.1:8080/audit/webhook")]
    url: String,
    /// Number of batches to send (or write).
    #[arg(long, default_value_t = 100)]
    batches: usize,
    /// Events per batch (the API server sends up to 400).
    #[arg(long, default_value_t = 400)]
    batch_size: usize,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Send the bodies gzip-compressed (`Content-Encoding: gzip`).
    #[arg(long)]
    gzip: bool,
    /// Stop sending new batches after this many seconds.
    #[arg(long, default_value_t = 60)]
    max_seconds: u64,
    /// Per-request timeout in seconds.
    #[arg(long, default_value_t = 30)]
    timeout_seconds: u64,
    /// Seed of the synthetic stream; same seed, same bytes.
    #[arg(long, default_value_t = synth::DEFAULT_SEED)]
    seed: u64,
    /// Write the batches to FILE, one EventList per line, instead of posting
    /// them (input for `driftwatch replay`).
    #[arg(long, value_name = "FILE")]
    write: Option<PathBuf>,
    /// Write the policy that declares the stream's pipelines (Argo CD, Flux)
    /// to FILE, for `driftwatch serve/replay --config`, and post nothing
    /// (combine with --write to write the batches too).
    #[arg(long, value_name = "FILE")]
    write_policy: Option<PathBuf>,
    /// Offer batches at this rate (batches per second, all senders together)
    /// instead of as fast as answers come; latency is then measured from
    /// each batch's scheduled time, so a server that falls behind shows it.
    #[arg(long)]
    rate: Option<f64>,
    /// A PEM CA to trust for an `https://` URL (the server's certificate is
    /// checked, as the API server checks it).
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
    /// Clients paging through `GET /api/v1/changes` while batches are posted.
    #[arg(long, default_value_t = 0)]
    query_clients: usize,
    /// `limit` of each query page.
    #[arg(long, default_value_t = 1000)]
    query_limit: usize,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loadgen: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<(), String> {
    if args.batch_size == 0 || args.concurrency == 0 {
        return Err("--batch-size and --concurrency must be at least 1".to_owned());
    }
    if let Some(path) = &args.write_policy {
        std::fs::write(path, synth::POLICY_YAML).map_err(|e| format!("{}: {e}", path.display()))?;
        eprintln!("wrote the policy to {}", path.display());
        if args.write.is_none() {
            return Ok(());
        }
    }
    // Check the target before spending time on generation.
    let url = if args.write.is_none() {
        Some(loopback_url(&args.url)?)
    } else {
        None
    };

    let started = Instant::now();
    let mut generator = synth::Generator::new(args.seed);
    let bodies: Vec<Vec<u8>> = (0..args.batches)
        .map(|_| generator.event_list(args.batch_size))
        .collect();
    let total_bytes: usize = bodies.iter().map(Vec::len).sum();
    eprintln!(
        "generated {} batches x {} events ({:.1} MB) in {:.2?}; mix:\n{}",
        bodies.len(),
        args.batch_size,
        total_bytes as f64 / 1e6,
        started.elapsed(),
        generator.mix().report()
    );

    if let Some(path) = &args.write {
        let file = std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut out = std::io::BufWriter::new(file);
        for body in &bodies {
            out.write_all(body)
                .and_then(|()| out.write_all(b"\n"))
                .map_err(|e| format!("{}: {e}", path.display()))?;
        }
        out.flush()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        eprintln!(
            "wrote {} events to {}",
            args.batches * args.batch_size,
            path.display()
        );
        return Ok(());
    }
    let Some(url) = url else {
        return Ok(());
    };

    let bodies: Vec<bytes::Bytes> = if args.gzip {
        let t = Instant::now();
        let zipped = bodies
            .iter()
            .map(|b| gzip(b).map(bytes::Bytes::from))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("gzip: {e}"))?;
        let zipped_bytes: usize = zipped.iter().map(bytes::Bytes::len).sum();
        eprintln!(
            "gzip: {:.1} MB -> {:.1} MB ({:.1}x) in {:.2?}",
            total_bytes as f64 / 1e6,
            zipped_bytes as f64 / 1e6,
            total_bytes as f64 / zipped_bytes.max(1) as f64,
            t.elapsed()
        );
        zipped
    } else {
        bodies.into_iter().map(bytes::Bytes::from).collect()
    };

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let report = runtime.block_on(async {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let readers = query::spawn(&url, args.query_clients, args.query_limit, &stop)?;
        let report = send_all(url.clone(), bodies, &args).await;
        stop.store(true, Ordering::Relaxed);
        let read = query::join(readers).await;
        report.map(|r| (r, read))
    })?;
    let (report, read) = report;
    let all_ok = report.errors.is_empty()
        && report.not_sent == 0
        && report.statuses.keys().all(|code| *code == 200);
    let elapsed = report.elapsed;
    report.print(args.batch_size);
    if args.query_clients > 0 {
        read.print(elapsed);
    }
    if all_ok {
        Ok(())
    } else {
        Err("not every batch was answered 200 (see status codes above)".to_owned())
    }
}

/// Accepts only http(s) URLs whose host is a loopback address or `localhost`.
fn loopback_url(raw: &str) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(raw).map_err(|e| format!("invalid --url {raw:?}: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "--url must be http or https, not {:?}",
            url.scheme()
        ));
    }
    let host = url.host_str().unwrap_or("");
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = match bare.parse::<IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => host.eq_ignore_ascii_case("localhost"),
    };
    if !loopback {
        return Err(format!(
            "refusing to send load to {:?}: only loopback hosts (127.0.0.0/8, ::1, localhost) are allowed",
            url.host_str().unwrap_or("")
        ));
    }
    Ok(url)
}

fn gzip(body: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 8),
        flate2::Compression::fast(),
    );
    enc.write_all(body)?;
    enc.finish()
}

#[derive(Default)]
struct Report {
    elapsed: Duration,
    latencies: Vec<Duration>,
    /// Status code, or 0 for a transport error.
    statuses: BTreeMap<u16, u64>,
    errors: BTreeMap<String, u64>,
    /// Sums of the `events` and `findings` fields of 200 answers.
    events_accepted: u64,
    findings: u64,
    stopped_by_deadline: bool,
    not_sent: usize,
}

struct Outcome {
    latency: Duration,
    status: Result<u16, String>,
    events: u64,
    findings: u64,
}

async fn send_all(
    url: reqwest::Url,
    bodies: Vec<bytes::Bytes>,
    args: &Args,
) -> Result<Report, String> {
    let mut builder = driftwatch::http::client_builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(args.timeout_seconds))
        .pool_max_idle_per_host(args.concurrency);
    if let Some(ca) = &args.ca {
        let pem = std::fs::read(ca).map_err(|e| format!("{}: {e}", ca.display()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| format!("{}: {e}", ca.display()))?;
        builder = builder.tls_certs_only(certs);
    }
    let client = builder
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
    let interval = match args.rate {
        Some(r) if r > 0.0 && r.is_finite() => Some(Duration::from_secs_f64(1.0 / r)),
        Some(r) => return Err(format!("--rate {r}: must be a positive number")),
        None => None,
    };
    let bodies = Arc::new(bodies);
    let next = Arc::new(AtomicUsize::new(0));
    let gzip = args.gzip;
    let start = Instant::now();
    let deadline = start + Duration::from_secs(args.max_seconds);

    let mut tasks = Vec::new();
    for _ in 0..args.concurrency {
        let client = client.clone();
        let url = url.clone();
        let bodies = Arc::clone(&bodies);
        let next = Arc::clone(&next);
        tasks.push(tokio::spawn(async move {
            let mut outcomes = Vec::new();
            loop {
                if Instant::now() >= deadline {
                    break;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(body) = bodies.get(i) else { break };
                let scheduled = interval.map(|d| start + d.mul_f64(i as f64));
                if let Some(at) = scheduled {
                    tokio::time::sleep_until(at.into()).await;
                }
                let mut outcome = post(&client, &url, body.clone(), gzip).await;
                if let Some(at) = scheduled {
                    // From when it was due, not when a sender got to it.
                    outcome.latency = at.elapsed();
                }
                outcomes.push(outcome);
            }
            outcomes
        }));
    }

    let mut report = Report::default();
    // A hard bound even if a server never answers: the deadline plus one
    // request timeout.
    let hard_stop = Duration::from_secs(args.max_seconds + args.timeout_seconds + 5);
    for task in tasks {
        let remaining = hard_stop.saturating_sub(start.elapsed());
        match tokio::time::timeout(remaining, task).await {
            Ok(Ok(outcomes)) => {
                for o in outcomes {
                    report.latencies.push(o.latency);
                    match o.status {
                        Ok(code) => *report.statuses.entry(code).or_default() += 1,
                        Err(e) => *report.errors.entry(e).or_default() += 1,
                    }
                    report.events_accepted += o.events;
                    report.findings += o.findings;
                }
            }
            Ok(Err(e)) => return Err(format!("a sender task failed: {e}")),
            Err(_) => return Err("gave up waiting for the server".to_owned()),
        }
    }
    report.elapsed = start.elapsed();
    let attempted = next.load(Ordering::Relaxed).min(bodies.len());
    report.not_sent = bodies.len() - attempted;
    report.stopped_by_deadline = report.not_sent > 0;
    Ok(report)
}

async fn post(
    client: &reqwest::Client,
    url: &reqwest::Url,
    body: bytes::Bytes,
    gzip: bool,
) -> Outcome {
    let t = Instant::now();
    let mut request = client
        .post(url.clone())
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body);
    if gzip {
        request = request.header(reqwest::header::CONTENT_ENCODING, "gzip");
    }
    let result = match request.send().await {
        Ok(response) => {
            let code = response.status().as_u16();
            let answer = response.json::<serde_json::Value>().await.ok();
            let field = |name: &str| {
                answer
                    .as_ref()
                    .and_then(|a| a.get(name))
                    .and_then(serde_json::Value::as_u64)
                    .unwrap_or(0)
            };
            let (events, findings) = if code == 200 {
                (field("events"), field("findings"))
            } else {
                (0, 0)
            };
            (Ok(code), events, findings)
        }
        Err(e) => {
            let kind = if e.is_timeout() {
                "timeout"
            } else if e.is_connect() {
                "connect error"
            } else {
                "transport error"
            };
            (Err(kind.to_owned()), 0, 0)
        }
    };
    Outcome {
        latency: t.elapsed(),
        status: result.0,
        events: result.1,
        findings: result.2,
    }
}

impl Report {
    fn print(mut self, batch_size: usize) {
        self.latencies.sort();
        let n = self.latencies.len();
        let pct = |p: f64| -> Duration {
            if n == 0 {
                return Duration::ZERO;
            }
            let rank = ((p / 100.0) * n as f64).ceil() as usize;
            self.latencies[rank.clamp(1, n) - 1]
        };
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        let ok = self.statuses.get(&200).copied().unwrap_or(0);
        println!("requests:          {n} in {:.2?}", self.elapsed);
        println!(
            "batches/s:         {:.1} (all answers), {:.1} (200 only)",
            n as f64 / secs,
            ok as f64 / secs
        );
        println!(
            "events/s:          {:.0} (accepted, from 200 answers; {} events per batch sent)",
            self.events_accepted as f64 / secs,
            batch_size
        );
        println!("events accepted:   {}", self.events_accepted);
        println!("findings reported: {}", self.findings);
        let codes: Vec<String> = self
            .statuses
            .iter()
            .map(|(c, k)| format!("{c}: {k}"))
            .chain(self.errors.iter().map(|(e, k)| format!("{e}: {k}")))
            .collect();
        println!("status codes:      {}", codes.join(", "));
        println!(
            "latency:           p50 {:.1?}  p90 {:.1?}  p99 {:.1?}  max {:.1?}",
            pct(50.0),
            pct(90.0),
            pct(99.0),
            self.latencies.last().copied().unwrap_or_default()
        );
        if self.stopped_by_deadline {
            println!(
                "stopped by --max-seconds: {} batches not sent",
                self.not_sent
            );
        }
    }
}

/// Readers of the query API, beside the posting.
mod query {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    #[derive(Default)]
    pub struct Read {
        pub pages: u64,
        pub items: u64,
        pub bytes: u64,
        pub errors: u64,
    }

    impl Read {
        fn add(&mut self, o: &Read) {
            self.pages += o.pages;
            self.items += o.items;
            self.bytes += o.bytes;
            self.errors += o.errors;
        }

        pub fn print(&self, elapsed: Duration) {
            let secs = elapsed.as_secs_f64().max(1e-9);
            println!(
                "query pages/s:     {:.1} ({} pages, {} items, {:.1} MB read, {} errors)",
                self.pages as f64 / secs,
                self.pages,
                self.items,
                self.bytes as f64 / 1e6,
                self.errors
            );
        }
    }

    type Readers = Vec<tokio::task::JoinHandle<Read>>;

    #[derive(serde::Deserialize)]
    struct Page {
        items: Vec<serde::de::IgnoredAny>,
        next: Option<String>,
    }

    /// `clients` tasks paging through the changes until `stop`.
    pub fn spawn(
        webhook: &reqwest::Url,
        clients: usize,
        limit: usize,
        stop: &Arc<AtomicBool>,
    ) -> Result<Readers, String> {
        let mut changes = webhook.clone();
        changes.set_path("/api/v1/changes");
        changes.set_query(None);
        let client = driftwatch::http::client_builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(120))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok((0..clients)
            .map(|_| {
                let (client, url, stop) = (client.clone(), changes.clone(), Arc::clone(stop));
                tokio::spawn(async move { read_until(&client, &url, limit, &stop).await })
            })
            .collect())
    }

    async fn read_until(
        client: &reqwest::Client,
        url: &reqwest::Url,
        limit: usize,
        stop: &AtomicBool,
    ) -> Read {
        let mut read = Read::default();
        let mut cursor: Option<String> = None;
        while !stop.load(Ordering::Relaxed) {
            let mut request = client
                .get(url.clone())
                .query(&[("limit", limit.to_string())]);
            if let Some(c) = &cursor {
                request = request.query(&[("cursor", c)]);
            }
            let page = match request.send().await {
                Ok(r) if r.status().is_success() => r.bytes().await.ok(),
                _ => None,
            };
            let Some(page) = page else {
                read.errors += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            // Only the count and the cursor: the client's own parsing must
            // not be what is measured.
            let Ok(parsed) = serde_json::from_slice::<Page>(&page) else {
                read.errors += 1;
                continue;
            };
            read.pages += 1;
            read.bytes += page.len() as u64;
            read.items += parsed.items.len() as u64;
            cursor = parsed.next;
            if cursor.is_none() {
                // The end of history: start over, as a new investigation would.
                tokio::task::yield_now().await;
            }
        }
        read
    }

    pub async fn join(readers: Readers) -> Read {
        let mut all = Read::default();
        for r in readers {
            if let Ok(read) = r.await {
                all.add(&read);
            }
        }
        all
    }
}
