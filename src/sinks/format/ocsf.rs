//! OCSF 1.3.0: a Detection Finding (class 2004) whose evidence is the API
//! Activity (class 6003) of the change: who (actor), which call (api,
//! http_request), from where (src_endpoint), on what (resources). A drift's
//! alerts share one `finding_info.uid` (the drift id) so that a SIEM sees
//! one finding created, updated and closed.

use serde_json::{Map, Value, json};

use super::common::{
    alert_title, alert_type, alert_uid, api_version, finding_title, ms, type_phrase,
};
use crate::model::{DriftState, ObjectRef, Severity};
use crate::sinks::Finding;
use crate::sinks::shape::{Alert, AlertKind};

/// The OCSF schema version the output follows (`metadata.version`).
pub const OCSF_VERSION: &str = "1.3.0";
pub const CLASS_UID: u32 = 2004;
pub const CATEGORY_UID: u32 = 2;

/// `activity_id` of a finding's lifecycle.
fn activity(kind: AlertKind) -> (u32, &'static str) {
    match kind {
        AlertKind::Opened | AlertKind::Single => (1, "Create"),
        AlertKind::Updated => (2, "Update"),
        AlertKind::Closed => (3, "Close"),
    }
}

/// `severity_id`: driftwatch has no informational or fatal findings.
fn severity(s: Severity) -> (u32, &'static str) {
    match s {
        Severity::Low => (2, "Low"),
        Severity::Medium => (3, "Medium"),
        Severity::High => (4, "High"),
        Severity::Critical => (5, "Critical"),
    }
}

/// `status_id` from the drift: an accepted drift was reviewed and judged
/// intended, which OCSF calls suppressed; a reconciled one is resolved.
fn status(state: Option<DriftState>, kind: AlertKind) -> (u32, &'static str) {
    match (state, kind) {
        (Some(DriftState::Reconciled), _) => (4, "Resolved"),
        (Some(DriftState::Accepted), _) => (3, "Suppressed"),
        (_, AlertKind::Updated) | (Some(DriftState::Persisting), _) => (2, "In Progress"),
        _ => (1, "New"),
    }
}

/// The API Activity `activity_id` of a Kubernetes verb.
fn api_activity(verb: &str) -> (u32, &'static str) {
    match verb {
        "create" => (1, "Create"),
        "get" | "list" | "watch" => (2, "Read"),
        "update" | "patch" => (3, "Update"),
        "delete" | "deletecollection" => (4, "Delete"),
        _ => (99, "Other"),
    }
}

pub(super) fn finding(f: &Finding<'_>) -> Value {
    let r = f.record;
    let kind = match &r.drift {
        Some(d) if d.id != r.id => AlertKind::Updated,
        _ => AlertKind::Opened,
    };
    let state = r.drift.as_ref().and_then(|d| d.state);
    let uid = r.drift.as_ref().map_or(r.id.as_str(), |d| d.id.as_str());
    let t = ms(r.time.us);
    let info = json!({
        "uid": uid,
        "title": finding_title(f.finding_type, &r.resource),
        "desc": r.reasons.join(" "),
        "types": [f.finding_type.as_str()],
        "created_time": t,
        "first_seen_time": t,
        "last_seen_time": t,
        "related_events": [related_event(f)],
    });
    let head = Head {
        kind,
        severity: f.severity,
        state,
        time: t,
        uid: r.id.clone(),
        message: finding_title(f.finding_type, &r.resource),
    };
    let mut v = head.event(info);
    v["evidences"] = json!([evidence(f)]);
    v["resources"] = json!([resource(&r.resource, &r.cluster)]);
    v["unmapped"] = json!({ "driftwatch": super::native_value(f) });
    v
}

pub(super) fn alert(a: &Alert) -> Value {
    let uid = a
        .drift_id
        .clone()
        .or(a.finding.as_ref().map(|f| f.record.id.clone()))
        .unwrap_or_default();
    let mut info = json!({
        "uid": uid,
        "title": alert_title(a),
        "desc": alert_desc(a),
        "types": [alert_type(a)],
        "created_time": ms(a.first.us),
        "first_seen_time": ms(a.first.us),
        "last_seen_time": ms(a.last.us),
    });
    if let Some(f) = &a.finding {
        info["related_events"] = json!([related_event(&f.view())]);
    }
    let head = Head {
        kind: a.kind,
        severity: a.severity,
        state: a.state,
        time: ms(a.last.us),
        uid: alert_uid(a),
        message: alert_title(a),
    };
    let mut v = head.event(info);
    v["count"] = json!(a.folded.max(1));
    v["evidences"] = json!([match &a.finding {
        Some(f) => evidence(&f.view()),
        None => closing_evidence(a),
    }]);
    v["resources"] = json!([resource(&a.object, &a.cluster)]);
    let mut native = Vec::new();
    super::native::alert(a, &mut native);
    v["unmapped"] = json!({
        "driftwatch": serde_json::from_slice::<Value>(&native).unwrap_or(Value::Null)
    });
    v
}

