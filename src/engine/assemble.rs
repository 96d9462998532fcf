//! The only builder of an attributed change. A finding is a view of the
//! record built here (see [`crate::sinks::Finding`]); the history stores it
//! as it is; the query API reads it back.

use crate::classify::Verdict;
use crate::correlate::Correlation;
use crate::decode::Event;
use crate::model::{Actor, ChangeRecord, ChangesSource, RequestId, Time};

/// What is known of one event once it is judged and correlated.
pub(super) struct Judged<'a> {
    pub cluster: &'a str,
    pub event: &'a Event<'a>,
    pub verdict: &'a Verdict,
    /// The sanctioned pipeline that wrote, or whose identity or user agent
    /// a pipeline-related finding involves.
    pub pipeline: Option<&'a str>,
    pub request: RequestId,
    pub id: String,
    pub time: Time,
    /// When it was received, if its own time is too far from that.
    pub received: Option<Time>,
    /// Its changes are its admission review's.
    pub admitted: bool,
}

pub(super) fn assemble(j: Judged<'_>, corr: Correlation) -> ChangeRecord {
    let ev = j.event;
    let (finding_type, severity, reasons, risks) = match j.verdict {
        Verdict::Drift(d) => (
            Some(d.finding_type),
            Some(d.severity),
            d.reasons.clone(),
            d.risks.clone(),
        ),
        _ => (None, None, Vec::new(), Vec::new()),
    };
    let mut changes = corr.changes;
    if changes.is_empty() && ev.verb() == "create" && !ev.failed() {
        // A create shows no field changes; its risky fields are what an
        // on-call engineer needs to see first.
        changes = risks
            .iter()
            .filter(|r| !r.path.is_empty())
            .map(|r| crate::model::Change {
                path: r.path.clone(),
                old: serde_json::Value::Null,
                new: r.value.clone(),
                redacted: false,
            })
            .collect();
        changes.dedup_by(|a, b| a.path == b.path);
    }
    let source = if j.admitted {
        ChangesSource::Admission
    } else {
        ChangesSource::Body
    };
    let changes_source = (!changes.is_empty()).then_some(source);
    ChangeRecord {
        id: j.id,
        time: j.time,
        received: j.received,
        cluster: j.cluster.to_owned(),
        resource: corr.object,
        verb: ev.verb().to_owned(),
        actor: Actor::of(ev),
        audit_id: ev.audit_id().to_owned(),
        request_uri: ev.request_uri().into_owned(),
        verdict: j.verdict.kind(),
        pipeline: j.pipeline.map(str::to_owned),
        finding_type,
        severity,
        reasons,
        changes,
        risks,
        drift: corr.transition.as_ref().map(|t| t.drift_ref()),
        managed_by: corr.managed_by,
        owner: corr.owner,
        context: None,
        field_managers: Vec::new(),
        changes_source,
        had_body: ev.request_object.is_some() || ev.response_object.is_some(),
        request: j.request,
        corrupt: None,
        truncated: false,
    }
}
