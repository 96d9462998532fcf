//! What the pipeline hands the store: typed rows, no SQL.

use serde::{Deserialize, Serialize};

use crate::correlate::{Change, ManagedBy, Owner, tracker::OpenDrift};
use crate::sinks::{Impersonator, ResourceRef};

/// One stored change (a sanctioned or drift mutation, or an interactive session).
#[derive(Debug, Clone)]
pub struct ChangeRecord {
    pub dedupe_key: [u8; 16],
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
    pub finding_id: String,
    pub drift_id: Option<String>,
    pub detail: ChangeDetail,
}

/// The columns nobody filters on, kept as one JSON document per row.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ChangeDetail {
    pub groups: Vec<String>,
    pub impersonated_by: Option<Impersonator>,
    pub user_agent: Option<String>,
    pub client: Option<String>,
    pub source_ips: Vec<String>,
    pub field_manager: Option<String>,
    pub request_uri: String,
    pub changes: Vec<Change>,
    pub managed_by: Option<ManagedBy>,
    pub owner: Option<Owner>,
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
