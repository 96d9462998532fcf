//! The unit of work every source hands the engine, and what it gets back.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use crate::decode::Rejections;
use crate::sinks::SinkError;
use crate::store::StoreError;
use crate::telemetry::events::{RefusedBecause, Source};

use super::stats::Stats;

/// Bytes from a source: a webhook body, a Kafka message, a chunk of a file.
#[derive(Debug)]
pub struct Input {
    pub body: Bytes,
    /// The cluster the source says the events belong to; the config's
    /// `cluster` otherwise.
    pub cluster: Option<String>,
    pub source: Source,
    /// The file or peer, for log lines.
    pub origin: String,
    pub received: Instant,
    pub framing: Framing,
}

/// How much of a larger input a body is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// A whole body: may be gzip data, an envelope, anything decode takes.
    Whole,
    /// A part of a file, cut after a newline. Lines are numbered from
    /// `first_line`; unless `last`, a document cut by the end of the part is
    /// left for the next one (see [`Accepted::consumed`]).
    Part { first_line: usize, last: bool },
}

impl Input {
    pub fn whole(body: Bytes, cluster: Option<String>, source: Source) -> Input {
        Input {
            body,
            cluster,
            source,
            origin: source.as_str().to_owned(),
            received: Instant::now(),
            framing: Framing::Whole,
        }
    }
}

/// A body durably accepted: findings flushed to every sink, history
/// committed.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub stats: Stats,
    /// Findings raised.
    pub findings: usize,
    /// The first rejected documents, and counts of all.
    pub rejections: Rejections,
    /// Bytes of the body decoded; less than the body only for a
    /// [`Framing::Part`] that ends inside a document.
    pub consumed: usize,
}

/// Why a body was not accepted. Nothing of it is acknowledged: a retry
/// processes it again, with the same finding ids.
#[derive(Debug, Clone, thiserror::Error)]
pub enum IngestError {
    #[error("findings could not be written: {0}")]
    Sink(Arc<SinkError>),
    #[error("history could not be written: {0}")]
    Store(Arc<StoreError>),
    /// Refused whole, before anything was judged: the sender must split it.
    #[error("batch holds {events} events, more than server.max_events_per_batch ({max})")]
    TooManyEvents { events: usize, max: usize },
    /// Decoding spent `server.max_decode_work` before the body's end:
    /// refused whole, before anything was judged. Mostly not audit events.
    #[error(
        "decoding the body cost more than server.max_decode_work ({budget} units: one per byte scanned, {per_item} per document, event or rejection); refused whole after {documents} document(s), {rejected} of them rejected"
    )]
    OverBudget {
        budget: u64,
        per_item: u64,
        documents: usize,
        rejected: usize,
    },
    #[error("the engine is not running")]
    Stopped,
}

impl IngestError {
    /// Refused for good: the same input would be refused again, so a
    /// source must not retry it.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            IngestError::TooManyEvents { .. } | IngestError::OverBudget { .. }
        )
    }

    pub fn because(&self) -> RefusedBecause {
        match self {
            IngestError::Sink(_) => RefusedBecause::Sink,
            IngestError::Store(_) => RefusedBecause::Store,
            IngestError::TooManyEvents { .. } => RefusedBecause::TooManyEvents,
            IngestError::OverBudget { .. } => RefusedBecause::DecodeBudget,
            IngestError::Stopped => RefusedBecause::Stopped,
        }
    }
}

pub type Outcome = Result<Accepted, IngestError>;

/// What an accept of a drift did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcceptOutcome {
    Accepted,
    /// No open drift has that id (unknown, or already closed).
    NotOpen,
    NoStore,
}
