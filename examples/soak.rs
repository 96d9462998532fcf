//! Memory soak: `serve` with its SQLite history under a steady stream that
//! touches many distinct resources, with its RSS sampled as it runs.
//!
//! ```text
//! cargo build --release
//! cargo run --release --example soak -- --resources 1000000 --minutes 10 --rate 4000
//! ```
//!
//! Starts `target/release/driftwatch serve` on loopback with a fresh data
//! directory and posts, at `--rate` events/s, EventLists in which Argo CD
//! applies ConfigMaps `soak-<n>` (n cycling over `--resources`; the first pass
//! creates them), a kubelet reads each one, and for `--drift-per-mille` of
//! them a person patches it between two applies (a drift opened, then
//! reconciled by the next apply of that object). Every `--sample-seconds` it
//! prints one row of the curve: elapsed, VmRSS, accepted events, stored
//! changes and open drifts (from `/metrics`). Bounded state is what this
//! shows: the remembered objects (`history.max_tracked_objects`,
//! `max_tracked_bytes`), the dedupe filter and the cache; open drifts are
//! held in memory in full until they are reconciled, so they are kept
//! realistic here (see the README).

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use driftwatch_testkit::synth;
use jiff::Timestamp;

struct Args {
    resources: u64,
    minutes: f64,
    rate: f64,
    batch_size: u64,
    sample_seconds: u64,
    drift_per_mille: u64,
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        resources: 1_000_000,
        minutes: 10.0,
        rate: 4000.0,
        batch_size: 400,
        sample_seconds: 30,
        drift_per_mille: 20,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--resources" => a.resources = value.parse()?,
            "--minutes" => a.minutes = value.parse()?,
            "--rate" => a.rate = value.parse()?,
            "--batch-size" => a.batch_size = value.parse()?,
            "--sample-seconds" => a.sample_seconds = value.parse()?,
            "--drift-per-mille" => a.drift_per_mille = value.parse()?,
            other => bail!(
                "unknown flag {other}; flags: --resources N --minutes M --rate EVENTS_PER_S \
                 --batch-size N --sample-seconds S --drift-per-mille N"
            ),
        }
    }
    if a.resources == 0
        || a.batch_size == 0
        || a.rate.is_nan()
        || a.rate <= 0.0
        || a.sample_seconds == 0
    {
        bail!("--resources, --batch-size, --rate and --sample-seconds must be positive");
    }
    Ok(a)
}

/// The stream: a step is one resource's apply and read, sometimes preceded
/// by a person's patch (which the apply then reconciles).
struct Stream {
    step: u64,
    audit: u64,
    args_resources: u64,
    drift_per_mille: u64,
    rng: synth::Rng,
}

const ARGO: &str = r#""user":{"username":"system:serviceaccount:argocd:argocd-application-controller","groups":["system:serviceaccounts","system:serviceaccounts:argocd","system:authenticated"]},"sourceIPs":["10.0.3.7"],"userAgent":"argocd-application-controller/v2.13.1 (linux/amd64)""#;
const KUBELET: &str = r#""user":{"username":"system:node:node-3","groups":["system:nodes","system:authenticated"]},"sourceIPs":["10.0.0.13"],"userAgent":"kubelet/v1.31.2 (linux/amd64) kubernetes/5864a46""#;
const PERSON: &str = r#""user":{"username":"alice@example.com","groups":["developers","system:authenticated"]},"sourceIPs":["192.168.4.20"],"userAgent":"kubectl/v1.31.2 (linux/amd64) kubernetes/5864a46""#;

impl Stream {
    fn batch(&mut self, size: u64) -> Vec<u8> {
        let mut items = Vec::with_capacity(size as usize);
        while (items.len() as u64) < size {
            self.next_step(&mut items);
        }
        let mut out = br#"{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":["#.to_vec();
        out.extend_from_slice(items.join(",").as_bytes());
        out.extend_from_slice(b"]}");
        out
    }

    fn next_step(&mut self, items: &mut Vec<String>) {
        let n = self.step % self.args_resources;
        let first_pass = self.step < self.args_resources;
        let pass = self.step / self.args_resources;
        self.step += 1;
        let (ns, name) = (format!("team-{}", n % 50), format!("soak-{n}"));
        if !first_pass && self.rng.below(1000) < self.drift_per_mille {
            let body = config_map(&ns, &name, pass, "hand-edited");
            items.push(self.event(PERSON, "patch", &ns, &name, &body));
        }
        let verb = if first_pass { "create" } else { "update" };
        let body = config_map(&ns, &name, pass, "from-git");
        items.push(self.event(ARGO, verb, &ns, &name, &body));
        items.push(self.event(KUBELET, "get", &ns, &name, ""));
    }