/// The attributes every event carries, from the base event and the
/// finding class.
struct Head {
    kind: AlertKind,
    severity: Severity,
    state: Option<DriftState>,
    time: i64,
    uid: String,
    message: String,
}

impl Head {
    fn event(self, finding_info: Value) -> Value {
        let (activity_id, activity_name) = activity(self.kind);
        let (severity_id, severity) = severity(self.severity);
        let (status_id, status) = status(self.state, self.kind);
        json!({
            "class_uid": CLASS_UID,
            "class_name": "Detection Finding",
            "category_uid": CATEGORY_UID,
            "category_name": "Findings",
            "activity_id": activity_id,
            "activity_name": activity_name,
            "type_uid": CLASS_UID * 100 + activity_id,
            "type_name": format!("Detection Finding: {activity_name}"),
            "severity_id": severity_id,
            "severity": severity,
            "status_id": status_id,
            "status": status,
            "time": self.time,
            "message": self.message,
            "is_alert": self.kind != AlertKind::Closed,
            "metadata": metadata(&self.uid),
            "finding_info": finding_info,
        })
    }
}

fn metadata(uid: &str) -> Value {
    json!({
        "version": OCSF_VERSION,
        "uid": uid,
        "product": {
            "name": "driftwatch",
            "vendor_name": "driftwatch",
            "version": env!("CARGO_PKG_VERSION"),
        },
        "log_name": crate::sinks::finding::SCHEMA,
    })
}

/// The API Activity of the change: what the audit event says.
fn evidence(f: &Finding<'_>) -> Value {
    let r = f.record;
    let a = &r.actor;
    let mut user = Map::new();
    user.insert("name".into(), json!(a.username));
    if let Some(uid) = &a.uid {
        user.insert("uid".into(), json!(uid));
    }
    let groups: Vec<Value> = a.groups.iter().map(|g| json!({ "name": g })).collect();
    user.insert("groups".into(), Value::Array(groups));
    let mut actor = json!({ "user": user });
    if let Some(client) = &a.client {
        actor["app_name"] = json!(client);
    }
    if let Some(by) = &a.impersonated_by {
        // The real identity behind an impersonation: OCSF 1.3 has no user
        // field for it; `invoked_by` names who made the call.
        actor["invoked_by"] = json!(by.username);
    }
    let mut src = json!({});
    match a.source_ips.first() {
        Some(ip) => src["ip"] = json!(ip),
        None => src["name"] = json!("unknown"),
    }
    let mut http = json!({ "url": { "path": r.request_uri, "url_string": r.request_uri } });
    if let Some(ua) = &a.user_agent {
        http["user_agent"] = json!(ua);
    }
    let (_, api_activity_name) = api_activity(&r.verb);
    json!({
        "actor": actor,
        "api": {
            "operation": r.verb,
            "request": { "uid": r.audit_id },
            "service": { "name": "kubernetes" },
            "version": api_version(&r.resource),
        },
        "src_endpoint": src,
        "http_request": http,
        "data": {
            "api_activity": api_activity_name,
            "changes": r.changes,
            "risks": r.risks,
        },
    })
}

/// A closed drift carries no API call of its own in the alert: who closed
/// it and how.
fn closing_evidence(a: &Alert) -> Value {
    let Some(c) = &a.closed else {
        return json!({ "data": {} });
    };
    let operation = match c.state {
        DriftState::Accepted => "accept",
        _ => "reconcile",
    };
    json!({
        "actor": { "user": { "name": c.by } },
        "api": {
            "operation": operation,
            "service": { "name": c.pipeline.as_deref().unwrap_or("driftwatch") },
        },
        "data": {
            "state": c.state.as_str(),
            "verification": c.verification.map(|v| v.as_str()),
            "reason": c.reason,
            "seconds_open": c.seconds,
        },
    })
}

/// The audit event as an OCSF related event (API Activity, 6003).
fn related_event(f: &Finding<'_>) -> Value {
    let (id, name) = api_activity(&f.record.verb);
    json!({
        "uid": f.record.audit_id,
        "type_uid": 6003 * 100 + id,
        "type_name": format!("API Activity: {name}"),
    })
}

fn resource(o: &ObjectRef, cluster: &str) -> Value {
    let mut v = json!({
        "type": o.resource,
        "name": o.name_str(),
        "cloud_partition": cluster,
        "group": { "name": o.group },
    });
    if let Some(ns) = &o.namespace {
        v["namespace"] = json!(ns);
    }
    if let Some(uid) = &o.uid {
        v["uid"] = json!(uid);
    }
    if let Some(version) = api_version(o) {
        v["version"] = json!(version);
    }
    v
}

fn alert_desc(a: &Alert) -> String {
    match (&a.finding, &a.closed) {
        (Some(f), _) => format!(
            "{}; {} change(s); fields: {}. {}",
            type_phrase(f.finding_type),
            a.folded,
            a.paths.join(", "),
            f.record.reasons.join(" ")
        ),
        (None, Some(c)) => format!(
            "Drift {} by {} after {:.0}s{}",
            c.state.as_str(),
            c.by,
            c.seconds,
            c.reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default()
        ),
        (None, None) => String::new(),
    }
}
