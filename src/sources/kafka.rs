//! Kafka topics of audit events: EKS, GKE and AKS audit logs reach a team
//! through a log pipeline, and at scale that pipeline is Kafka. Several
//! replicas in one consumer group share the partitions.
//!
//! At-least-once: a message's offset is stored only after its events are
//! classified and their findings and history durably written, in order per
//! partition; redelivery after a crash or rebalance is absorbed by dedupe and
//! the store. A message that cannot be decoded goes to the dead-letter topic
//! with the reason in a header, is counted, and is committed: one poison
//! message never stalls a partition.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rdkafka::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::{ClusterFrom, KafkaSourceConfig};
use crate::sources::webhook::{Job, JobOutcome};
use crate::telemetry::events::{self, Source};
use crate::worker::Work;

#[derive(Debug, thiserror::Error)]
pub enum KafkaSourceError {
    #[error("kafka source: cannot create consumer for {brokers}: {source}")]
    Consumer {
        brokers: String,
        source: rdkafka::error::KafkaError,
    },
    #[error("kafka source: cannot subscribe to {topics:?}: {source}")]
    Subscribe {
        topics: Vec<String>,
        source: rdkafka::error::KafkaError,
    },
    #[error("kafka source: cannot create dead-letter producer: {0}")]
    Producer(rdkafka::error::KafkaError),
}

pub struct KafkaSource {
    consumer: Arc<StreamConsumer>,
    dead_letter: Option<(FutureProducer, String)>,
    config: KafkaSourceConfig,
    queue: mpsc::Sender<Work>,
}

/// One consumed message, detached from the consumer's buffers.
struct Received {
    message: OwnedMessage,
    cluster: Option<String>,
}

