//! Internal events (Vector's instrumentation shape): each noteworthy thing
//! that happens is one struct whose [`Emit::emit`] writes its log line and
//! its metric together, so the two never drift apart. Counters are updated
//! once per batch where a batch has many events; log lines that a client or
//! a failing dependency can repeat are rate limited.

use metrics::{counter, gauge, histogram};
use tracing::{debug, error, info, warn};

use super::metrics as m;
use super::rate_limit::RateLimit;
use crate::classify::IgnoreReason;
use crate::classify::quiet::Quiet;
use crate::decode::Rejections;
use crate::model::{FindingType, Severity, VerdictKind};

pub trait Emit {
    fn emit(self);
}

/// Where events came from; the `source` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Webhook,
    Replay,
    Kafka,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Webhook => "webhook",
            Source::Replay => "replay",
            Source::Kafka => "kafka",
        }
    }
}

/// What one body (a webhook batch, a Kafka message, a chunk of a file) held.
pub struct BodyDecoded<'a> {
    pub source: Source,
    /// The file or peer, for the log line only (never a label).
    pub origin: &'a str,
    pub events: usize,
    pub rejections: &'a Rejections,
}

/// Rejected documents logged per body; the rest are summed up in one line.
pub const MAX_REJECTIONS_LOGGED: usize = 3;

static REJECTIONS: RateLimit = RateLimit::new();

impl Emit for BodyDecoded<'_> {
    fn emit(self) {
        let source = self.source.as_str();
        counter!(m::EVENTS_RECEIVED, "source" => source).increment(self.events as u64);
        if self.rejections.total() == 0 {
            return;
        }
        for (reason, n) in self.rejections.by_reason() {
            if n > 0 {
                counter!(m::EVENTS_REJECTED, "source" => source, "reason" => reason.as_str())
                    .increment(n as u64);
            }
        }
        let Some(suppressed) = REJECTIONS.allow() else {
            return;
        };
        for r in self.rejections.iter().take(MAX_REJECTIONS_LOGGED) {
            warn!(
                source,
                origin = self.origin,
                line = r.line,
                reason = r.reason.as_str(),
                message = %r.message,
                suppressed,
                "Rejected a document that is not an audit event."
            );
        }
        if self.rejections.total() > MAX_REJECTIONS_LOGGED {
            warn!(
                source,
                origin = self.origin,
                rejected = self.rejections.total(),
                logged = MAX_REJECTIONS_LOGGED,
                last_line = self.rejections.last_line(),
                "Rejected more documents in the same body; only the first are logged."
            );
        }
    }
}

/// The judgement of one batch, counted once per batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Judged {
    pub verdicts: [u64; VerdictKind::ALL.len()],
    pub ignored: [u64; IgnoreReason::ALL.len()],
    pub redeliveries: u64,
    pub same_request: u64,
    pub findings: [[u64; Severity::ALL.len()]; FindingType::ALL.len()],
    /// Allowed writes by quiet rule ([`Quiet::index`]), then one slot for
    /// every configured and pack allowance (their names are not labels).
    pub allowed: [u64; Quiet::ALL.len() + 1],
}

impl Judged {
    pub fn add(&mut self, o: &Judged) {
        fn sum<const N: usize>(a: &mut [u64; N], b: &[u64; N]) {
            for (x, y) in a.iter_mut().zip(b) {
                *x += y;
            }
        }
        sum(&mut self.verdicts, &o.verdicts);
        sum(&mut self.ignored, &o.ignored);
        sum(&mut self.allowed, &o.allowed);
        self.redeliveries += o.redeliveries;
        self.same_request += o.same_request;
        for (a, b) in self.findings.iter_mut().zip(&o.findings) {
            sum(a, b);
        }
    }

    pub fn verdict(&self, kind: VerdictKind) -> u64 {
        self.verdicts[kind as usize]
    }

    pub fn findings_of(&self, t: FindingType) -> u64 {
        self.findings[t.index()].iter().sum()
    }

    pub fn findings_total(&self) -> u64 {
        self.findings.iter().flatten().sum()
    }
}

/// Counted once the batch is accepted: a refused batch comes back and would
/// be counted twice.
pub struct BatchJudged<'a> {
    pub source: Source,
    pub judged: &'a Judged,
}

