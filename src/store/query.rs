//! The read side of the store: filtered, paginated queries over changes and
//! drifts. Pages are newest first; `next` is an opaque cursor.

use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension, Row};
use serde::{Deserialize, Serialize};

use super::records::ChangeDetail;
use crate::correlate::{Change, ManagedBy, Owner};
use crate::sinks::{Actor, ResourceRef};

pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 1000;

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("invalid {name}: {message}")]
    BadParam { name: &'static str, message: String },
    #[error("history query failed: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

/// Filters of `GET /api/v1/changes` (and `who-changed`).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeFilter {
    pub cluster: Option<String>,
    pub namespace: Option<String>,
    pub group: Option<String>,
    pub resource: Option<String>,
    pub name: Option<String>,
    pub actor: Option<String>,
    pub verdict: Option<String>,
    #[serde(rename = "type")]
    pub finding_type: Option<String>,
    pub drift: Option<String>,
    /// A field path or its prefix: `spec.replicas`, `spec.template`.
    pub field: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub limit: Option<usize>,
    pub cursor: Option<String>,
}

/// Filters of `GET /api/v1/drifts`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DriftFilter {
    pub cluster: Option<String>,
    pub namespace: Option<String>,
    pub group: Option<String>,
    pub resource: Option<String>,
    pub name: Option<String>,
    /// Who opened it.
    pub actor: Option<String>,
    pub state: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub limit: Option<usize>,
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChangeItem {
    /// The finding id (stable per request).
    pub id: String,
    pub time: String,
    pub cluster: String,
    pub resource: ResourceRef,
    pub verb: String,
    pub actor: Actor,
    pub audit_id: String,
    pub request_uri: String,
    pub verdict: String,
    pub pipeline: Option<String>,
    #[serde(rename = "type")]
    pub finding_type: Option<String>,
    pub severity: Option<String>,
    pub reasons: Vec<String>,
    pub changes: Vec<Change>,
    pub drift: Option<DriftLink>,
    pub managed_by: Option<ManagedBy>,
    pub owner: Option<Owner>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DriftLink {
    pub id: String,
    pub state: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DriftItem {
    pub id: String,
    pub state: String,
    pub cluster: String,
    pub resource: DriftResource,
    pub opened_at: String,
    pub opened_by: String,
    pub closed_at: Option<String>,
    pub closed_by: Option<ClosedBy>,
    pub reconcile_seconds: Option<f64>,
    pub changes: Vec<Change>,
    pub audit_ids: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DriftResource {
    pub group: String,
    pub resource: String,
    pub namespace: Option<String>,
    pub name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClosedBy {
    pub pipeline: Option<String>,
    pub audit_id: Option<String>,
    pub actor: Option<String>,
    pub reason: Option<String>,
}

/// `7d`, `24h`, `30m`, `45s` before now, or an RFC 3339 time; as Unix µs.
pub fn parse_time(name: &'static str, value: &str) -> Result<i64, QueryError> {
    let bad = |message: String| QueryError::BadParam { name, message };
    if let Ok(ts) = value.parse::<jiff::Timestamp>() {
        return Ok(ts.as_microsecond());
    }
    let (num, unit) = value.split_at(
        value
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(value.len()),
    );
    let n: i64 = num.parse().map_err(|_| {
        bad(format!(
            "{value:?}: expected a duration such as 7d, 24h, 30m or an RFC 3339 time"
        ))
    })?;
    let unit_secs: i64 = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 604_800,
        _ => return Err(bad(format!("{value:?}: unit must be s, m, h, d or w"))),
    };
    // The number comes from a URL or the command line: `1000000000d` must be
    // a 400, not an arithmetic overflow (a panic in debug builds).
    n.checked_mul(unit_secs)
        .and_then(|s| s.checked_mul(1_000_000))
        .and_then(|us| jiff::Timestamp::now().as_microsecond().checked_sub(us))
        .ok_or_else(|| bad(format!("{value:?}: too far in the past")))
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

pub fn changes(conn: &Connection, f: &ChangeFilter) -> Result<Page<ChangeItem>, QueryError> {
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
        let escaped = field
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        // The path itself or a path below it: `spec.template` matches
        // `spec.template.spec.containers[name=app].image`, but `spec.rep`
        // is no field and matches nothing.
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
    if let Some(since) = &f.since {
        w.raw(
            "c.time_us >= ?",
            vec![SqlValue::Integer(parse_time("since", since)?)],
        );
    }
    if let Some(until) = &f.until {
        w.raw(
            "c.time_us < ?",
            vec![SqlValue::Integer(parse_time("until", until)?)],
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
        "SELECT c.seq, lower(hex(substr(c.dedupe_key, 9))), c.time, c.time_us, c.cluster, c.api_group, c.api_version, c.resource,
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
        items.push(change_item(row)?);
    }
    Ok(Page { items, next: None })
}

fn change_item(r: &Row<'_>) -> rusqlite::Result<ChangeItem> {
    let detail: ChangeDetail = serde_json::from_str(&r.get::<_, String>(21)?).unwrap_or_default();
    let namespace: String = r.get(9)?;
    let drift_id: Option<String> = r.get(19)?;
    Ok(ChangeItem {
        id: r.get(1)?,
        time: r.get(2)?,
        cluster: r.get(4)?,
        resource: ResourceRef {
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
            uid: None,
            groups: detail.groups,
            impersonated_by: detail.impersonated_by,
            user_agent: detail.user_agent,
            client: detail.client,
            source_ips: detail.source_ips,
            field_manager: detail.field_manager,
        },
        audit_id: r.get(14)?,
        request_uri: detail.request_uri,
        verdict: r.get(15)?,
        pipeline: r.get(16)?,
        finding_type: r.get(17)?,
        severity: r.get(18)?,
        reasons: detail.reasons,
        changes: detail.changes,
        drift: drift_id.map(|id| DriftLink {
            id,
            state: r.get(20).ok().flatten(),
        }),
        managed_by: detail.managed_by,
        owner: detail.owner,
    })
}

const DRIFT_COLUMNS: &str = "id, state, cluster, api_group, resource, namespace, name, opened_at, opened_at_us,
    opened_by, closed_at, closed_pipeline, closed_audit_id, closed_actor, closed_reason, reconcile_seconds";

pub fn drifts(conn: &Connection, f: &DriftFilter) -> Result<Page<DriftItem>, QueryError> {
    let limit = limit(f.limit)?;
    if let Some(state) = &f.state
        && crate::correlate::DriftState::parse(state).is_none()
    {
        return Err(QueryError::BadParam {
            name: "state",
            message: format!("{state:?}: expected open, reconciled or accepted"),
        });
    }
    let mut w = Where::new();
    w.eq("cluster", &f.cluster);
    w.eq("namespace", &namespace_param(&f.namespace));
    w.eq("api_group", &group_param(&f.group));
    w.eq("resource", &f.resource);
    w.eq("name", &f.name);
    w.eq("opened_by", &f.actor);
    w.eq("state", &f.state);
    if let Some(since) = &f.since {
        w.raw(
            "opened_at_us >= ?",
            vec![SqlValue::Integer(parse_time("since", since)?)],
        );
    }
    if let Some(until) = &f.until {
        w.raw(
            "opened_at_us < ?",
            vec![SqlValue::Integer(parse_time("until", until)?)],
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
    for item in &mut items {
        fill_drift_changes(conn, item)?;
    }
    Ok(Page { items, next })
}

pub fn drift(conn: &Connection, id: &str) -> Result<Option<DriftItem>, QueryError> {
    let sql = format!("SELECT {DRIFT_COLUMNS} FROM drifts WHERE id = ?1");
    let item = conn
        .prepare_cached(&sql)?
        .query_row([id], drift_row)
        .optional()?;
    match item {
        Some(mut item) => {
            fill_drift_changes(conn, &mut item)?;
            Ok(Some(item))
        }
        None => Ok(None),
    }
}

fn drift_row(r: &Row<'_>) -> rusqlite::Result<DriftItem> {
    let namespace: String = r.get(5)?;
    let state: String = r.get(1)?;
    let closed = state != "open";
    Ok(DriftItem {
        id: r.get(0)?,
        cluster: r.get(2)?,
        resource: DriftResource {
            group: r.get(3)?,
            resource: r.get(4)?,
            namespace: (!namespace.is_empty()).then_some(namespace),
            name: r.get(6)?,
        },
        opened_at: r.get(7)?,
        opened_by: r.get(9)?,
        closed_at: r.get(10)?,
        closed_by: closed
            .then(|| -> rusqlite::Result<ClosedBy> {
                Ok(ClosedBy {
                    pipeline: r.get(11)?,
                    audit_id: r.get(12)?,
                    actor: r.get(13)?,
                    reason: r.get(14)?,
                })
            })
            .transpose()?,
        reconcile_seconds: r.get(15)?,
        state,
        changes: Vec::new(),
        audit_ids: Vec::new(),
    })
}

/// A drift's changes and audit ids, oldest first, from the changes that
/// joined it.
fn fill_drift_changes(conn: &Connection, item: &mut DriftItem) -> Result<(), QueryError> {
    let mut stmt = conn.prepare_cached(
        "SELECT audit_id, detail FROM changes WHERE drift_id = ?1 AND verdict = 'drift' ORDER BY time_us, seq",
    )?;
    let mut rows = stmt.query([&item.id])?;
    while let Some(row) = rows.next()? {
        item.audit_ids.push(row.get(0)?);
        let detail: ChangeDetail =
            serde_json::from_str(&row.get::<_, String>(1)?).unwrap_or_default();
        item.changes.extend(detail.changes);
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

    #[test]
    fn huge_durations_are_rejected_not_overflowed() {
        for v in ["1000000000d", "99999999999999w", "9223372036854775807s"] {
            assert!(
                matches!(parse_time("since", v), Err(QueryError::BadParam { .. })),
                "{v}"
            );
        }
        let week = parse_time("since", "7d").unwrap();
        let now = jiff::Timestamp::now().as_microsecond();
        assert!((now - week - 7 * 86_400_000_000).abs() < 60_000_000);
    }
}
