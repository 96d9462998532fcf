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
use std::time::Duration;

use bytes::Bytes;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use super::hold::{Held, Hold};
use crate::config::{ClusterFrom, KafkaSourceConfig};
use crate::engine::{self, Accepted, IngestError, Input};
use crate::telemetry::events::{
    Emit, KafkaConsuming, KafkaError, KafkaHeld, KafkaHeldDropped, KafkaLag, KafkaMessage,
    KafkaOffsetsCommitted, KafkaResult, Source,
};

/// Messages held at most, whatever their size (`reorder_max_bytes` bounds
/// their bytes).
const MAX_HELD_MESSAGES: usize = 4 * 1024 * 1024;

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

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

/// What this replica's consumer owns, for `/readyz`: each assigned
/// partition and how far behind its high watermark the consumer is
/// (`None` until it has a position there), refreshed with the lag.
#[derive(Clone, Default)]
pub struct KafkaStatus(Arc<std::sync::Mutex<Vec<PartitionLag>>>);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLag {
    pub topic: String,
    pub partition: i32,
    pub lag: Option<i64>,
}

impl KafkaStatus {
    pub fn partitions(&self) -> Vec<PartitionLag> {
        self.0.lock().map(|p| p.clone()).unwrap_or_default()
    }

    fn set(&self, partitions: Vec<PartitionLag>) {
        if let Ok(mut p) = self.0.lock() {
            *p = partitions;
        }
    }
}

pub struct KafkaSource {
    consumer: Arc<StreamConsumer>,
    status: KafkaStatus,
    dead_letter: Option<(FutureProducer, String)>,
    config: KafkaSourceConfig,
    engine: engine::Handle,
}

/// One consumed message, detached from the consumer's buffers.
struct Received {
    message: OwnedMessage,
    cluster: Option<String>,
}

