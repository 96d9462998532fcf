//! The `audit.k8s.io/v1` Event, borrowed from the input buffer.
//!
//! Strings are `Cow` because audit strings carry JSON escapes (`\u0026` in
//! `requestURI`) that cannot be borrowed as `&str`. Request and response bodies
//! stay as raw JSON and are parsed only for the few events that need them.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

/// One audit event. Unknown fields are ignored; every field is optional at this
/// level so that legacy `v1beta1` events decode, and [`Event::validate`] decides
/// whether the document is an audit event at all.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event<'a> {
    #[serde(borrow, default)]
    pub kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub api_version: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub level: Option<Cow<'a, str>>,
    #[serde(borrow, default, rename = "auditID")]
    pub audit_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub stage: Option<Cow<'a, str>>,
    #[serde(borrow, default, rename = "requestURI")]
    pub request_uri: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub verb: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub user: Option<UserInfo<'a>>,
    #[serde(borrow, default)]
    pub impersonated_user: Option<UserInfo<'a>>,
    #[serde(borrow, default, rename = "sourceIPs")]
    pub source_ips: Option<Vec<Cow<'a, str>>>,
    #[serde(borrow, default)]
    pub user_agent: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub object_ref: Option<ObjectRef<'a>>,
    #[serde(borrow, default)]
    pub response_status: Option<ResponseStatus<'a>>,
    #[serde(borrow, default)]
    pub request_object: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub response_object: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub request_received_timestamp: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub stage_timestamp: Option<Cow<'a, str>>,
    /// Legacy `v1alpha1`/`v1beta1` field, used when the two above are missing.
    #[serde(borrow, default)]
    pub timestamp: Option<Cow<'a, str>>,

    // The fields below belong to the containers an Event can arrive in, not to
    // the Event. Reading them in the same pass avoids parsing every document
    // twice (serde's `flatten` would buffer the whole document instead).
    /// `EventList.items`.
    #[serde(borrow, default)]
    pub(crate) items: Option<Vec<&'a RawValue>>,
}

#[derive(Debug, Default, Deserialize)]
pub struct UserInfo<'a> {
    #[serde(borrow, default)]
    pub username: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub uid: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub groups: Option<Vec<Cow<'a, str>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectRef<'a> {
    #[serde(borrow, default)]
    pub resource: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub namespace: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub uid: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub api_group: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub api_version: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub subresource: Option<Cow<'a, str>>,
}

#[derive(Debug, Default, Deserialize)]
pub struct ResponseStatus<'a> {
    #[serde(default)]
    pub code: Option<i64>,
    #[serde(borrow, default)]
    pub status: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub reason: Option<Cow<'a, str>>,
}

/// The stage of the request an event was emitted at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    RequestReceived,
    ResponseStarted,
    ResponseComplete,
    Panic,
}

impl Stage {
    pub fn parse(s: &str) -> Option<Stage> {
        match s {
            "RequestReceived" => Some(Stage::RequestReceived),
            "ResponseStarted" => Some(Stage::ResponseStarted),
            "ResponseComplete" => Some(Stage::ResponseComplete),
            "Panic" => Some(Stage::Panic),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::RequestReceived => "RequestReceived",
            Stage::ResponseStarted => "ResponseStarted",
            Stage::ResponseComplete => "ResponseComplete",
            Stage::Panic => "Panic",
        }
    }

    pub(crate) fn bit(self) -> u8 {
        match self {
            Stage::RequestReceived => 1,
            Stage::ResponseStarted => 2,
            Stage::ResponseComplete => 4,
            Stage::Panic => 8,
        }
    }
}

/// Why a JSON document is not an audit event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotAnEvent {
    #[error("kind is {0:?}, not an audit Event")]
    WrongKind(String),
    #[error("not an audit event: missing {0}")]
    Missing(&'static str),
    #[error("not an audit event: unknown stage {0:?}")]
    UnknownStage(String),
}

impl<'a> Event<'a> {
    /// Accepts the document as an audit event, or says why not. `kind` may be
    /// absent (webhook `EventList` items carry none).
    pub fn validate(&self) -> Result<Stage, NotAnEvent> {
        if let Some(kind) = self.kind.as_deref()
            && kind != "Event"
        {
            return Err(NotAnEvent::WrongKind(kind.to_owned()));
        }
        if self.audit_id.as_deref().is_none_or(str::is_empty) {
            return Err(NotAnEvent::Missing("auditID"));
        }
        if self.verb.as_deref().is_none_or(str::is_empty) {
            return Err(NotAnEvent::Missing("verb"));
        }
        let stage = self.stage.as_deref().ok_or(NotAnEvent::Missing("stage"))?;
        Stage::parse(stage).ok_or_else(|| NotAnEvent::UnknownStage(stage.to_owned()))
    }

