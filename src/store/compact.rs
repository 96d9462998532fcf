//! The compact row format (schema 4): what repeats from change to change
//! is stored once, in a dictionary, and the row holds its id; what is the
//! row's own is one small document, deflated when that makes it smaller.
//!
//! The columns a query filters on are ids: the object (`objects`), the
//! actor (`strings`), the path set (`paths`) and the *shape* (`shapes`):
//! verb, verdict, pipeline, finding type, severity, profile and ownership,
//! which change together. A change's detail is split in four parts:
//!
//! - the *profile* (`strings`, through the shape): who and with what, the
//!   fields of the actor beyond its name, and the reasons of the verdict. A
//!   pipeline writes with one profile all day; so does a person at a
//!   terminal;
//! - the *ownership* (`strings`, through the shape): `managed_by` and
//!   `owner`, the same for every change of an object;
//! - the request URI (`strings`): per object and query string;
//! - the row's own `detail`: the changed values, the risks and the receive
//!   time. Its changes leave their paths out when the row's path set (the
//!   `paths` dictionary, which `field=` filters match) gives them back.
//!
//! The profile and the ownership keep the names of the schema-3 detail, so
//! that one reader parses every part and every row written before.

use std::borrow::Cow;
use std::io::{Read, Write};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

use super::records::{ChangeText, Detail, RiskText};
use crate::model::{ChangeRecord, Impersonator, Owner, Risk, Time};

/// The first byte of a compact `detail`: what follows.
const PLAIN: u8 = b'j';
const DEFLATED: u8 = b'z';

/// Shorter documents are stored as they are: deflate's own framing would
/// cost more than it saves.
const DEFLATE_FROM: usize = 96;

/// A damaged row cannot make a reader inflate without end: no detail
/// written is larger (an event is at most `server.max_event_bytes`).
const MAX_INFLATED: u64 = 256 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub(super) enum CompactError {
    #[error("unknown detail format {0:#04x}")]
    Format(u8),
    #[error("an empty detail")]
    Empty,
    #[error("its deflated detail does not inflate: {0}")]
    Inflate(std::io::Error),
    #[error("its detail inflates beyond {MAX_INFLATED} bytes")]
    TooLarge,
    #[error("its {part} is not readable: {source}")]
    Json {
        part: &'static str,
        source: serde_json::Error,
    },
}

/// Who and with what: the same for many changes.
#[derive(Serialize)]
pub(super) struct ProfileRef<'a> {
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    groups: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    uid: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    impersonated_by: Option<&'a Impersonator>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_agent: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client: Option<&'a str>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    source_ips: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    field_manager: Option<&'a str>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    reasons: &'a [String],
}

impl<'a> ProfileRef<'a> {
    pub(super) fn of(c: &'a ChangeRecord) -> ProfileRef<'a> {
        let a = &c.actor;
        ProfileRef {
            groups: &a.groups,
            uid: a.uid.as_deref(),
            impersonated_by: a.impersonated_by.as_ref(),
            user_agent: a.user_agent.as_deref(),
            client: a.client.as_deref(),
            source_ips: &a.source_ips,
            field_manager: a.field_manager.as_deref(),
            reasons: &c.reasons,
        }
    }
}

/// Who manages and who owns the object: the same for all its changes.
#[derive(Serialize)]
pub(super) struct OwnershipRef<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    managed_by: Option<ManagedByRef<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    owner: Option<&'a Owner>,
}

impl<'a> OwnershipRef<'a> {
    /// `None` when there is neither: most changes.
    pub(super) fn of(c: &'a ChangeRecord) -> Option<OwnershipRef<'a>> {
        (c.managed_by.is_some() || c.owner.is_some()).then_some(OwnershipRef {
            managed_by: c.managed_by.as_ref().map(|m| ManagedByRef {
                tool: &m.tool,
                name: m.name.as_deref(),
            }),
            owner: c.owner.as_ref(),
        })
    }
}

/// The tool and the name only: the pipeline object's source (inventories)
/// changes with every sync, and would make each revision a new dictionary
/// entry; findings carry it.
#[derive(Serialize)]
struct ManagedByRef<'a> {
    tool: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
}

/// The row's own part, written. Short names: this is the part stored once
/// per change (`c` changes, `r` risks, `t` receive time).
#[derive(Serialize)]
struct OwnRef<'a> {
    #[serde(rename = "c", skip_serializing_if = "Vec::is_empty")]
    changes: Vec<ValuesRef<'a>>,
    #[serde(rename = "r", skip_serializing_if = "<[Risk]>::is_empty")]
    risks: &'a [Risk],
    #[serde(rename = "t", skip_serializing_if = "Option::is_none")]
    received: Option<&'a Time>,
}

