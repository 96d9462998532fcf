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

use super::{Batch, Finding, Sink, SinkError};
use crate::config::KafkaSinkConfig;
use crate::telemetry::events::{Emit, KafkaDeliveryFailed};

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
    payload: Vec<u8>,
}

impl KafkaSink {
    pub fn new(config: &KafkaSinkConfig) -> Result<KafkaSink, SinkError> {
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
            .map_err(|e| SinkError::fatal("kafka", io::Error::other(e)))?;
        Ok(KafkaSink {
            producer,
            reports,
            topic: config.topic.clone(),
            timeout: Duration::from_millis(config.delivery_timeout_ms),
            payload: Vec::new(),
        })
    }
}

/// `cluster/group/resource/namespace/name`: one object's findings in order.
fn key(f: &Finding<'_>) -> String {
    let r = &f.record.resource;
    format!(
        "{}/{}/{}/{}/{}",
        f.record.cluster,
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

    fn write(&mut self, batch: &Batch<'_>) -> Result<(), SinkError> {
        let findings = batch.findings;
        if let Ok(mut failed) = self.reports.failed.lock() {
            failed.clear();
        }
        let deadline = Instant::now() + self.timeout;
        for finding in findings {
            self.payload.clear();
            if serde_json::to_writer(&mut self.payload, finding).is_err() {
                continue;
            }
            let key = key(finding);
            let mut record = BaseRecord::to(&self.topic)
                .key(key.as_bytes())
                .payload(&self.payload);
            loop {
                match self.producer.send(record) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        if Instant::now() > deadline {
                            return Err(retriable("producer queue stayed full"));
                        }
                        record = back;
                        self.producer.poll(Duration::from_millis(10));
                    }
                    Err((
                        KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge),
                        _,
                    )) => {
                        return Err(SinkError::fatal(
                            "kafka",
                            io::Error::other(
                                "a finding is larger than the producer's message.max.bytes",
                            ),
                        ));
                    }
                    Err((e, _)) => return Err(SinkError::retriable("kafka", io::Error::other(e))),
                }
            }
        }
        self.producer
            .flush(self.timeout)
            .map_err(|e| retriable(&format!("flush: {e}")))?;
        let failed = self
            .reports
            .failed
            .lock()
            .map(|f| f.clone())
            .unwrap_or_default();
        if let Some(first) = failed.first() {
            KafkaDeliveryFailed {
                count: failed.len(),
            }
            .emit();
            return Err(retriable(&format!(
                "{} finding(s) not acknowledged: {first}",
                failed.len()
            )));
        }
        Ok(())
    }
}

fn retriable(message: &str) -> SinkError {
    SinkError::retriable("kafka", io::Error::other(message.to_owned()))
}

impl Drop for KafkaSink {
    fn drop(&mut self) {
        // Shutdown: whatever is still queued gets its chance to go out.
        let _ = self.producer.flush(self.timeout);
    }
}