impl Emit for BatchJudged<'_> {
    fn emit(self) {
        let source = self.source.as_str();
        let j = self.judged;
        for (kind, n) in VerdictKind::ALL.iter().zip(j.verdicts) {
            if n > 0 {
                counter!(m::EVENTS_CLASSIFIED, "verdict" => kind.as_str()).increment(n);
            }
        }
        for (reason, n) in IgnoreReason::ALL.iter().zip(j.ignored) {
            if n > 0 {
                counter!(m::EVENTS_IGNORED, "reason" => reason.as_str()).increment(n);
            }
        }
        let rules = Quiet::ALL.iter().map(|q| q.as_str()).chain(["allowance"]);
        for (rule, n) in rules.zip(j.allowed) {
            if n > 0 {
                counter!(m::EVENTS_ALLOWED, "rule" => rule).increment(n);
            }
        }
        for (reason, n) in [
            ("redelivery", j.redeliveries),
            ("same_request", j.same_request),
        ] {
            if n > 0 {
                counter!(m::EVENTS_DEDUPLICATED, "source" => source, "reason" => reason)
                    .increment(n);
            }
        }
        for (t, row) in FindingType::ALL.iter().zip(&j.findings) {
            for (s, n) in Severity::ALL.iter().zip(row) {
                if *n > 0 {
                    counter!(m::FINDINGS, "type" => t.as_str(), "severity" => s.as_str())
                        .increment(*n);
                }
            }
        }
    }
}

pub struct WebhookAnswered {
    pub code: u16,
}

impl Emit for WebhookAnswered {
    fn emit(self) {
        counter!(m::WEBHOOK_REQUESTS, "code" => code_label(self.code)).increment(1);
    }
}

/// Status codes as labels without an allocation per request.
fn code_label(code: u16) -> &'static str {
    match code {
        200 => "200",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        408 => "408",
        413 => "413",
        415 => "415",
        422 => "422",
        429 => "429",
        500 => "500",
        503 => "503",
        _ => "other",
    }
}

/// A batch durably accepted: the latency histogram counts only these.
pub struct BatchAccepted {
    pub events: usize,
    pub seconds: f64,
}

impl Emit for BatchAccepted {
    fn emit(self) {
        histogram!(m::BATCH_EVENTS).record(self.events as f64);
        histogram!(m::BATCH_PROCESSING_SECONDS).record(self.seconds);
        debug!(
            events = self.events,
            seconds = self.seconds,
            "Accepted a batch."
        );
    }
}

/// Why a batch was not accepted; the `reason` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusedBecause {
    Sink,
    Store,
    TooManyEvents,
    DecodeBudget,
    QueueFull,
    Stopped,
}

impl RefusedBecause {
    pub fn as_str(self) -> &'static str {
        match self {
            RefusedBecause::Sink => "sink",
            RefusedBecause::Store => "store",
            RefusedBecause::TooManyEvents => "too_many_events",
            RefusedBecause::DecodeBudget => "decode_budget",
            RefusedBecause::QueueFull => "queue_full",
            RefusedBecause::Stopped => "stopped",
        }
    }
}

static REFUSALS: RateLimit = RateLimit::new();

pub struct BatchRefused<'a> {
    pub source: Source,
    pub because: RefusedBecause,
    pub message: &'a str,
}

impl Emit for BatchRefused<'_> {
    fn emit(self) {
        counter!(m::BATCHES_REFUSED, "source" => self.source.as_str(), "reason" => self.because.as_str())
            .increment(1);
        if let Some(suppressed) = REFUSALS.allow() {
            warn!(
                source = self.source.as_str(),
                reason = self.because.as_str(),
                message = self.message,
                suppressed,
                "Refused a batch; nothing of it was acknowledged."
            );
        }
    }
}

static SINK_ERRORS: RateLimit = RateLimit::new();

pub struct SinkFailed<'a> {
    pub sink: &'static str,
    /// `retriable` or `final`.
    pub kind: &'static str,
    pub error: &'a dyn std::error::Error,
}

impl Emit for SinkFailed<'_> {
    fn emit(self) {
        counter!(m::SINK_ERRORS, "sink" => self.sink, "kind" => self.kind).increment(1);
        if let Some(suppressed) = SINK_ERRORS.allow() {
            error!(sink = self.sink, kind = self.kind, error = %self.error, suppressed, "Failed to write findings.");
        }
    }
}

pub struct QueueDepth {
    pub batches: usize,
}

impl Emit for QueueDepth {
    fn emit(self) {
        gauge!(m::QUEUE_DEPTH).set(self.batches as f64);
    }
}

pub struct ChangesStored {
    pub count: usize,
}

impl Emit for ChangesStored {
    fn emit(self) {
        if self.count > 0 {
            counter!(m::CHANGES_STORED).increment(self.count as u64);
        }
    }
}

static STORE_ERRORS: RateLimit = RateLimit::new();

pub struct StoreFailed<'a> {
    pub error: &'a dyn std::error::Error,
}

