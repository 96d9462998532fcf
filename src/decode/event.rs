//! The `audit.k8s.io/v1` Event, borrowed from the input buffer.
//!
//! Strings are `Cow` because audit strings carry JSON escapes (`\u0026` in
//! `requestURI`) that cannot be borrowed as `&str`. Request and response bodies
//! stay as raw JSON and are parsed only for the few events that need them.

use std::borrow::Cow;

use serde::de::IgnoredAny;
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

use super::snippet;

/// `Option<Cow<str>>` that borrows from the input when the string has no
/// escapes. serde borrows a `Cow<str>` field only when it is not wrapped: a
/// `#[serde(borrow)] Option<Cow<str>>` allocates every string.
#[derive(Deserialize)]
#[serde(transparent)]
struct BorrowedStr<'a>(#[serde(borrow)] Cow<'a, str>);

/// serde's derived `Deserialize` for a struct also takes a JSON array of its
/// fields in order; no API server writes that, so only objects are objects.
pub(crate) fn object<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct V<T>(std::marker::PhantomData<T>);
    impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for V<T> {
        type Value = T;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
            T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
        }
    }
    d.deserialize_map(V(std::marker::PhantomData))
}

/// An object that only deserializes from a JSON object.
struct Object<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        object(d).map(Object)
    }
}

fn opt_object<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Object<T>>::deserialize(d)?.map(|o| o.0))
}

pub(crate) fn opt_str<'de: 'a, 'a, D>(d: D) -> Result<Option<Cow<'a, str>>, D::Error>
where
    D: Deserializer<'de>,
{
    Ok(Option::<BorrowedStr<'a>>::deserialize(d)?.map(|s| s.0))
}

/// A JSON string kept as it came and unescaped only when read: Go's JSON
/// encoder writes `&` as `\u0026`, so most `requestURI`s with a query carry
/// escapes, and reads (most of a stream) never need the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonStr<'a> {
    /// No escapes (or already unescaped): the text.
    Text(Cow<'a, str>),
    /// The whole quoted JSON string, escapes included.
    Escaped(&'a str),
}

impl JsonStr<'_> {
    pub fn get(&self) -> Cow<'_, str> {
        match self {
            JsonStr::Text(t) => Cow::Borrowed(t),
            // Validated as a JSON string when it was decoded.
            JsonStr::Escaped(raw) => serde_json::from_str::<String>(raw)
                .map(Cow::Owned)
                .unwrap_or(Cow::Borrowed("")),
        }
    }
}

fn opt_json_str<'de: 'a, 'a, D>(d: D) -> Result<Option<JsonStr<'a>>, D::Error>
where
    D: Deserializer<'de>,
{
    let Some(raw) = Option::<&'a RawValue>::deserialize(d)? else {
        return Ok(None);
    };
    let text = raw.get();
    let inner = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .ok_or_else(|| {
            serde::de::Error::invalid_type(
                serde::de::Unexpected::Other(snippet::show(text).as_str()),
                &"a string",
            )
        })?;
    Ok(Some(if inner.contains('\\') {
        JsonStr::Escaped(text)
    } else {
        JsonStr::Text(Cow::Borrowed(inner))
    }))
}

/// A short list of strings (a user's groups, the source IPs): up to four
/// inline, so that the common event allocates nothing for them. (Not
/// `smallvec`: its associated-type storage would make `Event` invariant in
/// its lifetime.)
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Strs<'a> {
    inline: [Cow<'a, str>; 4],
    len: usize,
    /// All of them, once there are more than four.
    spill: Vec<Cow<'a, str>>,
}

impl<'a> Strs<'a> {
    pub fn push(&mut self, s: Cow<'a, str>) {
        if self.spill.is_empty() && self.len < self.inline.len() {
            self.inline[self.len] = s;
            self.len += 1;
            return;
        }
        if self.spill.is_empty() {
            self.spill
                .extend(self.inline.iter_mut().map(std::mem::take));
        }
        self.spill.push(s);
    }
}

