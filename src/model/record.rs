use serde::{Deserialize, Serialize};

use super::{
    Actor, Change, ChangesSource, DriftRef, FieldManagers, FindingType, LiveContext, ManagedBy,
    ObjectRef, Owner, RequestId, Risk, Severity, Time, VerdictKind,
};

/// One attributed change: who changed which object, when, which fields, and
/// how it was judged. The engine builds it once per recorded event; the
/// history stores it, the query API returns it, and a drift's finding is
/// its view in the `driftwatch.finding/v1` schema.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ChangeRecord {
    /// The finding id: stable per request.
    pub id: String,
    /// The stage time of the event.
    pub time: Time,
    /// When driftwatch received it, recorded only when `time` is further
    /// from that than `server.max_clock_skew`: retention then goes by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received: Option<Time>,
    pub cluster: String,
    pub resource: ObjectRef,
    pub verb: String,
    pub actor: Actor,
    pub audit_id: String,
    pub request_uri: String,
    pub verdict: VerdictKind,
    /// The sanctioned pipeline that made it, or whose identity or user agent
    /// a pipeline-related finding involves.
    pub pipeline: Option<String>,
    #[serde(rename = "type")]
    pub finding_type: Option<FindingType>,
    pub severity: Option<Severity>,
    pub reasons: Vec<String>,
    pub changes: Vec<Change>,
    /// What makes the change dangerous (a drift's; empty otherwise).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub risks: Vec<Risk>,
    pub drift: Option<DriftRef>,
    pub managed_by: Option<ManagedBy>,
    pub owner: Option<Owner>,
    /// From the live object; absent without a Kubernetes client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<LiveContext>,
    /// The managers of each changed field (live context).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub field_managers: Vec<FieldManagers>,
    /// Where `changes` came from, when there are any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changes_source: Option<ChangesSource>,
    /// The event carried a request or response body; in memory only.
    #[serde(skip)]
    pub had_body: bool,
    /// The request's identity; in memory only (the store keeps its key).
    #[serde(skip)]
    pub request: RequestId,
    /// Set when a stored row could not be read whole: what is wrong with it.
    /// The fields its columns hold are still filled in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub corrupt: Option<String>,
    /// Read back in a list view: some value or list was cut to bound the
    /// page (`… [N bytes, truncated]`); never set on a finding.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}
