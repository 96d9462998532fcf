//! Judging one body: every event gets its verdict; each real change is
//! deduplicated, correlated with its object and assembled into a record.

use std::time::Duration;

use crate::classify::quiet::Quiet;
use crate::classify::{self, Verdict};
use crate::correlate::{Correlation, Observation, redact};
use crate::decode::{Decoded, DecodedEvent, Event};
use crate::dedupe::Seen;
use crate::model::{
    DriftClosed, DriftState, DriftTransition, ObjectRef, RequestId, Time, VerdictKind,
    effective_username,
};
use crate::store::{StoreError, StoreKey};
use crate::telemetry::events::{AdmissionUnreviewed, Emit, Judged};

use super::Engine;
use super::assemble::{self, assemble};
use super::delivery::Delivery;
use super::prepare::Pre;
use super::stats::Stats;

/// When a body arrived, and which event times are too far from that to
/// judge retention by.
pub(super) struct Receipt {
    pub time: Time,
    /// How far in the past an event's time may be; `None`: any age (replay).
    pub max_past: Option<Duration>,
    pub max_future: Duration,
}

impl Receipt {
    /// The receive time to record beside an event's `time`, when `time` is
    /// further from it than the skew allows: a 1970 stamp would otherwise
    /// be deleted by the next retention pass, and a year-9999 one never.
    fn beside(&self, time: &Time) -> Option<Time> {
        let micros = |d: Duration| i64::try_from(d.as_micros()).unwrap_or(i64::MAX);
        let ahead = time.us.saturating_sub(self.time.us);
        let behind = self.time.us.saturating_sub(time.us);
        let too_old = self.max_past.is_some_and(|max| behind > micros(max));
        let too_new = ahead > micros(self.max_future);
        (too_old || too_new).then(|| self.time.clone())
    }

    /// An event's time, and the receive time beside it when it is needed;
    /// an event that carries no time at all takes its receive time.
    fn times_of(&self, ev: &crate::decode::Event<'_>) -> (Time, Option<Time>) {
        match Time::of_event(ev.stage_at()) {
            Some(time) => {
                let received = self.beside(&time);
                (time, received)
            }
            None => (self.time.clone(), None),
        }
    }
}

/// A real change that passed the redelivery filter.
struct Candidate {
    index: usize,
    verdict: Verdict,
    request: RequestId,
    /// Recorded in the history (drift and sanctioned changes; system ones
    /// with `history.store_system`).
    recorded: bool,
}

impl Engine {
    pub(super) fn judge(
        &mut self,
        decoded: &Decoded<'_>,
        pre: &mut [Pre],
        cluster: &str,
        receipt: &Receipt,
        delivery: &mut Delivery,
    ) -> Result<Stats, StoreError> {
        let mut stats = Stats {
            documents: decoded.documents as u64,
            events: decoded.events.len() as u64,
            rejected: decoded.rejections.total() as u64,
            ..Stats::default()
        };
        let candidates = self.screen(decoded, pre, cluster, &mut stats.judged);
        let stored = self.stored_keys(&candidates)?;
        for c in candidates {
            if c.recorded && stored.contains(&c.request.store_key()) {
                // After a restart the in-memory filter is empty: the store
                // remembers what was already accepted.
                stats.judged.redeliveries += 1;
                continue;
            }
            let index = c.index;
            self.correlate(
                (&decoded.events[index], &mut pre[index]),
                (cluster, receipt),
                c,
                &mut stats.judged,
                delivery,
            );
        }
        Ok(stats)
    }

