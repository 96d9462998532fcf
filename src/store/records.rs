//! How a [`ChangeRecord`] is laid out in a row: the filtered-on fields as
//! columns, the rest as one JSON document (`detail`). Empty and absent
//! fields are left out of it: a million rows is a lot of `null`s.

use serde::{Deserialize, Serialize};

use crate::model::{Change, ChangeRecord, DriftedPath, Impersonator, ManagedBy, Owner, Risk, Time};
use crate::telemetry::events::{Emit, StoreRowCorrupt};

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub(super) struct Detail {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
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
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub risks: Vec<Risk>,
    /// Its text; the `received_us` column holds its time for retention.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub received: Option<Time>,
}

/// The same fields, borrowed from a record for writing.
#[derive(Serialize)]
pub(super) struct DetailRef<'a> {
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    groups: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    uid: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    impersonated_by: Option<&'a Impersonator>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_agent: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client: Option<&'a str>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    source_ips: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    field_manager: Option<&'a str>,
    request_uri: &'a str,
    #[serde(skip_serializing_if = "<[Change]>::is_empty")]
    changes: &'a [Change],
    #[serde(skip_serializing_if = "Option::is_none")]
    managed_by: Option<&'a ManagedBy>,
    #[serde(skip_serializing_if = "Option::is_none")]
    owner: Option<&'a Owner>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    reasons: &'a [String],
    #[serde(skip_serializing_if = "<[Risk]>::is_empty")]
    risks: &'a [Risk],
    #[serde(skip_serializing_if = "Option::is_none")]
    received: Option<&'a Time>,
}

impl<'a> DetailRef<'a> {
    pub(super) fn of(c: &'a ChangeRecord) -> DetailRef<'a> {
        DetailRef {
            groups: &c.actor.groups,
            uid: c.actor.uid.as_deref(),
            impersonated_by: c.actor.impersonated_by.as_ref(),
            user_agent: c.actor.user_agent.as_deref(),
            client: c.actor.client.as_deref(),
            source_ips: &c.actor.source_ips,
            field_manager: c.actor.field_manager.as_deref(),
            request_uri: &c.request_uri,
            changes: &c.changes,
            managed_by: c.managed_by.as_ref(),
            owner: c.owner.as_ref(),
            reasons: &c.reasons,
            risks: &c.risks,
            received: c.received.as_ref(),
        }
    }
}

impl Detail {
    /// Moves the detail's fields into a record read from the columns.
    pub(super) fn fill(self, c: &mut ChangeRecord) {
        c.actor.groups = self.groups;
        c.actor.uid = self.uid;
        c.actor.impersonated_by = self.impersonated_by;
        c.actor.user_agent = self.user_agent;
        c.actor.client = self.client;
        c.actor.source_ips = self.source_ips;
        c.actor.field_manager = self.field_manager;
        c.request_uri = self.request_uri;
        c.changes = self.changes;
        c.managed_by = self.managed_by;
        c.owner = self.owner;
        c.reasons = self.reasons;
        c.risks = self.risks;
        c.received = self.received;
    }
}

/// The changed paths, newline-separated: what `field=` filters match.
pub(super) fn changed_paths(c: &ChangeRecord) -> String {
    let mut paths = String::new();
    for (i, ch) in c.changes.iter().enumerate() {
        if i > 0 {
            paths.push('\n');
        }
        paths.push_str(&ch.path);
    }
    paths
}

/// A drift's fields as stored: JSON, or `NULL` when not known.
pub(super) fn paths_json(paths: Option<&[DriftedPath]>) -> Option<String> {
    paths.and_then(|p| serde_json::to_string(p).ok())
}

/// A drift's fields read back; an unreadable column is counted and taken as
/// not known, which makes its reconcile unverified rather than wrong.
pub(crate) fn drifted_paths(id: &str, column: Option<String>) -> Option<Vec<DriftedPath>> {
    let text = column?;
    match serde_json::from_str(&text) {
        Ok(paths) => Some(paths),
        Err(e) => {
            StoreRowCorrupt {
                table: "drifts",
                problem: &format!("the drifted fields of {id} are not readable ({e})"),
            }
            .emit();
            None
        }
    }
}
