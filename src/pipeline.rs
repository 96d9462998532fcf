//! The synchronous heart shared by every source: decoded events in, findings
//! out. decode -> dedupe -> classify -> correlate -> finding.
//!
//! It runs on one thread per process (the webhook's pipeline thread, or the
//! replay loop), which keeps the dedupe filter and, later, per-resource state
//! free of locks and of races between batches.

use std::sync::Arc;

use crate::classify::{self, Access, FindingType, Verdict};
use crate::config::Config;
use crate::correlate::changes;
use crate::decode::Decoded;
use crate::dedupe::{Dedupe, RequestKey, Seen};
use crate::sinks::Finding;
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
    pub stats: Stats,
}

pub struct Pipeline {
    config: Arc<Config>,
    dedupe: Dedupe,
}

impl Pipeline {
    pub fn new(config: Arc<Config>) -> Self {
        let dedupe = Dedupe::new(config.dedupe_capacity);
        Pipeline { config, dedupe }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Classifies a decoded body. The dedupe changes it makes are staged
    /// until [`Pipeline::commit`]: call it once the findings are durably
    /// written, or [`Pipeline::rollback`] if they could not be.
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

        let mut findings = Vec::new();
        for d in &decoded.events {
            let ev = &d.event;
            // Reads are most of the stream: judge them before hashing anything.
            let verdict = if classify::access_kind(ev) == Access::Read {
                Verdict::Ignored(classify::IgnoreReason::Read)
            } else {
                let verdict = classify::classify(policy, ev, d.stage);
                if verdict.is_mutation() {
                    match self.dedupe.check(RequestKey::of(cluster, ev), d.stage) {
                        Seen::New => {}
                        seen => {
                            stats.deduplicated += 1;
                            events::event_deduplicated(source, seen == Seen::SameRequest);
                            continue;
                        }
                    }
                }
                verdict
            };
            events::event_classified(&verdict);
            match &verdict {
                Verdict::Ignored(_) => stats.ignored += 1,
                Verdict::System => stats.system += 1,
                Verdict::Sanctioned { .. } => stats.sanctioned += 1,
                Verdict::Drift(drift) => {
                    stats.drift += 1;
                    let changes =
                        changes::from_request(ev.verb(), ev.resource(), ev.request_object);
                    let finding = Finding::new(cluster, ev, d.stage, drift, policy, changes);
                    events::finding_emitted(drift.finding_type, drift.severity);
                    if let Some(i) = FindingType::ALL
                        .iter()
                        .position(|t| *t == drift.finding_type)
                    {
                        stats.findings[i] += 1;
                    }
                    findings.push(finding);
                }
            }
            if verdict.is_mutation() {
                stats.mutations += 1;
            }
        }
        Batch { findings, stats }
    }

    pub fn commit(&mut self) {
        self.dedupe.commit();
    }

    pub fn rollback(&mut self) {
        self.dedupe.rollback();
    }
}
