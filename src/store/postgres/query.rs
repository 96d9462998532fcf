//! The history queries on PostgreSQL: the filters, order, cursors and page
//! bounds of [`crate::store::query`], so that `/api/v1` answers the same on
//! either backend and from every replica.

use postgres::types::ToSql;
use postgres::{Client, Row};

use super::super::query::{
    ClosedBy, DriftItem, Filter, Page, Persisting, QueryError, bound, changes_limit, drift_page,
    drifts_limit, group_param, namespace_param, parse_cursor,
};
use super::super::records;
use super::super::view::{self, Bounds};
use crate::model::{ChangeRecord, DriftState, ObjectRef, RequestId, Time, Verification};
use crate::telemetry::events::{self, Emit};

type Param = Box<dyn ToSql + Sync + Send>;

type Where = super::super::clauses::Where<Param>;

/// The parameters as the client takes them.
fn params(w: &Where) -> Vec<&(dyn ToSql + Sync)> {
    w.params
        .iter()
        .map(|p| p.as_ref() as &(dyn ToSql + Sync))
        .collect()
}

fn text(v: Option<String>) -> Option<Param> {
    v.map(|v| Box::new(v) as Param)
}

fn bad_cursor() -> QueryError {
    QueryError::BadParam {
        name: "cursor",
        message: "not a cursor returned by this API".to_owned(),
    }
}

fn object_filter(w: &mut Where, f: &Filter, prefix: &str) {
    w.eq(&format!("{prefix}cluster"), text(f.cluster.clone()));
    w.eq(
        &format!("{prefix}namespace"),
        text(namespace_param(&f.namespace)),
    );
    w.eq(&format!("{prefix}api_group"), text(group_param(&f.group)));
    w.eq(&format!("{prefix}resource"), text(f.resource.clone()));
    w.eq(&format!("{prefix}name"), text(f.name.clone()));
}

fn change_filter(f: &Filter) -> Result<Where, QueryError> {
    let mut w = Where::new('$');
    object_filter(&mut w, f, "c.");
    w.eq("c.actor", text(f.actor.clone()));
    w.eq("c.verdict", text(f.verdict.clone()));
    w.eq("c.finding_type", text(f.finding_type.clone()));
    w.eq("c.drift_id", text(f.drift.clone()));
    if let Some(field) = &f.field {
        // The path itself or one below it: `spec.rep` is no field.
        w.raw(
            "EXISTS (SELECT 1 FROM unnest(c.paths) AS p WHERE p = $
                OR starts_with(p, $) OR starts_with(p, $))",
            vec![
                Box::new(field.clone()),
                Box::new(format!("{field}.")),
                Box::new(format!("{field}[")),
            ],
        );
    }
    if let Some(since) = &f.since {
        w.raw("c.time_us >= $", vec![Box::new(bound("since", since)?)]);
    }
    if let Some(until) = &f.until {
        w.raw("c.time_us < $", vec![Box::new(bound("until", until)?)]);
    }
    if let Some(cursor) = &f.cursor {
        let (t, seq) = parse_cursor(cursor)?;
        let seq: i64 = seq.parse().map_err(|_| bad_cursor())?;
        w.raw(
            "(c.time_us < $ OR (c.time_us = $ AND c.seq < $))",
            vec![Box::new(t), Box::new(t), Box::new(seq)],
        );
    }
    Ok(w)
}

