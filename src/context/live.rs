//! The live values of an unclosed drift's fields, for
//! `GET /api/v1/drifts/{id}?live=true`: one full GET of the object now
//! (the values are needed, so not the metadata-only fetch), through the
//! cluster's client, within `kubernetes.lookup_timeout` and behind the
//! cluster's breaker. No cache: a person is asking what is there now.
//!
//! A drift keeps only a fingerprint of each value it wrote
//! ([`DriftedPath::value`]), so each field is one of:
//! - `still_drifted`: the live value's fingerprint is the drift's;
//! - `removed`: the field is not in the live object;
//! - `changed`: it holds another value (someone, or the pipeline, wrote it
//!   since; which value the pipeline would write is not known here);
//! - `unknown`: the drift's value was not known (redacted), or the path
//!   cannot be followed in the object.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::api::{Api, ApiResource, DynamicObject};
use serde::Serialize;

use super::breaker::{self, Breakers};
use super::client::{Clients, Failed};
use crate::correlate::changes::{Lookup, value_at};
use crate::model::{DriftedPath, PathPattern, fingerprint};
use crate::telemetry::events::{ContextLiveRead, Emit};

/// What the live read needs, shared by every request.
#[derive(Clone)]
pub struct Live {
    clients: Clients,
    breakers: Arc<Breakers>,
    timeout: Duration,
    redaction: Arc<Vec<PathPattern>>,
}

/// The object a drift is about and the fields it changed.
#[derive(Debug, Clone)]
pub struct Target {
    pub cluster: String,
    pub group: String,
    /// The version its last change was served at; `None` when no change of
    /// the drift is stored any more.
    pub version: Option<String>,
    pub resource: String,
    pub namespace: Option<String>,
    pub name: String,
    /// `None` when the drift's fields are not known.
    pub paths: Option<Vec<DriftedPath>>,
}

