//! The `driftwatch.finding/v1` schema. Additive changes only: SIEM rules and
//! tests depend on every field here.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::classify::{Drift, FindingType, Policy, Severity};
use crate::correlate::Change;
use crate::decode::Event;

pub const SCHEMA: &str = "driftwatch.finding/v1";

#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub schema: &'static str,
    /// Stable for a request: a redelivered event yields the same id.
    pub id: String,
    #[serde(rename = "type")]
    pub finding_type: FindingType,
    pub severity: Severity,
    pub cluster: String,
    pub time: String,
    pub audit_id: String,
    pub verb: String,
    pub request_uri: String,
    pub resource: ResourceRef,
    pub actor: Actor,
    pub reasons: Vec<String>,
    pub changes: Vec<Change>,
    pub pipeline: Option<String>,
    pub drift: Option<DriftRef>,
    /// The audit stage the finding was raised at (`ResponseStarted` for an
    /// exec that is still open).
    pub stage: &'static str,
    /// The GitOps tool whose markers the object carries, if any.
    pub managed_by: Option<crate::correlate::ManagedBy>,
    /// The object's controller owner (a ReplicaSet's Deployment).
    pub owner: Option<crate::correlate::Owner>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceRef {
    pub group: String,
    pub version: String,
    pub resource: String,
    pub subresource: Option<String>,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub uid: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Actor {
    /// The effective identity: the impersonated user when impersonation was used.
    pub username: String,
    pub groups: Vec<String>,
    pub uid: Option<String>,
    pub impersonated_by: Option<Impersonator>,
    pub user_agent: Option<String>,
    pub client: Option<String>,
    pub source_ips: Vec<String>,
    pub field_manager: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Impersonator {
    pub username: String,
    pub groups: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DriftRef {
    pub id: String,
    pub state: String,
}

impl Finding {
    // The pipeline computes id and time once for the finding and the store.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        cluster: &str,
        ev: &Event<'_>,
        stage: crate::decode::Stage,
        drift: &Drift,
        policy: &Policy,
        changes: Vec<Change>,
        id: String,
        time: String,
    ) -> Finding {
        let empty = crate::decode::UserInfo::default();
        let real = ev.user.as_ref().unwrap_or(&empty);
        let effective = ev.impersonated_user.as_ref().unwrap_or(real);
        let strings = |v: &Option<Vec<std::borrow::Cow<'_, str>>>| {
            v.as_deref()
                .unwrap_or(&[])
                .iter()
                .map(|s| s.clone().into_owned())
                .collect::<Vec<_>>()
        };
        let user_agent = ev.user_agent.as_deref().filter(|s| !s.is_empty());
        Finding {
            schema: SCHEMA,
            id,
            finding_type: drift.finding_type,
            severity: drift.severity,
            cluster: cluster.to_owned(),
            time,
            audit_id: ev.audit_id().to_owned(),
            verb: ev.verb().to_owned(),
            request_uri: ev.request_uri().to_owned(),
            resource: resource_ref(ev),
            actor: Actor {
                username: effective.username.as_deref().unwrap_or("").to_owned(),
                groups: strings(&effective.groups),
                uid: non_empty(effective.uid.as_deref()),
                impersonated_by: ev.impersonated_user.as_ref().map(|_| Impersonator {
                    username: real.username.as_deref().unwrap_or("").to_owned(),
                    groups: strings(&real.groups),
                }),
                user_agent: user_agent.map(str::to_owned),
                client: user_agent.map(client_of),
                source_ips: strings(&ev.source_ips),
                field_manager: ev.query_param("fieldManager").map(|f| f.into_owned()),
            },
            reasons: drift.reasons.clone(),
            changes,
            // The contract names a pipeline for the three pipeline types
            // only. A pipeline identity that opens a shell is
            // `interactive_access`; its reasons name the pipeline, and a
            // SIEM rule keyed on `pipeline` must not take it for abuse of
            // the pipeline's credentials.
            pipeline: drift
                .pipeline
                .filter(|_| drift.finding_type.involves_pipeline())
                .and_then(|i| policy.pipeline_name(i))
                .map(str::to_owned),
            drift: None,
            stage: stage.as_str(),
            managed_by: None,
            owner: None,
        }
    }
}

fn non_empty(s: Option<&str>) -> Option<String> {
    s.filter(|s| !s.is_empty()).map(str::to_owned)
}

pub fn resource_ref(ev: &Event<'_>) -> ResourceRef {
    let o = ev.object_ref.as_ref();
    fn get<'e>(
        o: Option<&'e crate::decode::ObjectRef<'e>>,
        f: fn(&'e crate::decode::ObjectRef<'e>) -> Option<&'e str>,
    ) -> Option<String> {
        o.and_then(f).filter(|s| !s.is_empty()).map(str::to_owned)
    }
    ResourceRef {
        group: get(o, |o| o.api_group.as_deref()).unwrap_or_default(),
        version: get(o, |o| o.api_version.as_deref()).unwrap_or_default(),
        resource: get(o, |o| o.resource.as_deref()).unwrap_or_default(),
        subresource: get(o, |o| o.subresource.as_deref()),
        namespace: get(o, |o| o.namespace.as_deref()),
        name: get(o, |o| o.name.as_deref()),
        uid: get(o, |o| o.uid.as_deref()),
    }
}