    /// Verdicts for every event, and the real changes not seen before.
    fn screen(
        &mut self,
        decoded: &Decoded<'_>,
        pre: &mut [Pre],
        cluster: &str,
        judged: &mut Judged,
    ) -> Vec<Candidate> {
        let store_system = self.config.history.store_system;
        let mut candidates = Vec::new();
        for (index, (d, pre)) in decoded.events.iter().zip(pre.iter_mut()).enumerate() {
            let ev = &d.event;
            let Some(verdict) = pre.verdict.take() else {
                continue;
            };
            if let Verdict::Ignored(reason) = verdict {
                judged.verdicts[VerdictKind::Ignored as usize] += 1;
                judged.ignored[reason.index()] += 1;
                continue;
            }
            let request = RequestId::of(cluster, ev);
            match self.dedupe.check(request.dedupe_key(), d.stage) {
                Seen::New => {}
                Seen::Redelivery => {
                    judged.redeliveries += 1;
                    continue;
                }
                Seen::SameRequest => {
                    judged.same_request += 1;
                    continue;
                }
            }
            if crate::classify::admitted::unreviewed(&verdict) {
                AdmissionUnreviewed.emit();
            }
            let recorded = match verdict {
                Verdict::Drift(_) | Verdict::Sanctioned { .. } => true,
                Verdict::System | Verdict::Allowed(_) => store_system,
                Verdict::Ignored(_) => false,
            };
            candidates.push(Candidate {
                index,
                verdict,
                request,
                recorded,
            });
        }
        candidates
    }

    /// The keys of `candidates` the store already holds: one question per body.
    fn stored_keys(
        &mut self,
        candidates: &[Candidate],
    ) -> Result<foldhash::HashSet<StoreKey>, StoreError> {
        let Some(store) = &mut self.store else {
            return Ok(foldhash::HashSet::default());
        };
        let keys: Vec<StoreKey> = candidates
            .iter()
            .filter(|c| c.recorded)
            .map(|c| c.request.store_key())
            .collect();
        store.known_keys(&keys)
    }

