//! A change's detail as read back: the JSON document a schema-3 row held
//! whole (`detail`), and each part of a compact row ([`super::compact`]).
//! Empty and absent fields are left out: a million rows is a lot of
//! `null`s.

use std::borrow::Cow;

use serde::Deserialize;
#[cfg(test)]
use serde::Serialize;
use serde_json::Value;
use serde_json::value::RawValue;

use super::view::{self, Bounds};
use crate::model::{
    Change, ChangeRecord, DriftedPath, Impersonator, ManagedBy, Owner, Risk, Severity, Time,
};
use crate::telemetry::events::{Emit, StoreRowCorrupt};

/// A stored detail as read back: borrowed from SQLite's buffer, so that a
/// value of megabytes is not copied (a list view keeps a few KiB of it).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct Detail<'a> {
    #[serde(borrow)]
    pub groups: Vec<Cow<'a, str>>,
    #[serde(borrow)]
    pub uid: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub impersonated_by: Option<ImpersonatorText<'a>>,
    #[serde(borrow)]
    pub user_agent: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub client: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub source_ips: Vec<Cow<'a, str>>,
    #[serde(borrow)]
    pub field_manager: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub request_uri: Cow<'a, str>,
    #[serde(borrow)]
    pub changes: Vec<ChangeText<'a>>,
    #[serde(borrow)]
    pub managed_by: Option<ManagedByText<'a>>,
    #[serde(borrow)]
    pub owner: Option<OwnerText<'a>>,
    #[serde(borrow)]
    pub reasons: Vec<Cow<'a, str>>,
    #[serde(borrow)]
    pub risks: Vec<RiskText<'a>>,
    /// Its text; the `received_us` column holds its time for retention.
    pub received: Option<Time>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct ImpersonatorText<'a> {
    #[serde(borrow)]
    username: Cow<'a, str>,
    #[serde(borrow)]
    groups: Vec<Cow<'a, str>>,
}

#[derive(Debug, Deserialize)]
pub(super) struct ChangeText<'a> {
    #[serde(borrow)]
    pub path: Cow<'a, str>,
    #[serde(borrow, default)]
    pub old: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub new: Option<&'a RawValue>,
    #[serde(default)]
    pub redacted: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct ManagedByText<'a> {
    #[serde(borrow)]
    tool: Cow<'a, str>,
    #[serde(borrow)]
    name: Option<Cow<'a, str>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct OwnerText<'a> {
    #[serde(borrow)]
    api_version: Option<Cow<'a, str>>,
    #[serde(borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(borrow)]
    uid: Option<Cow<'a, str>>,
}

#[derive(Debug, Deserialize)]
pub(super) struct RiskText<'a> {
    #[serde(borrow)]
    rule: Cow<'a, str>,
    #[serde(borrow)]
    path: Cow<'a, str>,
    #[serde(borrow, default)]
    value: Option<&'a RawValue>,
    severity: Severity,
}

/// The same fields, borrowed from a record: how schema 3 wrote them (now
/// only the tests do, to make stores of that schema).
#[cfg(test)]
#[derive(Serialize)]
pub(super) struct DetailRef<'a> {
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
    request_uri: &'a str,
    #[serde(skip_serializing_if = "<[Change]>::is_empty")]
    changes: &'a [Change],
    #[serde(skip_serializing_if = "Option::is_none")]
    managed_by: Option<&'a ManagedBy>,
    #[serde(skip_serializing_if = "Option::is_none")]
    owner: Option<&'a Owner>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    reasons: &'a [String],
    #[serde(skip_serializing_if = "<[Risk]>::is_empty")]
    risks: &'a [Risk],
    #[serde(skip_serializing_if = "Option::is_none")]
    received: Option<&'a Time>,
}

#[cfg(test)]
impl<'a> DetailRef<'a> {
    pub(super) fn of(c: &'a ChangeRecord) -> DetailRef<'a> {
        DetailRef {
            groups: &c.actor.groups,
            uid: c.actor.uid.as_deref(),
            impersonated_by: c.actor.impersonated_by.as_ref(),
            user_agent: c.actor.user_agent.as_deref(),
            client: c.actor.client.as_deref(),
            source_ips: &c.actor.source_ips,
            field_manager: c.actor.field_manager.as_deref(),
            request_uri: &c.request_uri,
            changes: &c.changes,
            managed_by: c.managed_by.as_ref(),
            owner: c.owner.as_ref(),
            reasons: &c.reasons,
            risks: &c.risks,
            received: c.received.as_ref(),
        }
    }
}

/// Owns what a list view keeps of borrowed text, noting what it cut.
struct Keep<'b> {
    bounds: &'b Bounds,
    cut: bool,
}

