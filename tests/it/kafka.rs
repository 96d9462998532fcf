//! The Kafka source and sink against a real Kafka-protocol broker (tansu) on
//! loopback, started by `scripts/kafka-dev-broker` (idempotent: `scripts/test`
//! starts it first; a test run without it starts it here).

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::{Value, json};

use crate::common::{self, Ev, Service};

fn script() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/kafka-dev-broker")
}

/// The broker's bootstrap address, starting it if needed.
pub(crate) fn broker() -> &'static str {
    static ADDR: OnceLock<String> = OnceLock::new();
    ADDR.get_or_init(|| {
        if let Ok(addr) = std::env::var("DRIFTWATCH_TEST_KAFKA")
            && !addr.is_empty()
        {
            return addr;
        }
        let out = Command::new(script())
            .arg("start")
            .output()
            .expect("running scripts/kafka-dev-broker start");
        assert!(
            out.status.success(),
            "scripts/kafka-dev-broker start failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .expect("broker address")
            .trim()
            .to_owned()
    })
}

/// A fresh topic with `partitions` partitions.
pub(crate) fn topic(prefix: &str, partitions: u32) -> Result<String> {
    static N: AtomicUsize = AtomicUsize::new(0);
    let name = format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    );
    let port = broker().rsplit(':').next().context("port")?;
    let out = Command::new(script())
        .args(["create-topic", &name, &partitions.to_string(), port])
        .output()?;
    if !out.status.success() {
        bail!(
            "create-topic {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(name)
}

pub(crate) fn producer() -> Result<BaseProducer> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", broker())
        .set("message.timeout.ms", "20000")
        .create()?)
}

fn produce(
    p: &BaseProducer,
    topic: &str,
    key: &str,
    payload: &[u8],
    cluster: Option<&str>,
) -> Result<()> {
    let mut record = BaseRecord::to(topic).key(key).payload(payload);
    if let Some(c) = cluster {
        record = record.headers(OwnedHeaders::new().insert(Header {
            key: "cluster",
            value: Some(c),
        }));
    }
    p.send(record).map_err(|(e, _)| e)?;
    Ok(())
}

/// Everything on `topic` so far, read from the beginning of every partition.
struct Read {
    key: Option<String>,
    payload: Vec<u8>,
    headers: BTreeMap<String, String>,
}