    /// Correlates a change with its object and, where someone will read it,
    /// assembles its record.
    fn correlate(
        &mut self,
        (d, pre): (&DecodedEvent<'_>, &mut Pre),
        (cluster, receipt): (&str, &Receipt),
        c: Candidate,
        judged: &mut Judged,
        delivery: &mut Delivery,
    ) {
        let Candidate {
            mut verdict,
            request,
            recorded,
            ..
        } = c;
        let ev = &d.event;
        let policy = &self.config.policy;
        let (time, received) = receipt.times_of(ev);
        let id = request.finding_id();
        let pipeline = match &verdict {
            Verdict::Sanctioned { pipeline } => policy.pipeline_name(*pipeline),
            Verdict::Drift(d) if d.finding_type.involves_pipeline() => {
                d.pipeline.and_then(|i| policy.pipeline_name(i))
            }
            _ => None,
        };
        let observation = Observation {
            cluster,
            pipeline,
            actor: effective_username(ev),
            time: &time,
            finding_id: &id,
            want_changes: recorded || matches!(verdict, Verdict::Drift(_)),
            read_ahead: pre.after.as_ref(),
        };
        let mut corr = self.tracker.observe(ev, &observation);
        let admitted = self.admitted(ev, cluster, &mut corr);
        verdict = settle(
            (&self.config, &mut self.tracker),
            (ev, &observation),
            verdict,
            pre.risks.take(),
            &mut corr,
        );
        count(judged, &verdict);
        let is_drift = matches!(verdict, Verdict::Drift(_));
        // Allowed once its changes were known: stored like a system change.
        let recorded = recorded
            && (!matches!(verdict, Verdict::Allowed(_)) || self.config.history.store_system);
        if let Some(t) = &corr.transition {
            if let Some(closed) = closed_by(t, cluster, ev) {
                delivery.closed.push(closed);
            }
            delivery.transitions.push(t.clone());
        }
        let keep = is_drift || (recorded && self.store.is_some());
        if !keep {
            return;
        }
        let record = assemble(
            assemble::Judged {
                cluster,
                event: ev,
                verdict: &verdict,
                pipeline,
                request,
                id,
                time,
                received,
                admitted,
            },
            corr,
        );
        if let Verdict::Drift(drift) = &verdict {
            judged.findings[drift.finding_type.index()][drift.severity as usize] += 1;
            delivery.findings.push((delivery.records.len(), d.stage));
        }
        delivery.records.push(record);
    }
}

impl Engine {
    /// Fills what the event could not show (no bodies at `Metadata`, an
    /// update of an object not remembered, a denied write) from its
    /// admission review; whether the changes are the review's.
    fn admitted(&self, ev: &Event<'_>, cluster: &str, corr: &mut Correlation) -> bool {
        let Some(handoff) = &self.handoff else {
            return false;
        };
        let Some(uid) = classify::admitted::reviewed(ev.annotations).and_then(|r| r.review) else {
            return false;
        };
        if corr.changes_known && !corr.changes.is_empty() {
            // The event's own bodies said it all.
            handoff.discard(&uid);
            return false;
        }
        let Some(a) = handoff.take(&uid, cluster, &corr.object) else {
            return false;
        };
        if corr.managed_by.is_none() {
            corr.managed_by = a.managed_by;
        }
        if corr.owner.is_none() {
            corr.owner = a.owner;
        }
        if a.changes.is_empty() {
            return false;
        }
        corr.changes = a.changes;
        corr.changes_known = true;
        true
    }
}

/// The final verdict once the changes are known, and what it does to the
/// object's drift. Configured paths are withheld here, before anything
/// leaves: findings, the store, logs.
fn settle(
    (config, tracker): (&crate::config::Config, &mut crate::correlate::Tracker),
    (ev, observation): (&crate::decode::Event<'_>, &Observation<'_>),
    verdict: Verdict,
    risks: Option<Vec<crate::model::Risk>>,
    corr: &mut crate::correlate::Correlation,
) -> Verdict {
    let mut verdict = classify::settle(
        &config.policy,
        verdict,
        ev,
        &corr.changes,
        corr.changes_known,
        risks,
    );
    corr.transition = tracker.settle(ev, observation, corr, &verdict);
    redact::apply(&config.redaction, &mut corr.changes);
    if let Verdict::Drift(drift) = &mut verdict {
        redact::apply_to_risks(&config.redaction, &mut drift.risks);
        if let Some(managed) = &corr.managed_by {
            classify::raise_for_managed(drift, managed);
        }
    }
    verdict
}

fn count(judged: &mut Judged, verdict: &Verdict) {
    judged.verdicts[verdict.kind() as usize] += 1;
    if let Verdict::Allowed(by) = verdict {
        let slot = match by {
            classify::AllowedBy::Quiet(q) => q.index(),
            classify::AllowedBy::Allowance(_) => Quiet::ALL.len(),
        };
        judged.allowed[slot] += 1;
    }
}

/// The drift a pipeline's write closed, for the alerting sinks.
fn closed_by(t: &DriftTransition, cluster: &str, ev: &Event<'_>) -> Option<DriftClosed> {
    let DriftTransition::Reconciled {
        id,
        at,
        pipeline,
        actor,
        seconds,
        verification,
        ..
    } = t
    else {
        return None;
    };
    Some(DriftClosed {
        id: id.clone(),
        cluster: cluster.to_owned(),
        object: ObjectRef::of(ev).parent(),
        state: DriftState::Reconciled,
        at: at.clone(),
        by: actor.clone(),
        pipeline: Some(pipeline.clone()),
        verification: Some(*verification),
        reason: None,
        seconds: *seconds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    fn at(text: &str) -> Time {
        Time::of_event(text).unwrap()
    }

    #[test]
    fn the_receive_time_is_recorded_beside_times_past_the_skew() {
        let now = at("2026-11-20T10:00:00Z");
        let live = Receipt {
            time: now.clone(),
            max_past: Some(DAY),
            max_future: DAY,
        };
        assert_eq!(live.beside(&at("2026-11-20T09:00:00Z")), None);
        assert_eq!(live.beside(&at("2026-11-21T09:00:00Z")), None);
        assert_eq!(live.beside(&at("1970-01-01T00:00:00Z")), Some(now.clone()));
        assert_eq!(live.beside(&at("0000-01-01T00:00:00Z")), Some(now.clone()));
        assert_eq!(
            live.beside(&at("9999-12-31T23:59:59.999999Z")),
            Some(now.clone())
        );
        // Replay: old logs are what a backfill is for; the future is not.
        let replay = Receipt {
            max_past: None,
            ..live
        };
        assert_eq!(replay.beside(&at("1970-01-01T00:00:00Z")), None);
        assert_eq!(replay.beside(&at("9999-12-31T23:59:59Z")), Some(now));
    }
}
