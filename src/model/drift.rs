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
    /// Still open after the pipeline wrote the object: some drifted field
    /// kept its out-of-band value (a server-side apply that does not own
    /// the field leaves it as it is).
    Persisting,
}

impl DriftState {
    pub const ALL: [DriftState; 4] = [
        DriftState::Open,
        DriftState::Reconciled,
        DriftState::Accepted,
        DriftState::Persisting,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DriftState::Open => "open",
            DriftState::Reconciled => "reconciled",
            DriftState::Accepted => "accepted",
            DriftState::Persisting => "persisting",
        }
    }

    /// Not closed: open, or persisting.
    pub fn is_unclosed(self) -> bool {
        matches!(self, DriftState::Open | DriftState::Persisting)
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
    /// The fields the drift changed, for a verified reconcile; `None` when
    /// some change of it showed no fields (a create, a delete, a
    /// `Metadata`-level event), so a reconcile cannot be checked.
    pub paths: Option<Vec<DriftedPath>>,
    /// When a pipeline write first left a drifted field in place.
    pub persisting_since: Option<Time>,
}

/// Drifted fields kept per drift; past this a reconcile is not checked
/// (the drift's `paths` become unknown) rather than the memory unbounded.
pub const MAX_DRIFTED_PATHS: usize = 200;

/// One field a drift changed and a fingerprint of the value it left, so
/// that a later write shows whether the value is still there without the
/// value (a Secret's, a large ConfigMap key's) being kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriftedPath {
    pub path: String,
    /// FNV-1a of the value's JSON; `None` when the value is not known
    /// (redacted): only a pipeline write to the field restores it.
    pub value: Option<u64>,
}

/// How a pipeline write left a drift's fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verification {
    /// Every drifted field is back to a pipeline value.
    Verified,
    /// The drift's fields were not known; the pipeline's write is taken as
    /// putting the object back, as before verification existed.
    Unverified,
}

impl Verification {
    pub fn as_str(self) -> &'static str {
        match self {
            Verification::Verified => "verified",
            Verification::Unverified => "unverified",
        }
    }

    pub fn parse(s: &str) -> Option<Verification> {
        [Verification::Verified, Verification::Unverified]
            .into_iter()
            .find(|v| v.as_str() == s)
    }
}

/// What one event, or an accept, did to a drift. Correlation emits it, the
/// store persists it as it is.
#[derive(Debug, Clone, PartialEq)]
pub enum DriftTransition {
    Opened(OpenDrift),
    /// Another out-of-band change to an object that already drifted; the
    /// drift's fields afterwards.
    Joined {
        id: String,
        state: DriftState,
        paths: Option<Vec<DriftedPath>>,
    },
    /// The pipeline wrote the object again and put every drifted field
    /// back (or the fields were not known).
    Reconciled {
        id: String,
        at: Time,
        pipeline: String,
        audit_id: String,
        actor: String,
        seconds: f64,
        verification: Verification,
    },
    /// The pipeline wrote the object and left these drifted fields as the
    /// drift set them: the drift stays open.
    Persisting {
        id: String,
        since: Time,
        pipeline: String,
        audit_id: String,
        paths: Vec<DriftedPath>,
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
            DriftTransition::Joined { id, .. }
            | DriftTransition::Persisting { id, .. }
            | DriftTransition::Reconciled { id, .. }
            | DriftTransition::Accepted { id, .. } => id,
        }
    }

    /// The state the drift is in after this transition.
    pub fn state(&self) -> DriftState {
        match self {
            DriftTransition::Opened(_) => DriftState::Open,
            DriftTransition::Joined { state, .. } => *state,
            DriftTransition::Persisting { .. } => DriftState::Persisting,
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

impl DriftedPath {
    /// The field a change set and a fingerprint of what it set.
    pub fn of(change: &super::Change) -> DriftedPath {
        DriftedPath {
            path: change.path.clone(),
            value: (!change.redacted).then(|| fingerprint(&change.new)),
        }
    }
}

/// FNV-1a over a value's JSON: stable across restarts and versions
/// (`serde_json` maps are ordered by key), unlike the hashers of the maps.
pub fn fingerprint(value: &serde_json::Value) -> u64 {
    let text = value.to_string();
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// A drift that closed, as the sinks see it: alerting sinks end the drift's
/// alert thread with it. Built where the closing is known (the pipeline's
/// write, or an accept), with the object the drift was about.
#[derive(Debug, Clone, PartialEq)]
pub struct DriftClosed {
    pub id: String,
    pub cluster: String,
    pub object: ObjectRef,
    /// `Reconciled` or `Accepted`.
    pub state: DriftState,
    pub at: Time,
    /// The pipeline's identity, or who accepted it.
    pub by: String,
    /// The pipeline that reconciled it; `None` for an accept.
    pub pipeline: Option<String>,
    /// How the reconcile was checked; `None` for an accept.
    pub verification: Option<Verification>,
    /// The accept's reason.
    pub reason: Option<String>,
    /// How long the drift was open.
    pub seconds: f64,
}
