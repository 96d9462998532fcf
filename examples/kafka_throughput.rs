//! End-to-end Kafka ingest throughput on this machine, with the broker on it
//! too, against `replay` of the same events in the same run.
//!
//! ```text
//! scripts/kafka-dev-broker start
//! cargo build --release
//! cargo run --release --example kafka_throughput -- --batches 200
//! ```
//!
//! Produces `--batches` synthetic EventLists of 400 events (one message
//! each) to a fresh topic, then starts `target/release/driftwatch serve` with
//! a Kafka source on it and times until every event is consumed (read from
//! `/metrics`); then times `driftwatch replay --data-dir` over the same
//! bodies. Both run the same policy and write history.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use driftwatch_testkit::synth;
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};

fn main() -> Result<()> {
    let mut batches = 200usize;
    let mut batch_size = 100usize;
    let mut broker = "127.0.0.1:19092".to_owned();
    let mut properties = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--batches" => batches = args.next().context("--batches N")?.parse()?,
            "--batch-size" => batch_size = args.next().context("--batch-size N")?.parse()?,
            "--broker" => broker = args.next().context("--broker ADDR")?,
            "--property" => {
                let kv = args.next().context("--property KEY=VALUE")?;
                let (k, v) = kv.split_once('=').context("--property KEY=VALUE")?;
                properties.push(format!("      {k}: \"{v}\"\n"));
            }
            other => bail!(
                "unknown flag {other}; flags: --batches N --batch-size N --broker 127.0.0.1:PORT \
                 --property KEY=VALUE (the consumer's, repeatable)"
            ),
        }
    }
    if !broker.starts_with("127.") {
        bail!("loopback brokers only");
    }
    let bin =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/release/driftwatch");
    let script =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/kafka-dev-broker");
    let work = tempfile::tempdir()?;
    let topic = format!("throughput-{}", std::process::id());
    let port = broker.rsplit(':').next().unwrap_or("19092");
    let status = Command::new(&script)
        .args(["create-topic", &topic, "4", port])
        .status()?;
    if !status.success() {
        bail!("cannot create topic {topic}");
    }

    let mut generator = synth::Generator::new(synth::DEFAULT_SEED);
    let bodies: Vec<Vec<u8>> = (0..batches)
        .map(|_| generator.event_list(batch_size))
        .collect();
    let events = batches * batch_size;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &broker)
        .create()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        for (i, b) in bodies.iter().enumerate() {
            let key = i.to_string();
            producer
                .send(
                    FutureRecord::to(&topic).key(&key).payload(b),
                    Duration::from_secs(30),
                )
                .await
                .map_err(|(e, _)| anyhow::anyhow!("producing message {i}: {e}"))?;
        }
        anyhow::Ok(())
    })?;

    let config = work.path().join("kafka.yaml");
    std::fs::write(
        &config,
        format!(
            "{}\nsinks:\n  stdout:\n    enabled: false\nsources:\n  kafka:\n    brokers: \"{broker}\"\n    topics: [\"{topic}\"]\n    group_id: \"tp-{topic}\"\n{extra}",
            synth::POLICY_YAML,
            extra = if properties.is_empty() {
                String::new()
            } else {
                format!("    properties:\n{}", properties.concat())
            }
        ),
    )?;
    let started = Instant::now();
    let (mut child, base) =
        driftwatch_testkit::serve::start(&bin, &config, &work.path().join("kafka-data"))?;
    let deadline = Instant::now() + Duration::from_secs(600);
    // Start-up and the consumer group join are timed apart from the stream.
    let mut first: Option<(Instant, f64)> = None;
    // The crate's builder: reqwest has no TLS provider of its own here.
    let client = driftwatch::http::client_builder().build()?;
    let kafka_s: f64 = loop {
        let metrics = rt.block_on(async {
            client
                .get(format!("{base}/metrics"))
                .send()
                .await?
                .text()
                .await
        })?;
        let consumed: f64 = metrics
            .lines()
            .find(|l| l.starts_with("driftwatch_events_received_total{source=\"kafka\"}"))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        if first.is_none() && consumed > 0.0 {
            first = Some((Instant::now(), consumed));
        }
        if consumed as usize >= events {
            break started.elapsed().as_secs_f64();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            bail!("only {consumed} of {events} events consumed");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = child.kill();
    let _ = child.wait();

    let file = work.path().join("bodies.jsonl");
    let mut all = Vec::new();
    for b in &bodies {
        all.extend_from_slice(b);
        all.push(b'\n');
    }
    std::fs::write(&file, all)?;
    let policy = work.path().join("policy.yaml");
    std::fs::write(&policy, synth::POLICY_YAML)?;
    let started = Instant::now();
    let out = Command::new(&bin)
        .args(["replay", "--config"])
        .arg(&policy)
        .arg("--data-dir")
        .arg(work.path().join("replay-data"))
        .arg(&file)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    let replay_s = started.elapsed().as_secs_f64();
    if !out.success() {
        bail!("replay failed");
    }
    println!("events:           {events} in {batches} messages of {batch_size}");
    let (t0, n0) = first.context("nothing consumed")?;
    let streaming_s = t0.elapsed().as_secs_f64().max(1e-9);
    let streaming_rate = (events as f64 - n0) / streaming_s;
    println!(
        "kafka end to end: {kafka_s:.2} s with start-up and group join; streaming {:.0} events/s",
        streaming_rate
    );
    println!(
        "replay --data-dir: {replay_s:.2} s, {:.0} events/s",
        events as f64 / replay_s
    );
    println!(
        "ratio kafka streaming / replay: {:.2}",
        streaming_rate / (events as f64 / replay_s)
    );
    Ok(())
}
