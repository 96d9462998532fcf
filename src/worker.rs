//! The pipeline thread: the only writer of dedupe state, per-resource state
//! and the history store. Work arrives on one bounded queue, so batches,
//! drift accepts and retention never race each other.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::decode;
use crate::pipeline::{AcceptOutcome, Batch, Pipeline};
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

/// Most batches written in one store transaction. Waiting batches are
/// delivered together (group commit): one transaction per group instead of
/// one per batch, while each is still acknowledged only after the write.
const MAX_GROUP: usize = 16;

pub fn run(mut pipeline: Pipeline, mut sinks: Sinks, mut work: mpsc::Receiver<Work>) {
    let mut later = Vec::new();
    while let Some(item) = work.blocking_recv() {
        match item {
            Work::Batch(job) => {
                let mut group = vec![job];
                while group.len() < MAX_GROUP {
                    match work.try_recv() {
                        Ok(Work::Batch(next)) => group.push(next),
                        Ok(other) => {
                            later.push(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                batches(&mut pipeline, &mut sinks, group);
            }
            other => later.push(other),
        }
        for item in later.drain(..) {
            match item {
                Work::Batch(job) => batches(&mut pipeline, &mut sinks, vec![job]),
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
}

fn batches(pipeline: &mut Pipeline, sinks: &mut Sinks, jobs: Vec<Job>) {
    let mut merged: Option<Batch> = None;
    let mut answers = Vec::with_capacity(jobs.len());
    for job in jobs {
        let max = pipeline.config().max_events_per_batch;
        let (documents, event_count, rejections, batch) = {
            // What cloud envelopes unpack; dropped with `decoded`.
            let arena = decode::Arena::new();
            let decoded = decode::decode_bytes_in(&job.body, &arena);
            if decoded.events.len() > max {
                // Refused whole, before any state changes: the sender must split it.
                let events = decoded.events.len();
                let _ = job.reply.send(JobOutcome::TooManyEvents { events, max });
                continue;
            }
            let batch = pipeline.process(
                &decoded,
                job.cluster.as_deref(),
                job.source,
                job.source.as_str(),
            );
            (
                decoded.documents,
                decoded.events.len(),
                decoded.rejections,
                batch,
            )
        };
        answers.push((
            job,
            documents,
            event_count,
            batch.findings.len(),
            rejections,
        ));
        match &mut merged {
            Some(m) => m.absorb(batch),
            None => merged = Some(batch),
        }
    }
    let result = match &merged {
        Some(m) => pipeline.deliver(m, sinks).map_err(|e| e.to_string()),
        None => Ok(()),
    };
    for (job, documents, events, findings, rejections) in answers {
        let outcome = match &result {
            Ok(()) => JobOutcome::Accepted {
                documents,
                events,
                findings,
                rejections,
            },
            Err(e) => JobOutcome::SinkFailed(e.clone()),
        };
        events::batch_processed(events, job.received.elapsed().as_secs_f64());
        // The client may have gone away; its batch is processed all the same.
        let _ = job.reply.send(outcome);
    }
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
