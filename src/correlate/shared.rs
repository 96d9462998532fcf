//! What the tracker remembers of one object, as bytes for a store that
//! several replicas share (`history.backend: postgres`): recent versions
//! (for field diffs), the manager and the owner. The object's open drift is
//! not in it: the drifts table holds that.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::state::{Version, Versions};
use super::tracker::Known;
use crate::model::{ManagedBy, Owner};

#[derive(Serialize)]
struct StateRef<'a> {
    versions: Vec<VersionRef<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    managed_by: Option<&'a ManagedBy>,
    #[serde(skip_serializing_if = "Option::is_none")]
    owner: Option<&'a Owner>,
}

#[derive(Serialize)]
struct VersionRef<'a> {
    rv: Option<u64>,
    us: i64,
    object: &'a RawValue,
}

#[derive(Deserialize)]
struct StateOwned {
    versions: Vec<VersionOwned>,
    #[serde(default)]
    managed_by: Option<ManagedBy>,
    #[serde(default)]
    owner: Option<Owner>,
}

#[derive(Deserialize)]
struct VersionOwned {
    rv: Option<u64>,
    us: i64,
    object: Box<RawValue>,
}

pub(super) fn encode(k: &Known) -> Vec<u8> {
    let state = StateRef {
        versions: k
            .versions
            .iter()
            .map(|v| VersionRef {
                rv: v.rv,
                us: v.us,
                object: &v.object,
            })
            .collect(),
        managed_by: k.managed_by.as_ref(),
        owner: k.owner.as_ref(),
    };
    // Serializing our own types to memory cannot fail.
    serde_json::to_vec(&state).unwrap_or_default()
}

/// `None` when the bytes are not a state this version wrote: the object is
/// then treated as not seen before (its next change is not diffed).
pub(super) fn decode(bytes: &[u8]) -> Option<Known> {
    let state: StateOwned = serde_json::from_slice(bytes).ok()?;
    let versions = state
        .versions
        .into_iter()
        .map(|v| Version {
            rv: v.rv,
            us: v.us,
            object: Arc::from(v.object),
        })
        .collect();
    Some(Known {
        versions: Versions::from_vec(versions),
        managed_by: state.managed_by,
        owner: state.owner,
    })
}