    pub fn verb(&self) -> &str {
        self.verb.as_deref().unwrap_or("")
    }

    pub fn audit_id(&self) -> &str {
        self.audit_id.as_deref().unwrap_or("")
    }

    pub fn request_uri(&self) -> &str {
        self.request_uri.as_deref().unwrap_or("")
    }

    pub fn username(&self) -> &str {
        self.user
            .as_ref()
            .and_then(|u| u.username.as_deref())
            .unwrap_or("")
    }

    pub fn resource(&self) -> &str {
        self.object_ref
            .as_ref()
            .and_then(|o| o.resource.as_deref())
            .unwrap_or("")
    }

    pub fn subresource(&self) -> &str {
        self.object_ref
            .as_ref()
            .and_then(|o| o.subresource.as_deref())
            .unwrap_or("")
    }

    pub fn api_group(&self) -> &str {
        self.object_ref
            .as_ref()
            .and_then(|o| o.api_group.as_deref())
            .unwrap_or("")
    }

    pub fn namespace(&self) -> &str {
        self.object_ref
            .as_ref()
            .and_then(|o| o.namespace.as_deref())
            .unwrap_or("")
    }

    pub fn status_code(&self) -> Option<i64> {
        self.response_status.as_ref().and_then(|s| s.code)
    }

    /// The time the request was received; legacy events only have `timestamp`.
    pub fn received_at(&self) -> &str {
        self.request_received_timestamp
            .as_deref()
            .or(self.timestamp.as_deref())
            .or(self.stage_timestamp.as_deref())
            .unwrap_or("")
    }

    /// The time of this stage; the best time to report for a finding.
    pub fn stage_at(&self) -> &str {
        self.stage_timestamp
            .as_deref()
            .or(self.timestamp.as_deref())
            .or(self.request_received_timestamp.as_deref())
            .unwrap_or("")
    }

    /// A query parameter of `requestURI`, percent-decoded.
    pub fn query_param(&self, key: &str) -> Option<Cow<'_, str>> {
        query_param(self.request_uri(), key)
    }
}

/// Looks up `key` in the query string of a request URI.
pub fn query_param<'u>(uri: &'u str, key: &str) -> Option<Cow<'u, str>> {
    let (_, query) = uri.split_once('?')?;
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k == key {
            return Some(percent_decode(v));
        }
    }
    None
}

fn percent_decode(s: &str) -> Cow<'_, str> {
    if !s.contains(['%', '+']) {
        return Cow::Borrowed(s);
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => match (
                bytes.get(i + 1).and_then(|b| hex_val(*b)),
                bytes.get(i + 2).and_then(|b| hex_val(*b)),
            ) {
                (Some(hi), Some(lo)) => {
                    out.push(hi << 4 | lo);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    // Undecodable bytes in a query value are shown, not dropped.
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_params_are_found_and_decoded() {
        let uri = "/apis/apps/v1/namespaces/a/deployments/b?dryRun=All&fieldManager=kubectl%2Dedit&force=true";
        assert_eq!(query_param(uri, "dryRun").as_deref(), Some("All"));
        assert_eq!(
            query_param(uri, "fieldManager").as_deref(),
            Some("kubectl-edit")
        );
        assert_eq!(query_param(uri, "force").as_deref(), Some("true"));
        assert_eq!(query_param(uri, "missing"), None);
        assert_eq!(query_param("/api/v1/pods", "dryRun"), None);
        assert_eq!(query_param("/x?a=%zz", "a").as_deref(), Some("%zz"));
    }

    #[test]
    fn validate_rejects_documents_that_are_not_events() {
        let e: Event = serde_json::from_str(r#"{"hello":"world"}"#).unwrap();
        assert_eq!(e.validate(), Err(NotAnEvent::Missing("auditID")));
        let e: Event = serde_json::from_str(
            r#"{"kind":"Pod","auditID":"a","verb":"get","stage":"ResponseComplete"}"#,
        )
        .unwrap();
        assert!(matches!(e.validate(), Err(NotAnEvent::WrongKind(_))));
        let e: Event =
            serde_json::from_str(r#"{"auditID":"a","verb":"get","stage":"ResponseComplete"}"#)
                .unwrap();
        assert_eq!(e.validate(), Ok(Stage::ResponseComplete));
    }
}
