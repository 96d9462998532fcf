//! The synchronous heart shared by every source: decoded events in, findings
//! out. decode -> dedupe -> classify -> correlate -> finding.
//!
//! It runs on one thread per process (the webhook's pipeline thread, or the
//! replay loop), which keeps the dedupe filter and, later, per-resource state
//! free of locks and of races between batches.

use std::sync::Arc;

use crate::classify::{self, Access, FindingType, Severity, Verdict};
use crate::config::Config;
use crate::correlate::{Correlation, DriftUpdate, Subject, Tracker};
use crate::decode::Decoded;
use crate::dedupe::{Dedupe, RequestKey, Seen};
use crate::sinks::finding::{client_of, finding_key, format_time, parse_time, resource_ref};
use crate::sinks::{DriftRef, Finding, SinkError, Sinks};
use crate::store::{
    ChangeDetail, ChangeRecord, DriftWrite, Store, StoreError, StoreKey,
    finding_id as store_finding_id, store_key,
};
use crate::telemetry::events::{self, Source};

/// Counts for one batch, or summed over a replay.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub documents: u64,
    pub events: u64,
    pub rejected: u64,
    pub deduplicated: u64,
    pub mutations: u64,
    pub ignored: u64,
    pub system: u64,
    pub sanctioned: u64,
    pub drift: u64,
    pub findings: [u64; FindingType::ALL.len()],
}

impl Stats {
    pub fn add(&mut self, o: &Stats) {
        self.documents += o.documents;
        self.events += o.events;
        self.rejected += o.rejected;
        self.deduplicated += o.deduplicated;
        self.mutations += o.mutations;
        self.ignored += o.ignored;
        self.system += o.system;
        self.sanctioned += o.sanctioned;
        self.drift += o.drift;
        for (a, b) in self.findings.iter_mut().zip(o.findings) {
            *a += b;
        }
    }

    pub fn findings_total(&self) -> u64 {
        self.findings.iter().sum()
    }
}

pub struct Batch {
    pub findings: Vec<Finding>,
    pub records: Vec<ChangeRecord>,
    pub drifts: Vec<DriftWrite>,
    pub stats: Stats,
    reconciled: Vec<f64>,
}

impl Batch {
    /// Appends `other`, so that several batches are delivered in one write.
    pub fn absorb(&mut self, other: Batch) {
        self.findings.extend(other.findings);
        self.records.extend(other.records);
        self.drifts.extend(other.drifts);
        self.stats.add(&other.stats);
        self.reconciled.extend(other.reconciled);
    }
}

/// Why a batch could not be accepted. Nothing of it is acknowledged; a retry
/// processes it again.
#[derive(Debug, thiserror::Error)]
pub enum DeliverError {
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub struct Pipeline {
    config: Arc<Config>,
    dedupe: Dedupe,
    tracker: Tracker,
    store: Option<Store>,
}

impl Pipeline {
    /// A pipeline without history (replay to stdout).
    pub fn new(config: Arc<Config>) -> Self {
        let dedupe = Dedupe::new(config.dedupe_capacity);
        let tracker = Tracker::new(
            config.history.max_tracked_objects,
            config.history.max_tracked_bytes,
        );
        Pipeline {
            config,
            dedupe,
            tracker,
            store: None,
        }
    }