impl Keep<'_> {
    fn text(&mut self, s: &str) -> String {
        let (kept, cut) = view::cut_text(s, self.bounds.value_bytes);
        self.cut |= cut;
        kept
    }

    fn opt(&mut self, s: Option<Cow<'_, str>>) -> Option<String> {
        s.map(|s| self.text(&s))
    }

    fn list<T, U>(&mut self, items: Vec<T>, mut f: impl FnMut(&mut Self, T) -> U) -> Vec<U> {
        self.cut |= items.len() > self.bounds.list_items;
        items
            .into_iter()
            .take(self.bounds.list_items)
            .map(|item| f(self, item))
            .collect()
    }

    fn strings(&mut self, items: Vec<Cow<'_, str>>) -> Vec<String> {
        self.list(items, |k, s| k.text(&s))
    }

    fn value(&mut self, raw: Option<&RawValue>) -> Value {
        let (value, cut) = view::cut_raw(raw, self.bounds.value_bytes);
        self.cut |= cut;
        value
    }

    fn change(&mut self, c: ChangeText<'_>) -> Change {
        Change {
            path: self.text(&c.path),
            old: self.value(c.old),
            new: self.value(c.new),
            redacted: c.redacted,
        }
    }
}

impl Detail<'_> {
    /// Moves the detail's fields into a record read from the columns, cut
    /// to `bounds`; true when something was cut.
    pub(super) fn fill(self, c: &mut ChangeRecord, bounds: &Bounds) -> bool {
        let mut k = Keep { bounds, cut: false };
        c.actor.groups = k.strings(self.groups);
        c.actor.uid = k.opt(self.uid);
        c.actor.impersonated_by = self.impersonated_by.map(|i| Impersonator {
            username: k.text(&i.username),
            groups: k.strings(i.groups),
        });
        c.actor.user_agent = k.opt(self.user_agent);
        c.actor.client = k.opt(self.client);
        c.actor.source_ips = k.strings(self.source_ips);
        c.actor.field_manager = k.opt(self.field_manager);
        c.request_uri = k.text(&self.request_uri);
        c.changes = k.list(self.changes, Keep::change);
        c.managed_by = self
            .managed_by
            .map(|m| ManagedBy::new(k.text(&m.tool), k.opt(m.name)));
        c.owner = self.owner.map(|o| Owner {
            api_version: k.opt(o.api_version),
            kind: k.text(&o.kind),
            name: k.text(&o.name),
            uid: k.opt(o.uid),
        });
        c.reasons = k.strings(self.reasons);
        c.risks = k.list(self.risks, |k, r| Risk {
            rule: Cow::Owned(k.text(&r.rule)),
            path: k.text(&r.path),
            value: k.value(r.value),
            severity: r.severity,
        });
        c.received = self.received;
        k.cut
    }

    /// Only the changes, cut to `bounds`; true when something was cut.
    pub(super) fn changes(self, bounds: &Bounds) -> (Vec<Change>, bool) {
        let mut k = Keep { bounds, cut: false };
        let changes = k.list(self.changes, Keep::change);
        (changes, k.cut)
    }
}

/// A drift's fields as stored: JSON, or `NULL` when not known.
pub(super) fn paths_json(paths: Option<&[DriftedPath]>) -> Option<String> {
    paths.and_then(|p| serde_json::to_string(p).ok())
}

/// A drift's fields read back; an unreadable column is counted and taken as
/// not known, which makes its reconcile unverified rather than wrong.
pub(crate) fn drifted_paths(id: &str, column: Option<String>) -> Option<Vec<DriftedPath>> {
    let text = column?;
    match serde_json::from_str(&text) {
        Ok(paths) => Some(paths),
        Err(e) => {
            StoreRowCorrupt {
                table: "drifts",
                problem: &format!("the drifted fields of {id} are not readable ({e})"),
            }
            .emit();
            None
        }
    }
}
