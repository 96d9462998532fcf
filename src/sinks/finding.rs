//! The `driftwatch.finding/v1` schema: a drift's [`ChangeRecord`] as SIEM
//! rules read it. Additive changes only: rules and tests depend on every
//! field here.

use serde::Serialize;

use crate::decode::Stage;
use crate::model::{
    Actor, Change, ChangeRecord, ChangesSource, DriftRef, FieldManagers, FindingType, LiveContext,
    ManagedBy, ObjectRef, Owner, Risk, Severity,
};

pub const SCHEMA: &str = "driftwatch.finding/v1";

/// A finding: a view of the record of an out-of-band change, never a copy.
#[derive(Debug, Clone, Copy)]
pub struct Finding<'a> {
    pub record: &'a ChangeRecord,
    pub finding_type: FindingType,
    pub severity: Severity,
    /// The audit stage the finding was raised at (`ResponseStarted` for an
    /// exec that is still open).
    pub stage: Stage,
}

impl<'a> Finding<'a> {
    /// The finding of a record judged drift; `None` for any other record.
    pub fn of(record: &'a ChangeRecord, stage: Stage) -> Option<Finding<'a>> {
        Some(Finding {
            finding_type: record.finding_type?,
            severity: record.severity?,
            record,
            stage,
        })
    }
}

#[derive(Serialize)]
struct Wire<'a> {
    schema: &'static str,
    /// Stable for a request: a redelivered event yields the same id.
    id: &'a str,
    #[serde(rename = "type")]
    finding_type: FindingType,
    severity: Severity,
    cluster: &'a str,
    time: &'a str,
    audit_id: &'a str,
    verb: &'a str,
    request_uri: &'a str,
    resource: &'a ObjectRef,
    actor: &'a Actor,
    reasons: &'a [String],
    changes: &'a [Change],
    /// What makes the change dangerous: `{rule, path, value, severity}`.
    risks: &'a [Risk],
    /// Named for the three pipeline-related types only. A pipeline identity
    /// that opens a shell is `interactive_access`; its reasons name the
    /// pipeline, and a SIEM rule keyed on `pipeline` must not take it for
    /// abuse of the pipeline's credentials.
    pipeline: Option<&'a str>,
    drift: Option<&'a DriftRef>,
    stage: &'static str,
    /// The GitOps tool whose markers the object carries, if any.
    managed_by: Option<&'a ManagedBy>,
    /// The object's controller owner (a ReplicaSet's Deployment); with
    /// live context, the top of the controller chain.
    owner: Option<&'a Owner>,
    /// Live-object context: absent when no Kubernetes client is configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    context: Option<&'a LiveContext>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    field_managers: &'a [FieldManagers],
    /// `body` or `managed_fields` (best effort, values unknown).
    #[serde(skip_serializing_if = "Option::is_none")]
    changes_source: Option<ChangesSource>,
}

impl Serialize for Finding<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = self.record;
        Wire {
            schema: SCHEMA,
            id: &r.id,
            finding_type: self.finding_type,
            severity: self.severity,
            cluster: &r.cluster,
            time: &r.time.text,
            audit_id: &r.audit_id,
            verb: &r.verb,
            request_uri: &r.request_uri,
            resource: &r.resource,
            actor: &r.actor,
            reasons: &r.reasons,
            changes: &r.changes,
            risks: &r.risks,
            pipeline: r.pipeline.as_deref().filter(|_| {
                self.finding_type.involves_pipeline()
                    || self.finding_type == FindingType::RiskyPipelineChange
            }),
            drift: r.drift.as_ref(),
            stage: self.stage.as_str(),
            managed_by: r.managed_by.as_ref(),
            owner: r.owner.as_ref(),
            context: r.context.as_ref(),
            field_managers: &r.field_managers,
            changes_source: r.changes_source,
        }
        .serialize(s)
    }
}

/// Findings as JSON lines, appended to `out`.
pub fn json_lines(findings: &[Finding<'_>], out: &mut Vec<u8>) {
    for f in findings {
        // Serializing our own struct to a Vec cannot fail.
        if serde_json::to_writer(&mut *out, f).is_ok() {
            out.push(b'\n');
        }
    }
}
