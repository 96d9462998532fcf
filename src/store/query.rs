//! The read side of the store: filtered, paginated queries over changes and
//! drifts. Pages are newest first; `next` is an opaque cursor.

use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension, Row};
use serde::{Deserialize, Serialize};

use rusqlite::types::ValueRef;

use super::compact;
use super::records::Detail;
use super::view::{self, Bounds};
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
    #[error("history query failed: {0}")]
    Postgres(#[from] postgres::Error),
    #[error("history query failed: {0}")]
    Unavailable(&'static str),
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
    pub(super) fn refuse(
        &self,
        query: &str,
        names: &[(&'static str, bool)],
    ) -> Result<(), QueryError> {
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
    /// In a list: some value or list of this drift was cut (see
    /// [`Bounds`]); `GET /api/v1/drifts/{id}` has it whole.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
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

pub(super) fn bound(name: &'static str, value: &str) -> Result<i64, QueryError> {
    time::parse_bound(value).map_err(|message| QueryError::BadParam { name, message })
}

pub(super) fn limit(l: Option<usize>) -> Result<usize, QueryError> {
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
pub(super) fn parse_cursor(c: &str) -> Result<(i64, String), QueryError> {
    c.split_once('.')
        .and_then(|(t, k)| Some((t.parse().ok()?, k.to_owned())))
        .ok_or_else(|| QueryError::BadParam {
            name: "cursor",
            message: "not a cursor returned by this API".to_owned(),
        })
}

type Where = super::clauses::Where<SqlValue>;

fn sqlite_where() -> Where {
    Where::new('?')
}

/// A text filter's value as a parameter.
fn text(v: &Option<String>) -> Option<SqlValue> {
    v.clone().map(SqlValue::Text)
}

/// `_` for cluster-scoped in URLs; stored as the empty string.
pub(super) fn namespace_param(ns: &Option<String>) -> Option<String> {
    ns.as_ref()
        .map(|n| if n == "_" { String::new() } else { n.clone() })
}

/// `core` for the core group in URLs; stored as the empty string.
pub(super) fn group_param(g: &Option<String>) -> Option<String> {
    g.as_ref().map(|g| {
        if g == "core" {
            String::new()
        } else {
            g.clone()
        }
    })
}

/// The filters `/api/v1/changes` refuses, then its page size.
pub(super) fn changes_limit(f: &Filter) -> Result<usize, QueryError> {
    f.refuse("/api/v1/changes", &[("state", f.state.is_some())])?;
    limit(f.limit)
}

/// A page of changes, newest first, within `bounds`.
pub fn changes(
    conn: &Connection,
    f: &Filter,
    bounds: &Bounds,
) -> Result<Page<ChangeRecord>, QueryError> {
    let limit = changes_limit(f)?;
    // One snapshot for every step.
    let tx = conn.unchecked_transaction()?;
    let w = change_filter(&tx, f)?;
    let keys = change_keys(&tx, &w, limit + 1)?;
    let mut page = Page {
        items: Vec::new(),
        next: None,
    };
    let (mut used, mut last) = (0, None);
    let mut fetch = tx.prepare_cached(CHANGE_BY_SEQ)?;
    for &(time_us, seq) in &keys {
        if page.items.len() == limit {
            page.next = last.map(|(t, s): (i64, i64)| format!("{t}.{s}"));
            break;
        }
        // Always there: both steps read one snapshot.
        let Some(mut item) = fetch
            .query_row([seq], |r| change_row(r, bounds))
            .optional()?
        else {
            continue;
        };
        // The columns; the detail was cut as it was read.
        item.truncated |= view::cut_record(&mut item, bounds);
        let size = view::json_len(&item) + 1;
        if !bounds.fits(page.items.len(), used, size) {
            page.next = last.map(|(t, s)| format!("{t}.{s}"));
            break;
        }
        used += size;
        last = Some((time_us, seq));
        page.items.push(item);
    }
    Ok(page)
}

fn change_filter(conn: &Connection, f: &Filter) -> Result<Where, QueryError> {
    let mut w = sqlite_where();
    object_clause(conn, &mut w, f)?;
    if let Some(actor) = &f.actor {
        w.raw(
            "c.actor = (SELECT id FROM strings WHERE text = ?)",
            vec![SqlValue::Text(actor.clone())],
        );
    }
    for (column, value) in [("verdict", &f.verdict), ("finding_type", &f.finding_type)] {
        if let Some(v) = value {
            w.raw(
                &format!(
                    "c.shape IN (SELECT id FROM shapes WHERE {column} = (SELECT id FROM strings WHERE text = ?))"
                ),
                vec![SqlValue::Text(v.clone())],
            );
        }
    }
    if let Some(drift) = &f.drift {
        w.raw("c.drift_id = ?", vec![compact::drift_key(drift)]);
    }
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
    Ok(w)
}

/// The page's rows as `(time, seq)`, in order: only keys go through the
/// sort, whatever the rows hold.
fn change_keys(conn: &Connection, w: &Where, n: usize) -> Result<Vec<(i64, i64)>, QueryError> {
    let sql = format!(
        "SELECT c.time_us, c.seq FROM changes c {} ORDER BY c.time_us DESC, c.seq DESC LIMIT {n}",
        w.sql()
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(rusqlite::params_from_iter(w.params.iter()), |r| {
        Ok((r.get(0)?, r.get(1)?))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// A change's row with its dictionary entries. Left joins: a missing entry
/// (a damaged store) is said in the record, the rest still shown.
const CHANGE_BY_SEQ: &str = concat!(
    "SELECT c.seq, c.dedupe_key, c.time, c.time_us, o.cluster, o.api_group,
        o.api_version, o.resource, o.subresource, o.namespace, o.name, o.uid, verb.text,
        actor.text, c.audit_id, verdict.text, pipeline.text, type.text, severity.text, ",
    compact::drift_text!(),
    ", d.state, c.detail, profile.text, ownership.text, uri.text, paths.text, o.id
     FROM changes c
     LEFT JOIN objects o ON o.id = c.object
     LEFT JOIN strings actor ON actor.id = c.actor
     LEFT JOIN shapes sh ON sh.id = c.shape
     LEFT JOIN strings verb ON verb.id = sh.verb
     LEFT JOIN strings verdict ON verdict.id = sh.verdict
     LEFT JOIN strings pipeline ON pipeline.id = sh.pipeline
     LEFT JOIN strings type ON type.id = sh.finding_type
     LEFT JOIN strings severity ON severity.id = sh.severity
     LEFT JOIN strings profile ON profile.id = sh.profile
     LEFT JOIN strings ownership ON ownership.id = sh.ownership
     LEFT JOIN strings uri ON uri.id = c.uri
     LEFT JOIN paths ON paths.id = c.paths
     LEFT JOIN drifts d ON d.id = ",
    compact::drift_text!(),
    "
     WHERE c.seq = ?1"
);

/// The object filters, on the `objects` dictionary. A name picks a few
/// objects: their ids are looked up first, then their rows in
/// `changes_by_object`, one look per epoch of the table (see
/// [`EPOCHS`]). Without a name (a whole namespace, a cluster, a resource)
/// many objects match: the ids are only checked (`+`: not looked up in
/// that index), while the rows are read newest first from
/// `changes_by_time`, as before the dictionary.
fn object_clause(conn: &Connection, w: &mut Where, f: &Filter) -> Result<(), QueryError> {
    let mut o = sqlite_where();
    object_eq(&mut o, f);
    if o.clauses.is_empty() {
        return Ok(());
    }
    let select = format!("SELECT id FROM objects {}", o.sql());
    if f.name.is_none() {
        w.raw(&format!("+c.object IN ({})", unnumbered(&select)), o.params);
        return Ok(());
    }
    let ids: Vec<i64> = conn
        .prepare_cached(&select)?
        .query_map(rusqlite::params_from_iter(o.params.iter()), |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    if ids.is_empty() {
        w.raw("c.object IS NULL", vec![]);
        return Ok(());
    }
    w.raw(
        &format!(
            "{EPOCHS} AND c.object IN ({})",
            vec!["?"; ids.len()].join(",")
        ),
        ids.into_iter().map(SqlValue::Integer).collect(),
    );
    Ok(())
}

/// Every epoch of the table: `changes_by_object` is ordered by epoch
/// (16,384 consecutive rows) first, so that a batch's rows go into the few
/// pages of the last epoch, not one page per object it touched (which
/// made a batch of 400 write some 400 index pages). An object's history
/// is one look per epoch; the expression is the index's own.
const EPOCHS: &str = "(c.seq >> 14) IN (WITH RECURSIVE epoch(n) AS (
        SELECT (SELECT min(seq) FROM changes) >> 14
        UNION ALL SELECT n + 1 FROM epoch WHERE n < (SELECT max(seq) FROM changes) >> 14)
    SELECT n FROM epoch)";

/// A clause of a [`Where`] with its `?N` placeholders made bare again, to
/// go into another [`Where`], which numbers them anew.
fn unnumbered(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(c);
        if c == '?' {
            while chars.peek().is_some_and(char::is_ascii_digit) {
                chars.next();
            }
        }
    }
    out
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
        "c.paths IN (SELECT id FROM paths WHERE
            (char(10) || text || char(10)) LIKE ? ESCAPE '\\'
            OR (char(10) || text || char(10)) LIKE ? ESCAPE '\\'
            OR (char(10) || text || char(10)) LIKE ? ESCAPE '\\')",
        ["\n", ".", "["]
            .iter()
            .map(|after| SqlValue::Text(format!("%\n{escaped}{after}%")))
            .collect(),
    );
}

/// A stored change as the record it was written from. What cannot be read
/// is said in `corrupt`, counted and logged; the columns are still shown.
fn change_row(r: &Row<'_>, bounds: &Bounds) -> rusqlite::Result<ChangeRecord> {
    let mut problems = Vec::new();
    let mut record = change_columns(r, &mut problems)?;
    // Borrowed from SQLite's buffers: a big row is not copied once more.
    let mut inflated = Vec::new();
    let parsed = stored_detail(r, 21, &mut inflated).map(|d| d.fill(&mut record, bounds));
    match parsed {
        Ok(cut) => record.truncated |= cut,
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

/// A dictionary entry a row needs; `""` and a problem when it is missing.
fn entry(
    r: &Row<'_>,
    i: usize,
    what: &str,
    problems: &mut Vec<String>,
) -> rusqlite::Result<String> {
    let text: Option<String> = r.get(i)?;
    Ok(text.unwrap_or_else(|| {
        problems.push(format!("its {what} is missing from the dictionary"));
        String::new()
    }))
}

/// The record's fields that are columns (or dictionary entries).
fn change_columns(r: &Row<'_>, problems: &mut Vec<String>) -> rusqlite::Result<ChangeRecord> {
    let key: Vec<u8> = r.get(1)?;
    let request = RequestId::from_store_key(&key).unwrap_or_else(|| {
        problems.push("its key is not a request id".to_owned());
        RequestId::default()
    });
    if r.get::<_, Option<i64>>(26)?.is_none() {
        problems.push("its object is missing from the dictionary".to_owned());
    }
    let namespace: Option<String> = r.get(9)?;
    let verdict = entry(r, 15, "verdict", problems)?;
    let finding_type: Option<String> = r.get(17)?;
    let severity: Option<String> = r.get(18)?;
    let drift_id: Option<String> = r.get(19)?;
    let drift_state: Option<String> = r.get(20)?;
    let time_us: i64 = r.get(3)?;
    let time_text: Option<String> = r.get(2)?;
    Ok(ChangeRecord {
        id: request.finding_id(),
        time: Time::stored(
            time_us,
            time_text.unwrap_or_else(|| time::format_us(time_us)),
        ),
        cluster: r.get::<_, Option<String>>(4)?.unwrap_or_default(),
        resource: ObjectRef {
            group: r.get::<_, Option<String>>(5)?.unwrap_or_default(),
            version: r.get::<_, Option<String>>(6)?.unwrap_or_default(),
            resource: r.get::<_, Option<String>>(7)?.unwrap_or_default(),
            subresource: r.get(8)?,
            namespace: namespace.filter(|n| !n.is_empty()),
            name: r.get::<_, Option<String>>(10)?.filter(|n| !n.is_empty()),
            uid: r.get(11)?,
        },
        verb: entry(r, 12, "verb", problems)?,
        actor: Actor {
            username: entry(r, 13, "actor", problems)?,
            ..Actor::default()
        },
        audit_id: audit_id(r, 14)?,
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
    })
}

/// An audit id: text, or the 16 bytes of a UUID (see `compact`).
fn audit_id(r: &Row<'_>, i: usize) -> rusqlite::Result<String> {
    match r.get_ref(i)? {
        ValueRef::Blob(b) => Ok(
            compact::audit_id_text(b).unwrap_or_else(|| String::from_utf8_lossy(b).into_owned())
        ),
        _ => r.get(i),
    }
}

/// The detail of the row whose `detail` column is `i`, followed by its
/// profile, ownership, URI and path set: the JSON text of a schema-3 row
/// whole, or the parts of a compact one. Borrowed from the row, or from
/// `inflated` for a deflated detail.
fn stored_detail<'a>(
    r: &'a Row<'_>,
    i: usize,
    inflated: &'a mut Vec<u8>,
) -> Result<Detail<'a>, String> {
    let text = |j: usize| -> Result<Option<&'a str>, String> {
        r.get_ref(j)
            .map_err(|e| e.to_string())?
            .as_str_or_null()
            .map_err(|e| e.to_string())
    };
    match r.get_ref(i).map_err(|e| e.to_string())? {
        ValueRef::Text(t) => {
            let t = std::str::from_utf8(t).map_err(|e| e.to_string())?;
            serde_json::from_str::<Detail<'_>>(t).map_err(|e| e.to_string())
        }
        ValueRef::Blob(b) => {
            let own = compact::own_json(b, inflated).map_err(|e| e.to_string())?;
            compact::Parts {
                profile: text(i + 1)?,
                ownership: text(i + 2)?,
                uri: text(i + 3)?,
                paths: text(i + 4)?.unwrap_or(""),
                own,
            }
            .detail()
            .map_err(|e| e.to_string())
        }
        other => Err(format!("a {} where a detail belongs", other.data_type())),
    }
}

const DRIFT_COLUMNS: &str = "id, state, cluster, api_group, resource, namespace, name, opened_at, opened_at_us,
    opened_by, closed_at, closed_at_us, closed_pipeline, closed_audit_id, closed_actor, closed_reason,
    reconcile_seconds, reconcile_verification, persisting_at, persisting_at_us, persisting_pipeline,
    persisting_audit_id, drifted_paths";

/// The filters `/api/v1/drifts` refuses, then its page size.
pub(super) fn drifts_limit(f: &Filter) -> Result<usize, QueryError> {
    f.refuse(
        "/api/v1/drifts",
        &[
            ("verdict", f.verdict.is_some()),
            ("type", f.finding_type.is_some()),
            ("drift", f.drift.is_some()),
            ("field", f.field.is_some()),
        ],
    )?;
    if let Some(state) = &f.state
        && DriftState::parse(state).is_none()
    {
        return Err(QueryError::BadParam {
            name: "state",
            message: format!("{state:?}: expected open, persisting, reconciled or accepted"),
        });
    }
    limit(f.limit)
}

/// A page of drifts, newest first, within `bounds`.
pub fn drifts(
    conn: &Connection,
    f: &Filter,
    bounds: &Bounds,
) -> Result<Page<DriftItem>, QueryError> {
    let limit = drifts_limit(f)?;
    let w = drift_filter(f)?;
    let sql = format!(
        "SELECT {DRIFT_COLUMNS} FROM drifts {} ORDER BY opened_at_us DESC, id DESC LIMIT {}",
        w.sql(),
        limit + 1
    );
    let tx = conn.unchecked_transaction()?;
    let mut items = Vec::new();
    let mut more = false;
    {
        let mut stmt = tx.prepare_cached(&sql)?;
        let mut rows = stmt.query(rusqlite::params_from_iter(w.params.iter()))?;
        while let Some(row) = rows.next()? {
            if items.len() == limit {
                more = true;
                break;
            }
            items.push(drift_row(row)?);
        }
    }
    fill_drift_changes(&tx, &mut items, bounds)?;
    Ok(drift_page(items, more, bounds))
}

/// The object's columns the filter names, each equal to its value.
fn object_eq(w: &mut Where, f: &Filter) {
    w.eq("cluster", text(&f.cluster));
    w.eq("namespace", text(&namespace_param(&f.namespace)));
    w.eq("api_group", text(&group_param(&f.group)));
    w.eq("resource", text(&f.resource));
    w.eq("name", text(&f.name));
}

fn drift_filter(f: &Filter) -> Result<Where, QueryError> {
    let mut w = sqlite_where();
    object_eq(&mut w, f);
    w.eq("opened_by", text(&f.actor));
    // `open` is every drift not closed, persisting ones included: they are
    // open drifts the pipeline failed to put back.
    match f.state.as_deref() {
        Some("open") => w.raw("state IN ('open', 'persisting')", vec![]),
        _ => w.eq("state", text(&f.state)),
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
    Ok(w)
}

/// The drifts that fit the page's bytes, and the cursor after the last.
pub(super) fn drift_page(items: Vec<DriftItem>, more: bool, bounds: &Bounds) -> Page<DriftItem> {
    let mut page = Page {
        items: Vec::with_capacity(items.len()),
        next: None,
    };
    let mut used = 0;
    let mut cut_short = false;
    for mut item in items {
        item.truncated |= cut_drift(&mut item, bounds);
        let size = view::json_len(&item) + 1;
        if !bounds.fits(page.items.len(), used, size) {
            cut_short = true;
            break;
        }
        used += size;
        page.items.push(item);
    }
    if more || cut_short {
        page.next = page
            .items
            .last()
            .map(|d| format!("{}.{}", d.opened_at.us, d.id));
    }
    page
}

/// A drift's own values cut (its changes are cut as they are read).
pub(super) fn cut_drift(d: &mut DriftItem, b: &Bounds) -> bool {
    let max = b.value_bytes;
    let mut cut = false;
    for s in [&mut d.id, &mut d.cluster, &mut d.opened_by] {
        cut |= view::cut_str(s, max);
    }
    for s in [
        &mut d.resource.name,
        &mut d.resource.namespace,
        &mut d.resource.subresource,
    ] {
        cut |= s.as_mut().is_some_and(|s| view::cut_str(s, max));
    }
    cut |= view::cut_str(&mut d.resource.group, max) | view::cut_str(&mut d.resource.resource, max);
    if let Some(c) = &mut d.closed_by {
        for s in [
            &mut c.pipeline,
            &mut c.audit_id,
            &mut c.actor,
            &mut c.reason,
        ] {
            cut |= s.as_mut().is_some_and(|s| view::cut_str(s, max));
        }
    }
    if let Some(p) = &mut d.persisting {
        if p.paths.len() > b.list_items {
            p.paths.truncate(b.list_items);
            cut = true;
        }
        for s in &mut p.paths {
            cut |= view::cut_str(s, max);
        }
    }
    cut
}

pub fn drift(conn: &Connection, id: &str) -> Result<Option<DriftItem>, QueryError> {
    let sql = format!("SELECT {DRIFT_COLUMNS} FROM drifts WHERE id = ?1");
    let tx = conn.unchecked_transaction()?;
    let item = tx
        .prepare_cached(&sql)?
        .query_row([id], drift_row)
        .optional()?;
    match item {
        Some(item) => {
            let mut items = [item];
            fill_drift_changes(&tx, &mut items, &Bounds::WHOLE)?;
            let [item] = items;
            Ok(Some(item))
        }
        None => Ok(None),
    }
}

/// What `?live=true` reads for a drift: its state, the object (at the
/// version its last change was served at) and the fields it changed.
pub fn drift_live_target(
    conn: &Connection,
    id: &str,
) -> Result<Option<(DriftState, crate::context::live::Target)>, QueryError> {
    let tx = conn.unchecked_transaction()?;
    let row = tx
        .prepare_cached(
            "SELECT state, cluster, api_group, resource, namespace, name, drifted_paths
             FROM drifts WHERE id = ?1",
        )?
        .query_row([id], |r| {
            let namespace: String = r.get(4)?;
            Ok((
                r.get::<_, String>(0)?,
                crate::context::live::Target {
                    cluster: r.get(1)?,
                    group: r.get(2)?,
                    version: None,
                    resource: r.get(3)?,
                    namespace: (!namespace.is_empty()).then_some(namespace),
                    name: r.get(5)?,
                    paths: super::records::drifted_paths(id, r.get(6)?),
                },
            ))
        })
        .optional()?;
    let Some((state, mut target)) = row else {
        return Ok(None);
    };
    target.version = tx
        .prepare_cached(
            "SELECT o.api_version FROM changes c JOIN objects o ON o.id = c.object
             WHERE c.drift_id = ?1 ORDER BY c.time_us DESC, c.seq DESC LIMIT 1",
        )?
        .query_row([compact::drift_key(id)], |r| r.get::<_, String>(0))
        .optional()?
        .filter(|v| !v.is_empty());
    Ok(Some((
        DriftState::parse(&state).unwrap_or(DriftState::Open),
        target,
    )))
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
        truncated: false,
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
/// joined them. Two steps, as for a page of changes: the keys of every
/// joined change (small rows, whatever the details hold), then the details
/// of the first `bounds.list_items` per drift, one at a time.
fn fill_drift_changes(
    conn: &Connection,
    items: &mut [DriftItem],
    bounds: &Bounds,
) -> Result<(), QueryError> {
    if items.is_empty() {
        return Ok(());
    }
    let ids = serde_json::to_string(&items.iter().map(|d| d.id.as_str()).collect::<Vec<_>>())
        .unwrap_or_else(|_| "[]".to_owned());
    let index: foldhash::HashMap<String, usize> = items
        .iter()
        .enumerate()
        .map(|(i, d)| (d.id.clone(), i))
        .collect();
    let mut keys = conn.prepare_cached(concat!(
        "SELECT ",
        compact::drift_text!(),
        ", c.seq, c.audit_id FROM changes c
         WHERE c.drift_id IS NOT NULL AND c.drift_id IN (SELECT ",
        compact::drift_key_of_value!(),
        " FROM json_each(?1))
           AND c.shape IN (SELECT id FROM shapes
               WHERE verdict = (SELECT id FROM strings WHERE text = 'drift'))
         ORDER BY c.time_us, c.seq"
    ))?;
    let mut wanted = Vec::new();
    let mut rows = keys.query([ids])?;
    while let Some(row) = rows.next()? {
        let Some(&i) = index.get(row.get_ref(0)?.as_str().unwrap_or("")) else {
            continue;
        };
        let item = &mut items[i];
        if item.audit_ids.len() >= bounds.list_items {
            item.truncated = true;
            continue;
        }
        let mut audit_id = audit_id(row, 2)?;
        item.truncated |= view::cut_str(&mut audit_id, bounds.value_bytes);
        item.audit_ids.push(audit_id);
        wanted.push((i, row.get::<_, i64>(1)?));
    }
    let mut detail = conn.prepare_cached(
        "SELECT c.detail, profile.text, ownership.text, uri.text, paths.text FROM changes c
         LEFT JOIN shapes sh ON sh.id = c.shape
         LEFT JOIN strings profile ON profile.id = sh.profile
         LEFT JOIN strings ownership ON ownership.id = sh.ownership
         LEFT JOIN strings uri ON uri.id = c.uri
         LEFT JOIN paths ON paths.id = c.paths
         WHERE c.seq = ?1",
    )?;
    for (i, seq) in wanted {
        let parsed = detail
            .query_row([seq], |r| {
                let mut inflated = Vec::new();
                Ok(stored_detail(r, 0, &mut inflated).map(|d| d.changes(bounds)))
            })
            .optional()?;
        match parsed {
            Some(Ok((changes, cut))) => {
                let item = &mut items[i];
                item.changes.extend(changes);
                item.truncated |= cut | view::cut_changes(&mut item.changes, bounds);
            }
            Some(Err(e)) => events::StoreRowCorrupt {
                table: "changes",
                problem: &format!("its detail is not readable ({e})"),
            }
            .emit(),
            None => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_in_order_across_clauses() {
        let mut w = sqlite_where();
        w.eq("c.cluster", text(&Some("prod".to_owned())));
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