impl KafkaSource {
    pub fn new(
        config: KafkaSourceConfig,
        queue: mpsc::Sender<Work>,
    ) -> Result<KafkaSource, KafkaSourceError> {
        let mut cc = ClientConfig::new();
        cc.set("bootstrap.servers", &config.brokers)
            .set("group.id", &config.group_id)
            // Offsets are stored by hand once a message is durably processed;
            // the background commit then only ever commits processed work.
            .set("enable.auto.commit", "true")
            .set("enable.auto.offset.store", "false")
            .set("auto.commit.interval.ms", "1000")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "1000");
        for (k, v) in &config.properties {
            cc.set(k, v);
        }
        let consumer: StreamConsumer =
            cc.create().map_err(|source| KafkaSourceError::Consumer {
                brokers: config.brokers.clone(),
                source,
            })?;
        let topics: Vec<&str> = config.topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&topics)
            .map_err(|source| KafkaSourceError::Subscribe {
                topics: config.topics.clone(),
                source,
            })?;
        let dead_letter = match &config.dead_letter_topic {
            Some(topic) => {
                let mut pc = ClientConfig::new();
                pc.set("bootstrap.servers", &config.brokers)
                    .set("enable.idempotence", "true")
                    .set("message.timeout.ms", "30000");
                for (k, v) in &config.properties {
                    pc.set(k, v);
                }
                let producer: FutureProducer = pc.create().map_err(KafkaSourceError::Producer)?;
                Some((producer, topic.clone()))
            }
            None => None,
        };
        Ok(KafkaSource {
            consumer: Arc::new(consumer),
            dead_letter,
            config,
            queue,
        })
    }

    /// Consumes until `shutdown`, then commits what was processed.
    pub async fn run(self, shutdown: CancellationToken) {
        info!(
            brokers = %self.config.brokers,
            topics = ?self.config.topics,
            group = %self.config.group_id,
            "Consuming audit events from Kafka."
        );
        let lag = spawn_lag_monitor(Arc::clone(&self.consumer), shutdown.clone());
        loop {
            let first = tokio::select! {
                () = shutdown.cancelled() => break,
                m = self.consumer.recv() => m,
            };
            let first = match first {
                Ok(m) => m.detach(),
                Err(e) => {
                    events::kafka_error("consume", &e);
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(Duration::from_millis(500)) => continue,
                    }
                }
            };
            let mut round = vec![self.received(first)];
            // Take what is already fetched, without waiting, up to the cap:
            // the pipeline writes waiting batches in one transaction.
            while round.len() < self.config.max_batch_messages {
                match tokio::time::timeout(Duration::from_millis(1), self.consumer.recv()).await {
                    Ok(Ok(m)) => {
                        let m = m.detach();
                        round.push(self.received(m));
                    }
                    _ => break,
                }
            }
            if !self.process(round, &shutdown).await {
                break;
            }
        }
        lag.abort();
        match self.consumer.commit_consumer_state(CommitMode::Sync) {
            Ok(()) => info!("Committed Kafka offsets."),
            // Nothing consumed yet is not a failure.
            Err(e) => warn!(%e, "Final Kafka offset commit did not complete."),
        }
    }

    fn received(&self, message: OwnedMessage) -> Received {
        let cluster = match &self.config.cluster_from {
            ClusterFrom::Fixed(name) => Some(name.clone()),
            ClusterFrom::Header => message.headers().and_then(|h| {
                h.iter()
                    .find(|h| h.key == "cluster")
                    .and_then(|h| h.value)
                    .and_then(|v| std::str::from_utf8(v).ok())
                    .filter(|v| !v.is_empty())
                    .map(str::to_owned)
            }),
        };
        Received { message, cluster }
    }

    /// Processes one round of messages to completion: retried until the
    /// pipeline accepts them, dead-lettered where undecodable, then their
    /// offsets stored. Returns false when shutdown interrupted it (offsets of
    /// the round are then not stored, and the messages come back).
    async fn process(&self, round: Vec<Received>, shutdown: &CancellationToken) -> bool {
        let mut pending: Vec<usize> = (0..round.len()).collect();
        let mut outcomes: Vec<Option<JobOutcome>> = (0..round.len()).map(|_| None).collect();
        let mut backoff = Duration::from_millis(200);
        while !pending.is_empty() {
            let mut answers = Vec::with_capacity(pending.len());
            for &i in &pending {
                let r = &round[i];
                let (reply, answer) = oneshot::channel();
                let job = Job {
                    body: Bytes::copy_from_slice(r.message.payload().unwrap_or_default()),
                    cluster: r.cluster.clone(),
                    source: Source::Kafka,
                    received: Instant::now(),
                    reply,
                };
                tokio::select! {
                    () = shutdown.cancelled() => return false,
                    sent = self.queue.send(Work::Batch(job)) => {
                        if sent.is_err() {
                            return false;
                        }
                    }
                }
                answers.push((i, answer));
            }
            let mut failed = Vec::new();
            for (i, answer) in answers {
                match answer.await {
                    Ok(outcome @ JobOutcome::Accepted { .. }) => outcomes[i] = Some(outcome),
                    Ok(outcome @ JobOutcome::TooManyEvents { .. }) => outcomes[i] = Some(outcome),
                    Ok(JobOutcome::SinkFailed(message)) => {
                        warn!(%message, "Pipeline refused a Kafka message; retrying.");
                        failed.push(i);
                    }
                    Err(_) => return false,
                }
            }
            pending = failed;
            if !pending.is_empty() {
                tokio::select! {
                    () = shutdown.cancelled() => return false,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
        for (r, outcome) in round.iter().zip(outcomes) {
            let (accepted, rejections) = match outcome {
                Some(JobOutcome::Accepted {
                    events, rejections, ..
                }) => (events, rejections),
                Some(JobOutcome::TooManyEvents { events, max }) => (
                    0,
                    vec![crate::decode::Rejection {
                        line: 1,
                        reason: crate::decode::RejectReason::NotAnEvent,
                        message: format!(
                            "message holds {events} events, more than server.max_events_per_batch ({max})"
                        ),
                    }],
                ),
                _ => continue,
            };
            let empty = r.message.payload().is_none_or(<[u8]>::is_empty);
            if !rejections.is_empty() || empty {
                let reason = if empty {
                    "empty message".to_owned()
                } else {
                    let first = &rejections[0];
                    format!(
                        "{} document(s) rejected; line {}: {}",
                        rejections.len(),
                        first.line,
                        first.message
                    )
                };
                if !self.dead_letter(r, &reason, accepted, shutdown).await {
                    return false;
                }
                events::kafka_message("dead_lettered");
            } else {
                events::kafka_message("processed");
            }
            if let Err(e) = self.consumer.store_offset(
                r.message.topic(),
                r.message.partition(),
                r.message.offset() + 1,
            ) {
                // The partition was revoked meanwhile: its new owner will
                // process the message again, and dedupe absorbs the repeat.
                events::kafka_error("store_offset", &e);
            }
        }
        true
    }

    /// Sends an undecodable message to the dead-letter topic, with why and
    /// where it came from in headers. Retried until delivered or shutdown.
    async fn dead_letter(
        &self,
        r: &Received,
        reason: &str,
        accepted: usize,
        shutdown: &CancellationToken,
    ) -> bool {
        let Some((producer, topic)) = &self.dead_letter else {
            warn!(
                topic = r.message.topic(),
                partition = r.message.partition(),
                offset = r.message.offset(),
                reason,
                "Undecodable Kafka message and no dead_letter_topic configured; skipping it."
            );
            return true;
        };
        let partition = r.message.partition().to_string();
        let offset = r.message.offset().to_string();
        let accepted = accepted.to_string();
        let mut backoff = Duration::from_millis(200);
        loop {
            let mut headers = OwnedHeaders::new()
                .insert(Header {
                    key: "driftwatch-error",
                    value: Some(reason),
                })
                .insert(Header {
                    key: "driftwatch-source-topic",
                    value: Some(r.message.topic()),
                })
                .insert(Header {
                    key: "driftwatch-source-partition",
                    value: Some(&partition),
                })
                .insert(Header {
                    key: "driftwatch-source-offset",
                    value: Some(&offset),
                })
                .insert(Header {
                    key: "driftwatch-events-accepted",
                    value: Some(&accepted),
                });
            if let Some(cluster) = &r.cluster {
                headers = headers.insert(Header {
                    key: "cluster",
                    value: Some(cluster),
                });
            }
            let mut record = FutureRecord::to(topic)
                .payload(r.message.payload().unwrap_or_default())
                .headers(headers);
            if let Some(key) = r.message.key() {
                record = record.key(key);
            }
            let sent = tokio::select! {
                () = shutdown.cancelled() => return false,
                sent = producer.send(record, Duration::from_secs(30)) => sent,
            };
            match sent {
                Ok(_) => return true,
                Err((e, _)) => {
                    events::kafka_error("dead_letter", &e);
                    tokio::select! {
                        () = shutdown.cancelled() => return false,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
    }
}

/// Exports consumer lag: for each assigned partition, the high watermark
/// minus the consumer's position.
fn spawn_lag_monitor(
    consumer: Arc<StreamConsumer>,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(10));
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let c = Arc::clone(&consumer);
            let lag = tokio::task::spawn_blocking(move || {
                let position = c.position().ok()?;
                let mut lag = 0i64;
                for el in position.elements() {
                    let (_, high) = c
                        .fetch_watermarks(el.topic(), el.partition(), Duration::from_secs(2))
                        .ok()?;
                    if let Some(pos) = el.offset().to_raw()
                        && pos >= 0
                    {
                        lag += (high - pos).max(0);
                    }
                }
                Some(lag)
            })
            .await;
            if let Ok(Some(lag)) = lag {
                events::kafka_lag(lag);
            }
        }
    })
}