impl Emit for StoreFailed<'_> {
    fn emit(self) {
        counter!(m::STORE_ERRORS).increment(1);
        if let Some(suppressed) = STORE_ERRORS.allow() {
            error!(error = %self.error, suppressed, "Failed to write history.");
        }
    }
}

static CORRUPT_ROWS: RateLimit = RateLimit::new();

/// A stored row that cannot be read whole; the query shows what it can.
pub struct StoreRowCorrupt<'a> {
    /// `changes` or `drifts`.
    pub table: &'static str,
    pub problem: &'a str,
}

impl Emit for StoreRowCorrupt<'_> {
    fn emit(self) {
        counter!(m::STORE_CORRUPT_ROWS, "table" => self.table).increment(1);
        if let Some(suppressed) = CORRUPT_ROWS.allow() {
            warn!(
                table = self.table,
                problem = self.problem,
                suppressed,
                "Read a history row that is corrupt; showing what its columns hold."
            );
        }
    }
}

/// The store stopped being able to commit, or can again. Logged on each
/// change only: the refusals in between are logged (rate limited) by
/// [`BatchRefused`] and [`StoreFailed`].
pub struct StoreHealthChanged<'a> {
    pub problem: Option<&'a crate::store::Problem>,
}

impl Emit for StoreHealthChanged<'_> {
    fn emit(self) {
        gauge!(m::STORE_READY).set(if self.problem.is_none() { 1.0 } else { 0.0 });
        match self.problem {
            Some(p) => error!(
                problem = p.kind.as_str(),
                why = %p.message,
                "History store cannot commit; batches are refused and /readyz is not ready until it can."
            ),
            None => info!("History store commits again; /readyz is ready."),
        }
    }
}

/// The scheduled check of the whole store file ran.
pub struct StoreVerified<'a> {
    /// The first problem found; the health change logs it.
    pub problem: Option<&'a str>,
    pub seconds: f64,
}

impl Emit for StoreVerified<'_> {
    fn emit(self) {
        debug!(
            seconds = self.seconds,
            ok = self.problem.is_none(),
            "Checked the history store whole (PRAGMA quick_check)."
        );
    }
}

/// What a deleted or replaced database file held, copied beside its path.
pub struct StoreRescued<'a> {
    pub from: &'a std::path::Path,
    pub to: &'a std::path::Path,
}

impl Emit for StoreRescued<'_> {
    fn emit(self) {
        error!(
            from = %self.from.display(),
            copy = %self.to.display(),
            "The history store's file was deleted or replaced while driftwatch ran; everything it held is copied. Move the copy to the store's path to carry on with it."
        );
    }
}

/// The writer reopened the store: a file put back, a WAL replaced, damage
/// repaired.
pub struct StoreReopened<'a> {
    pub path: &'a std::path::Path,
    /// The copy of the file it replaced, when it replaced one.
    pub rescued: Option<&'a std::path::Path>,
}

impl Emit for StoreReopened<'_> {
    fn emit(self) {
        match self.rescued {
            Some(copy) => warn!(
                path = %self.path.display(),
                old_file_copy = %copy.display(),
                "Reopened the history store on the file now at its path."
            ),
            None => info!(path = %self.path.display(), "Reopened the history store."),
        }
    }
}

pub struct StoreOpened<'a> {
    /// The SQLite file, or the PostgreSQL URL without its password.
    pub at: &'a dyn std::fmt::Display,
    pub backend: &'static str,
}

impl Emit for StoreOpened<'_> {
    fn emit(self) {
        gauge!(m::STORE_READY).set(1.0);
        info!(path = %self.at, backend = self.backend, "History store open.");
    }
}

pub struct DriftsOpen {
    pub count: usize,
    pub persisting: usize,
    /// Persisting longer than `drifts.persisting_alert_after`.
    pub overdue: usize,
    /// How many became overdue since the last report: warned once each.
    pub newly_overdue: usize,
    pub oldest_persisting_seconds: f64,
    pub alert_after: std::time::Duration,
}

impl Emit for DriftsOpen {
    fn emit(self) {
        gauge!(m::DRIFTS_OPEN).set(self.count as f64);
        gauge!(m::DRIFTS_PERSISTING).set(self.persisting as f64);
        gauge!(m::DRIFTS_PERSISTING_OVERDUE).set(self.overdue as f64);
        gauge!(m::DRIFT_PERSISTING_OLDEST_SECONDS).set(self.oldest_persisting_seconds);
        if self.newly_overdue > 0 {
            warn!(
                drifts = self.newly_overdue,
                overdue = self.overdue,
                after_seconds = self.alert_after.as_secs(),
                "Drifts persisting past drifts.persisting_alert_after: a pipeline wrote the object and left out-of-band fields in place; list them with GET /api/v1/drifts?state=persisting."
            );
        }
    }
}

