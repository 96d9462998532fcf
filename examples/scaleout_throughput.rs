//! Kafka ingest with 1, 2 and 3 replicas on one PostgreSQL history, against
//! one replica on SQLite and `replay --data-dir`, all in the same run, on
//! this machine (the broker and the server on it too).
//!
//! ```text
//! scripts/kafka-dev-broker start && scripts/postgres-dev-server start
//! cargo build --release
//! cargo run --release --example scaleout_throughput -- --batches 200 --replicas 1,2,3
//! ```
//!
//! For each run: a fresh topic of six partitions holding `--batches`
//! synthetic EventLists of `--batch-size` events (one message each), a
//! fresh database, and the replicas in one consumer group; timed from the
//! first event consumed to the last (summed over the replicas' `/metrics`).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use driftwatch_testkit::synth;
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};

struct Args {
    batches: usize,
    batch_size: usize,
    broker: String,
    postgres: String,
    replicas: Vec<usize>,
}

fn args() -> Result<Args> {
    let mut a = Args {
        batches: 200,
        batch_size: 100,
        broker: "127.0.0.1:19092".to_owned(),
        postgres: "postgres://postgres@127.0.0.1:15432/driftwatch".to_owned(),
        replicas: vec![1, 2, 3],
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--batches" => a.batches = value()?.parse()?,
            "--batch-size" => a.batch_size = value()?.parse()?,
            "--broker" => a.broker = value()?,
            "--postgres" => a.postgres = value()?,
            "--replicas" => {
                a.replicas = value()?
                    .split(',')
                    .map(str::parse)
                    .collect::<Result<_, _>>()?
            }
            other => bail!(
                "unknown flag {other}; flags: --batches N --batch-size N --broker 127.0.0.1:PORT \
                 --postgres URL --replicas 1,2,3"
            ),
        }
    }
    if !a.broker.starts_with("127.") || !a.postgres.contains("@127.") {
        bail!("loopback broker and server only");
    }
    Ok(a)
}

fn main() -> Result<()> {
    let a = args()?;
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let bin = root.join("target/release/driftwatch");
    let work = tempfile::tempdir()?;
    let mut generator = synth::Generator::new(synth::DEFAULT_SEED);
    let bodies: Vec<Vec<u8>> = (0..a.batches)
        .map(|_| generator.event_list(a.batch_size))
        .collect();
    let events = a.batches * a.batch_size;

    let replay = replay_rate(&bin, work.path(), &bodies)?;
    let sqlite = kafka_rate(&a, &bin, work.path(), &bodies, None, 1)?;
    println!(
        "events: {events} in {} messages of {}",
        a.batches, a.batch_size
    );
    println!("replay --data-dir (SQLite):   {replay:.0} events/s");
    println!(
        "1 replica, SQLite:            {sqlite:.0} events/s ({:.2}x replay)",
        sqlite / replay
    );
    let mut one = None;
    for &n in &a.replicas {
        let rate = kafka_rate(&a, &bin, work.path(), &bodies, Some(&a.postgres), n)?;
        let base = *one.get_or_insert(rate);
        println!(
            "{n} replica(s), PostgreSQL:    {rate:.0} events/s ({:.2}x one PostgreSQL replica, {:.2}x replay)",
            rate / base,
            rate / replay
        );
    }
    Ok(())
}

/// Events/s of `replay --data-dir` over the same bodies.
fn replay_rate(bin: &std::path::Path, dir: &std::path::Path, bodies: &[Vec<u8>]) -> Result<f64> {
    let file = dir.join("bodies.jsonl");
    let mut all = Vec::new();
    for b in bodies {
        all.extend_from_slice(b);
        all.push(b'\n');
    }
    std::fs::write(&file, all)?;
    let policy = dir.join("policy.yaml");
    std::fs::write(&policy, synth::POLICY_YAML)?;
    let started = Instant::now();
    let ok = Command::new(bin)
        .args(["replay", "--config"])
        .arg(&policy)
        .arg("--data-dir")
        .arg(dir.join("replay-data"))
        .arg(&file)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?
        .success();
    if !ok {
        bail!("replay failed");
    }
    let events = count_events(bodies);
    Ok(events as f64 / started.elapsed().as_secs_f64())
}

/// Each body is an `EventList` of the same number of items.
fn count_events(bodies: &[Vec<u8>]) -> usize {
    let per_body = bodies.first().map_or(0, |b| {
        let key = b"\"auditID\"";
        b.windows(key.len()).filter(|w| w == key).count()
    });
    per_body * bodies.len()
}