/// One change as an array: `[old, new]`, then `1` when redacted, then its
/// path when the path set cannot give it back (`[old, new, 0, path]`).
struct ValuesRef<'a> {
    path: Option<&'a str>,
    old: &'a Value,
    new: &'a Value,
    redacted: bool,
}

impl Serialize for ValuesRef<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let len = 2
            + usize::from(self.redacted || self.path.is_some())
            + usize::from(self.path.is_some());
        let mut seq = s.serialize_seq(Some(len))?;
        seq.serialize_element(self.old)?;
        seq.serialize_element(self.new)?;
        if len > 2 {
            seq.serialize_element(&u8::from(self.redacted))?;
        }
        if let Some(path) = self.path {
            seq.serialize_element(path)?;
        }
        seq.end()
    }
}

/// The row's own part, read back (borrowed).
#[derive(Default, Deserialize)]
#[serde(default)]
struct Own<'a> {
    #[serde(rename = "c", borrow)]
    changes: Vec<Vec<&'a RawValue>>,
    #[serde(rename = "r", borrow)]
    risks: Vec<RiskText<'a>>,
    #[serde(rename = "t")]
    received: Option<Time>,
}

/// A change read back from its array (see [`ValuesRef`]); `path` is the
/// one of the path set unless the array has its own.
fn values<'a>(items: &[&'a RawValue], path: &'a str) -> Result<ChangeText<'a>, serde_json::Error> {
    let item = |i: usize| items.get(i).copied().filter(|v| v.get() != "null");
    let redacted = match items.get(2) {
        Some(v) => serde_json::from_str::<u8>(v.get())? == 1,
        None => false,
    };
    let path = match items.get(3) {
        Some(v) => serde_json::from_str::<Cow<'a, str>>(v.get())?,
        None => Cow::Borrowed(path),
    };
    Ok(ChangeText {
        path,
        old: item(0),
        new: item(1),
        redacted,
    })
}

/// The changed paths, newline-separated: the path set of a row, which
/// `field=` filters match.
pub(super) fn path_set(c: &ChangeRecord) -> String {
    let mut paths = String::new();
    for (i, ch) in c.changes.iter().enumerate() {
        if i > 0 {
            paths.push('\n');
        }
        paths.push_str(&ch.path);
    }
    paths
}

/// The row's own `detail`, into `out` (cleared first).
pub(super) fn encode_own(c: &ChangeRecord, out: &mut Vec<u8>) {
    // A path with a newline in it (an object key can hold one) would not
    // come back from the path set whole: such rows keep their paths.
    let split = !c.changes.iter().any(|ch| ch.path.contains('\n'));
    let own = OwnRef {
        changes: c
            .changes
            .iter()
            .map(|ch| ValuesRef {
                path: (!split).then_some(ch.path.as_str()),
                old: &ch.old,
                new: &ch.new,
                redacted: ch.redacted,
            })
            .collect(),
        risks: &c.risks,
        received: c.received.as_ref(),
    };
    out.clear();
    out.push(PLAIN);
    // Serializing our own struct into memory cannot fail.
    let _ = serde_json::to_writer(&mut *out, &own);
    if out.len() > DEFLATE_FROM {
        deflate(out);
    }
}

/// Replaces a plain `detail` by its deflated form when that is smaller.
fn deflate(out: &mut Vec<u8>) {
    let mut enc = flate2::write::DeflateEncoder::new(
        Vec::with_capacity(out.len() / 2),
        flate2::Compression::default(),
    );
    // Writing into memory cannot fail.
    let deflated = enc
        .write_all(&out[1..])
        .and_then(|()| enc.finish())
        .unwrap_or_default();
    if !deflated.is_empty() && deflated.len() + 1 < out.len() {
        out.clear();
        out.push(DEFLATED);
        out.extend_from_slice(&deflated);
    }
}

/// The JSON of a compact `detail`: borrowed when stored plain, inflated
/// into `buf` when deflated.
pub(super) fn own_json<'b>(blob: &'b [u8], buf: &'b mut Vec<u8>) -> Result<&'b [u8], CompactError> {
    let (&format, rest) = blob.split_first().ok_or(CompactError::Empty)?;
    match format {
        PLAIN => Ok(rest),
        DEFLATED => {
            buf.clear();
            flate2::read::DeflateDecoder::new(rest)
                .take(MAX_INFLATED + 1)
                .read_to_end(buf)
                .map_err(CompactError::Inflate)?;
            if buf.len() as u64 > MAX_INFLATED {
                return Err(CompactError::TooLarge);
            }
            Ok(buf.as_slice())
        }
        other => Err(CompactError::Format(other)),
    }
}

