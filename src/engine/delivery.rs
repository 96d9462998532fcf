use crate::decode::Stage;
use crate::model::{ChangeRecord, DriftClosed, DriftTransition};
use crate::sinks::Finding;
use crate::telemetry::events::{ChangesStored, DriftReconciled, Emit};

/// What a group of inputs delivers at once.
#[derive(Default)]
pub(super) struct Delivery {
    /// Attributed changes: drift ones always (they are the findings), the
    /// others when there is a store to record them in.
    pub records: Vec<ChangeRecord>,
    /// The records that are findings, with the stage they were raised at.
    pub findings: Vec<(usize, Stage)>,
    pub transitions: Vec<DriftTransition>,
    /// The drifts the group closed, for the alerting sinks.
    pub closed: Vec<DriftClosed>,
    /// The objects locked in a shared store for the group, whose state is
    /// written back with it.
    pub locked: Vec<super::shared::Locked>,
}

impl Delivery {
    pub fn findings(&self) -> Vec<Finding<'_>> {
        self.findings
            .iter()
            .filter_map(|&(i, stage)| Finding::of(&self.records[i], stage))
            .collect()
    }

    /// Counts what was made durable.
    pub fn emit_stored(&self, stored: bool) {
        if stored {
            ChangesStored {
                count: self.records.len(),
            }
            .emit();
        }
        for t in &self.transitions {
            if let DriftTransition::Reconciled { seconds, .. } = t {
                DriftReconciled { seconds: *seconds }.emit();
            }
        }
    }
}