pub struct DriftReconciled {
    pub seconds: f64,
}

impl Emit for DriftReconciled {
    fn emit(self) {
        histogram!(m::DRIFT_RECONCILE_SECONDS).record(self.seconds);
    }
}

pub struct RetentionRan {
    pub deleted: usize,
}

impl Emit for RetentionRan {
    fn emit(self) {
        counter!(m::RETENTION_DELETED).increment(self.deleted as u64);
        if self.deleted > 0 {
            info!(deleted = self.deleted, "Deleted history past retention.");
        }
    }
}

pub struct KafkaDeliveryFailed {
    pub count: usize,
}

impl Emit for KafkaDeliveryFailed {
    fn emit(self) {
        counter!(m::KAFKA_DELIVERY_ERRORS).increment(self.count as u64);
    }
}

/// What happened to one consumed message; the `result` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KafkaResult {
    Processed,
    DeadLettered,
    /// Undecodable, and no dead-letter topic to put it in.
    Skipped,
}

static SKIPPED: RateLimit = RateLimit::new();

pub struct KafkaMessage<'a> {
    pub result: KafkaResult,
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    /// Why it was dead-lettered or skipped.
    pub reason: Option<&'a str>,
}

impl Emit for KafkaMessage<'_> {
    fn emit(self) {
        let result = match self.result {
            KafkaResult::Processed => "processed",
            KafkaResult::DeadLettered => "dead_lettered",
            KafkaResult::Skipped => "skipped",
        };
        counter!(m::KAFKA_MESSAGES, "result" => result).increment(1);
        if self.result == KafkaResult::Skipped
            && let Some(suppressed) = SKIPPED.allow()
        {
            warn!(
                topic = self.topic,
                partition = self.partition,
                offset = self.offset,
                reason = self.reason.unwrap_or(""),
                suppressed,
                "Undecodable Kafka message and no dead_letter_topic configured; skipping it."
            );
        }
    }
}

pub struct KafkaLag {
    pub messages: i64,
    pub partitions: usize,
}

impl Emit for KafkaLag {
    fn emit(self) {
        gauge!(m::KAFKA_CONSUMER_LAG).set(self.messages as f64);
        gauge!(m::KAFKA_PARTITIONS_ASSIGNED).set(self.partitions as f64);
    }
}

/// The reorder hold after a release.
pub struct KafkaHeld {
    pub held: usize,
    /// Let go before due: the hold was at its bound.
    pub early: usize,
}

impl Emit for KafkaHeld {
    fn emit(self) {
        gauge!(m::KAFKA_HELD_MESSAGES).set(self.held as f64);
        if self.early > 0 {
            counter!(m::KAFKA_HELD_EARLY).increment(self.early as u64);
            if let Some(suppressed) = KAFKA_ERRORS.allow() {
                warn!(
                    messages = self.early,
                    suppressed,
                    "Kafka reorder hold full (sources.kafka.reorder_max_bytes): the oldest messages were judged before their window ended."
                );
            }
        }
    }
}

/// Held messages of partitions a rebalance moved to another replica.
pub struct KafkaHeldDropped {
    pub messages: usize,
}

impl Emit for KafkaHeldDropped {
    fn emit(self) {
        info!(
            messages = self.messages,
            "Partitions moved to another replica: their held messages are left to it."
        );
    }
}

static KAFKA_ERRORS: RateLimit = RateLimit::new();

pub struct KafkaError<'a> {
    /// `consume`, `store_offset`, `dead_letter`, `commit`.
    pub operation: &'static str,
    pub error: &'a dyn std::error::Error,
}

impl Emit for KafkaError<'_> {
    fn emit(self) {
        counter!(m::KAFKA_ERRORS, "operation" => self.operation).increment(1);
        if let Some(suppressed) = KAFKA_ERRORS.allow() {
            warn!(operation = self.operation, error = %self.error, suppressed, "Kafka operation failed; retrying.");
        }
    }
}

pub struct KafkaConsuming<'a> {
    pub brokers: &'a str,
    pub topics: &'a [String],
    pub group: &'a str,
}

impl Emit for KafkaConsuming<'_> {
    fn emit(self) {
        info!(brokers = self.brokers, topics = ?self.topics, group = self.group, "Consuming audit events from Kafka.");
    }
}

pub struct KafkaOffsetsCommitted<'a> {
    pub error: Option<&'a dyn std::error::Error>,
    /// No offset was stored since the last commit: nothing to commit.
    pub nothing: bool,
}