/// A page of changes, newest first, within `bounds`: the keys first (small
/// rows, whatever the records hold), then each record, in one snapshot.
pub fn changes(
    client: &mut Client,
    f: &Filter,
    bounds: &Bounds,
) -> Result<Page<ChangeRecord>, QueryError> {
    let limit = changes_limit(f)?;
    let w = change_filter(f)?;
    let mut tx = client
        .build_transaction()
        .isolation_level(postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()?;
    let keys: Vec<(i64, i64)> = tx
        .query(
            &format!(
                "SELECT c.time_us, c.seq FROM changes c {} ORDER BY c.time_us DESC, c.seq DESC LIMIT {}",
                w.sql(),
                limit + 1
            ),
            &params(&w),
        )?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let fetch = tx.prepare(
        "SELECT c.dedupe_key, c.record, d.state FROM changes c
         LEFT JOIN drifts d ON d.id = c.drift_id WHERE c.seq = $1",
    )?;
    let mut page = Page {
        items: Vec::new(),
        next: None,
    };
    let (mut used, mut last) = (0, None);
    for &(time_us, seq) in &keys {
        if page.items.len() == limit {
            page.next = last.map(|(t, s): (i64, i64)| format!("{t}.{s}"));
            break;
        }
        let Some(row) = tx.query_opt(&fetch, &[&seq])? else {
            continue;
        };
        let mut item = change_row(&row);
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
    tx.commit()?;
    Ok(page)
}

/// A stored change: its record, the request its key names, and its drift's
/// state now. A record that cannot be read says so in `corrupt`.
fn change_row(r: &Row) -> ChangeRecord {
    let key: Vec<u8> = r.get(0);
    let record: Vec<u8> = r.get(1);
    let state: Option<String> = r.get(2);
    let mut c = match serde_json::from_slice::<ChangeRecord>(&record) {
        Ok(c) => c,
        Err(e) => {
            let problem = format!("its record is not readable ({e})");
            events::StoreRowCorrupt {
                table: "changes",
                problem: &problem,
            }
            .emit();
            ChangeRecord {
                corrupt: Some(problem),
                ..ChangeRecord::default()
            }
        }
    };
    if let Some(request) = RequestId::from_store_key(&key) {
        c.request = request;
    }
    if let Some(d) = &mut c.drift {
        d.state = state.as_deref().and_then(DriftState::parse);
    }
    c
}

const DRIFT_COLUMNS: &str = "id, state, cluster, api_group, resource, namespace, name, opened_at, opened_at_us,
    opened_by, closed_at, closed_at_us, closed_pipeline, closed_audit_id, closed_actor, closed_reason,
    reconcile_seconds, reconcile_verification, persisting_at, persisting_at_us, persisting_pipeline,
    persisting_audit_id, drifted_paths";

fn drift_filter(f: &Filter) -> Result<Where, QueryError> {
    let mut w = Where::new('$');
    object_filter(&mut w, f, "");
    w.eq("opened_by", text(f.actor.clone()));
    // `open` is every drift not closed, persisting ones included.
    match f.state.as_deref() {
        Some("open") => w.raw("state IN ('open', 'persisting')", vec![]),
        _ => w.eq("state", text(f.state.clone())),
    }
    if let Some(since) = &f.since {
        w.raw("opened_at_us >= $", vec![Box::new(bound("since", since)?)]);
    }
    if let Some(until) = &f.until {
        w.raw("opened_at_us < $", vec![Box::new(bound("until", until)?)]);
    }
    if let Some(cursor) = &f.cursor {
        let (t, id) = parse_cursor(cursor)?;
        w.raw(
            "(opened_at_us < $ OR (opened_at_us = $ AND id COLLATE \"C\" < $))",
            vec![Box::new(t), Box::new(t), Box::new(id)],
        );
    }
    Ok(w)
}

/// A page of drifts, newest first, within `bounds`.
pub fn drifts(
    client: &mut Client,
    f: &Filter,
    bounds: &Bounds,
) -> Result<Page<DriftItem>, QueryError> {
    let limit = drifts_limit(f)?;
    let w = drift_filter(f)?;
    let mut tx = client
        .build_transaction()
        .isolation_level(postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()?;
    // `id` sorts bytewise, as in SQLite, whatever the database's collation.
    let rows = tx.query(
        &format!(
            "SELECT {DRIFT_COLUMNS} FROM drifts {} ORDER BY opened_at_us DESC, id COLLATE \"C\" DESC LIMIT {}",
            w.sql(),
            limit + 1
        ),
        &params(&w),
    )?;
    let more = rows.len() > limit;
    let mut items: Vec<DriftItem> = rows.iter().take(limit).map(drift_row).collect();
    fill_drift_changes(&mut tx, &mut items, bounds)?;
    tx.commit()?;
    Ok(drift_page(items, more, bounds))
}

pub fn drift(client: &mut Client, id: &str) -> Result<Option<DriftItem>, QueryError> {
    let mut tx = client
        .build_transaction()
        .isolation_level(postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()?;
    let row = tx.query_opt(
        &format!("SELECT {DRIFT_COLUMNS} FROM drifts WHERE id = $1"),
        &[&id],
    )?;
    let Some(row) = row else {
        return Ok(None);
    };
    let mut items = [drift_row(&row)];
    fill_drift_changes(&mut tx, &mut items, &Bounds::WHOLE)?;
    tx.commit()?;
    let [item] = items;
    Ok(Some(item))
}

/// What `?live=true` reads for a drift (see the SQLite query).
pub fn drift_live_target(
    client: &mut Client,
    id: &str,
) -> Result<Option<(DriftState, crate::context::live::Target)>, QueryError> {
    let Some(d) = drift(client, id)? else {
        return Ok(None);
    };
    let row = client.query_opt("SELECT drifted_paths FROM drifts WHERE id = $1", &[&id])?;
    let paths = row.and_then(|r| records::drifted_paths(id, r.get(0)));
    let version = client
        .query_opt(
            "SELECT record FROM changes WHERE drift_id = $1 ORDER BY time_us DESC, seq DESC LIMIT 1",
            &[&id],
        )?
        .and_then(|r| serde_json::from_slice::<ChangeRecord>(r.get::<_, &[u8]>(0)).ok())
        .map(|c| c.resource.version)
        .filter(|v| !v.is_empty());
    let target = crate::context::live::Target {
        cluster: d.cluster,
        group: d.resource.group,
        version,
        resource: d.resource.resource,
        namespace: d.resource.namespace,
        name: d.resource.name.unwrap_or_default(),
        paths,
    };
    Ok(Some((d.state, target)))
}

fn drift_row(r: &Row) -> DriftItem {
    let namespace: String = r.get(5);
    let state: String = r.get(1);
    let parsed = DriftState::parse(&state);
    if parsed.is_none() {
        events::StoreRowCorrupt {
            table: "drifts",
            problem: &format!("unknown state {state:?}"),
        }
        .emit();
    }
    let state = parsed.unwrap_or(DriftState::Open);
    let closed_text: Option<String> = r.get(10);
    let closed_us: Option<i64> = r.get(11);
    DriftItem {
        id: r.get(0),
        cluster: r.get(2),
        resource: ObjectRef {
            group: r.get(3),
            resource: r.get(4),
            namespace: (!namespace.is_empty()).then_some(namespace),
            name: Some(r.get(6)),
            ..ObjectRef::default()
        },
        opened_at: Time::stored(r.get(8), r.get(7)),
        opened_by: r.get(9),
        closed_at: closed_text.map(|t| Time::stored(closed_us.unwrap_or(0), t)),
        closed_by: (!state.is_unclosed()).then(|| ClosedBy {
            pipeline: r.get(12),
            audit_id: r.get(13),
            actor: r.get(14),
            reason: r.get(15),
        }),
        reconcile_seconds: r.get(16),
        verification: r
            .get::<_, Option<String>>(17)
            .as_deref()
            .and_then(Verification::parse),
        persisting: persisting_row(r, state),
        state,
        changes: Vec::new(),
        audit_ids: Vec::new(),
        truncated: false,
    }
}

fn persisting_row(r: &Row, state: DriftState) -> Option<Persisting> {
    let text: String = r.get::<_, Option<String>>(18)?;
    let paths = if state == DriftState::Persisting {
        let id: String = r.get(0);
        records::drifted_paths(&id, r.get(22))
            .unwrap_or_default()
            .into_iter()
            .map(|p| p.path)
            .collect()
    } else {
        Vec::new()
    };
    Some(Persisting {
        since: Time::stored(r.get::<_, Option<i64>>(19).unwrap_or(0), text),
        pipeline: r.get(20),
        audit_id: r.get(21),
        paths,
    })
}

/// The drifts' changes and audit ids, oldest first, from the drift
/// verdicts that joined them: keys first, then the first
/// `bounds.list_items` records per drift.
fn fill_drift_changes(
    tx: &mut postgres::Transaction<'_>,
    items: &mut [DriftItem],
    bounds: &Bounds,
) -> Result<(), QueryError> {
    if items.is_empty() {
        return Ok(());
    }
    let ids: Vec<String> = items.iter().map(|d| d.id.clone()).collect();
    let index: foldhash::HashMap<String, usize> = items
        .iter()
        .enumerate()
        .map(|(i, d)| (d.id.clone(), i))
        .collect();
    let rows = tx.query(
        "SELECT drift_id, seq FROM changes WHERE drift_id = ANY($1) AND verdict = 'drift'
         ORDER BY time_us, seq",
        &[&ids],
    )?;
    let fetch = tx.prepare("SELECT record FROM changes WHERE seq = $1")?;
    for row in rows {
        let drift: String = row.get(0);
        let Some(&i) = index.get(&drift) else {
            continue;
        };
        if items[i].audit_ids.len() >= bounds.list_items {
            items[i].truncated = true;
            continue;
        }
        let seq: i64 = row.get(1);
        let Some(record) = tx.query_opt(&fetch, &[&seq])? else {
            continue;
        };
        match serde_json::from_slice::<ChangeRecord>(record.get::<_, &[u8]>(0)) {
            Ok(c) => {
                let item = &mut items[i];
                let mut audit_id = c.audit_id;
                item.truncated |= view::cut_str(&mut audit_id, bounds.value_bytes);
                item.audit_ids.push(audit_id);
                item.changes.extend(c.changes);
                item.truncated |= view::cut_changes(&mut item.changes, bounds);
            }
            Err(e) => events::StoreRowCorrupt {
                table: "changes",
                problem: &format!("its record is not readable ({e})"),
            }
            .emit(),
        }
    }
    Ok(())
}
