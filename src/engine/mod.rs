//! The engine: one path from bytes to durable findings and history for
//! every source (webhook, Kafka, replay).
//!
//! decode -> dedupe -> classify -> correlate -> assemble -> sinks -> store
//!
//! It runs on one thread per process (see [`writer`]), which keeps the
//! dedupe filter and per-object state free of locks and of races between
//! batches. Effects on that state are staged per group of inputs and
//! committed only once the group's findings are flushed and its history
//! committed; on any failure they are undone, so that a retried input is
//! processed as new.

mod assemble;
mod delivery;
mod input;
mod judge;
mod prepare;
mod shared;
mod stats;
pub mod writer;

use std::sync::Arc;

pub use input::{AcceptOutcome, Accepted, Framing, IngestError, Input, Outcome};
pub use prepare::{Ready, prepare};
pub use stats::Stats;
pub use writer::{Busy, Handle};

use crate::admission::Handoff;
use crate::config::Config;
use crate::context::Enricher;
use crate::correlate::Tracker;
use crate::dedupe::Dedupe;
use crate::model::{DriftClosed, DriftState, DriftTransition, Time};
use crate::sinks::{Batch, Sinks};
use crate::store::{Backend, Probe, Store, StoreError};
use crate::telemetry::events::{
    BatchAccepted, BatchJudged, BatchRefused, BodyDecoded, DriftsOpen, Emit, RetentionRan, Source,
    StoreFailed,
};
use delivery::Delivery;
use judge::Receipt;

pub struct Engine {
    config: Arc<Config>,
    dedupe: Dedupe,
    tracker: Tracker,
    store: Option<Backend>,
    sinks: Sinks,
    /// Live-object context (`kubernetes:`); none in replay and suggest.
    enricher: Option<Enricher>,
    /// Field changes admission reviews saw (`admission:`, `serve` only).
    handoff: Option<Arc<Handoff>>,
    /// Overdue persisting drifts at the last report, so each is warned once.
    overdue_reported: usize,
}

impl Engine {
    /// An engine writing findings to `sinks` and, with a store, history;
    /// open drifts are restored from the store.
    pub fn new(
        config: Arc<Config>,
        store: Option<Store>,
        sinks: Sinks,
    ) -> Result<Engine, StoreError> {
        Engine::with_backend(config, store.map(Backend::from), sinks)
    }

    /// [`Engine::new`] on either backend.
    pub fn with_backend(
        config: Arc<Config>,
        mut store: Option<Backend>,
        sinks: Sinks,
    ) -> Result<Engine, StoreError> {
        let mut tracker = Tracker::new(
            config.history.max_tracked_objects,
            config.history.max_tracked_bytes,
        );
        if let Some(store) = &mut store {
            tracker.restore(store.open_drifts()?);
        }
        let mut engine = Engine {
            dedupe: Dedupe::new(config.dedupe_capacity),
            config,
            tracker,
            store,
            sinks,
            enricher: None,
            handoff: None,
            overdue_reported: 0,
        };
        engine.report_drifts();
        Ok(engine)
    }

    /// The drift gauges, and a warning for drifts newly persisting past
    /// `drifts.persisting_alert_after`.
    fn report_drifts(&mut self) {
        let now = jiff::Timestamp::now().as_microsecond();
        let alert_after = self.config.persisting_alert_after;
        let after_us = i64::try_from(alert_after.as_micros()).unwrap_or(i64::MAX);
        let ages: Vec<i64> = self
            .tracker
            .persisting_since()
            .map(|t| (now - t.us).max(0))
            .collect();
        let overdue = ages.iter().filter(|&&a| a >= after_us).count();
        DriftsOpen {
            count: self.tracker.open_drifts(),
            persisting: ages.len(),
            overdue,
            newly_overdue: overdue.saturating_sub(self.overdue_reported),
            oldest_persisting_seconds: ages.iter().max().map_or(0.0, |&a| a as f64 / 1e6),
            alert_after,
        }
        .emit();
        self.overdue_reported = overdue;
    }

    /// Adds live-object context to the drift and sanctioned records.
    pub fn set_enricher(&mut self, enricher: Enricher) {
        self.enricher = Some(enricher);
    }