impl<'a> std::ops::Deref for Strs<'a> {
    type Target = [Cow<'a, str>];
    fn deref(&self) -> &[Cow<'a, str>] {
        if self.spill.is_empty() {
            &self.inline[..self.len]
        } else {
            &self.spill
        }
    }
}

impl<'s, 'a> IntoIterator for &'s Strs<'a> {
    type Item = &'s Cow<'a, str>;
    type IntoIter = std::slice::Iter<'s, Cow<'a, str>>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl<'a> FromIterator<Cow<'a, str>> for Strs<'a> {
    fn from_iter<I: IntoIterator<Item = Cow<'a, str>>>(iter: I) -> Self {
        let mut out = Strs::default();
        for s in iter {
            out.push(s);
        }
        out
    }
}

/// [`opt_str`] for a list.
pub(crate) fn opt_strs<'de: 'a, 'a, D>(d: D) -> Result<Option<Strs<'a>>, D::Error>
where
    D: Deserializer<'de>,
{
    struct List<'a>(Strs<'a>);
    impl<'de: 'a, 'a> Deserialize<'de> for List<'a> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V<'a>(std::marker::PhantomData<&'a ()>);
            impl<'de: 'a, 'a> serde::de::Visitor<'de> for V<'a> {
                type Value = List<'a>;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("a list of strings")
                }
                fn visit_seq<A: serde::de::SeqAccess<'de>>(
                    self,
                    mut seq: A,
                ) -> Result<List<'a>, A::Error> {
                    let mut out = Strs::default();
                    while let Some(BorrowedStr(s)) = seq.next_element()? {
                        out.push(s);
                    }
                    Ok(List(out))
                }
            }
            d.deserialize_seq(V(std::marker::PhantomData))
        }
    }
    Ok(Option::<List<'a>>::deserialize(d)?.map(|l| l.0))
}

/// One audit event. Unknown fields are ignored; every field is optional at this
/// level so that legacy `v1beta1` events decode, and [`Event::validate`] decides
/// whether the document is an audit event at all.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event<'a> {
    #[serde(borrow, default, deserialize_with = "opt_str")]
    pub kind: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "opt_str")]
    pub api_version: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "opt_str")]
    pub level: Option<Cow<'a, str>>,
    #[serde(borrow, default, rename = "auditID", deserialize_with = "opt_str")]
    pub audit_id: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "opt_str")]
    pub stage: Option<Cow<'a, str>>,
    #[serde(
        borrow,
        default,
        rename = "requestURI",
        deserialize_with = "opt_json_str"
    )]
    pub request_uri: Option<JsonStr<'a>>,
    #[serde(borrow, default, deserialize_with = "opt_str")]
    pub verb: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "opt_object")]
    pub user: Option<UserInfo<'a>>,
    #[serde(borrow, default, deserialize_with = "opt_object")]
    pub impersonated_user: Option<UserInfo<'a>>,
    #[serde(borrow, default, rename = "sourceIPs", deserialize_with = "opt_strs")]
    pub source_ips: Option<Strs<'a>>,
    #[serde(borrow, default, deserialize_with = "opt_str")]
    pub user_agent: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "opt_object")]
    pub object_ref: Option<ObjectRef<'a>>,
    #[serde(borrow, default, deserialize_with = "opt_object")]
    pub response_status: Option<ResponseStatus<'a>>,
    #[serde(borrow, default)]
    pub request_object: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub response_object: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "opt_str")]
    pub request_received_timestamp: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "opt_str")]
    pub stage_timestamp: Option<Cow<'a, str>>,
    /// Legacy `v1alpha1`/`v1beta1` field, used when the two above are missing.
    #[serde(borrow, default, deserialize_with = "opt_str")]
    pub timestamp: Option<Cow<'a, str>>,
    /// Kept raw: skipping it costs the same, and GKE `labels` land here.
    #[serde(borrow, default)]
    pub annotations: Option<&'a RawValue>,

    // The fields below belong to the containers an Event can arrive in, not to
    // the Event. Reading them in the same pass avoids parsing every document
    // twice (serde's `flatten` would buffer the whole document instead).
    /// `EventList.items`.
    #[serde(borrow, default)]
    pub(crate) items: Option<Vec<&'a RawValue>>,
    /// Marks of the cloud envelopes (see `envelope.rs`): only whether they
    /// are present is read here, at no cost to plain events (`IgnoredAny` is
    /// zero-sized); an envelope document is then parsed as what it is.
    /// AKS diagnostic records (Event Hub batch), or Firehose HTTP records.
    #[serde(default)]
    pub(crate) records: Option<IgnoredAny>,
    /// A single AKS diagnostic record.
    #[serde(default)]
    pub(crate) properties: Option<IgnoredAny>,
    /// A CloudWatch Logs subscription payload.
    #[serde(default)]
    pub(crate) log_events: Option<IgnoredAny>,
    /// A Google Cloud Audit Logs entry.
    #[serde(default)]
    pub(crate) proto_payload: Option<IgnoredAny>,
}

