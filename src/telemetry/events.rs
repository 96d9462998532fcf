//! Internal events: each noteworthy thing is one function that emits both its
//! log line and its metric, so the two never drift apart.

use metrics::{counter, gauge, histogram};
use tracing::{debug, warn};

use super::metrics as m;
use crate::classify::{FindingType, IgnoreReason, Severity, Verdict};
use crate::decode::Rejection;

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

pub fn events_received(source: Source, count: usize) {
    counter!(m::EVENTS_RECEIVED, "source" => source.as_str()).increment(count as u64);
}

/// `origin` names the file or peer in the log line (never in labels).
pub fn document_rejected(source: Source, origin: &str, rejection: &Rejection) {
    counter!(m::EVENTS_REJECTED, "source" => source.as_str(), "reason" => rejection.reason.as_str())
        .increment(1);
    warn!(
        source = source.as_str(),
        origin,
        line = rejection.line,
        reason = rejection.reason.as_str(),
        message = %rejection.message,
        "Rejected a document that is not an audit event."
    );
}

pub fn event_deduplicated(source: Source, same_request: bool) {
    let reason = if same_request {
        "same_request"
    } else {
        "redelivery"
    };
    counter!(m::EVENTS_DEDUPLICATED, "source" => source.as_str(), "reason" => reason).increment(1);
}

pub fn event_classified(verdict: &Verdict) {
    counter!(m::EVENTS_CLASSIFIED, "verdict" => verdict.label()).increment(1);
    if let Verdict::Ignored(reason) = verdict {
        ignored(*reason);
    }
}

fn ignored(reason: IgnoreReason) {
    counter!(m::EVENTS_IGNORED, "reason" => reason.as_str()).increment(1);
}

pub fn finding_emitted(finding_type: FindingType, severity: Severity) {
    counter!(m::FINDINGS, "type" => finding_type.as_str(), "severity" => severity.as_str())
        .increment(1);
}

pub fn webhook_answered(code: u16) {
    counter!(m::WEBHOOK_REQUESTS, "code" => code.to_string()).increment(1);
}

pub fn batch_processed(events: usize, seconds: f64) {
    histogram!(m::BATCH_EVENTS).record(events as f64);
    histogram!(m::BATCH_PROCESSING_SECONDS).record(seconds);
    debug!(events, seconds, "Processed a batch.");
}

pub fn sink_failed(sink: &'static str, error: &dyn std::error::Error) {
    counter!(m::SINK_ERRORS, "sink" => sink).increment(1);
    warn!(sink, %error, "Failed to write findings.");
}

pub fn queue_depth(depth: usize) {
    gauge!(m::QUEUE_DEPTH).set(depth as f64);
}

pub fn changes_stored(count: usize) {
    if count > 0 {
        counter!(m::CHANGES_STORED).increment(count as u64);
    }
}

pub fn store_failed(error: &dyn std::error::Error) {
    counter!(m::STORE_ERRORS).increment(1);
    warn!(%error, "Failed to write history.");
}

pub fn open_drifts(count: usize) {
    gauge!(m::DRIFTS_OPEN).set(count as f64);
}

pub fn drift_reconciled(seconds: f64) {
    histogram!(m::DRIFT_RECONCILE_SECONDS).record(seconds);
}

pub fn retention_ran(deleted: usize) {
    counter!(m::RETENTION_DELETED).increment(deleted as u64);
    if deleted > 0 {
        tracing::info!(deleted, "Deleted history past retention.");
    }
}

pub fn kafka_delivery_failed(count: usize) {
    counter!(m::KAFKA_DELIVERY_ERRORS).increment(count as u64);
    warn!(
        count,
        "Kafka did not acknowledge findings; the batch will be retried."
    );
}

pub fn kafka_message(result: &'static str) {
    counter!(m::KAFKA_MESSAGES, "result" => result).increment(1);
}

pub fn kafka_lag(messages: i64) {
    gauge!(m::KAFKA_CONSUMER_LAG).set(messages as f64);
}

pub fn kafka_error(operation: &'static str, error: &dyn std::error::Error) {
    counter!(m::KAFKA_ERRORS, "operation" => operation).increment(1);
    warn!(operation, %error, "Kafka operation failed; retrying.");
}

pub fn auth_refused(reason: &'static str) {
    counter!(m::AUTH_REFUSED, "reason" => reason).increment(1);
    debug!(reason, "Refused an unauthenticated caller.");
}

pub fn tls_reloaded(ok: bool) {
    counter!(m::TLS_RELOADS, "result" => if ok { "ok" } else { "error" }).increment(1);
}
