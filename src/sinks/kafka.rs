//! Findings to a Kafka topic. One message per finding, keyed by cluster and
//! resource so that one object's findings stay in order on one partition.
//! The producer is idempotent; a batch returns only once every message is
//! acknowledged, and librdkafka retries with backoff until
//! `delivery_timeout_ms` before the batch is refused (and retried by the
//! source).

use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};

use super::{Finding, Sink};
use crate::config::KafkaSinkConfig;
use crate::telemetry::events;

/// Delivery reports land here: the pipeline thread reads them after flush.
#[derive(Default)]
struct Reports {
    failed: Mutex<Vec<String>>,
}

struct Context(Arc<Reports>);

impl ClientContext for Context {}

impl ProducerContext for Context {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result
            && let Ok(mut failed) = self.0.failed.lock()
        {
            failed.push(e.to_string());
        }
    }
}

pub struct KafkaSink {
    producer: BaseProducer<Context>,
    reports: Arc<Reports>,
    topic: String,
    timeout: Duration,
}

impl KafkaSink {
    pub fn new(config: &KafkaSinkConfig) -> io::Result<KafkaSink> {
        let reports = Arc::new(Reports::default());
        let mut cc = ClientConfig::new();
        cc.set("bootstrap.servers", &config.brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("message.timeout.ms", config.delivery_timeout_ms.to_string())
            .set("retry.backoff.ms", "100")
            .set("linger.ms", "5");
        for (k, v) in &config.properties {
            cc.set(k, v);
        }
        let producer = cc
            .create_with_context(Context(Arc::clone(&reports)))
            .map_err(io::Error::other)?;
        Ok(KafkaSink {
            producer,
            reports,
            topic: config.topic.clone(),
            timeout: Duration::from_millis(config.delivery_timeout_ms),
        })
    }
}

/// `cluster/group/resource/namespace/name`: one object's findings in order.
fn key(f: &Finding) -> String {
    let r = &f.resource;
    format!(
        "{}/{}/{}/{}/{}",
        f.cluster,
        r.group,
        r.resource,
        r.namespace.as_deref().unwrap_or(""),
        r.name.as_deref().unwrap_or("")
    )
}

impl Sink for KafkaSink {
    fn name(&self) -> &'static str {
        "kafka"
    }

    fn write_lines(&mut self, lines: &[u8], findings: &[Finding]) -> io::Result<()> {
        if let Ok(mut failed) = self.reports.failed.lock() {
            failed.clear();
        }
        let deadline = Instant::now() + self.timeout;
        let payloads = lines.split(|&b| b == b'\n').filter(|l| !l.is_empty());
        for (finding, payload) in findings.iter().zip(payloads) {
            let key = key(finding);
            let mut record = BaseRecord::to(&self.topic)
                .key(key.as_bytes())
                .payload(payload);
            loop {
                match self.producer.send(record) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        if Instant::now() > deadline {
                            return Err(io::Error::other("producer queue stayed full"));
                        }
                        record = back;
                        self.producer.poll(Duration::from_millis(10));
                    }
                    Err((e, _)) => return Err(io::Error::other(e)),
                }
            }
        }
        self.producer
            .flush(self.timeout)
            .map_err(|e| io::Error::other(format!("flush: {e}")))?;
        let failed = self
            .reports
            .failed
            .lock()
            .map(|f| f.clone())
            .unwrap_or_default();
        if let Some(first) = failed.first() {
            events::kafka_delivery_failed(failed.len());
            return Err(io::Error::other(format!(
                "{} finding(s) not acknowledged: {first}",
                failed.len()
            )));
        }
        Ok(())
    }
}

impl Drop for KafkaSink {
    fn drop(&mut self) {
        // Shutdown: whatever is still queued gets its chance to go out.
        let _ = self.producer.flush(self.timeout);
    }
}