#[derive(Debug, Default, Deserialize)]
pub struct UserInfo<'a> {
    #[serde(borrow, default, deserialize_with = "opt_str")]
    pub username: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "opt_str")]
    pub uid: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "opt_strs")]
    pub groups: Option<Strs<'a>>,
    /// Authenticator-specific attributes (`arn`, `sessionName` on EKS),
    /// read only where a rule asks.
    #[serde(borrow, default)]
    pub extra: Option<&'a RawValue>,
}

impl UserInfo<'_> {
    /// The values of one `extra` key; none when absent or malformed.
    pub fn extra_values(&self, key: &str) -> impl Iterator<Item = String> + use<> {
        let values = self
            .extra
            .and_then(|raw| {
                serde_json::from_str::<std::collections::BTreeMap<String, Vec<String>>>(raw.get())
                    .ok()
            })
            .and_then(|mut map| map.remove(key))
            .unwrap_or_default();
        values.into_iter()
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectRef<'a> {
    #[serde(borrow, default, deserialize_with = "opt_str")]
    pub resource: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "opt_str")]
    pub namespace: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "opt_str")]
    pub name: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "opt_str")]
    pub uid: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "opt_str")]
    pub api_group: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "opt_str")]
    pub api_version: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "opt_str")]
    pub subresource: Option<Cow<'a, str>>,
}

#[derive(Debug, Default, Deserialize)]
pub struct ResponseStatus<'a> {
    #[serde(default)]
    pub code: Option<i64>,
    #[serde(borrow, default, deserialize_with = "opt_str")]
    pub status: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "opt_str")]
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

