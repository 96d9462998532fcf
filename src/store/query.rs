//! The read side of the store: filtered, paginated queries over changes and
//! drifts. Pages are newest first; `next` is an opaque cursor.

use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension, Row};
use serde::{Deserialize, Serialize};

use super::records::Detail;
use crate::model::{
    Actor, Change, ChangeRecord, DriftRef, DriftState, FindingType, ObjectRef, RequestId, Severity,
    Time, VerdictKind, Verification, time,
};
use crate::telemetry::events::{self, Emit};

pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 1000;

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("invalid {name}: {message}")]
    BadParam { name: &'static str, message: String },
    #[error("history query failed: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

/// The filters of every history query: `GET /api/v1/changes`, `/drifts`,
/// one resource's history, and `who-changed` (which sends them to a server
/// as they are). Each query takes the filters it understands and refuses
/// the others by name.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// `_` for cluster-scoped objects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// `core` for the core group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Changes: the effective user; drifts: who opened it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<String>,
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub finding_type: Option<String>,
    /// Changes that belong to this drift.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift: Option<String>,
    /// A field path or its prefix: `spec.replicas`, `spec.template`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Drifts in this state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

impl Filter {
    /// Refuses the filters a query does not understand, by name.
    fn refuse(&self, query: &str, names: &[(&'static str, bool)]) -> Result<(), QueryError> {
        match names.iter().find(|(_, set)| *set) {
            Some((name, _)) => Err(QueryError::BadParam {
                name,
                message: format!("not a filter of {query}"),
            }),
            None => Ok(()),
        }
    }

    /// The object part of a filter, for a route whose path names it.
    pub fn names_object(&self) -> bool {
        self.namespace.is_some()
            || self.group.is_some()
            || self.resource.is_some()
            || self.name.is_some()
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DriftItem {
    pub id: String,
    pub state: DriftState,
    pub cluster: String,
    pub resource: ObjectRef,
    pub opened_at: Time,
    pub opened_by: String,
    pub closed_at: Option<Time>,
    pub closed_by: Option<ClosedBy>,
    pub reconcile_seconds: Option<f64>,
    /// On a reconciled drift: whether every drifted field was seen back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<Verification>,
    /// Set once a pipeline write left drifted fields in place.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persisting: Option<Persisting>,
    pub changes: Vec<Change>,
    pub audit_ids: Vec<String>,
}

/// A pipeline write that did not put a drift back: since when, the last
/// such write, and the fields it left (while the drift is persisting).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Persisting {
    pub since: Time,
    pub pipeline: Option<String>,
    pub audit_id: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClosedBy {
    pub pipeline: Option<String>,
    pub audit_id: Option<String>,
    pub actor: Option<String>,
    pub reason: Option<String>,
}

fn bound(name: &'static str, value: &str) -> Result<i64, QueryError> {
    time::parse_bound(value).map_err(|message| QueryError::BadParam { name, message })
}

fn limit(l: Option<usize>) -> Result<usize, QueryError> {
    match l {
        None => Ok(DEFAULT_LIMIT),
        Some(0) => Err(QueryError::BadParam {
            name: "limit",
            message: "must be at least 1".to_owned(),
        }),
        Some(n) => Ok(n.min(MAX_LIMIT)),
    }
}

/// Cursors are `<time µs>.<tiebreak>`: the last item of the previous page.
fn parse_cursor(c: &str) -> Result<(i64, String), QueryError> {
    c.split_once('.')
        .and_then(|(t, k)| Some((t.parse().ok()?, k.to_owned())))
        .ok_or_else(|| QueryError::BadParam {
            name: "cursor",
            message: "not a cursor returned by this API".to_owned(),
        })
}

struct Where {
    clauses: Vec<String>,
    params: Vec<SqlValue>,
}

impl Where {
    fn new() -> Self {
        Where {
            clauses: Vec::new(),
            params: Vec::new(),
        }
    }
    fn eq(&mut self, column: &str, value: &Option<String>) {
        if let Some(v) = value {
            self.params.push(SqlValue::Text(v.clone()));
            self.clauses
                .push(format!("{column} = ?{}", self.params.len()));
        }
    }
    /// A clause whose bare `?` placeholders take `values` in order. They are
    /// numbered in one pass: replacing the first `?` again and again would
    /// find the `?1` just written and turn it into `?21`.
    fn raw(&mut self, clause: &str, values: Vec<SqlValue>) {
        let mut numbered = String::with_capacity(clause.len() + 4 * values.len());
        let mut values = values.into_iter();
        for c in clause.chars() {
            if c != '?' {
                numbered.push(c);
                continue;
            }
            match values.next() {
                Some(v) => {
                    self.params.push(v);
                    numbered.push_str(&format!("?{}", self.params.len()));
                }
                // More placeholders than values: a bug in this module, which
                // SQLite reports as a parameter count mismatch.
                None => numbered.push('?'),
            }
        }
        self.clauses.push(numbered);
    }
    fn sql(&self) -> String {
        if self.clauses.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", self.clauses.join(" AND "))
        }
    }
}

/// `_` for cluster-scoped in URLs; stored as the empty string.
fn namespace_param(ns: &Option<String>) -> Option<String> {
    ns.as_ref()
        .map(|n| if n == "_" { String::new() } else { n.clone() })
}

/// `core` for the core group in URLs; stored as the empty string.
fn group_param(g: &Option<String>) -> Option<String> {
    g.as_ref().map(|g| {
        if g == "core" {
            String::new()
        } else {
            g.clone()
        }
    })
}

pub fn changes(conn: &Connection, f: &Filter) -> Result<Page<ChangeRecord>, QueryError> {
    f.refuse("/api/v1/changes", &[("state", f.state.is_some())])?;
    let limit = limit(f.limit)?;
    let mut w = Where::new();
    w.eq("c.cluster", &f.cluster);
    w.eq("c.namespace", &namespace_param(&f.namespace));
    w.eq("c.api_group", &group_param(&f.group));
    w.eq("c.resource", &f.resource);
    w.eq("c.name", &f.name);
    w.eq("c.actor", &f.actor);
    w.eq("c.verdict", &f.verdict);
    w.eq("c.finding_type", &f.finding_type);
    w.eq("c.drift_id", &f.drift);
    if let Some(field) = &f.field {
        field_clause(&mut w, field);
    }
    if let Some(since) = &f.since {
        w.raw(
            "c.time_us >= ?",
            vec![SqlValue::Integer(bound("since", since)?)],
        );
    }
    if let Some(until) = &f.until {
        w.raw(
            "c.time_us < ?",
            vec![SqlValue::Integer(bound("until", until)?)],
        );
    }
    if let Some(cursor) = &f.cursor {
        let (t, seq) = parse_cursor(cursor)?;
        let seq: i64 = seq.parse().map_err(|_| QueryError::BadParam {
            name: "cursor",
            message: "not a cursor returned by this API".to_owned(),
        })?;
        w.raw(
            "(c.time_us < ? OR (c.time_us = ? AND c.seq < ?))",
            vec![
                SqlValue::Integer(t),
                SqlValue::Integer(t),
                SqlValue::Integer(seq),
            ],
        );
    }
    let sql = format!(
        "SELECT c.seq, c.dedupe_key, c.time, c.time_us, c.cluster, c.api_group, c.api_version, c.resource,
                c.subresource, c.namespace, c.name, c.uid, c.verb, c.actor, c.audit_id, c.verdict,
                c.pipeline, c.finding_type, c.severity, c.drift_id, d.state, c.detail
         FROM changes c LEFT JOIN drifts d ON d.id = c.drift_id
         {} ORDER BY c.time_us DESC, c.seq DESC LIMIT {}",
        w.sql(),
        limit + 1
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows = stmt.query(rusqlite::params_from_iter(w.params.iter()))?;
    let mut items = Vec::new();
    let mut last = None;
    while let Some(row) = rows.next()? {
        if items.len() == limit {
            let next = last.map(|(t, s): (i64, i64)| format!("{t}.{s}"));
            return Ok(Page { items, next });
        }
        last = Some((row.get::<_, i64>(3)?, row.get::<_, i64>(0)?));
        items.push(change_row(row)?);
    }
    Ok(Page { items, next: None })
}

/// The path itself or a path below it: `spec.template` matches
/// `spec.template.spec.containers[name=app].image`, but `spec.rep` is no
/// field and matches nothing.
fn field_clause(w: &mut Where, field: &str) {
    let escaped = field
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    w.raw(
        "((char(10) || c.changed_paths || char(10)) LIKE ? ESCAPE '\\'
          OR (char(10) || c.changed_paths || char(10)) LIKE ? ESCAPE '\\'
          OR (char(10) || c.changed_paths || char(10)) LIKE ? ESCAPE '\\')",
        ["\n", ".", "["]
            .iter()
            .map(|after| SqlValue::Text(format!("%\n{escaped}{after}%")))
            .collect(),
    );
}

/// A stored change as the record it was written from. What cannot be read
/// is said in `corrupt`, counted and logged; the columns are still shown.
fn change_row(r: &Row<'_>) -> rusqlite::Result<ChangeRecord> {
    let mut problems = Vec::new();
    let key: Vec<u8> = r.get(1)?;
    let request = RequestId::from_store_key(&key).unwrap_or_else(|| {
        problems.push("its key is not a request id".to_owned());
        RequestId::default()
    });
    let namespace: String = r.get(9)?;
    let verdict: String = r.get(15)?;
    let finding_type: Option<String> = r.get(17)?;
    let severity: Option<String> = r.get(18)?;
    let drift_id: Option<String> = r.get(19)?;
    let drift_state: Option<String> = r.get(20)?;
    let mut record = ChangeRecord {
        id: request.finding_id(),
        time: Time::stored(r.get(3)?, r.get(2)?),
        cluster: r.get(4)?,
        resource: ObjectRef {
            group: r.get(5)?,
            version: r.get(6)?,
            resource: r.get(7)?,
            subresource: r.get(8)?,
            namespace: (!namespace.is_empty()).then_some(namespace),
            name: Some(r.get::<_, String>(10)?).filter(|n| !n.is_empty()),
            uid: r.get(11)?,
        },
        verb: r.get(12)?,
        actor: Actor {
            username: r.get(13)?,
            ..Actor::default()
        },
        audit_id: r.get(14)?,
        verdict: VerdictKind::parse(&verdict).unwrap_or_else(|| {
            problems.push(format!("unknown verdict {verdict:?}"));
            VerdictKind::default()
        }),
        pipeline: r.get(16)?,
        finding_type: finding_type.and_then(|t| {
            let parsed = FindingType::parse(&t);
            if parsed.is_none() {
                problems.push(format!("unknown finding type {t:?}"));
            }
            parsed
        }),
        severity: severity.and_then(|s| {
            let parsed = Severity::parse(&s);
            if parsed.is_none() {
                problems.push(format!("unknown severity {s:?}"));
            }
            parsed
        }),
        drift: drift_id.map(|id| DriftRef {
            id,
            state: drift_state.as_deref().and_then(DriftState::parse),
        }),
        request,
        ..ChangeRecord::default()
    };
    match serde_json::from_str::<Detail>(&r.get::<_, String>(21)?) {
        Ok(detail) => detail.fill(&mut record),
        Err(e) => problems.push(format!("its detail is not readable ({e})")),
    }
    if !problems.is_empty() {
        events::StoreRowCorrupt {
            table: "changes",
            problem: &problems.join("; "),
        }
        .emit();
        record.corrupt = Some(problems.join("; "));
    }
    Ok(record)
}

const DRIFT_COLUMNS: &str = "id, state, cluster, api_group, resource, namespace, name, opened_at, opened_at_us,
    opened_by, closed_at, closed_at_us, closed_pipeline, closed_audit_id, closed_actor, closed_reason,
    reconcile_seconds, reconcile_verification, persisting_at, persisting_at_us, persisting_pipeline,
    persisting_audit_id, drifted_paths";

pub fn drifts(conn: &Connection, f: &Filter) -> Result<Page<DriftItem>, QueryError> {
    f.refuse(
        "/api/v1/drifts",
        &[
            ("verdict", f.verdict.is_some()),
            ("type", f.finding_type.is_some()),
            ("drift", f.drift.is_some()),
            ("field", f.field.is_some()),
        ],
    )?;
    let limit = limit(f.limit)?;
    if let Some(state) = &f.state
        && DriftState::parse(state).is_none()
    {
        return Err(QueryError::BadParam {
            name: "state",
            message: format!("{state:?}: expected open, persisting, reconciled or accepted"),
        });
    }
    let mut w = Where::new();
    w.eq("cluster", &f.cluster);
    w.eq("namespace", &namespace_param(&f.namespace));
    w.eq("api_group", &group_param(&f.group));
    w.eq("resource", &f.resource);
    w.eq("name", &f.name);
    w.eq("opened_by", &f.actor);
    // `open` is every drift not closed, persisting ones included: they are
    // open drifts the pipeline failed to put back.
    match f.state.as_deref() {
        Some("open") => w.raw("state IN ('open', 'persisting')", vec![]),
        _ => w.eq("state", &f.state),
    }
    if let Some(since) = &f.since {
        w.raw(
            "opened_at_us >= ?",
            vec![SqlValue::Integer(bound("since", since)?)],
        );
    }
    if let Some(until) = &f.until {
        w.raw(
            "opened_at_us < ?",
            vec![SqlValue::Integer(bound("until", until)?)],
        );
    }
    if let Some(cursor) = &f.cursor {
        let (t, id) = parse_cursor(cursor)?;
        w.raw(
            "(opened_at_us < ? OR (opened_at_us = ? AND id < ?))",
            vec![
                SqlValue::Integer(t),
                SqlValue::Integer(t),
                SqlValue::Text(id),
            ],
        );
    }
    let sql = format!(
        "SELECT {DRIFT_COLUMNS} FROM drifts {} ORDER BY opened_at_us DESC, id DESC LIMIT {}",
        w.sql(),
        limit + 1
    );
    let mut items = Vec::new();
    let mut next = None;
    {
        let mut stmt = conn.prepare_cached(&sql)?;
        let mut rows = stmt.query(rusqlite::params_from_iter(w.params.iter()))?;
        let mut last: Option<(i64, String)> = None;
        while let Some(row) = rows.next()? {
            if items.len() == limit {
                next = last.map(|(t, id)| format!("{t}.{id}"));
                break;
            }
            last = Some((row.get(8)?, row.get(0)?));
            items.push(drift_row(row)?);
        }
    }
    fill_drift_changes(conn, &mut items)?;
    Ok(Page { items, next })
}

pub fn drift(conn: &Connection, id: &str) -> Result<Option<DriftItem>, QueryError> {
    let sql = format!("SELECT {DRIFT_COLUMNS} FROM drifts WHERE id = ?1");
    let item = conn
        .prepare_cached(&sql)?
        .query_row([id], drift_row)
        .optional()?;
    match item {
        Some(item) => {
            let mut items = [item];
            fill_drift_changes(conn, &mut items)?;
            let [item] = items;
            Ok(Some(item))
        }
        None => Ok(None),
    }
}

fn drift_row(r: &Row<'_>) -> rusqlite::Result<DriftItem> {
    let namespace: String = r.get(5)?;
    let state: String = r.get(1)?;
    let parsed = DriftState::parse(&state);
    if parsed.is_none() {
        events::StoreRowCorrupt {
            table: "drifts",
            problem: &format!("unknown state {state:?}"),
        }
        .emit();
    }
    let state = parsed.unwrap_or(DriftState::Open);
    let closed_text: Option<String> = r.get(10)?;
    let closed_us: Option<i64> = r.get(11)?;
    Ok(DriftItem {
        id: r.get(0)?,
        cluster: r.get(2)?,
        resource: ObjectRef {
            group: r.get(3)?,
            resource: r.get(4)?,
            namespace: (!namespace.is_empty()).then_some(namespace),
            name: Some(r.get(6)?),
            ..ObjectRef::default()
        },
        opened_at: Time::stored(r.get(8)?, r.get(7)?),
        opened_by: r.get(9)?,
        closed_at: closed_text.map(|t| Time::stored(closed_us.unwrap_or(0), t)),
        closed_by: (!state.is_unclosed())
            .then(|| -> rusqlite::Result<ClosedBy> {
                Ok(ClosedBy {
                    pipeline: r.get(12)?,
                    audit_id: r.get(13)?,
                    actor: r.get(14)?,
                    reason: r.get(15)?,
                })
            })
            .transpose()?,
        reconcile_seconds: r.get(16)?,
        verification: r
            .get::<_, Option<String>>(17)?
            .as_deref()
            .and_then(Verification::parse),
        persisting: persisting_row(r)?,
        state,
        changes: Vec::new(),
        audit_ids: Vec::new(),
    })
}

fn persisting_row(r: &Row<'_>) -> rusqlite::Result<Option<Persisting>> {
    let Some(text) = r.get::<_, Option<String>>(18)? else {
        return Ok(None);
    };
    let state: String = r.get(1)?;
    let paths = if state == DriftState::Persisting.as_str() {
        let id: String = r.get(0)?;
        super::records::drifted_paths(&id, r.get(22)?)
            .unwrap_or_default()
            .into_iter()
            .map(|p| p.path)
            .collect()
    } else {
        Vec::new()
    };
    Ok(Some(Persisting {
        since: Time::stored(r.get::<_, Option<i64>>(19)?.unwrap_or(0), text),
        pipeline: r.get(20)?,
        audit_id: r.get(21)?,
        paths,
    }))
}

/// The drifts' changes and audit ids, oldest first, from the changes that
/// joined them: one query for the whole page.
fn fill_drift_changes(conn: &Connection, items: &mut [DriftItem]) -> Result<(), QueryError> {
    if items.is_empty() {
        return Ok(());
    }
    let ids = serde_json::to_string(&items.iter().map(|d| d.id.as_str()).collect::<Vec<_>>())
        .unwrap_or_else(|_| "[]".to_owned());
    let mut stmt = conn.prepare_cached(
        "SELECT drift_id, audit_id, detail FROM changes
         WHERE drift_id IS NOT NULL AND drift_id IN (SELECT value FROM json_each(?1))
           AND verdict = 'drift'
         ORDER BY time_us, seq",
    )?;
    let index: foldhash::HashMap<String, usize> = items
        .iter()
        .enumerate()
        .map(|(i, d)| (d.id.clone(), i))
        .collect();
    let mut rows = stmt.query([ids])?;
    while let Some(row) = rows.next()? {
        let drift_id: String = row.get(0)?;
        let Some(&i) = index.get(&drift_id) else {
            continue;
        };
        items[i].audit_ids.push(row.get(1)?);
        match serde_json::from_str::<Detail>(&row.get::<_, String>(2)?) {
            Ok(detail) => items[i].changes.extend(detail.changes),
            Err(e) => events::StoreRowCorrupt {
                table: "changes",
                problem: &format!("its detail is not readable ({e})"),
            }
            .emit(),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_in_order_across_clauses() {
        let mut w = Where::new();
        w.eq("c.cluster", &Some("prod".to_owned()));
        w.raw(
            "(c.time_us < ? OR (c.time_us = ? AND c.seq < ?))",
            vec![
                SqlValue::Integer(10),
                SqlValue::Integer(10),
                SqlValue::Integer(3),
            ],
        );
        w.raw("c.time_us >= ?", vec![SqlValue::Integer(1)]);
        assert_eq!(
            w.sql(),
            "WHERE c.cluster = ?1 AND (c.time_us < ?2 OR (c.time_us = ?3 AND c.seq < ?4)) AND c.time_us >= ?5"
        );
        assert_eq!(w.params.len(), 5);
    }
}