    /// Fills the changes of bodiless audit events from their admission
    /// reviews.
    pub fn set_handoff(&mut self, handoff: Arc<Handoff>) {
        self.handoff = Some(handoff);
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Judges a group of inputs and delivers them together: one write to
    /// the sinks and one store transaction. Outcomes are in input order.
    /// Decodes them here; [`Engine::ingest_ready`] takes them decoded.
    pub fn ingest(&mut self, inputs: Vec<Input>) -> Vec<Outcome> {
        let config = Arc::clone(&self.config);
        let ready = inputs.into_iter().map(|i| prepare(&config, i)).collect();
        self.ingest_ready(ready)
    }

    /// [`Engine::ingest`] of inputs [`prepare`]d on other threads.
    pub fn ingest_ready(&mut self, mut inputs: Vec<Ready>) -> Vec<Outcome> {
        if let Some(store) = &self.store
            && let Err(e) = store.writable()
        {
            // Known not to commit (damaged, or its file gone): refused
            // before anything is judged or any finding is written.
            StoreFailed { error: &e }.emit();
            return self.refuse_all(&inputs, &IngestError::Store(Arc::new(e)));
        }
        let locked = match self.lock_objects(&inputs) {
            Ok(locked) => locked,
            Err(e) => {
                StoreFailed { error: &e }.emit();
                return self.refuse_all(&inputs, &IngestError::Store(Arc::new(e)));
            }
        };
        let mut delivery = Delivery {
            locked,
            ..Delivery::default()
        };
        let mut judged: Vec<Result<Accepted, IngestError>> = Vec::with_capacity(inputs.len());
        for input in &mut inputs {
            match self.judge_ready(input, &mut delivery) {
                Ok(accepted) => judged.push(Ok(accepted)),
                Err(IngestError::Store(e)) => {
                    // The store cannot say what it holds: nothing is judged.
                    self.rollback();
                    return self.refuse_all(&inputs, &IngestError::Store(e));
                }
                Err(e) => judged.push(Err(e)),
            }
        }
        if let Some(enricher) = &self.enricher {
            // After judging, before anything leaves: waits at most
            // `kubernetes.lookup_timeout` for the whole group (README,
            // Live-object context, says why here).
            enricher.enrich(&mut delivery.records);
        }
        if let Err(e) = self.deliver(&delivery) {
            return self.refuse_all(&inputs, &e);
        }
        inputs
            .iter()
            .zip(judged)
            .map(|(input, outcome)| report(input.input(), outcome))
            .collect()
    }

    fn judge_ready(
        &mut self,
        ready: &mut Ready,
        delivery: &mut Delivery,
    ) -> Result<Accepted, IngestError> {
        ready.with_dependent_mut(|owner, p| {
            if let Some(refused) = p.refused.take() {
                return Err(refused);
            }
            let input = &owner.input;
            let cluster = input
                .cluster
                .as_deref()
                .unwrap_or(&self.config.cluster)
                .to_owned();
            let findings_before = delivery.findings.len();
            let receipt = self.receipt(input.source);
            let stats = self
                .judge(&p.decoded, &mut p.pre, &cluster, &receipt, delivery)
                .map_err(|e| IngestError::Store(Arc::new(e)))?;
            Ok(Accepted {
                stats,
                findings: delivery.findings.len() - findings_before,
                rejections: std::mem::take(&mut p.decoded.rejections),
                consumed: p.consumed,
            })
        })
    }

    /// When a body from `source` arrived, and how far from that its events'
    /// times may be before the receive time is recorded beside them. Old
    /// times are what replay is for; a time in the future is wrong from any
    /// source.
    fn receipt(&self, source: Source) -> Receipt {
        let skew = self.config.server.max_clock_skew;
        Receipt {
            time: Time::now(),
            max_past: (source != Source::Replay).then_some(skew),
            max_future: skew,
        }
    }

    /// Findings to the sinks, then history to the store, then the staged
    /// state committed; on failure the staged state is undone. Findings
    /// already written may then be written again, with the same ids.
    fn deliver(&mut self, d: &Delivery) -> Result<(), IngestError> {
        let findings = d.findings();
        let batch = Batch {
            findings: &findings,
            closed: &d.closed,
        };
        if let Err(e) = self.sinks.emit(&batch) {
            self.rollback();
            return Err(IngestError::Sink(Arc::new(e)));
        }
        let keep = self.keep(&d.locked);
        if let Some(store) = &mut self.store
            && let Err(e) = store.write(&d.records, &d.transitions, &keep)
        {
            StoreFailed { error: &e }.emit();
            self.rollback();
            return Err(IngestError::Store(Arc::new(e)));
        }
        d.emit_stored(self.store.is_some());
        self.commit();
        Ok(())
    }

    fn refuse_all(&self, inputs: &[Ready], e: &IngestError) -> Vec<Outcome> {
        inputs
            .iter()
            .map(|i| report(i.input(), Err(e.clone())))
            .collect()
    }

    /// Closes an open drift as accepted by `by`.
    pub fn accept_drift(
        &mut self,
        id: &str,
        by: &str,
        reason: &str,
    ) -> Result<AcceptOutcome, IngestError> {
        if self.store.is_none() {
            return Ok(AcceptOutcome::NoStore);
        }
        let locked = match self.lock_drift(id) {
            Ok(locked) => locked,
            Err(e) => return Err(IngestError::Store(Arc::new(e))),
        };
        let Some(open) = self.tracker.accept(id) else {
            self.rollback();
            return Ok(AcceptOutcome::NotOpen);
        };
        let at = Time::now();
        let closed = DriftClosed {
            seconds: (at.us - open.opened.us).max(0) as f64 / 1e6,
            id: open.id.clone(),
            cluster: open.cluster,
            object: open.object,
            state: DriftState::Accepted,
            at: at.clone(),
            by: by.to_owned(),
            pipeline: None,
            verification: None,
            reason: Some(reason.to_owned()),
        };
        let accepted = DriftTransition::Accepted {
            id: open.id,
            at,
            by: by.to_owned(),
            reason: reason.to_owned(),
        };
        let batch = Batch {
            findings: &[],
            closed: std::slice::from_ref(&closed),
        };
        if let Err(e) = self.sinks.emit(&batch) {
            self.rollback();
            return Err(IngestError::Sink(Arc::new(e)));
        }
        let keep = self.keep(&locked);
        let Some(store) = &mut self.store else {
            return Ok(AcceptOutcome::NoStore);
        };
        match store.write(&[], &[accepted], &keep) {
            Ok(_) => {
                self.commit();
                Ok(AcceptOutcome::Accepted)
            }
            Err(e) => {
                StoreFailed { error: &e }.emit();
                self.rollback();
                Err(IngestError::Store(Arc::new(e)))
            }
        }
    }

    /// The sinks' clock-driven work (alerts whose fold window ended).
    pub fn tick(&mut self) {
        self.sinks.tick(&Time::now());
    }

    /// Deletes history past `history.retention`; open drifts stay.
    pub fn retention(&mut self) {
        let retention = self.config.history.retention;
        let Some(store) = &mut self.store else {
            return;
        };
        let cutoff = jiff::Timestamp::now().as_microsecond()
            - i64::try_from(retention.as_micros()).unwrap_or(i64::MAX / 2);
        match store.purge_before(cutoff) {
            Ok(deleted) => RetentionRan { deleted }.emit(),
            Err(e) => StoreFailed { error: &e }.emit(),
        }
        // Ages grow without traffic: the gauges follow at each pass.
        self.report_drifts();
    }

    /// Looks at the store and lets it recover from what keeps it from
    /// committing (see [`crate::store::Store::probe`]).
    pub fn probe(&mut self) {
        let Some(store) = &mut self.store else {
            return;
        };
        if store.probe() == Probe::Replaced {
            self.forget_old_store();
        }
    }

    /// The store now runs on another file (one put back at its path): the
    /// open drifts are that file's, as after a restart.
    fn forget_old_store(&mut self) {
        let mut tracker = Tracker::new(
            self.config.history.max_tracked_objects,
            self.config.history.max_tracked_bytes,
        );
        if let Some(store) = &mut self.store {
            match store.open_drifts() {
                Ok(open) => tracker.restore(open),
                Err(e) => StoreFailed { error: &e }.emit(),
            }
        }
        self.tracker = tracker;
        self.dedupe = Dedupe::new(self.config.dedupe_capacity);
        self.report_drifts();
    }

    fn commit(&mut self) {
        self.dedupe.commit();
        self.tracker.commit();
        self.report_drifts();
    }

    fn rollback(&mut self) {
        self.dedupe.rollback();
        self.tracker.rollback();
        if let Some(store) = &mut self.store {
            store.rollback();
        }
    }
}

/// Emits what an outcome means for its input's metrics and logs.
fn report(input: &Input, outcome: Outcome) -> Outcome {
    match &outcome {
        Ok(a) => {
            BodyDecoded {
                source: input.source,
                origin: &input.origin,
                events: a.stats.events as usize,
                rejections: &a.rejections,
            }
            .emit();
            BatchJudged {
                source: input.source,
                judged: &a.stats.judged,
            }
            .emit();
            BatchAccepted {
                events: a.stats.events as usize,
                seconds: input.received.elapsed().as_secs_f64(),
            }
            .emit();
        }
        Err(e) => BatchRefused {
            source: input.source,
            because: e.because(),
            message: &e.to_string(),
        }
        .emit(),
    }
    outcome
}