/// Why a JSON document is not an audit event. Values from the input are
/// shown only where they cannot hold a secret (see `snippet`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotAnEvent {
    #[error("kind is {0}, not an audit Event")]
    WrongKind(String),
    #[error("not an audit event: missing {0}")]
    Missing(&'static str),
    #[error("not an audit event: unknown stage {0}")]
    UnknownStage(String),
    /// A time that is not RFC 3339: stored, it would sort and filter as
    /// whatever the reader made of it.
    #[error("{field} {value} is not an RFC 3339 time (such as 2026-11-20T10:00:00.123456Z)")]
    BadTime { field: &'static str, value: String },
}

impl NotAnEvent {
    /// The rejection reason it is counted under.
    pub fn reason(&self) -> super::RejectReason {
        match self {
            NotAnEvent::BadTime { .. } => super::RejectReason::InvalidTime,
            _ => super::RejectReason::NotAnEvent,
        }
    }
}

impl<'a> Event<'a> {
    /// Parses one document that must be a JSON object.
    pub fn parse(text: &'a str) -> Result<Event<'a>, serde_json::Error> {
        object(&mut serde_json::Deserializer::from_str(text))
    }

    /// Accepts the document as an audit event, or says why not. `kind` may be
    /// absent (webhook `EventList` items carry none). A document that
    /// declares itself an audit event (see [`Event::declares_audit_event`])
    /// may lack a verb: it is then never a mutation, and is ignored.
    pub fn validate(&self) -> Result<Stage, NotAnEvent> {
        if let Some(kind) = self.kind.as_deref()
            && kind != "Event"
        {
            return Err(NotAnEvent::WrongKind(snippet::show(kind)));
        }
        if self.audit_id.as_deref().is_none_or(str::is_empty) {
            return Err(NotAnEvent::Missing("auditID"));
        }
        if self.verb.as_deref().is_none_or(str::is_empty) && !self.declares_audit_event() {
            return Err(NotAnEvent::Missing("verb"));
        }
        let stage = self.stage.as_deref().ok_or(NotAnEvent::Missing("stage"))?;
        let stage =
            Stage::parse(stage).ok_or_else(|| NotAnEvent::UnknownStage(snippet::show(stage)))?;
        self.check_times()?;
        Ok(stage)
    }

    /// Every time the event carries must be RFC 3339; an event may carry
    /// none (exported fixtures), and then takes its receive time.
    fn check_times(&self) -> Result<(), NotAnEvent> {
        for (field, value) in [
            ("stageTimestamp", &self.stage_timestamp),
            ("requestReceivedTimestamp", &self.request_received_timestamp),
            ("timestamp", &self.timestamp),
        ] {
            if let Some(value) = value.as_deref()
                && crate::model::time::parse_us(value).is_none()
            {
                return Err(NotAnEvent::BadTime {
                    field,
                    value: snippet::show(value),
                });
            }
        }
        Ok(())
    }

    /// Whether the document says it is an audit event: `kind: Event`, an
    /// `audit.k8s.io` apiVersion or none, and at least one field only audit
    /// events have. A core `v1` Event (`kind: Event`, `apiVersion: v1`) is
    /// not one, nor is `{"kind": "Event"}` alone. EventList items carry no
    /// `kind`, so a real webhook batch never relies on this.
    pub fn declares_audit_event(&self) -> bool {
        self.kind.as_deref() == Some("Event")
            && self
                .api_version
                .as_deref()
                .is_none_or(|v| v.starts_with("audit.k8s.io/"))
            && (self.verb.is_some()
                || self.user.is_some()
                || self.object_ref.is_some()
                || self.request_uri.is_some())
    }

    /// Fills in what an exported or hand-written audit event lacks, for a
    /// document that declares itself one (Panther's EKS and AKS fixtures,
    /// exports that drop fields); API servers always write both fields, so
    /// real streams never take this path. `doc` is the document's JSON text.
    ///
    /// - No `stage`: with a `responseStatus` the response was known, so it
    ///   is not `RequestReceived`; of the later stages, `ResponseStarted`
    ///   exists only for long-running requests (watch, exec, attach,
    ///   portforward, proxy), where the policy judges it like
    ///   `ResponseComplete`, so `ResponseComplete` gives the verdict the
    ///   true stage would. Without a `responseStatus` the document cannot
    ///   be told from a `RequestReceived` event, which DESIGN says never to
    ///   act on: it becomes `RequestReceived`, and is ignored.
    /// - No `auditID`: an id derived from the document's bytes. It is what
    ///   dedupe needs: a redelivered copy of the document gets the same id
    ///   and is absorbed; two different documents never share one. (Two
    ///   stages of one request get two ids; without an auditID nothing
    ///   could join them anyway.) It is prefixed `derived-` so that no one
    ///   mistakes it for an id the API server assigned.
    pub(crate) fn complete(&mut self, doc: &[u8]) {
        let has_id = self.audit_id.as_deref().is_some_and(|id| !id.is_empty());
        if (has_id && self.stage.is_some()) || !self.declares_audit_event() {
            return;
        }
        if self.stage.is_none() {
            self.stage = Some(Cow::Borrowed(if self.response_status.is_some() {
                "ResponseComplete"
            } else {
                "RequestReceived"
            }));
        }
        if !has_id {
            self.audit_id = Some(Cow::Owned(derived_audit_id(doc)));
        }
    }

    pub fn verb(&self) -> &str {
        self.verb.as_deref().unwrap_or("")
    }

    pub fn audit_id(&self) -> &str {
        self.audit_id.as_deref().unwrap_or("")
    }

    /// Unescaped here (a copy when it had escapes): call it once per use.
    pub fn request_uri(&self) -> Cow<'_, str> {
        self.request_uri
            .as_ref()
            .map_or(Cow::Borrowed(""), JsonStr::get)
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

    pub fn name(&self) -> &str {
        self.object_ref
            .as_ref()
            .and_then(|o| o.name.as_deref())
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

    /// The API server answered with neither success (2xx) nor a protocol
    /// switch (101, a connect): the request changed nothing. No status at
    /// all is taken for success, as the policy does.
    pub fn failed(&self) -> bool {
        self.status_code()
            .is_some_and(|c| !(200..300).contains(&c) && c != 101)
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
    pub fn query_param(&self, key: &str) -> Option<String> {
        query_param(&self.request_uri(), key).map(Cow::into_owned)
    }
}

/// A deterministic audit id for a document that carries none:
/// `derived-` and the first 128 bits of its SHA-256, in hex.
pub(crate) fn derived_audit_id(doc: &[u8]) -> String {
    use sha2::Digest as _;
    use std::fmt::Write as _;
    let digest = sha2::Sha256::digest(doc);
    let mut id = String::with_capacity(8 + 32);
    id.push_str("derived-");
    for b in &digest[..16] {
        let _ = write!(id, "{b:02x}");
    }
    id
}

/// Looks up `key` in the query string of a request URI, decoded as a form
/// (`+` is a space, `%XX` a byte; undecodable bytes are shown, not dropped).
pub fn query_param<'u>(uri: &'u str, key: &str) -> Option<Cow<'u, str>> {
    let (_, query) = uri.split_once('?')?;
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
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
    fn strings_without_escapes_are_borrowed_not_copied() {
        let e: Event = serde_json::from_str(
            r#"{"verb":"get","requestURI":"/a?b=1\u0026c=2","sourceIPs":["10.0.0.1"],"user":{"username":"u","groups":["g"]},"objectRef":{"resource":"pods"},"stage":null}"#,
        )
        .unwrap();
        assert!(matches!(e.verb, Some(Cow::Borrowed("get"))));
        assert_eq!(e.request_uri(), "/a?b=1&c=2");
        assert!(matches!(e.request_uri, Some(JsonStr::Escaped(_))));
        assert!(matches!(
            e.source_ips.as_deref(),
            Some([Cow::Borrowed("10.0.0.1")])
        ));
        let user = e.user.as_ref().unwrap();
        assert!(matches!(user.username, Some(Cow::Borrowed("u"))));
        assert!(matches!(user.groups.as_deref(), Some([Cow::Borrowed("g")])));
        assert!(matches!(
            e.object_ref.as_ref().unwrap().resource,
            Some(Cow::Borrowed("pods"))
        ));
        assert!(e.stage.is_none());
    }

    #[test]
    fn an_incomplete_self_declared_event_is_completed() {
        let doc = r#"{"kind":"Event","verb":"create","responseStatus":{"code":201}}"#;
        let mut e: Event = serde_json::from_str(doc).unwrap();
        e.complete(doc.as_bytes());
        assert_eq!(e.validate(), Ok(Stage::ResponseComplete));
        assert_eq!(e.audit_id(), derived_audit_id(doc.as_bytes()));
        // Complete events are left alone.
        let doc = r#"{"kind":"Event","auditID":"x","verb":"get","stage":"Panic"}"#;
        let mut e: Event = serde_json::from_str(doc).unwrap();
        e.complete(doc.as_bytes());
        assert_eq!((e.audit_id(), e.validate()), ("x", Ok(Stage::Panic)));
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