/// Streaming events/s of `replicas` in one group on a fresh topic.
fn kafka_rate(
    a: &Args,
    bin: &std::path::Path,
    dir: &std::path::Path,
    bodies: &[Vec<u8>],
    postgres: Option<&str>,
    replicas: usize,
) -> Result<f64> {
    let topic = format!(
        "scale-{}-{}-{replicas}",
        std::process::id(),
        postgres.is_some()
    );
    let port = a.broker.rsplit(':').next().unwrap_or("19092");
    let script =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/kafka-dev-broker");
    if !Command::new(&script)
        .args(["create-topic", &topic, "6", port])
        .status()?
        .success()
    {
        bail!("cannot create topic {topic}");
    }
    let history = match postgres {
        Some(url) => format!(
            "history:\n  backend: postgres\n  postgres:\n    url: \"{}\"\n",
            fresh_database(url, &topic)?
        ),
        None => String::new(),
    };
    let config = dir.join(format!("{topic}.yaml"));
    std::fs::write(
        &config,
        format!(
            "{}\nsinks:\n  stdout:\n    enabled: false\nsources:\n  kafka:\n    brokers: \"{}\"\n    topics: [\"{topic}\"]\n    group_id: \"g-{topic}\"\n{history}",
            synth::POLICY_YAML,
            a.broker
        ),
    )?;
    let mut children: Vec<(Child, String)> = Vec::new();
    for i in 0..replicas {
        let data = dir.join(format!("{topic}-data-{i}"));
        children.push(driftwatch_testkit::serve::start(bin, &config, &data)?);
    }
    // The group settles before anything is produced: a rebalance as each
    // replica joins is not what is measured.
    wait_for_partitions(&children)?;
    produce(&a.broker, &topic, bodies)?;
    let rate = stream_rate(&children, count_events(bodies));
    for (mut c, _) in children {
        let _ = c.kill();
        let _ = c.wait();
    }
    rate
}

fn wait_for_partitions(replicas: &[(Child, String)]) -> Result<()> {
    let client = driftwatch::http::client_builder().build()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let deadline = Instant::now() + Duration::from_secs(120);
    let owned = |base: &str| -> usize {
        let text = rt
            .block_on(async {
                client
                    .get(format!("{base}/readyz"))
                    .send()
                    .await?
                    .text()
                    .await
            })
            .unwrap_or_default();
        text.lines()
            .find_map(|l| l.strip_prefix("kafka: "))
            .and_then(|l| l.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    loop {
        let counts: Vec<usize> = replicas.iter().map(|(_, b)| owned(b)).collect();
        if counts.iter().all(|&n| n > 0) && counts.iter().sum::<usize>() == 6 {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the group did not settle: partitions owned {counts:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn produce(broker: &str, topic: &str, bodies: &[Vec<u8>]) -> Result<()> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", broker)
        .create()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        for (i, b) in bodies.iter().enumerate() {
            let key = i.to_string();
            producer
                .send(
                    FutureRecord::to(topic).key(&key).payload(b),
                    Duration::from_secs(30),
                )
                .await
                .map_err(|(e, _)| anyhow::anyhow!("producing message {i}: {e}"))?;
        }
        anyhow::Ok(())
    })
}

fn fresh_database(url: &str, topic: &str) -> Result<String> {
    let name = topic.replace('-', "_");
    let mut client = postgres::Client::connect(url, postgres::NoTls)?;
    client.batch_execute(&format!("CREATE DATABASE {name}"))?;
    let root = url.rsplit_once('/').context("a database in the URL")?.0;
    Ok(format!("{root}/{name}"))
}

/// Events/s from the first consumed to the last, summed over `replicas`.
fn stream_rate(replicas: &[(Child, String)], events: usize) -> Result<f64> {
    let client = driftwatch::http::client_builder().build()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let deadline = Instant::now() + Duration::from_secs(900);
    let mut first: Option<(Instant, f64)> = None;
    loop {
        let mut consumed = 0.0;
        for (_, base) in replicas {
            let metrics = rt.block_on(async {
                client
                    .get(format!("{base}/metrics"))
                    .send()
                    .await?
                    .text()
                    .await
            })?;
            consumed += metrics
                .lines()
                .find(|l| l.starts_with("driftwatch_events_received_total{source=\"kafka\"}"))
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0);
        }
        if first.is_none() && consumed > 0.0 {
            first = Some((Instant::now(), consumed));
        }
        if consumed as usize >= events {
            let (t0, n0) = first.context("nothing consumed")?;
            return Ok((consumed - n0) / t0.elapsed().as_secs_f64().max(1e-9));
        }
        if Instant::now() > deadline {
            bail!("only {consumed} of {events} events consumed");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
