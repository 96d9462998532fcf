//! A drift: the out-of-band changes to one object, from the first until the
//! pipeline puts the object back or someone accepts it.

use serde::{Deserialize, Serialize};

use super::object::ObjectRef;
use super::time::Time;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DriftState {
    Open,
    Reconciled,
    Accepted,
}

impl DriftState {
    pub const ALL: [DriftState; 3] = [
        DriftState::Open,
        DriftState::Reconciled,
        DriftState::Accepted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DriftState::Open => "open",
            DriftState::Reconciled => "reconciled",
            DriftState::Accepted => "accepted",
        }
    }

    pub fn parse(s: &str) -> Option<DriftState> {
        DriftState::ALL.into_iter().find(|d| d.as_str() == s)
    }
}

/// An open drift, as per-object state keeps it and the store restores it.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenDrift {
    /// The id of the finding that opened it.
    pub id: String,
    pub cluster: String,
    /// The object (never a subresource).
    pub object: ObjectRef,
    pub opened: Time,
    pub opened_by: String,
}

/// What one event, or an accept, did to a drift. Correlation emits it, the
/// store persists it as it is.
#[derive(Debug, Clone, PartialEq)]
pub enum DriftTransition {
    Opened(OpenDrift),
    /// Another out-of-band change to an object that already drifted.
    Joined {
        id: String,
    },
    /// The pipeline wrote the object again.
    Reconciled {
        id: String,
        at: Time,
        pipeline: String,
        audit_id: String,
        actor: String,
        seconds: f64,
    },
    Accepted {
        id: String,
        at: Time,
        by: String,
        reason: String,
    },
}

impl DriftTransition {
    pub fn id(&self) -> &str {
        match self {
            DriftTransition::Opened(o) => &o.id,
            DriftTransition::Joined { id }
            | DriftTransition::Reconciled { id, .. }
            | DriftTransition::Accepted { id, .. } => id,
        }
    }

    /// The state the drift is in after this transition.
    pub fn state(&self) -> DriftState {
        match self {
            DriftTransition::Opened(_) | DriftTransition::Joined { .. } => DriftState::Open,
            DriftTransition::Reconciled { .. } => DriftState::Reconciled,
            DriftTransition::Accepted { .. } => DriftState::Accepted,
        }
    }

    /// The reference a change carries to the drift it belongs to.
    pub fn drift_ref(&self) -> DriftRef {
        DriftRef {
            id: self.id().to_owned(),
            state: Some(self.state()),
        }
    }
}

/// A change's drift: its id, and its state when known (a drift row removed
/// by retention leaves the id alone).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriftRef {
    pub id: String,
    pub state: Option<DriftState>,
}