/// The parts of a compact row, as read (each borrowed from its column).
pub(super) struct Parts<'a> {
    pub profile: Option<&'a str>,
    pub ownership: Option<&'a str>,
    pub uri: Option<&'a str>,
    pub paths: &'a str,
    /// The JSON of the row's own part (see [`own_json`]).
    pub own: &'a [u8],
}

fn part<'a>(part: &'static str, text: Option<&'a str>) -> Result<Detail<'a>, CompactError> {
    match text {
        Some(t) => serde_json::from_str(t).map_err(|source| CompactError::Json { part, source }),
        None => Ok(Detail::default()),
    }
}

impl<'a> Parts<'a> {
    /// The detail the parts make up: what a schema-3 row held in one.
    pub(super) fn detail(self) -> Result<Detail<'a>, CompactError> {
        let mut d = part("profile", self.profile)?;
        let ownership = part("ownership", self.ownership)?;
        d.managed_by = ownership.managed_by;
        d.owner = ownership.owner;
        d.request_uri = Cow::Borrowed(self.uri.unwrap_or(""));
        let own: Own<'a> =
            serde_json::from_slice(self.own).map_err(|source| CompactError::Json {
                part: "detail",
                source,
            })?;
        let mut paths = self.paths.split('\n');
        let json = |source| CompactError::Json {
            part: "detail",
            source,
        };
        d.changes = own
            .changes
            .iter()
            .map(|items| values(items, paths.next().unwrap_or("")).map_err(json))
            .collect::<Result<_, _>>()?;
        d.risks = own.risks;
        d.received = own.received;
        Ok(d)
    }
}

/// An audit id as 16 bytes when it is a UUID in its usual lowercase form
/// (what the API server writes), which reads back as the same text;
/// anything else is kept as text.
pub(super) fn audit_id_bytes(id: &str) -> Option<[u8; 16]> {
    let b = id.as_bytes();
    if b.len() != 36 {
        return None;
    }
    let mut out = [0u8; 16];
    let mut n = 0;
    for (i, &c) in b.iter().enumerate() {
        if matches!(i, 8 | 13 | 18 | 23) {
            if c != b'-' {
                return None;
            }
            continue;
        }
        let v = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => return None,
        };
        out[n / 2] |= if n % 2 == 0 { v << 4 } else { v };
        n += 1;
    }
    Some(out)
}

/// A drift id as stored: its 16 bytes when it is 32 lowercase hex digits
/// (a finding id, which every drift id is), else its text.
pub(super) fn drift_key(id: &str) -> rusqlite::types::Value {
    let b = id.as_bytes();
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let bytes: Option<Vec<u8>> = (b.len() == 32)
        .then(|| {
            b.chunks(2)
                .map(|p| Some(digit(p[0])? << 4 | digit(p[1])?))
                .collect()
        })
        .flatten();
    match bytes {
        Some(bytes) => rusqlite::types::Value::Blob(bytes),
        None => rusqlite::types::Value::Text(id.to_owned()),
    }
}

/// SQL for the text of `c.drift_id`, however it is stored (see
/// [`drift_key`]); a macro, to go into `concat!`.
macro_rules! drift_text {
    () => {
        "(CASE WHEN typeof(c.drift_id) = 'blob' THEN lower(hex(c.drift_id)) ELSE c.drift_id END)"
    };
}
pub(super) use drift_text;

/// SQL turning a drift id's text `value` into its stored form.
macro_rules! drift_key_of_value {
    () => {
        "(CASE WHEN length(value) = 32 AND value NOT GLOB '*[^0-9a-f]*' THEN unhex(value) ELSE value END)"
    };
}
pub(super) use drift_key_of_value;