fn read_all(topic: &str, partitions: i32, want: usize, timeout: Duration) -> Result<Vec<Read>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker())
        .set("group.id", format!("reader-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    let mut out = Vec::new();
    let deadline = Instant::now() + timeout;
    // Read until `want` arrived, then a little longer to catch extras.
    let mut settle: Option<Instant> = None;
    while Instant::now() < deadline {
        if out.len() >= want && settle.is_none() {
            settle = Some(Instant::now() + Duration::from_millis(1500));
        }
        if settle.is_some_and(|s| Instant::now() > s) {
            break;
        }
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            let headers = m
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| {
                            (
                                h.key.to_owned(),
                                String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            out.push(Read {
                key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                payload: m.payload().unwrap_or_default().to_vec(),
                headers,
            });
        }
    }
    Ok(out)
}

/// `kubectl edit` of deployment `name` by `user`: one finding.
fn event(audit_id: &str, user: &str, name: &str, replicas: u64) -> Value {
    let uri = format!("/apis/apps/v1/namespaces/shop/deployments/{name}?fieldManager=kubectl-edit");
    Ev::new("patch", &uri)
        .audit_id(audit_id)
        .by(user, &["devs", "system:authenticated"])
        .source_ips(&["10.0.0.7"])
        .body(json!({"spec": {"replicas": replicas}}))
        .0
}

/// Alice's edit of `svc-I`, keyed `kI`, with `audit_id`, onto `topic`.
fn produce_edit(
    p: &BaseProducer,
    topic: &str,
    audit_id: &str,
    i: usize,
    cluster: Option<&str>,
) -> Result<()> {
    let e = event(audit_id, "alice@example.com", &format!("svc-{i}"), 3);
    produce(
        p,
        topic,
        &format!("k{i}"),
        e.to_string().as_bytes(),
        cluster,
    )
}

fn read_event(audit_id: &str) -> Value {
    let mut e = event(audit_id, "alice@example.com", "api", 1);
    e["verb"] = json!("get");
    e
}

fn config(source_topic: &str, findings: &str, dlq: &str) -> String {
    format!(
        "cluster: default-cluster\n\
         sources:\n  kafka:\n    brokers: \"{b}\"\n    topics: [\"{source_topic}\"]\n    group_id: \"dw-{source_topic}\"\n    dead_letter_topic: \"{dlq}\"\n    cluster_from: header\n\
         sinks:\n  kafka:\n    brokers: \"{b}\"\n    topic: \"{findings}\"\n",
        b = broker()
    )
}

fn findings_by_audit(reads: &[Read]) -> Result<BTreeMap<String, Vec<Value>>> {
    let mut by: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for r in reads {
        let f: Value = serde_json::from_slice(&r.payload)?;
        by.entry(f["audit_id"].as_str().unwrap_or_default().to_owned())
            .or_default()
            .push(f);
    }
    Ok(by)
}

#[test]
fn kafka_source_to_kafka_findings_with_dead_letters() -> Result<()> {
    let source = topic("audit", 3)?;
    let findings = topic("findings", 3)?;
    let dlq = topic("dlq", 1)?;
    let svc = Service::start(Some(&config(&source, &findings, &dlq)))?;
    let p = producer()?;

    // One event per message, with the cluster header.
    let mut singles = Vec::new();
    for i in 0..10 {
        let e = event(
            &format!("single-{i}"),
            "alice@example.com",
            &format!("api-{i}"),
            5,
        );
        singles.push(e.clone());
        produce(
            &p,
            &source,
            &format!("k{i}"),
            e.to_string().as_bytes(),
            Some("prod-a"),
        )?;
    }
    // An EventList, as the webhook backend would send it, without a header.
    let list = json!({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": [
        event("list-0", "bob@example.com", "web", 2), read_event("list-read"), event("list-1", "bob@example.com", "db", 1)
    ]});
    produce(&p, &source, "list", list.to_string().as_bytes(), None)?;
    // JSON lines.
    let lines = format!(
        "{}\n{}\n",
        event("lines-0", "carol@example.com", "cache", 4),
        event("lines-1", "carol@example.com", "queue", 4)
    );
    produce(&p, &source, "lines", lines.as_bytes(), Some("prod-b"))?;
    // Exact duplicates of a message already sent.
    let dup = singles[3].to_string();
    produce(&p, &source, "k3", dup.as_bytes(), Some("prod-a"))?;
    produce(&p, &source, "k3", dup.as_bytes(), Some("prod-a"))?;
    // A poison message.
    produce(
        &p,
        &source,
        "poison",
        b"this is not an audit event",
        Some("prod-a"),
    )?;
    p.flush(Duration::from_secs(20))?;

    let expected: BTreeSet<String> = (0..10)
        .map(|i| format!("single-{i}"))
        .chain(["list-0", "list-1", "lines-0", "lines-1"].map(str::to_owned))
        .collect();
    let reads = read_all(&findings, 3, expected.len(), Duration::from_secs(60))?;
    let by = findings_by_audit(&reads)?;
    let got: BTreeSet<String> = by.keys().cloned().collect();
    assert_eq!(got, expected, "findings on the topic");
    for (id, fs) in &by {
        assert_eq!(fs.len(), 1, "finding for {id} delivered {} times", fs.len());
    }
    // Cluster from the header, else the configured default.
    assert_eq!(by["single-0"][0]["cluster"], "prod-a");
    assert_eq!(by["lines-0"][0]["cluster"], "prod-b");
    assert_eq!(by["list-0"][0]["cluster"], "default-cluster");
    // Key = cluster + resource, so one object's findings share a partition.
    let r = reads
        .iter()
        .find(|r| {
            serde_json::from_slice::<Value>(&r.payload).is_ok_and(|f| f["audit_id"] == "single-0")
        })
        .context("single-0 on the topic")?;
    assert_eq!(r.key.as_deref(), Some("prod-a/apps/deployments/shop/api-0"));

    let dead = read_all(&dlq, 1, 1, Duration::from_secs(30))?;
    assert_eq!(dead.len(), 1, "exactly the poison message is dead-lettered");
    assert_eq!(dead[0].payload, b"this is not an audit event");
    let reason = dead[0]
        .headers
        .get("driftwatch-error")
        .context("reason header")?;
    assert!(reason.contains("not JSON"), "{reason}");
    assert_eq!(
        dead[0].headers.get("driftwatch-source-topic"),
        Some(&source)
    );

    // Readiness names the partitions this replica owns and their lag:
    // everything consumed, so 0 on each.
    let ready = common::wait_until(
        Duration::from_secs(30),
        || format!("/readyz to list {source}'s 3 partitions at lag 0"),
        || {
            let text = common::blocking_get(&svc.url("/readyz")).ok()?;
            text.contains("kafka: 3 partitions, lag 0:").then_some(text)
        },
    )?;
    for p in 0..3 {
        assert!(ready.contains(&format!("{source}/{p} lag 0")), "{ready}");
    }
    // The same findings went to stdout too, and the metrics count the poison.
    let metrics = common::blocking_get(&svc.url("/metrics"))?;
    assert!(
        metrics.contains("driftwatch_kafka_partitions_assigned 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("driftwatch_kafka_messages_total{result=\"dead_lettered\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("driftwatch_events_rejected_total{source=\"kafka\""),
        "{metrics}"
    );
    Ok(())
}

#[test]
fn sigkill_mid_stream_loses_nothing_and_stores_nothing_twice() -> Result<()> {
    let source = topic("audit-crash", 2)?;
    let findings = topic("findings-crash", 2)?;
    let dlq = topic("dlq-crash", 1)?;
    let yaml = config(&source, &findings, &dlq);
    let total = 300;
    let svc = Service::start(Some(&yaml))?;
    // Produce while the service consumes, so that the kill lands mid-stream.
    let writer = {
        let source = source.clone();
        std::thread::spawn(move || -> Result<()> {
            let p = producer()?;
            for i in 0..total {
                produce_edit(&p, &source, &format!("crash-{i}"), i, Some("prod-a"))?;
                if i % 10 == 9 {
                    p.flush(Duration::from_secs(20))?;
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
            p.flush(Duration::from_secs(20))?;
            Ok(())
        })
    };
    common::wait_until(
        Duration::from_secs(60),
        || "60 findings before the kill".to_owned(),
        || (svc.findings().len() >= 60).then_some(()),
    )?;
    let dir = svc.kill_keeping_dir()?;
    writer
        .join()
        .map_err(|_| anyhow::anyhow!("producer thread panicked"))??;
    let stored_before = stored_changes(&dir.path().join("data"))?;
    assert!(
        stored_before < total,
        "the kill should land mid-stream, but all {total} changes were already stored"
    );

    let svc = Service::start_in(dir, Some(&yaml))?;
    let changes = || -> Result<Vec<Value>> {
        let page = common::blocking_get(&svc.url("/api/v1/changes?limit=1000"))?;
        let page: Value = serde_json::from_str(&page)?;
        Ok(page["items"].as_array().cloned().unwrap_or_default())
    };
    let stored = common::wait_until(
        Duration::from_secs(90),
        || format!("{total} changes stored after the restart"),
        || match changes() {
            Ok(items) if items.len() < total => None,
            done => Some(done),
        },
    )??;
    let ids: Vec<String> = stored
        .iter()
        .map(|c| c["audit_id"].as_str().unwrap_or_default().to_owned())
        .collect();
    let distinct: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(ids.len(), total, "every change stored exactly once");
    assert_eq!(distinct.len(), total);

    let reads = read_all(&findings, 2, total, Duration::from_secs(60))?;
    let by = findings_by_audit(&reads)?;
    let missing: Vec<String> = (0..total)
        .map(|i| format!("crash-{i}"))
        .filter(|id| !by.contains_key(id))
        .collect();
    assert!(
        missing.is_empty(),
        "findings missing from the topic: {missing:?}"
    );
    // A repeat on the topic can only be the same finding (same id), written
    // between the sink's flush and the store's commit when the kill hit.
    for (audit, fs) in &by {
        let ids: BTreeSet<&str> = fs.iter().filter_map(|f| f["id"].as_str()).collect();
        assert_eq!(ids.len(), 1, "{audit} has findings with different ids");
    }
    eprintln!(
        "sigkill: {} findings on the topic for {total} changes ({} repeats of an id)",
        reads.len(),
        reads.len() - by.len()
    );
    Ok(())
}

/// A restart resumes at the first message not processed: the offset
/// committed is the one after the last message stored, not one further
/// (which skipped a message at every restart and rebalance).
#[test]
fn a_restart_resumes_at_the_first_message_not_processed() -> Result<()> {
    let source = topic("audit-resume", 1)?;
    let yaml = format!(
        "cluster: prod-a\nsources:\n  kafka:\n    brokers: \"{}\"\n    topics: [\"{source}\"]\n    group_id: \"dw-{source}\"\n",
        broker()
    );
    let p = producer()?;
    let send = |from: usize, to: usize| -> Result<()> {
        for i in from..to {
            produce_edit(&p, &source, &format!("resume-{i}"), i, None)?;
        }
        Ok(p.flush(Duration::from_secs(20))?)
    };
    let ids = |svc: &Service| -> Vec<String> {
        let page = common::blocking_get(&svc.url("/api/v1/changes?limit=1000")).unwrap_or_default();
        let page: Value = serde_json::from_str(&page).unwrap_or_default();
        let items = page["items"].as_array().cloned().unwrap_or_default();
        items
            .iter()
            .filter_map(|c| c["audit_id"].as_str().map(str::to_owned))
            .collect()
    };
    send(0, 3)?;
    let svc = Service::start(Some(&yaml))?;
    common::wait_until(
        Duration::from_secs(60),
        || "the first 3 changes stored".to_owned(),
        || (ids(&svc).len() >= 3).then_some(()),
    )?;
    let (code, dir) = svc.stop_keeping_dir()?;
    assert_eq!(code, 0);
    send(3, 6)?;
    let svc = Service::start_in(dir, Some(&yaml))?;
    let want: Vec<String> = (0..6).map(|i| format!("resume-{i}")).collect();
    let waited = common::wait_until(
        Duration::from_secs(60),
        || "6 changes stored after the restart".to_owned(),
        || (ids(&svc).len() >= 6).then_some(()),
    );
    let mut got = ids(&svc);
    got.sort();
    let missing: Vec<&String> = want.iter().filter(|w| !got.contains(w)).collect();
    assert!(
        missing.is_empty(),
        "missing after the restart: {missing:?} ({waited:?})"
    );
    assert_eq!(got, want, "each message stored once");
    Ok(())
}

#[test]
fn webhook_keeps_working_while_kafka_is_down() -> Result<()> {
    // Nothing listens on port 9: the Kafka source cannot connect.
    let yaml = "sources:\n  kafka:\n    brokers: \"127.0.0.1:9\"\n    topics: [\"audit\"]\n";
    let svc = Service::start(Some(yaml))?;
    let body = event("webhook-while-down", "alice@example.com", "api", 4).to_string();
    let (code, _) = common::post(&svc.url("/audit/webhook"), body.into_bytes())?;
    assert_eq!(code, 200);
    let f = svc.wait_for_findings(1)?;
    assert_eq!(f.len(), 1);
    assert_eq!(f[0]["audit_id"], "webhook-while-down");
    Ok(())
}

/// Changes in the SQLite file, read directly (the service is dead).
fn stored_changes(data_dir: &std::path::Path) -> Result<usize> {
    let conn = rusqlite::Connection::open(data_dir.join("driftwatch.db"))?;
    let n: i64 = conn.query_row("SELECT count(*) FROM changes", [], |r| r.get(0))?;
    Ok(usize::try_from(n)?)
}
