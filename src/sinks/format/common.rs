//! What every format says the same way: titles, labels, epoch times.

use crate::model::{FindingType, ObjectRef};
use crate::sinks::shape::{Alert, AlertKind};

/// `deployments.apps shop/api`, `namespaces shop`, `clusterroles admin`.
pub fn object_label(o: &ObjectRef) -> String {
    let mut kind = o.resource.clone();
    if !o.group.is_empty() {
        kind = format!("{kind}.{}", o.group);
    }
    if let Some(sub) = &o.subresource {
        kind = format!("{kind}/{sub}");
    }
    match (&o.namespace, &o.name) {
        (Some(ns), Some(name)) => format!("{kind} {ns}/{name}"),
        (None, Some(name)) => format!("{kind} {name}"),
        (Some(ns), None) => format!("{kind} in {ns}"),
        (None, None) => kind,
    }
}

/// The finding type as a phrase: `Out-of-band change`.
pub fn type_phrase(t: FindingType) -> &'static str {
    match t {
        FindingType::PipelineImpersonation => "Pipeline impersonation",
        FindingType::PipelineCredentialMisuse => "Pipeline credential misuse",
        FindingType::UserAgentSpoofing => "User agent spoofing",
        FindingType::InteractiveAccess => "Interactive access",
        FindingType::OutOfBandChange => "Out-of-band change",
        FindingType::RiskyPipelineChange => "Risky pipeline change",
        FindingType::DeniedChange => "Denied change",
    }
}

/// One line naming what happened to what.
pub fn finding_title(t: FindingType, o: &ObjectRef) -> String {
    format!("{}: {}", type_phrase(t), object_label(o))
}

pub fn alert_title(a: &Alert) -> String {
    let what = object_label(&a.object);
    match a.kind {
        AlertKind::Opened => format!("Drift opened: {what}"),
        AlertKind::Updated => format!("Drift updated ({} more changes): {what}", a.folded),
        AlertKind::Closed => match a.state {
            Some(s) => format!("Drift {}: {what}", s.as_str()),
            None => format!("Drift closed: {what}"),
        },
        AlertKind::Single => match &a.finding {
            Some(f) => finding_title(f.finding_type, &a.object),
            None => what,
        },
    }
}

/// The finding type an alert is about; a `Closed` alert names none.
pub fn alert_type(a: &Alert) -> &'static str {
    a.finding
        .as_ref()
        .map_or("drift_closed", |f| f.finding_type.as_str())
}

pub fn ms(us: i64) -> i64 {
    us.div_euclid(1000)
}

/// `apps/v1`, `v1` for the core group.
pub fn api_version(o: &ObjectRef) -> Option<String> {
    if o.version.is_empty() {
        return None;
    }
    Some(if o.group.is_empty() {
        o.version.clone()
    } else {
        format!("{}/{}", o.group, o.version)
    })
}

/// A stable id for one alert: a redelivered batch gives the same one.
pub fn alert_uid(a: &Alert) -> String {
    let base = a
        .drift_id
        .as_deref()
        .or(a.finding.as_ref().map(|f| f.record.id.as_str()))
        .unwrap_or("");
    format!("{base}:{}:{}", a.kind.as_str(), a.last.us)
}