/// The text of an audit id stored as 16 bytes.
pub(super) fn audit_id_text(b: &[u8]) -> Option<String> {
    use std::fmt::Write as _;
    if b.len() != 16 {
        return None;
    }
    let mut s = String::with_capacity(36);
    for (i, byte) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        let _ = write!(s, "{byte:02x}");
    }
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Change;
    use serde_json::json;

    #[test]
    fn uuids_are_stored_as_bytes_and_anything_else_as_text() {
        let id = "0b8c8f9e-1b0d-4c1e-9a53-00000000002a";
        let bytes = audit_id_bytes(id).unwrap();
        assert_eq!(audit_id_text(&bytes).as_deref(), Some(id));
        for not in [
            "0B8C8F9E-1B0D-4C1E-9A53-00000000002A",
            "0b8c8f9e1b0d4c1e9a5300000000002a",
            "audit-1",
            "0b8c8f9e-1b0d-4c1e-9a53-00000000002g",
            "0b8c8f9e-1b0d-4c1e-9a5300-000000002a",
        ] {
            assert_eq!(audit_id_bytes(not), None, "{not}");
        }
    }

    fn read_back(c: &ChangeRecord) -> ChangeRecord {
        let mut blob = Vec::new();
        encode_own(c, &mut blob);
        let profile = serde_json::to_string(&ProfileRef::of(c)).unwrap();
        let ownership = OwnershipRef::of(c).map(|o| serde_json::to_string(&o).unwrap());
        let paths = path_set(c);
        let mut buf = Vec::new();
        let own = own_json(&blob, &mut buf).unwrap();
        let parts = Parts {
            profile: Some(&profile),
            ownership: ownership.as_deref(),
            uri: Some(&c.request_uri),
            paths: &paths,
            own,
        };
        let mut back = ChangeRecord::default();
        let cut = parts
            .detail()
            .unwrap()
            .fill(&mut back, &super::super::view::Bounds::WHOLE);
        assert!(!cut);
        back
    }

    #[test]
    fn every_part_of_a_detail_comes_back() {
        let big = json!({"image": "registry.example.com/shop/api:".repeat(20)});
        let mut c = ChangeRecord {
            request_uri: "/apis/apps/v1/namespaces/shop/deployments/api?fieldManager=kubectl-edit"
                .to_owned(),
            reasons: vec!["identity matches no sanctioned pipeline".to_owned()],
            changes: vec![
                Change {
                    path: "spec.replicas".to_owned(),
                    old: json!(3),
                    new: json!(5),
                    redacted: false,
                },
                Change {
                    path: "spec.template".to_owned(),
                    old: json!(null),
                    new: big,
                    redacted: false,
                },
                Change {
                    path: "data.password".to_owned(),
                    old: json!(null),
                    new: json!(null),
                    redacted: true,
                },
            ],
            managed_by: Some(crate::model::ManagedBy::new(
                "argocd",
                Some("shop".to_owned()),
            )),
            received: Some(Time::from_us(1_700_000_000_000_000)),
            ..ChangeRecord::default()
        };
        c.actor.groups = vec!["devs".to_owned(), "system:authenticated".to_owned()];
        c.actor.user_agent = Some("kubectl/v1.31.2 (linux/amd64) kubernetes/abc1234".to_owned());
        c.actor.source_ips = vec!["10.0.0.7".to_owned()];
        c.actor.impersonated_by = Some(Impersonator {
            username: "admin".to_owned(),
            groups: vec!["system:masters".to_owned()],
        });
        let back = read_back(&c);
        assert_eq!(back.changes, c.changes);
        assert_eq!(
            back.actor,
            Actor {
                username: String::new(),
                ..c.actor.clone()
            }
        );
        assert_eq!(back.reasons, c.reasons);
        assert_eq!(back.request_uri, c.request_uri);
        assert_eq!(back.managed_by, c.managed_by);
        assert_eq!(back.received, c.received);

        let mut blob = Vec::new();
        encode_own(&c, &mut blob);
        assert_eq!(blob[0], DEFLATED, "a long detail is deflated");

        // The pipeline object's source changes with each sync: findings
        // carry it, the history keeps the tool and the name.
        if let Some(m) = &mut c.managed_by {
            m.pipeline = Some(crate::model::PipelineObject {
                kind: "Application".to_owned(),
                namespace: "argocd".to_owned(),
                name: "shop".to_owned(),
                via: crate::model::PipelineVia::Inventory,
                source: None,
            });
        }
        let back = read_back(&c);
        let kept = back.managed_by.expect("managed_by kept");
        assert_eq!(
            (kept.tool.as_str(), kept.name.as_deref()),
            ("argocd", Some("shop"))
        );
        assert!(kept.pipeline.is_none());
    }

    use crate::model::Actor;

    #[test]
    fn a_path_with_a_newline_is_kept_in_the_row() {
        let c = ChangeRecord {
            changes: vec![
                Change {
                    path: "data.a\nb".to_owned(),
                    old: json!("x"),
                    new: json!("y"),
                    redacted: false,
                },
                Change {
                    path: String::new(),
                    old: json!(1),
                    new: json!(2),
                    redacted: false,
                },
            ],
            ..ChangeRecord::default()
        };
        assert_eq!(read_back(&c).changes, c.changes);
    }

    #[test]
    fn a_damaged_detail_is_an_error_not_a_panic() {
        let mut buf = Vec::new();
        assert!(matches!(own_json(b"", &mut buf), Err(CompactError::Empty)));
        assert!(matches!(
            own_json(b"q{}", &mut buf),
            Err(CompactError::Format(b'q'))
        ));
        assert!(matches!(
            own_json(b"z\xff\xff\xff", &mut buf),
            Err(CompactError::Inflate(_))
        ));
    }
}
