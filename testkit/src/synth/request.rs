//! One API request, written as its audit event at any of its stages.

use std::collections::BTreeMap;
use std::rc::Rc;

use jiff::{SignedDuration, Timestamp};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::gojson;
use crate::time::rfc3339_micros;

/// The stage an event is logged at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StageKind {
    RequestReceived,
    ResponseStarted,
    ResponseComplete,
}

impl StageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StageKind::RequestReceived => "RequestReceived",
            StageKind::ResponseStarted => "ResponseStarted",
            StageKind::ResponseComplete => "ResponseComplete",
        }
    }
}

/// `user` of an event (`authentication.k8s.io/v1` UserInfo).
#[derive(Debug, Clone, Serialize)]
pub struct UserInfo {
    pub username: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    pub groups: Vec<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, Vec<String>>,
}

/// Who sends a request: the user, and the client and address it comes from.
#[derive(Debug, Clone)]
pub struct Identity {
    pub user: UserInfo,
    pub user_agent: String,
    pub source_ip: String,
    /// `authorization.k8s.io/reason` of an allowed request.
    pub allow_reason: String,
}

impl Identity {
    pub fn username(&self) -> &str {
        &self.user.username
    }
}

/// `objectRef` of an event.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjRef {
    pub resource: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub api_group: &'static str,
    pub api_version: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subresource: Option<&'static str>,
}

impl ObjRef {
    /// `resource` of `group` (`""` for the core group), version `v1`.
    pub fn new(resource: &'static str, group: &'static str) -> ObjRef {
        ObjRef {
            resource,
            api_group: group,
            api_version: "v1",
            ..ObjRef::default()
        }
    }

    pub fn ns(mut self, ns: &str) -> ObjRef {
        self.namespace = Some(ns.to_owned());
        self
    }

    pub fn name(mut self, name: impl Into<String>) -> ObjRef {
        self.name = Some(name.into());
        self
    }

    pub fn uid(mut self, uid: String) -> ObjRef {
        self.uid = Some(uid);
        self
    }

    pub fn rv(mut self, rv: String) -> ObjRef {
        self.resource_version = Some(rv);
        self
    }

    pub fn sub(mut self, sub: &'static str) -> ObjRef {
        self.subresource = Some(sub);
        self
    }
}

/// `responseStatus` (a `metav1.Status`).
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    metadata: Map<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
    code: u16,
}

impl Status {
    pub fn ok(code: u16) -> Status {
        Status {
            metadata: Map::new(),
            status: None,
            message: None,
            reason: None,
            code,
        }
    }

    pub fn failure(message: String, reason: &'static str, code: u16) -> Status {
        Status {
            status: Some("Failure"),
            message: Some(message),
            reason: Some(reason),
            ..Status::ok(code)
        }
    }

    fn failed(&self) -> bool {
        self.status.is_some()
    }
}

/// An API request, before it is written at one of its stages.
#[derive(Debug, Clone)]
pub struct Request {
    pub level: &'static str,
    pub audit_id: String,
    pub uri: String,
    pub verb: &'static str,
    pub user: Rc<Identity>,
    pub object_ref: ObjRef,
    pub status: Status,
    pub request_object: Option<Value>,
    pub response_object: Option<Value>,
    pub received: Timestamp,
    pub latency: SignedDuration,
    pub extra_annotations: Vec<(&'static str, String)>,
}

/// An audit event as the webhook backend sends it in an `EventList`: no
/// kind/apiVersion, fields in the order of the Go struct.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EventItem<'a> {
    level: &'static str,
    #[serde(rename = "auditID")]
    audit_id: &'a str,
    stage: &'static str,
    #[serde(rename = "requestURI")]
    request_uri: &'a str,
    verb: &'static str,
    user: &'a UserInfo,
    #[serde(rename = "sourceIPs")]
    source_ips: [&'a str; 1],
    user_agent: &'a str,
    object_ref: &'a ObjRef,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_status: Option<&'a Status>,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_object: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_object: Option<&'a Value>,
    request_received_timestamp: String,
    stage_timestamp: String,
    /// A `map[string]string`: Go writes its keys sorted, as a `Map` does.
    #[serde(skip_serializing_if = "Option::is_none")]
    annotations: Option<Map<String, Value>>,
}

impl Request {
    /// The event of this request at `stage`, as JSON escaped like Go's.
    pub fn render(&self, stage: StageKind) -> String {
        let answered = stage != StageKind::RequestReceived;
        let stage_at = match stage {
            StageKind::RequestReceived => self.received,
            StageKind::ResponseStarted => {
                self.received + self.latency.min(SignedDuration::from_micros(900))
            }
            StageKind::ResponseComplete => self.received + self.latency,
        };
        let annotations = answered.then(|| {
            let mut a = Map::new();
            let (decision, reason) = if self.status.failed() && self.status.code == 403 {
                ("forbid", "")
            } else {
                ("allow", self.user.allow_reason.as_str())
            };
            a.insert("authorization.k8s.io/decision".into(), decision.into());
            a.insert("authorization.k8s.io/reason".into(), reason.into());
            for (k, v) in &self.extra_annotations {
                a.insert((*k).into(), v.as_str().into());
            }
            a
        });
        gojson::to_string(&EventItem {
            level: self.level,
            audit_id: &self.audit_id,
            stage: stage.as_str(),
            request_uri: &self.uri,
            verb: self.verb,
            user: &self.user.user,
            source_ips: [&self.user.source_ip],
            user_agent: &self.user.user_agent,
            object_ref: &self.object_ref,
            response_status: answered.then_some(&self.status),
            request_object: self.request_object.as_ref().filter(|_| answered),
            response_object: self
                .response_object
                .as_ref()
                .filter(|_| stage == StageKind::ResponseComplete),
            request_received_timestamp: rfc3339_micros(self.received),
            stage_timestamp: rfc3339_micros(stage_at),
            annotations,
        })
    }
}