/// The `live` member of the drift route's answer.
#[derive(Debug, Clone, Serialize)]
pub struct LiveView {
    pub state: LiveState,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
    /// The error, for `reason: error`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    pub fetched_at: String,
    pub fields: Vec<LiveField>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LiveState {
    Live,
    Unavailable,
}

/// Why there are no live values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The object is gone.
    NotFound,
    /// RBAC refused the read (the ClusterRole lacks its kind).
    Forbidden,
    /// A Secret: never read.
    Secret,
    /// No Kubernetes client for the drift's cluster (or `kubernetes` is off).
    NoClient,
    /// The drift's API version is not stored any more.
    NoVersion,
    CircuitOpen,
    Timeout,
    Error,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::NotFound => "not_found",
            Reason::Forbidden => "forbidden",
            Reason::Secret => "secret",
            Reason::NoClient => "no_client",
            Reason::NoVersion => "no_version",
            Reason::CircuitOpen => "circuit_open",
            Reason::Timeout => "timeout",
            Reason::Error => "error",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct LiveField {
    pub path: String,
    /// The drift's FNV-1a fingerprint as 16 hex digits (a JSON number
    /// would lose digits in most clients); `null` when not known.
    pub drift_value_fingerprint: Option<String>,
    /// The live value; `null` when absent or redacted.
    pub live: serde_json::Value,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub redacted: bool,
    pub status: FieldStatus,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldStatus {
    StillDrifted,
    Removed,
    Changed,
    Unknown,
}

impl Live {
    pub(super) fn new(
        clients: Clients,
        breakers: Arc<Breakers>,
        timeout: Duration,
        redaction: Vec<PathPattern>,
    ) -> Live {
        Live {
            clients,
            breakers,
            timeout,
            redaction: Arc::new(redaction),
        }
    }

    /// Reads the object once and compares each drifted field; counted by
    /// outcome (`live` or the reason).
    pub async fn read(&self, target: &Target) -> LiveView {
        let view = self.read_once(target).await;
        let outcome = view.reason.map_or("live", Reason::as_str);
        ContextLiveRead { outcome }.emit();
        view
    }

    async fn read_once(&self, target: &Target) -> LiveView {
        if target.group.is_empty() && target.resource == "secrets" {
            return unavailable(Reason::Secret, None);
        }
        let Some(client) = self.clients.get(&target.cluster) else {
            return unavailable(Reason::NoClient, None);
        };
        let Some(version) = &target.version else {
            return unavailable(Reason::NoVersion, None);
        };
        let Some(ticket) = self.breakers.admit(&target.cluster, Instant::now()) else {
            return unavailable(Reason::CircuitOpen, None);
        };
        let resource = ApiResource {
            group: target.group.clone(),
            version: version.clone(),
            api_version: if target.group.is_empty() {
                version.clone()
            } else {
                format!("{}/{version}", target.group)
            },
            kind: String::new(),
            plural: target.resource.clone(),
        };
        let api: Api<DynamicObject> = match &target.namespace {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
            None => Api::all_with(client.clone(), &resource),
        };
        let answer = match tokio::time::timeout(self.timeout, api.get(&target.name)).await {
            Err(_) => {
                ticket.report(true);
                return unavailable(Reason::Timeout, None);
            }
            Ok(Ok(object)) => Ok(object),
            Ok(Err(kube::Error::Api(status))) if status.code == 404 => Err(Failed::NotFound),
            Ok(Err(kube::Error::Api(status))) if status.code == 403 => Err(Failed::Forbidden),
            Ok(Err(e)) => Err(Failed::Other(e)),
        };
        ticket.report(answer.as_ref().err().is_some_and(breaker::is_outage));
        match answer {
            Ok(object) => {
                let object = serde_json::to_value(&object).unwrap_or_default();
                LiveView {
                    state: LiveState::Live,
                    reason: None,
                    message: None,
                    fetched_at: now(),
                    fields: target
                        .paths
                        .iter()
                        .flatten()
                        .map(|p| compare(&object, p, &self.redaction))
                        .collect(),
                }
            }
            Err(Failed::NotFound) => unavailable(Reason::NotFound, None),
            Err(Failed::Forbidden) => unavailable(Reason::Forbidden, None),
            Err(Failed::Other(e)) => unavailable(Reason::Error, Some(e.to_string())),
        }
    }
}

/// The answer when the object cannot be read (or is not to be).
pub fn unavailable(reason: Reason, message: Option<String>) -> LiveView {
    LiveView {
        state: LiveState::Unavailable,
        reason: Some(reason),
        message,
        fetched_at: now(),
        fields: Vec::new(),
    }
}

fn now() -> String {
    crate::model::Time::now().text
}

/// One drifted field against the live object.
fn compare(
    object: &serde_json::Value,
    drifted: &DriftedPath,
    redaction: &[PathPattern],
) -> LiveField {
    let redacted = redaction.iter().any(|p| p.covers(&drifted.path));
    let (live, status) = match value_at(object, &drifted.path) {
        Lookup::Found(v) => {
            let status = match drifted.value {
                Some(fp) if fp == fingerprint(v) => FieldStatus::StillDrifted,
                Some(_) => FieldStatus::Changed,
                None => FieldStatus::Unknown,
            };
            (v.clone(), status)
        }
        Lookup::Absent => (serde_json::Value::Null, FieldStatus::Removed),
        Lookup::Unknown => (serde_json::Value::Null, FieldStatus::Unknown),
    };
    LiveField {
        path: drifted.path.clone(),
        drift_value_fingerprint: drifted.value.map(|v| format!("{v:016x}")),
        live: if redacted {
            serde_json::Value::Null
        } else {
            live
        },
        redacted,
        status,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn drifted(path: &str, value: Option<serde_json::Value>) -> DriftedPath {
        DriftedPath {
            path: path.to_owned(),
            value: value.as_ref().map(fingerprint),
        }
    }

    #[test]
    fn each_field_is_still_drifted_changed_removed_or_unknown() {
        let object = json!({"spec": {"replicas": 5, "template": {"spec": {"containers": [
            {"name": "app", "image": "nginx:1.26", "env": [{"name": "TOKEN", "value": "s3cret"}]}
        ]}}}});
        let image = "spec.template.spec.containers[name=app].image";
        let token = "spec.template.spec.containers[name=app].env[name=TOKEN].value";
        let redaction = vec![PathPattern::parse("**.env[*].value").unwrap()];
        let cases = [
            (
                drifted("spec.replicas", Some(json!(5))),
                FieldStatus::StillDrifted,
                json!(5),
            ),
            (
                drifted(image, Some(json!("nginx:1.25"))),
                FieldStatus::Changed,
                json!("nginx:1.26"),
            ),
            (
                drifted("spec.paused", Some(json!(true))),
                FieldStatus::Removed,
                json!(null),
            ),
            (
                drifted(image, None),
                FieldStatus::Unknown,
                json!("nginx:1.26"),
            ),
            (
                drifted(token, Some(json!("s3cret"))),
                FieldStatus::StillDrifted,
                json!(null),
            ),
        ];
        for (d, status, live) in cases {
            let f = compare(&object, &d, &redaction);
            assert_eq!((f.status, &f.live), (status, &live), "{}", d.path);
            assert_eq!(f.redacted, d.path == token);
        }
        let f = compare(&object, &drifted("spec.replicas", Some(json!(5))), &[]);
        assert_eq!(f.drift_value_fingerprint.map(|s| s.len()), Some(16));
    }
}
