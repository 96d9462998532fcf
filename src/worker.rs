//! The pipeline thread: the only writer of dedupe state, per-resource state
//! and the history store. Work arrives on one bounded queue, so batches,
//! drift accepts and retention never race each other.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::decode;
use crate::pipeline::{AcceptOutcome, Pipeline};
use crate::sinks::Sinks;
use crate::sources::webhook::{Job, JobOutcome};
use crate::telemetry::events;

pub enum Work {
    Batch(Job),
    AcceptDrift {
        id: String,
        by: String,
        reason: String,
        reply: oneshot::Sender<Result<AcceptOutcome, String>>,
    },
    Retention,
}

pub fn run(mut pipeline: Pipeline, mut sinks: Sinks, mut work: mpsc::Receiver<Work>) {
    while let Some(item) = work.blocking_recv() {
        match item {
            Work::Batch(job) => batch(&mut pipeline, &mut sinks, job),
            Work::AcceptDrift {
                id,
                by,
                reason,
                reply,
            } => {
                let outcome = pipeline
                    .accept_drift(&id, &by, &reason)
                    .map_err(|e| e.to_string());
                let _ = reply.send(outcome);
            }
            Work::Retention => retention(&mut pipeline),
        }
    }
}

fn batch(pipeline: &mut Pipeline, sinks: &mut Sinks, job: Job) {
    let decoded = decode::decode_bytes(&job.body);
    let batch = pipeline.process(
        &decoded,
        job.cluster.as_deref(),
        events::Source::Webhook,
        "webhook",
    );
    let outcome = match pipeline.deliver(&batch, sinks) {
        Ok(()) => JobOutcome::Accepted {
            documents: decoded.documents,
            events: decoded.events.len(),
            findings: batch.findings.len(),
            rejections: decoded.rejections.clone(),
        },
        Err(e) => JobOutcome::SinkFailed(e.to_string()),
    };
    events::batch_processed(decoded.events.len(), job.received.elapsed().as_secs_f64());
    // The client may have gone away; its batch is processed all the same.
    let _ = job.reply.send(outcome);
}

fn retention(pipeline: &mut Pipeline) {
    let retention = pipeline.config().history.retention;
    let Some(store) = pipeline.store_mut() else {
        return;
    };
    let cutoff = jiff::Timestamp::now().as_microsecond()
        - i64::try_from(retention.as_micros()).unwrap_or(i64::MAX / 2);
    match store.purge_before(cutoff) {
        Ok(deleted) => events::retention_ran(deleted),
        Err(e) => events::store_failed(&e),
    }
}

/// How often retention runs: often enough that the store never holds much
/// more than the retention period, rarely enough to cost nothing.
pub fn retention_interval(retention: Duration) -> Duration {
    (retention / 100).clamp(Duration::from_secs(1), Duration::from_secs(600))
}