impl Emit for KafkaOffsetsCommitted<'_> {
    fn emit(self) {
        match self.error {
            None if self.nothing => info!("No Kafka offsets to commit."),
            None => info!("Committed Kafka offsets."),
            Some(error) => warn!(%error, "Final Kafka offset commit did not complete."),
        }
    }
}

pub struct AuthRefused {
    pub reason: &'static str,
}

impl Emit for AuthRefused {
    fn emit(self) {
        counter!(m::AUTH_REFUSED, "reason" => self.reason).increment(1);
        debug!(reason = self.reason, "Refused an unauthenticated caller.");
    }
}

/// A watched file (certificate, key, CA, tokens) changed.
pub struct FileReloaded<'a> {
    /// `tls` or `tokens`: the metric only exists for TLS.
    pub what: &'static str,
    pub path: &'a std::path::Path,
    pub error: Option<&'a dyn std::error::Error>,
}

impl Emit for FileReloaded<'_> {
    fn emit(self) {
        if self.what == "tls" {
            let result = if self.error.is_none() { "ok" } else { "error" };
            counter!(m::TLS_RELOADS, "result" => result).increment(1);
        }
        match self.error {
            None => info!(what = self.what, path = %self.path.display(), "Reloaded."),
            Some(error) => warn!(
                what = self.what,
                path = %self.path.display(),
                %error,
                "File changed but cannot be loaded; keeping the previous version."
            ),
        }
    }
}

static ACCEPT_ERRORS: RateLimit = RateLimit::new();

pub struct AcceptFailed<'a> {
    pub error: &'a std::io::Error,
}

impl Emit for AcceptFailed<'_> {
    fn emit(self) {
        if let Some(suppressed) = ACCEPT_ERRORS.allow() {
            warn!(error = %self.error, suppressed, "Accept failed.");
        }
    }
}

/// A connection that ended with an error, or a TLS handshake refused.
pub struct ConnectionFailed<'a> {
    pub peer: std::net::SocketAddr,
    pub during: &'static str,
    pub error: &'a dyn std::fmt::Display,
}

impl Emit for ConnectionFailed<'_> {
    fn emit(self) {
        debug!(peer = %self.peer, during = self.during, error = %self.error, "Connection ended with an error.");
    }
}

/// Every connection slot is taken: new connections wait in the backlog.
pub struct ConnectionLimitReached {
    pub max: usize,
}

static CONNECTION_LIMIT: RateLimit = RateLimit::new();

impl Emit for ConnectionLimitReached {
    fn emit(self) {
        counter!(m::CONNECTION_LIMIT_WAITS).increment(1);
        if let Some(suppressed) = CONNECTION_LIMIT.allow() {
            warn!(
                max = self.max,
                suppressed,
                "Every connection slot is taken (server.max_connections); new connections wait in the listen backlog."
            );
        }
    }
}

pub struct ConnectionsOpen {
    pub open: usize,
}

impl Emit for ConnectionsOpen {
    fn emit(self) {
        gauge!(m::HTTP_CONNECTIONS).set(self.open as f64);
    }
}

/// A connection with no request in progress for the header timeout was
/// closed, so idle clients cannot hold the connection slots.
pub struct ConnectionIdle {
    pub peer: std::net::SocketAddr,
}

impl Emit for ConnectionIdle {
    fn emit(self) {
        debug!(peer = %self.peer, "Closing a connection with no request in progress.");
    }
}

pub struct InflightBodyBytes {
    pub bytes: usize,
}

impl Emit for InflightBodyBytes {
    fn emit(self) {
        gauge!(m::INFLIGHT_BODY_BYTES).set(self.bytes as f64);
    }
}

/// Why a request body was refused while being read; the `reason` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyRefusal {
    /// Not received within `server.body_read_timeout` (408).
    Deadline,
    /// Past `server.max_body_bytes`, or the query API's cap (413).
    TooLarge,
    /// The memory budget for bodies in flight stayed spent (503).
    Budget,
}

impl BodyRefusal {
    pub fn as_str(self) -> &'static str {
        match self {
            BodyRefusal::Deadline => "deadline",
            BodyRefusal::TooLarge => "too_large",
            BodyRefusal::Budget => "budget",
        }
    }
}

static BODY_REFUSALS: RateLimit = RateLimit::new();

pub struct BodyRefused {
    pub reason: BodyRefusal,
}

impl Emit for BodyRefused {
    fn emit(self) {
        let reason = self.reason.as_str();
        counter!(m::BODIES_REFUSED, "reason" => reason).increment(1);
        if let Some(suppressed) = BODY_REFUSALS.allow() {
            warn!(
                reason,
                suppressed, "Refused a request body while reading it."
            );
        }
    }
}