    /// A pipeline that records history in `store`; open drifts are restored
    /// from it.
    pub fn with_store(config: Arc<Config>, store: Store) -> Result<Self, StoreError> {
        let mut p = Pipeline::new(config);
        p.tracker.restore(store.open_drifts()?);
        events::open_drifts(p.tracker.open_drifts());
        p.store = Some(store);
        Ok(p)
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn store_mut(&mut self) -> Option<&mut Store> {
        self.store.as_mut()
    }

    /// Classifies and correlates a decoded body. Its effects on the dedupe
    /// filter and per-resource state are staged: [`Pipeline::deliver`]
    /// commits them once the batch is written, or undoes them.
    pub fn process(
        &mut self,
        decoded: &Decoded<'_>,
        cluster: Option<&str>,
        source: Source,
        origin: &str,
    ) -> Batch {
        let cluster = cluster.unwrap_or(&self.config.cluster);
        let policy = &self.config.policy;
        let mut stats = Stats {
            documents: decoded.documents as u64,
            events: decoded.events.len() as u64,
            rejected: decoded.rejections.len() as u64,
            ..Stats::default()
        };
        for r in &decoded.rejections {
            events::document_rejected(source, origin, r);
        }
        events::events_received(source, decoded.events.len());

        let mut batch = Batch {
            findings: Vec::new(),
            records: Vec::new(),
            drifts: Vec::new(),
            stats: Stats::default(),
            reconciled: Vec::new(),
        };
        for d in &decoded.events {
            let ev = &d.event;
            // Reads are most of the stream: judge them before hashing anything.
            let mut verdict = if classify::access_kind(ev) == Access::Read {
                Verdict::Ignored(classify::IgnoreReason::Read)
            } else {
                classify::classify(policy, ev, d.stage)
            };
            if verdict.is_mutation() {
                let seen = self.dedupe.check(RequestKey::of(cluster, ev), d.stage);
                if seen != Seen::New {
                    stats.deduplicated += 1;
                    events::event_deduplicated(source, seen == Seen::SameRequest);
                    continue;
                }
            }
            let recorded = matches!(verdict, Verdict::Drift(_) | Verdict::Sanctioned { .. })
                || (matches!(verdict, Verdict::System) && self.config.history.store_system);
            let key = recorded.then(|| {
                let received_us = ev
                    .received_at()
                    .parse::<jiff::Timestamp>()
                    .map_or(0, |t| t.as_microsecond());
                store_key(received_us, finding_key(cluster, ev))
            });
            // After a restart the in-memory filter is empty: the store
            // remembers what was already accepted.
            if let (Some(key), Some(store)) = (key, &self.store)
                && store
                    .known_keys(&[key])
                    .ok()
                    .and_then(|k| k.first().copied())
                    == Some(true)
            {
                stats.deduplicated += 1;
                events::event_deduplicated(source, false);
                continue;
            }
            events::event_classified(&verdict);
            match &verdict {
                Verdict::Ignored(_) => {
                    stats.ignored += 1;
                    continue;
                }
                Verdict::System => stats.system += 1,
                Verdict::Sanctioned { .. } => stats.sanctioned += 1,
                Verdict::Drift(_) => stats.drift += 1,
            }
            stats.mutations += 1;
            if !recorded && !matches!(verdict, Verdict::System) {
                continue;
            }
            // One parse: the stored string and the µs come from the same time.
            let (time, time_us) = match parse_time(ev.stage_at()) {
                Some(ts) => (format_time(ts), ts.as_microsecond()),
                None => (
                    ev.stage_at().to_owned(),
                    jiff::Timestamp::now().as_microsecond(),
                ),
            };
            let finding_id = finding_id_of(key, cluster, ev);
            let pipeline_name = match &verdict {
                Verdict::Sanctioned { pipeline } => policy.pipeline_name(*pipeline),
                Verdict::Drift(d) if d.finding_type.involves_pipeline() => {
                    d.pipeline.and_then(|i| policy.pipeline_name(i))
                }
                _ => None,
            };
            let actor = effective_user(ev);
            let mut corr = self.tracker.observe(
                ev,
                &Subject {
                    cluster,
                    verdict: &verdict,
                    pipeline: pipeline_name,
                    actor,
                    time: &time,
                    time_us,
                    finding_id: &finding_id,
                    want_changes: recorded || matches!(verdict, Verdict::Drift(_)),
                },
            );
            // Configured paths are withheld before anything leaves: findings,
            // the store, logs.
            crate::correlate::redact::apply(&self.config.redaction, &mut corr.changes);
            if let Verdict::Drift(drift) = &mut verdict
                && let Some(m) = &corr.managed_by
                && drift.severity < Severity::High
            {
                drift.severity = Severity::High;
                drift.reasons.push(format!(
                    "the object is managed by {}{}",
                    m.tool,
                    m.name
                        .as_deref()
                        .map(|n| format!(" ({n})"))
                        .unwrap_or_default()
                ));
            }
            match &corr.update {
                Some(DriftUpdate::Opened(o)) => batch.drifts.push(DriftWrite::Open(o.clone())),
                Some(DriftUpdate::Reconciled {
                    id,
                    at,
                    at_us,
                    pipeline,
                    audit_id,
                    actor,
                    seconds,
                }) => {
                    batch.reconciled.push(*seconds);
                    batch.drifts.push(DriftWrite::Reconciled {
                        id: id.clone(),
                        at: at.clone(),
                        at_us: *at_us,
                        pipeline: pipeline.clone(),
                        audit_id: audit_id.clone(),
                        actor: actor.clone(),
                        seconds: *seconds,
                    });
                }
                Some(DriftUpdate::Joined { .. }) | None => {}
            }
            let mut finding = match &verdict {
                Verdict::Drift(drift) => {
                    let mut f = Finding::new(
                        cluster,
                        ev,
                        d.stage,
                        drift,
                        policy,
                        corr.changes.clone(),
                        finding_id.clone(),
                        time.clone(),
                    );
                    f.managed_by = corr.managed_by.clone();
                    f.owner = corr.owner.clone();
                    f.drift = corr.drift.as_ref().map(|(id, state)| DriftRef {
                        id: id.clone(),
                        state: state.as_str().to_owned(),
                    });
                    if f.resource.name.is_none() {
                        f.resource.name = corr.name.clone();
                    }
                    // A Namespace is cluster-scoped even where the API server
                    // logs its own name as the namespace.
                    if crate::correlate::object_namespace(ev).is_empty() {
                        f.resource.namespace = None;
                    }
                    if f.resource.uid.is_none() {
                        f.resource.uid = corr.uid.clone();
                    }
                    events::finding_emitted(drift.finding_type, drift.severity);
                    if let Some(i) = FindingType::ALL
                        .iter()
                        .position(|t| *t == drift.finding_type)
                    {
                        stats.findings[i] += 1;
                    }
                    Some(f)
                }
                _ => None,
            };
            if let Some(key) = key
                && self.store.is_some()
            {
                batch.records.push(record(
                    key,
                    cluster,
                    ev,
                    &verdict,
                    &time,
                    time_us,
                    pipeline_name,
                    &corr,
                    finding.as_ref(),
                ));
            }
            if let Some(f) = finding.take() {
                batch.findings.push(f);
            }
        }
        batch.stats = stats;
        batch
    }

    /// Writes a processed batch: findings to the sinks, then history to the
    /// store, then commits the staged state. On any failure the staged state
    /// is undone so that the retried batch is processed as new; findings
    /// already written may then be written again, with the same ids.
    pub fn deliver(&mut self, batch: &Batch, sinks: &mut Sinks) -> Result<(), DeliverError> {
        if let Err(e) = sinks.emit(&batch.findings) {
            self.rollback();
            return Err(e.into());
        }
        if let Some(store) = &mut self.store
            && (!batch.records.is_empty() || !batch.drifts.is_empty())
            && let Err(e) = store.write(&batch.records, &batch.drifts)
        {
            events::store_failed(&e);
            self.rollback();
            return Err(e.into());
        }
        events::changes_stored(batch.records.len());
        for s in &batch.reconciled {
            events::drift_reconciled(*s);
        }
        self.commit();
        Ok(())
    }

    /// Closes an open drift as accepted.
    pub fn accept_drift(
        &mut self,
        id: &str,
        by: &str,
        reason: &str,
    ) -> Result<AcceptOutcome, StoreError> {
        let Some(store) = &mut self.store else {
            return Ok(AcceptOutcome::NoStore);
        };
        let Some(open) = self.tracker.accept(id) else {
            return Ok(AcceptOutcome::NotOpen);
        };
        let now = jiff::Timestamp::now();
        let write = DriftWrite::Accepted {
            id: open.id.clone(),
            at: now.strftime("%Y-%m-%dT%H:%M:%S.%6fZ").to_string(),
            at_us: now.as_microsecond(),
            by: by.to_owned(),
            reason: reason.to_owned(),
        };
        match store.write(&[], &[write]) {
            Ok(_) => {
                self.tracker.commit();
                events::open_drifts(self.tracker.open_drifts());
                Ok(AcceptOutcome::Accepted)
            }
            Err(e) => {
                self.tracker.rollback();
                Err(e)
            }
        }
    }

    fn commit(&mut self) {
        self.dedupe.commit();
        self.tracker.commit();
        events::open_drifts(self.tracker.open_drifts());
    }

    fn rollback(&mut self) {
        self.dedupe.rollback();
        self.tracker.rollback();
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcceptOutcome {
    Accepted,
    /// No open drift has that id (unknown, or already closed).
    NotOpen,
    NoStore,
}

fn finding_id_of(key: Option<StoreKey>, cluster: &str, ev: &crate::decode::Event<'_>) -> String {
    match key {
        Some(key) => store_finding_id(&key),
        None => crate::sinks::finding::finding_id(cluster, ev),
    }
}

fn effective_user<'e>(ev: &'e crate::decode::Event<'_>) -> &'e str {
    ev.impersonated_user
        .as_ref()
        .or(ev.user.as_ref())
        .and_then(|u| u.username.as_deref())
        .unwrap_or("")
}

#[allow(clippy::too_many_arguments)]
fn record(
    key: StoreKey,
    cluster: &str,
    ev: &crate::decode::Event<'_>,
    verdict: &Verdict,
    time: &str,
    time_us: i64,
    pipeline: Option<&str>,
    corr: &Correlation,
    finding: Option<&Finding>,
) -> ChangeRecord {
    let mut resource = resource_ref(ev);
    // Stored under the same identity the tracker uses, so that the history
    // of a Namespace (cluster-scoped, `_` in the API) is one history.
    if crate::correlate::object_namespace(ev).is_empty() {
        resource.namespace = None;
    }
    if resource.name.is_none() {
        resource.name = corr.name.clone();
    }
    if resource.uid.is_none() {
        resource.uid = corr.uid.clone();
    }
    let user_agent = ev.user_agent.as_deref().filter(|s| !s.is_empty());
    let effective = ev.impersonated_user.as_ref().or(ev.user.as_ref());
    let strings = |v: Option<&Vec<std::borrow::Cow<'_, str>>>| {
        v.map(|v| v.iter().map(|s| s.clone().into_owned()).collect())
            .unwrap_or_default()
    };
    let (finding_type, severity, reasons) = match verdict {
        Verdict::Drift(d) => (
            Some(d.finding_type.as_str()),
            Some(d.severity.as_str()),
            d.reasons.clone(),
        ),
        _ => (None, None, Vec::new()),
    };
    ChangeRecord {
        dedupe_key: key,
        time: time.to_owned(),
        time_us,
        cluster: cluster.to_owned(),
        resource,
        verb: ev.verb().to_owned(),
        actor: effective_user(ev).to_owned(),
        audit_id: ev.audit_id().to_owned(),
        verdict: verdict.label(),
        pipeline: pipeline.map(str::to_owned),
        finding_type,
        severity,
        drift_id: corr.drift.as_ref().map(|(id, _)| id.clone()),
        detail: ChangeDetail {
            groups: strings(effective.and_then(|u| u.groups.as_ref())),
            impersonated_by: finding
                .and_then(|f| f.actor.impersonated_by.clone())
                .or_else(|| {
                    ev.impersonated_user
                        .as_ref()
                        .map(|_| crate::sinks::Impersonator {
                            username: ev.username().to_owned(),
                            groups: strings(ev.user.as_ref().and_then(|u| u.groups.as_ref())),
                        })
                }),
            user_agent: user_agent.map(str::to_owned),
            client: user_agent.map(client_of),
            source_ips: strings(ev.source_ips.as_ref()),
            field_manager: ev.query_param("fieldManager").map(|f| f.into_owned()),
            request_uri: ev.request_uri().to_owned(),
            changes: corr.changes.clone(),
            managed_by: corr.managed_by.clone(),
            owner: corr.owner.clone(),
            reasons,
        },
    }
}
