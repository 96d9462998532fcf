//! What the pipeline hands the store: typed rows, no SQL.

use serde::{Deserialize, Serialize};

use crate::correlate::{Change, ManagedBy, Owner, tracker::OpenDrift};
use crate::sinks::{Impersonator, ResourceRef};

/// The store's idempotency key: the request's receive time (big-endian, so
/// that keys arrive almost in order and the unique index grows at its right
/// edge instead of rewriting random pages) followed by the 16-byte finding key.
pub type StoreKey = [u8; 24];

/// Builds a [`StoreKey`]; `received_us` is 0 when the event's time is unknown,
/// which keeps the key deterministic for redeliveries.
pub fn store_key(received_us: i64, finding_key: [u8; 16]) -> StoreKey {
    let mut key = [0u8; 24];
    // Flip the sign bit so that negative times sort before positive ones.
    key[..8].copy_from_slice(&((received_us as u64) ^ (1 << 63)).to_be_bytes());
    key[8..].copy_from_slice(&finding_key);
    key
}

/// The finding id inside a [`StoreKey`].
pub fn finding_id(key: &StoreKey) -> String {
    key[8..].iter().map(|b| format!("{b:02x}")).collect()
}

/// One stored change (a sanctioned or drift mutation, or an interactive session).
#[derive(Debug, Clone)]
pub struct ChangeRecord {
    pub dedupe_key: StoreKey,
    pub time: String,
    pub time_us: i64,
    pub cluster: String,
    pub resource: ResourceRef,
    pub verb: String,
    pub actor: String,
    pub audit_id: String,
    pub verdict: &'static str,
    pub pipeline: Option<String>,
    pub finding_type: Option<&'static str>,
    pub severity: Option<&'static str>,
    pub drift_id: Option<String>,
    pub detail: ChangeDetail,
}

/// The columns nobody filters on, kept as one JSON document per row.
/// Empty and absent fields are left out: a million rows is a lot of `null`s.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ChangeDetail {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub impersonated_by: Option<Impersonator>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub source_ips: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field_manager: Option<String>,
    pub request_uri: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<Change>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub managed_by: Option<ManagedBy>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<Owner>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
}

/// A drift row change, written in the same transaction as its change.
#[derive(Debug, Clone)]
pub enum DriftWrite {
    Open(OpenDrift),
    Reconciled {
        id: String,
        at: String,
        at_us: i64,
        pipeline: String,
        audit_id: String,
        actor: String,
        seconds: f64,
    },
    Accepted {
        id: String,
        at: String,
        at_us: i64,
        by: String,
        reason: String,
    },
}