impl KafkaSource {
    pub fn new(
        config: KafkaSourceConfig,
        engine: engine::Handle,
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
            engine,
            status: KafkaStatus::default(),
        })
    }

    /// The partitions this consumer owns and their lag, as they change.
    pub fn status(&self) -> KafkaStatus {
        self.status.clone()
    }

    /// Consumes until `shutdown`, then commits what was processed.
    pub async fn run(self, shutdown: CancellationToken) {
        KafkaConsuming {
            brokers: &self.config.brokers,
            topics: &self.config.topics,
            group: &self.config.group_id,
        }
        .emit();
        let lag = spawn_lag_monitor(
            Arc::clone(&self.consumer),
            self.status.clone(),
            shutdown.clone(),
        );
        match self.config.reorder_window {
            None => self.consume(&shutdown).await,
            Some(window) => self.consume_held(window, &shutdown).await,
        }
        lag.abort();
        let committed = self.consumer.commit_consumer_state(CommitMode::Sync);
        // Nothing consumed since the last commit is not a failure.
        let nothing = matches!(
            &committed,
            Err(rdkafka::error::KafkaError::ConsumerCommit(
                rdkafka::types::RDKafkaErrorCode::NoOffset
            ))
        );
        KafkaOffsetsCommitted {
            error: committed
                .as_ref()
                .err()
                .filter(|_| !nothing)
                .map(|e| e as &dyn std::error::Error),
            nothing,
        }
        .emit();
    }

    /// Consumes in arrival order: each round as soon as it is fetched.
    async fn consume(&self, shutdown: &CancellationToken) {
        loop {
            let first = tokio::select! {
                () = shutdown.cancelled() => break,
                m = self.consumer.recv() => m,
            };
            let first = match first {
                Ok(m) => m.detach(),
                Err(e) => {
                    KafkaError {
                        operation: "consume",
                        error: &e,
                    }
                    .emit();
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
            if !self.process(round, shutdown).await {
                break;
            }
        }
    }

    /// Consumes through the reorder hold (see [`super::hold`]).
    async fn consume_held(&self, window: Duration, shutdown: &CancellationToken) {
        let mut hold = Hold::new(window, MAX_HELD_MESSAGES, self.config.reorder_max_bytes);
        while self.fetch(&mut hold, shutdown).await {
            self.drop_revoked(&mut hold);
            if !self.release(&mut hold, shutdown).await {
                return;
            }
        }
    }

    /// Waits for messages, or until the oldest held one is due, and holds
    /// what arrived. False on shutdown.
    async fn fetch(&self, hold: &mut Hold<Received>, shutdown: &CancellationToken) -> bool {
        let wait = hold.next_due_ms().map_or(Duration::from_secs(1), |due| {
            Duration::from_millis(u64::try_from(due - now_ms()).unwrap_or(0))
        });
        let first = tokio::select! {
            () = shutdown.cancelled() => return false,
            m = self.consumer.recv() => m,
            () = tokio::time::sleep(wait) => return true,
        };
        match first {
            Ok(m) => self.hold(hold, m.detach()),
            Err(e) => {
                KafkaError {
                    operation: "consume",
                    error: &e,
                }
                .emit();
                tokio::time::sleep(Duration::from_millis(500)).await;
                return true;
            }
        }
        // And what is already fetched, without waiting.
        while hold.len() < MAX_HELD_MESSAGES {
            match tokio::time::timeout(Duration::from_millis(1), self.consumer.recv()).await {
                Ok(Ok(m)) => self.hold(hold, m.detach()),
                _ => break,
            }
        }
        true
    }

    /// Judges every held message that is due, oldest first. False on
    /// shutdown (the round's offsets are then not stored).
    async fn release(&self, hold: &mut Hold<Received>, shutdown: &CancellationToken) -> bool {
        loop {
            let taken = hold.take(now_ms(), self.config.max_batch_messages);
            if taken.items.is_empty() {
                return true;
            }
            KafkaHeld {
                held: hold.len(),
                early: taken.early,
            }
            .emit();
            if !self.process(taken.items, shutdown).await {
                return false;
            }
        }
    }

    fn hold(&self, hold: &mut Hold<Received>, m: OwnedMessage) {
        // A message without a timestamp waits from when it arrived.
        let ts_ms = m.timestamp().to_millis().unwrap_or_else(now_ms);
        let (topic, partition) = (m.topic().to_owned(), m.partition());
        let bytes = m.payload().map_or(0, <[u8]>::len) + 256;
        hold.push(
            &topic,
            partition,
            Held {
                ts_ms,
                bytes,
                item: self.received(m),
            },
        );
    }

    /// Forgets what is held of partitions a rebalance took away.
    fn drop_revoked(&self, hold: &mut Hold<Received>) {
        if hold.is_empty() {
            return;
        }
        let Ok(assigned) = self.consumer.assignment() else {
            return;
        };
        let owned: std::collections::BTreeSet<(String, i32)> = assigned
            .elements()
            .iter()
            .map(|e| (e.topic().to_owned(), e.partition()))
            .collect();
        let dropped = hold.retain_partitions(|t, p| owned.contains(&(t.to_owned(), p)));
        if dropped > 0 {
            KafkaHeldDropped { messages: dropped }.emit();
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
    /// engine accepts them, dead-lettered where undecodable, then their
    /// offsets stored. Returns false when shutdown interrupted it (offsets of
    /// the round are then not stored, and the messages come back).
    async fn process(&self, round: Vec<Received>, shutdown: &CancellationToken) -> bool {
        let Some(outcomes) = self.until_judged(&round, shutdown).await else {
            return false;
        };
        for (r, outcome) in round.iter().zip(outcomes) {
            let reason = undecodable(r, &outcome);
            let result = match &reason {
                None => KafkaResult::Processed,
                Some(reason) => {
                    let accepted = outcome.as_ref().map_or(0, |a| a.stats.events as usize);
                    match self.dead_letter(r, reason, accepted, shutdown).await {
                        Some(result) => result,
                        None => return false,
                    }
                }
            };
            KafkaMessage {
                result,
                topic: r.message.topic(),
                partition: r.message.partition(),
                offset: r.message.offset(),
                reason: reason.as_deref(),
            }
            .emit();
            if let Err(e) = self.store_processed(&r.message) {
                // The partition was revoked meanwhile: its new owner will
                // process the message again, and dedupe absorbs the repeat.
                KafkaError {
                    operation: "store_offset",
                    error: &e,
                }
                .emit();
            }
        }
        true
    }

    /// Marks `m` processed: the next commit names the offset after it, where
    /// whoever owns the partition next resumes. Through the list, whose
    /// offsets are taken as given: `store_offset` adds one itself, and
    /// handing it the next offset skipped a message at every restart and
    /// rebalance.
    fn store_processed(&self, m: &OwnedMessage) -> rdkafka::error::KafkaResult<()> {
        let mut next = TopicPartitionList::new();
        next.add_partition_offset(m.topic(), m.partition(), Offset::Offset(m.offset() + 1))?;
        self.consumer.store_offsets(&next)
    }

    /// Sends the round to the engine until every message is judged: accepted,
    /// or refused for good (too many events). `None` on shutdown.
    async fn until_judged(
        &self,
        round: &[Received],
        shutdown: &CancellationToken,
    ) -> Option<Vec<Result<Accepted, IngestError>>> {
        let mut pending: Vec<usize> = (0..round.len()).collect();
        let mut outcomes: Vec<Option<Result<Accepted, IngestError>>> =
            (0..round.len()).map(|_| None).collect();
        let mut backoff = Duration::from_millis(200);
        while !pending.is_empty() {
            let mut answers = Vec::with_capacity(pending.len());
            for &i in &pending {
                let r = &round[i];
                let input = Input::whole(
                    Bytes::copy_from_slice(r.message.payload().unwrap_or_default()),
                    r.cluster.clone(),
                    Source::Kafka,
                );
                let sent = tokio::select! {
                    () = shutdown.cancelled() => return None,
                    sent = self.engine.ingest(input) => sent,
                };
                answers.push((i, sent.ok()?));
            }
            let mut failed = Vec::new();
            for (i, answer) in answers {
                match answer.await.ok()? {
                    // Only a message too large for a batch, or too costly
                    // to decode, is refused for good; a sink or store
                    // failure is retried until it passes.
                    Err(e) if e.is_final() => outcomes[i] = Some(Err(e)),
                    outcome @ Ok(_) => outcomes[i] = Some(outcome),
                    Err(_) => failed.push(i),
                }
            }
            pending = failed;
            if !pending.is_empty() {
                tokio::select! {
                    () = shutdown.cancelled() => return None,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
        outcomes.into_iter().collect()
    }

    /// Sends an undecodable message to the dead-letter topic, with why and
    /// where it came from in headers. Retried until delivered or shutdown.
    async fn dead_letter(
        &self,
        r: &Received,
        reason: &str,
        accepted: usize,
        shutdown: &CancellationToken,
    ) -> Option<KafkaResult> {
        let Some((producer, topic)) = &self.dead_letter else {
            return Some(KafkaResult::Skipped);
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
                () = shutdown.cancelled() => return None,
                sent = producer.send(record, Duration::from_secs(30)) => sent,
            };
            match sent {
                Ok(_) => return Some(KafkaResult::DeadLettered),
                Err((e, _)) => {
                    KafkaError {
                        operation: "dead_letter",
                        error: &e,
                    }
                    .emit();
                    tokio::select! {
                        () = shutdown.cancelled() => return None,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
    }
}

/// Why a judged message goes to the dead-letter topic; `None` when it
/// decoded whole.
fn undecodable(r: &Received, outcome: &Result<Accepted, IngestError>) -> Option<String> {
    if r.message.payload().is_none_or(<[u8]>::is_empty) {
        return Some("empty message".to_owned());
    }
    match outcome {
        Ok(a) => a.rejections.first().map(|first| {
            format!(
                "{} document(s) rejected; line {}: {}",
                a.rejections.total(),
                first.line,
                first.message
            )
        }),
        Err(e) => Some(e.to_string()),
    }
}

/// Exports consumer lag (for each assigned partition, the high watermark
/// minus the consumer's position) and the partitions owned.
fn spawn_lag_monitor(
    consumer: Arc<StreamConsumer>,
    status: KafkaStatus,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let c = Arc::clone(&consumer);
            let Ok(Some(partitions)) = tokio::task::spawn_blocking(move || lags(&c)).await else {
                continue;
            };
            KafkaLag {
                messages: partitions.iter().filter_map(|p| p.lag).sum(),
                partitions: partitions.len(),
            }
            .emit();
            status.set(partitions);
        }
    })
}

/// Each assigned partition's lag; `None` when the assignment cannot be read.
fn lags(c: &StreamConsumer) -> Option<Vec<PartitionLag>> {
    let position = c.position().ok()?;
    let mut out = Vec::new();
    for el in position.elements() {
        let lag = match el.offset().to_raw() {
            Some(pos) if pos >= 0 => c
                .fetch_watermarks(el.topic(), el.partition(), Duration::from_secs(2))
                .ok()
                .map(|(_, high)| (high - pos).max(0)),
            _ => None,
        };
        out.push(PartitionLag {
            topic: el.topic().to_owned(),
            partition: el.partition(),
            lag,
        });
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use rdkafka::Timestamp;

    use super::*;
    use crate::decode::{Arena, Decoded, Limits, decode_body};
    use crate::engine::Stats;

    fn received(payload: &[u8]) -> Received {
        Received {
            message: OwnedMessage::new(
                Some(payload.to_vec()),
                None,
                "k8s-audit".to_owned(),
                Timestamp::NotAvailable,
                0,
                7,
                None,
            ),
            cluster: None,
        }
    }

    fn accepted(body: &[u8]) -> Result<Accepted, IngestError> {
        let arena = Arena::new();
        let mut decoded = Decoded::with_limits(Limits::default());
        decode_body(body, &arena, &mut decoded);
        Ok(Accepted {
            stats: Stats::default(),
            findings: 0,
            rejections: decoded.rejections,
            consumed: body.len(),
        })
    }

    #[test]
    fn a_dead_letter_reason_counts_every_rejection_and_shows_no_value() {
        let body = b"\"data\": {\"password\": \"aHVudGVyMjpzM2NyM3Q=\"}\nx\n".repeat(50);
        let outcome = accepted(&body);
        let total = outcome.as_ref().map_or(0, |a| a.rejections.total());
        assert!(total > crate::decode::MAX_LISTED, "{total}");
        let reason = undecodable(&received(&body), &outcome).unwrap();
        assert!(
            reason.starts_with(&format!("{total} document(s) rejected; line 1: ")),
            "{reason}"
        );
        assert!(
            reason.contains("<withheld: ") && !reason.contains("aHVud"),
            "{reason}"
        );
    }

    #[test]
    fn a_message_over_the_work_budget_is_dead_lettered_naming_the_limit() {
        let refused = Err(IngestError::OverBudget {
            budget: 1 << 27,
            per_item: 64,
            documents: 1_000_000,
            rejected: 1_000_000,
        });
        assert!(refused.as_ref().is_err_and(IngestError::is_final));
        let reason = undecodable(&received(b"x\n"), &refused).unwrap();
        assert!(reason.contains("server.max_decode_work"), "{reason}");
    }
}