    fn event(&mut self, who: &str, verb: &str, ns: &str, name: &str, body: &str) -> String {
        self.audit += 1;
        let now = synth::rfc3339_micros(Timestamp::now());
        let objects = if body.is_empty() {
            String::new()
        } else {
            format!(r#","requestObject":{body},"responseObject":{body}"#)
        };
        let level = if body.is_empty() {
            "Metadata"
        } else {
            "RequestResponse"
        };
        let code = if verb == "create" { 201 } else { 200 };
        let uri = if verb == "create" {
            format!("/api/v1/namespaces/{ns}/configmaps")
        } else {
            format!("/api/v1/namespaces/{ns}/configmaps/{name}")
        };
        format!(
            r#"{{"level":"{level}","auditID":"soak-{id:016x}","stage":"ResponseComplete","requestURI":"{uri}","verb":"{verb}",{who},"objectRef":{{"resource":"configmaps","namespace":"{ns}","name":"{name}","apiVersion":"v1"}},"responseStatus":{{"metadata":{{}},"code":{code}}}{objects},"requestReceivedTimestamp":"{now}","stageTimestamp":"{now}"}}"#,
            id = self.audit
        )
    }
}

fn config_map(ns: &str, name: &str, pass: u64, mode: &str) -> String {
    format!(
        r#"{{"kind":"ConfigMap","apiVersion":"v1","metadata":{{"name":"{name}","namespace":"{ns}","labels":{{"app.kubernetes.io/instance":"{ns}-soak"}},"annotations":{{"argocd.argoproj.io/tracking-id":"{ns}-soak:/ConfigMap:{ns}/{name}"}}}},"data":{{"mode":"{mode}","pass":"{pass}","settings.yaml":"replicas: 3\nlogLevel: info\nfeatureFlags: [a, b, c]\n"}}}}"#
    )
}

fn main() -> Result<()> {
    let args = parse_args()?;
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let work = tempfile::tempdir()?;
    let config = work.path().join("soak.yaml");
    std::fs::write(
        &config,
        format!(
            "{}\nsinks:\n  stdout:\n    enabled: false\n",
            synth::POLICY_YAML
        ),
    )?;
    let (mut child, base) = driftwatch_testkit::serve::start(
        &root.join("target/release/driftwatch"),
        &config,
        &work.path().join("data"),
    )?;
    let outcome = run(&args, &base, child.id());
    let _ = child.kill();
    let _ = child.wait();
    outcome
}

fn run(args: &Args, base: &str, pid: u32) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let client = driftwatch::http::client_builder().no_proxy().build()?;
    let mut stream = Stream {
        step: 0,
        audit: 0,
        args_resources: args.resources,
        drift_per_mille: args.drift_per_mille,
        rng: synth::Rng::new(synth::DEFAULT_SEED),
    };
    let interval = Duration::from_secs_f64(args.batch_size as f64 / args.rate);
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(args.minutes * 60.0);
    let mut next_sample = start;
    let mut late_batches = 0u64;
    let mut sent = 0u64;
    println!("elapsed_s  rss_mb  events_accepted  changes_stored  drifts_open  steps");
    let mut rss = Vec::new();
    while Instant::now() < end {
        let due = start + interval.mul_f64(sent as f64);
        if Instant::now() > due + interval {
            late_batches += 1;
        }
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        let body = stream.batch(args.batch_size);
        let status = rt.block_on(async {
            client
                .post(format!("{base}/audit/webhook"))
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .map(|r| r.status())
        })?;
        if !status.is_success() {
            bail!("batch {sent} answered {status}");
        }
        sent += 1;
        if Instant::now() >= next_sample {
            let row = sample(&rt, &client, base, pid)?;
            println!(
                "{:>9.0}  {:>6.1}  {:>15.0}  {:>14.0}  {:>11.0}  {:>5}",
                start.elapsed().as_secs_f64(),
                row.rss_mb,
                row.accepted,
                row.stored,
                row.open,
                stream.step
            );
            rss.push(row.rss_mb);
            next_sample += Duration::from_secs(args.sample_seconds);
        }
    }
    summarize(&rss, stream.step, args.resources, late_batches, sent);
    Ok(())
}

struct Sample {
    rss_mb: f64,
    accepted: f64,
    stored: f64,
    open: f64,
}

fn sample(
    rt: &tokio::runtime::Runtime,
    client: &reqwest::Client,
    base: &str,
    pid: u32,
) -> Result<Sample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let rss_kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("VmRSS")?;
    let metrics = rt.block_on(async {
        client
            .get(format!("{base}/metrics"))
            .send()
            .await?
            .text()
            .await
    })?;
    let sum = |prefix: &str| -> f64 {
        metrics
            .lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    Ok(Sample {
        rss_mb: rss_kb / 1024.0,
        accepted: sum("driftwatch_events_received_total"),
        stored: sum("driftwatch_changes_stored_total"),
        open: sum("driftwatch_drifts_open"),
    })
}

fn summarize(rss: &[f64], steps: u64, resources: u64, late: u64, sent: u64) {
    let Some((first, last)) = rss.first().zip(rss.last()) else {
        return;
    };
    let second_half = &rss[rss.len() / 2..];
    let max = second_half.iter().copied().fold(f64::MIN, f64::max);
    let min = second_half.iter().copied().fold(f64::MAX, f64::min);
    println!(
        "distinct resources touched: {}; batches {sent}, {late} sent late",
        steps.min(resources)
    );
    println!(
        "rss first {first:.1} MB, last {last:.1} MB; second half {min:.1}-{max:.1} MB (spread {:.1}%)",
        (max - min) / max * 100.0
    );
}