pub struct Listening<'a> {
    pub url: &'a str,
    pub pipelines: usize,
}

impl Emit for Listening<'_> {
    fn emit(self) {
        info!(
            url = self.url,
            pipelines = self.pipelines,
            "Listening: POST audit batches to {}/audit/webhook",
            self.url
        );
    }
}

/// Shutdown began, connections outlived the grace period, or it finished.
pub struct Shutdown {
    pub stage: ShutdownStage,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownStage {
    Signalled,
    GraceExceeded(std::time::Duration),
    EngineDidNotStop,
    Stopped,
}

impl Emit for Shutdown {
    fn emit(self) {
        match self.stage {
            ShutdownStage::Signalled => info!("Shutting down: finishing in-flight batches."),
            ShutdownStage::GraceExceeded(grace) => {
                warn!(
                    ?grace,
                    "Connections still open after the grace period; closing them."
                )
            }
            ShutdownStage::EngineDidNotStop => error!("The engine thread did not stop cleanly."),
            ShutdownStage::Stopped => info!("Stopped."),
        }
    }
}

// Network sinks (HTTP, syslog) and their outboxes.

static OUTBOX_DROPS: RateLimit = RateLimit::new();

/// Records a network sink could not queue: its outbox is full because the
/// receiver has been down or slow for long.
pub struct OutboxFull {
    pub sink: &'static str,
    pub dropped: usize,
    pub limit: u64,
}

impl Emit for OutboxFull {
    fn emit(self) {
        counter!(m::SINK_DROPPED_FINDINGS, "sink" => self.sink).increment(self.dropped as u64);
        if let Some(suppressed) = OUTBOX_DROPS.allow() {
            error!(
                sink = self.sink,
                dropped = self.dropped,
                outbox_max_bytes = self.limit,
                suppressed,
                "Dropped findings: the sink's outbox is full (its receiver is down or too slow); they will never reach it."
            );
        }
    }
}

/// A network sink's outbox depth, after each append and each delivery.
pub struct OutboxDepth {
    pub sink: &'static str,
    pub records: u64,
    pub bytes: u64,
    /// `None` when the age is not known at this point (an append).
    pub oldest_seconds: Option<f64>,
}

impl Emit for OutboxDepth {
    fn emit(self) {
        gauge!(m::SINK_OUTBOX_RECORDS, "sink" => self.sink).set(self.records as f64);
        gauge!(m::SINK_OUTBOX_BYTES, "sink" => self.sink).set(self.bytes as f64);
        if let Some(age) = self.oldest_seconds {
            gauge!(m::SINK_OUTBOX_OLDEST_SECONDS, "sink" => self.sink).set(age);
        }
    }
}

pub struct SinkDelivered {
    pub sink: &'static str,
    pub records: usize,
}

impl Emit for SinkDelivered {
    fn emit(self) {
        counter!(m::SINK_SENT_RECORDS, "sink" => self.sink).increment(self.records as u64);
        debug!(
            sink = self.sink,
            records = self.records,
            "Delivered records."
        );
    }
}

static SEND_RETRIES: RateLimit = RateLimit::new();

/// A send that failed and will be retried.
pub struct SinkSendRetried<'a> {
    pub sink: &'static str,
    pub error: &'a str,
    pub retry_in: std::time::Duration,
}

impl Emit for SinkSendRetried<'_> {
    fn emit(self) {
        counter!(m::SINK_RETRIES, "sink" => self.sink).increment(1);
        if let Some(suppressed) = SEND_RETRIES.allow() {
            warn!(
                sink = self.sink,
                error = self.error,
                retry_in = ?self.retry_in,
                suppressed,
                "Could not deliver to the sink's receiver; will retry, findings wait in the outbox."
            );
        }
    }
}

static SEND_REFUSALS: RateLimit = RateLimit::new();

/// The receiver refused a batch for good (a 4xx other than 408/429): it
/// is dropped, so that one bad record does not stop the sink forever.
pub struct SinkBatchRefused<'a> {
    pub sink: &'static str,
    pub error: &'a str,
    pub records: usize,
}

impl Emit for SinkBatchRefused<'_> {
    fn emit(self) {
        counter!(m::SINK_REFUSED_RECORDS, "sink" => self.sink).increment(self.records as u64);
        if let Some(suppressed) = SEND_REFUSALS.allow() {
            error!(
                sink = self.sink,
                error = self.error,
                records = self.records,
                suppressed,
                "The sink's receiver refused a batch; it is dropped and will not be sent again. Fix the sink's config or the receiver."
            );
        }
    }
}

