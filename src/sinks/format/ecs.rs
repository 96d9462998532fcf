//! Elastic Common Schema 8.x: one document per finding or alert, in the
//! fields Elastic's Kubernetes and cloud audit integrations fill
//! (`orchestrator.*`, `user.*`, `source.ip`), the rest under `driftwatch.*`.

use serde_json::{Value, json};

use super::common::{alert_title, alert_type, alert_uid, api_version, finding_title};
use crate::model::{ChangeRecord, ObjectRef, Severity};
use crate::sinks::Finding;
use crate::sinks::shape::Alert;

/// The ECS version the output follows (`ecs.version`).
pub const ECS_VERSION: &str = "8.11.0";

/// `event.severity`: the numbers Elastic's detection rules use for low,
/// medium, high and critical.
pub fn severity_number(s: Severity) -> u32 {
    match s {
        Severity::Low => 21,
        Severity::Medium => 47,
        Severity::High => 73,
        Severity::Critical => 99,
    }
}

/// `event.category`: RBAC and service accounts are identity and access.
fn categories(o: &ObjectRef) -> Vec<&'static str> {
    let iam = o.group == "rbac.authorization.k8s.io"
        || (o.group.is_empty() && o.resource == "serviceaccounts");
    if iam {
        vec!["configuration", "iam"]
    } else {
        vec!["configuration"]
    }
}

/// `event.type` of a Kubernetes verb (allowed for both categories).
fn types(verb: &str) -> Vec<&'static str> {
    match verb {
        "create" => vec!["creation"],
        "delete" | "deletecollection" => vec!["deletion"],
        _ => vec!["change"],
    }
}

pub(super) fn finding(f: &Finding<'_>) -> Value {
    let r = f.record;
    let title = finding_title(f.finding_type, &r.resource);
    let mut v = base(r, f.severity, &title);
    v["event"]["id"] = json!(r.id);
    v["event"]["dataset"] = json!("driftwatch.finding");
    v["rule"] = json!({ "name": f.finding_type.as_str(), "ruleset": "driftwatch" });
    v["driftwatch"] = driftwatch(r, f);
    v
}

pub(super) fn alert(a: &Alert) -> Value {
    let title = alert_title(a);
    let mut v = match &a.finding {
        Some(f) => {
            let view = f.view();
            let mut v = base(&f.record, a.severity, &title);
            v["driftwatch"] = driftwatch(&f.record, &view);
            v
        }
        None => closed_base(a, &title),
    };
    v["@timestamp"] = json!(a.last.text);
    v["event"]["id"] = json!(alert_uid(a));
    v["event"]["dataset"] = json!("driftwatch.alert");
    v["event"]["start"] = json!(a.first.text);
    v["event"]["end"] = json!(a.last.text);
    v["rule"] = json!({ "name": alert_type(a), "ruleset": "driftwatch" });
    let mut native = Vec::new();
    super::native::alert(a, &mut native);
    let mut alert: Value = serde_json::from_slice(&native).unwrap_or(Value::Null);
    if let Some(o) = alert.as_object_mut() {
        // The finding is already in the document's own fields.
        o.remove("finding");
    }
    v["driftwatch"]["alert"] = alert;
    v
}

/// The fields of one change.
fn base(r: &ChangeRecord, severity: Severity, title: &str) -> Value {
    let a = &r.actor;
    let mut v = json!({
        "@timestamp": r.time.text,
        "ecs": { "version": ECS_VERSION },
        "message": format!("{title}. {}", r.reasons.join(" ")),
        "event": {
            "kind": "alert",
            "category": categories(&r.resource),
            "type": types(&r.verb),
            "action": r.verb,
            // The audit record's response code is not part of a finding.
            "outcome": "unknown",
            "severity": severity_number(severity),
            "reason": r.reasons.join(" "),
            "module": "driftwatch",
            "provider": "kubernetes",
        },
        "user": user(r),
        "orchestrator": orchestrator(&r.resource, &r.cluster),
        "url": { "original": r.request_uri },
        "related": { "user": related_users(r), "ip": a.source_ips },
    });
    if let Some(ua) = &a.user_agent {
        v["user_agent"] = json!({ "original": ua });
    }
    if let Some(ip) = a.source_ips.first() {
        v["source"] = json!({ "ip": ip });
    }
    v
}

/// `user.*` is who acted; an impersonated identity is `user.effective`, as
/// ECS puts the identity a `sudo` ran as.
fn user(r: &ChangeRecord) -> Value {
    let a = &r.actor;
    let groups = |g: &[String]| json!({ "name": g });
    match &a.impersonated_by {
        Some(by) => json!({
            "name": by.username,
            "group": groups(&by.groups),
            "effective": {
                "name": a.username,
                "id": a.uid,
                "group": groups(&a.groups),
            },
        }),
        None => json!({ "name": a.username, "id": a.uid, "group": groups(&a.groups) }),
    }
}

fn related_users(r: &ChangeRecord) -> Vec<&str> {
    let mut users = vec![r.actor.username.as_str()];
    if let Some(by) = &r.actor.impersonated_by {
        users.insert(0, by.username.as_str());
    }
    users
}

fn orchestrator(o: &ObjectRef, cluster: &str) -> Value {
    let mut resource = json!({ "type": o.resource, "name": o.name });
    if let Some(uid) = &o.uid {
        resource["id"] = json!(uid);
    }
    json!({
        "type": "kubernetes",
        "cluster": { "name": cluster },
        "namespace": o.namespace,
        "api_version": api_version(o),
        "resource": resource,
    })
}

fn driftwatch(r: &ChangeRecord, f: &Finding<'_>) -> Value {
    json!({
        "schema": crate::sinks::finding::SCHEMA,
        "id": r.id,
        "type": f.finding_type.as_str(),
        "severity": f.severity.as_str(),
        "audit_id": r.audit_id,
        "stage": f.stage.as_str(),
        "changes": r.changes,
        "risks": r.risks,
        "drift": r.drift,
        "pipeline": r.pipeline,
        "managed_by": r.managed_by,
        "owner": r.owner,
        "resource": { "group": r.resource.group, "subresource": r.resource.subresource },
        "actor": { "client": r.actor.client, "field_manager": r.actor.field_manager },
    })
}

/// A closed drift: who closed it, on which object.
fn closed_base(a: &Alert, title: &str) -> Value {
    let by = a.closed.as_ref().map_or("", |c| c.by.as_str());
    json!({
        "@timestamp": a.last.text,
        "ecs": { "version": ECS_VERSION },
        "message": title,
        "event": {
            "kind": "alert",
            "category": categories(&a.object),
            "type": ["change"],
            "action": a.state.map_or("closed", |s| s.as_str()),
            "outcome": "success",
            "severity": severity_number(a.severity),
            "module": "driftwatch",
            "provider": "kubernetes",
        },
        "user": { "name": by },
        "orchestrator": orchestrator(&a.object, &a.cluster),
        "related": { "user": [by] },
        "driftwatch": {},
    })
}
