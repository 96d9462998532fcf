//! driftwatch's own schemas: `driftwatch.finding/v1` (the serde of
//! [`Finding`]) and `driftwatch.alert/v1`.

use serde::Serialize;

use crate::model::{DriftState, ObjectRef, Severity};
use crate::sinks::Finding;
use crate::sinks::shape::Alert;

pub const ALERT_SCHEMA: &str = "driftwatch.alert/v1";

pub(super) fn finding(f: &Finding<'_>, out: &mut Vec<u8>) {
    super::json(f, out);
}

/// `driftwatch.alert/v1`: additive changes only, like the finding schema.
#[derive(Serialize)]
struct Wire<'a> {
    schema: &'static str,
    /// `opened`, `updated`, `closed` or `single`.
    kind: &'static str,
    drift_id: Option<&'a str>,
    state: Option<DriftState>,
    severity: Severity,
    cluster: &'a str,
    resource: &'a ObjectRef,
    /// How many findings the alert stands for.
    folded: usize,
    paths: &'a [String],
    first: &'a str,
    last: &'a str,
    /// The opening or latest finding, in `driftwatch.finding/v1`.
    finding: Option<Finding<'a>>,
    closed: Option<Closed<'a>>,
}

#[derive(Serialize)]
struct Closed<'a> {
    state: DriftState,
    at: &'a str,
    by: &'a str,
    pipeline: Option<&'a str>,
    verification: Option<&'static str>,
    reason: Option<&'a str>,
    seconds: f64,
}

pub(super) fn alert(a: &Alert, out: &mut Vec<u8>) {
    let wire = Wire {
        schema: ALERT_SCHEMA,
        kind: a.kind.as_str(),
        drift_id: a.drift_id.as_deref(),
        state: a.state,
        severity: a.severity,
        cluster: &a.cluster,
        resource: &a.object,
        folded: a.folded,
        paths: &a.paths,
        first: &a.first.text,
        last: &a.last.text,
        finding: a.finding.as_ref().map(|f| f.view()),
        closed: a.closed.as_ref().map(|c| Closed {
            state: c.state,
            at: &c.at.text,
            by: &c.by,
            pipeline: c.pipeline.as_deref(),
            verification: c.verification.map(|v| v.as_str()),
            reason: c.reason.as_deref(),
            seconds: c.seconds,
        }),
    };
    super::json(&wire, out);
}
