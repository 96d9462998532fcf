use crate::model::{FindingType, VerdictKind};
use crate::telemetry::events::Judged;

/// Counts for one body, or summed over a replay.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub documents: u64,
    pub events: u64,
    pub rejected: u64,
    pub judged: Judged,
}

impl Stats {
    pub fn add(&mut self, o: &Stats) {
        self.documents += o.documents;
        self.events += o.events;
        self.rejected += o.rejected;
        self.judged.add(&o.judged);
    }

    pub fn deduplicated(&self) -> u64 {
        self.judged.redeliveries + self.judged.same_request
    }

    /// Events judged a real change (every verdict but `ignored`), once each.
    pub fn mutations(&self) -> u64 {
        [
            VerdictKind::System,
            VerdictKind::Sanctioned,
            VerdictKind::Drift,
            VerdictKind::Allowed,
        ]
        .into_iter()
        .map(|k| self.judged.verdict(k))
        .sum()
    }

    pub fn verdict(&self, kind: VerdictKind) -> u64 {
        self.judged.verdict(kind)
    }

    pub fn findings_of(&self, t: FindingType) -> u64 {
        self.judged.findings_of(t)
    }

    pub fn findings_total(&self) -> u64 {
        self.judged.findings_total()
    }
}