static OUTBOX_DAMAGE: RateLimit = RateLimit::new();

/// A frame in an outbox segment that does not read back whole (disk
/// damage, not a torn tail): the rest of that segment is skipped.
pub struct OutboxDamaged<'a> {
    pub dir: &'a std::path::Path,
    pub segment: u64,
    pub offset: u64,
}

impl Emit for OutboxDamaged<'_> {
    fn emit(self) {
        counter!(m::SINK_OUTBOX_DAMAGED).increment(1);
        if let Some(suppressed) = OUTBOX_DAMAGE.allow() {
            error!(
                dir = %self.dir.display(),
                segment = self.segment,
                offset = self.offset,
                suppressed,
                "Skipped the rest of a damaged outbox segment; its records are lost."
            );
        }
    }
}

/// How one live-object lookup ended; the `outcome` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Hit,
    MissOk,
    NotFound,
    Forbidden,
    Timeout,
    Error,
    CircuitOpen,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Hit => "hit",
            Outcome::MissOk => "miss_ok",
            Outcome::NotFound => "not_found",
            Outcome::Forbidden => "forbidden",
            Outcome::Timeout => "timeout",
            Outcome::Error => "error",
            Outcome::CircuitOpen => "circuit_open",
        }
    }
}

/// A request to the API server for an object's metadata answered (a cache
/// hit has no duration).
pub struct ContextLookup {
    pub outcome: Outcome,
    pub seconds: f64,
}

static CONTEXT_ERRORS: RateLimit = RateLimit::new();

impl ContextLookup {
    /// A record's context answered from the cache alone.
    pub fn hit() {
        counter!(m::CONTEXT_LOOKUPS, "outcome" => Outcome::Hit.as_str()).increment(1);
    }

    /// A request that failed for a reason that says nothing about the
    /// object (a 500, a refused connection, a request past its timeout).
    pub fn failed(seconds: f64, resource: &str, error: &dyn std::fmt::Display) {
        ContextLookup {
            outcome: Outcome::Error,
            seconds,
        }
        .emit();
        if let Some(suppressed) = CONTEXT_ERRORS.allow() {
            warn!(
                resource,
                %error,
                suppressed,
                "Could not read an object's metadata from the Kubernetes API; its finding is marked context unavailable."
            );
        }
    }
}

impl Emit for ContextLookup {
    fn emit(self) {
        counter!(m::CONTEXT_LOOKUPS, "outcome" => self.outcome.as_str()).increment(1);
        histogram!(m::CONTEXT_LOOKUP_SECONDS).record(self.seconds);
        if self.outcome == Outcome::Forbidden
            && let Some(suppressed) = CONTEXT_ERRORS.allow()
        {
            warn!(
                suppressed,
                "The Kubernetes API refused driftwatch an object's metadata (403); see the ClusterRole in deploy/kubernetes/20-rbac.yaml."
            );
        }
    }
}

/// A finding went out without its context: the lookup was not back by
/// `kubernetes.lookup_timeout` (it goes on and fills the cache).
pub struct ContextTimedOut;

impl Emit for ContextTimedOut {
    fn emit(self) {
        counter!(m::CONTEXT_LOOKUPS, "outcome" => Outcome::Timeout.as_str()).increment(1);
    }
}

/// A finding went out without its context at once: its cluster's breaker
/// is open, so no lookup was attempted.
pub struct ContextCircuitOpen;

impl Emit for ContextCircuitOpen {
    fn emit(self) {
        counter!(m::CONTEXT_LOOKUPS, "outcome" => Outcome::CircuitOpen.as_str()).increment(1);
    }
}

/// A cluster's circuit breaker changed state (see `context::breaker`).
/// `cluster` is a configured name or `default`: a bounded label.
pub enum ContextBreaker<'a> {
    Opened {
        cluster: &'a str,
        failures: usize,
        open_for: std::time::Duration,
    },
    /// The half-open probe failed: open for another cooldown.
    ProbeFailed {
        cluster: &'a str,
    },
    Closed {
        cluster: &'a str,
    },
}

static BREAKER_CHANGES: RateLimit = RateLimit::new();