/// Same request, same id, across redeliveries and restarts; a SIEM can
/// deduplicate on it.
pub fn finding_id(cluster: &str, ev: &Event<'_>) -> String {
    finding_key(cluster, ev)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The 16 bytes behind [`finding_id`]: the store's idempotency key. A
/// cryptographic hash, so that it never changes with a library upgrade.
pub fn finding_key(cluster: &str, ev: &Event<'_>) -> [u8; 16] {
    let mut h = Sha256::new();
    for part in [
        cluster,
        ev.audit_id(),
        ev.received_at(),
        ev.verb(),
        ev.request_uri(),
        ev.username(),
    ] {
        h.update(part.as_bytes());
        h.update([0u8]);
    }
    let digest = h.finalize();
    let mut key = [0u8; 16];
    key.copy_from_slice(&digest[..16]);
    key
}

/// RFC 3339 in UTC with microseconds, whatever the source wrote (Panther's
/// fixtures use `YYYY-MM-DD HH:MM:SS`). Unparseable times pass through.
pub fn normalize_time(raw: &str) -> String {
    match parse_time(raw) {
        Some(ts) => format_time(ts),
        None => raw.to_owned(),
    }
}

/// An audit time: RFC 3339, or `YYYY-MM-DD HH:MM:SS` taken as UTC.
pub fn parse_time(raw: &str) -> Option<jiff::Timestamp> {
    if let Ok(ts) = raw.parse::<jiff::Timestamp>() {
        return Some(ts);
    }
    let dt = raw.parse::<jiff::civil::DateTime>().ok()?;
    dt.to_zoned(jiff::tz::TimeZone::UTC)
        .ok()
        .map(|z| z.timestamp())
}

pub fn format_time(ts: jiff::Timestamp) -> String {
    ts.strftime("%Y-%m-%dT%H:%M:%S.%6fZ").to_string()
}

/// A short name for the client program, from the user agent's product token:
/// `kubectl/v1.31.2 (linux/amd64) kubernetes/abc1234` is `kubectl`.
pub fn client_of(user_agent: &str) -> String {
    let product = user_agent
        .split(['/', ' '])
        .next()
        .unwrap_or(user_agent)
        .to_ascii_lowercase();
    let name = match product.as_str() {
        "kubectl.exe" => "kubectl",
        "argocd-application-controller" | "argocd-server" | "argocd" => "argocd",
        "kustomize-controller" | "helm-controller" | "source-controller" | "flux" => "flux",
        other => other,
    };
    name.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients() {
        assert_eq!(
            client_of("kubectl/v1.31.2 (linux/amd64) kubernetes/abc1234"),
            "kubectl"
        );
        assert_eq!(
            client_of("kubectl.exe/v1.31.2 (windows/amd64) kubernetes/abc1234"),
            "kubectl"
        );
        assert_eq!(
            client_of("argocd-application-controller/v2.13.1 (linux/amd64)"),
            "argocd"
        );
        assert_eq!(client_of("kustomize-controller/v1.4.0"), "flux");
        assert_eq!(client_of("Helm/3.16.2"), "helm");
        assert_eq!(client_of("Go-http-client/2.0"), "go-http-client");
    }

    #[test]
    fn times_are_normalized() {
        assert_eq!(
            normalize_time("2018-10-26T13:38:34Z"),
            "2018-10-26T13:38:34.000000Z"
        );
        assert_eq!(
            normalize_time("2026-11-20T10:00:00.123456Z"),
            "2026-11-20T10:00:00.123456Z"
        );
        assert_eq!(
            normalize_time("2022-12-01 20:27:06"),
            "2022-12-01T20:27:06.000000Z"
        );
        assert_eq!(normalize_time("<ts>"), "<ts>");
    }
}