impl Emit for ContextBreaker<'_> {
    fn emit(self) {
        match self {
            ContextBreaker::Opened {
                cluster,
                failures,
                open_for,
            } => {
                gauge!(m::CONTEXT_BREAKER_OPEN, "cluster" => cluster.to_owned()).set(1.0);
                if let Some(suppressed) = BREAKER_CHANGES.allow() {
                    warn!(
                        cluster,
                        failures,
                        open_for_seconds = open_for.as_secs_f64(),
                        suppressed,
                        "The Kubernetes API of a cluster stopped answering; its findings go out without context (circuit_open) until a probe lookup succeeds."
                    );
                }
            }
            ContextBreaker::ProbeFailed { cluster } => {
                gauge!(m::CONTEXT_BREAKER_OPEN, "cluster" => cluster.to_owned()).set(1.0);
                debug!(
                    cluster,
                    "The probe lookup of an unavailable cluster failed; its breaker stays open."
                );
            }
            ContextBreaker::Closed { cluster } => {
                gauge!(m::CONTEXT_BREAKER_OPEN, "cluster" => cluster.to_owned()).set(0.0);
                if let Some(suppressed) = BREAKER_CHANGES.allow() {
                    info!(
                        cluster,
                        suppressed,
                        "The Kubernetes API of a cluster answers again; live-object lookups resumed."
                    );
                }
            }
        }
    }
}

pub struct ContextCacheEntries {
    pub entries: usize,
}

impl Emit for ContextCacheEntries {
    fn emit(self) {
        gauge!(m::CONTEXT_CACHE_ENTRIES).set(self.entries as f64);
    }
}

/// A pipeline inventory watch failed and relists after a backoff (the CRD
/// is not installed, RBAC refuses `list`, the connection dropped, a 410).
/// `kind` is one of three; `cluster` a configured name or `default`.
pub struct ContextWatchRestart<'a> {
    pub kind: &'static str,
    pub cluster: &'a str,
    pub error: &'a dyn std::fmt::Display,
}

static WATCH_RESTARTS: RateLimit = RateLimit::new();

impl Emit for ContextWatchRestart<'_> {
    fn emit(self) {
        counter!(m::CONTEXT_WATCH_RESTARTS, "kind" => self.kind).increment(1);
        if let Some(suppressed) = WATCH_RESTARTS.allow() {
            warn!(
                kind = self.kind,
                cluster = self.cluster,
                error = %self.error,
                suppressed,
                "A pipeline inventory watch failed; it retries with backoff. Until it lists, objects without markers are not known as managed (is the CRD installed, and may driftwatch list it?)."
            );
        }
    }
}

/// Objects a cluster's pipeline inventories list, after each change.
pub struct ContextInventory<'a> {
    pub cluster: &'a str,
    pub objects: usize,
}

impl Emit for ContextInventory<'_> {
    fn emit(self) {
        gauge!(m::CONTEXT_INVENTORY_OBJECTS, "cluster" => self.cluster.to_owned())
            .set(self.objects as f64);
    }
}

/// A drift's live values read on request (`?live=true`); `outcome` is
/// `live` or one of the fixed reasons.
pub struct ContextLiveRead {
    pub outcome: &'static str,
}

impl Emit for ContextLiveRead {
    fn emit(self) {
        counter!(m::CONTEXT_LIVE_READS, "outcome" => self.outcome).increment(1);
    }
}

/// One admission review answered. Denials and break-glass passes are
/// logged (rate limited); every outcome is counted.
pub struct AdmissionReviewed<'a> {
    pub outcome: &'static str,
    pub seconds: f64,
    pub object: &'a str,
    pub user: &'a str,
    pub message: Option<&'a str>,
}

static ADMISSION_LOGS: RateLimit = RateLimit::new();

impl Emit for AdmissionReviewed<'_> {
    fn emit(self) {
        counter!(m::ADMISSION_REVIEWS, "outcome" => self.outcome).increment(1);
        histogram!(m::ADMISSION_REVIEW_SECONDS).record(self.seconds);
        if !matches!(self.outcome, "denied" | "break_glass" | "invalid") {
            return;
        }
        if let Some(suppressed) = ADMISSION_LOGS.allow() {
            info!(
                outcome = self.outcome,
                object = self.object,
                user = self.user,
                message = self.message.unwrap_or(""),
                suppressed,
                "Admission review answered."
            );
        }
    }
}

/// A review's changes handed over to (or lost before) its audit event.
pub struct AdmissionHandoff {
    pub outcome: &'static str,
}

impl AdmissionHandoff {
    pub fn count(self, n: u64) {
        counter!(m::ADMISSION_HANDOFFS, "outcome" => self.outcome).increment(n);
    }
}

impl Emit for AdmissionHandoff {
    fn emit(self) {
        self.count(1);
    }
}

/// A finding on a write that no driftwatch admission review saw.
pub struct AdmissionUnreviewed;

impl Emit for AdmissionUnreviewed {
    fn emit(self) {
        counter!(m::ADMISSION_UNREVIEWED).increment(1);
    }
}
