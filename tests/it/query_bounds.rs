//! The query side is bounded: list pages stop before their items exceed
//! `server.max_query_page_bytes`, values of a few MiB are cut in list views
//! (`"truncated": true`), the cursor still reaches every row, the
//! single-drift route returns its drift whole, and four clients paging
//! through rows of megabytes keep the service's peak RSS bounded.
//!
//! The rows are written straight into the store before the service starts:
//! what is measured is the read side, whatever ingest would accept today.

use std::collections::BTreeSet;

use anyhow::{Context, Result, ensure};
use driftwatch::model::{
    Change, ChangeRecord, DriftRef, DriftState, DriftTransition, FindingType, ObjectRef, OpenDrift,
    RequestId, STORE_KEY_LEN, Severity, Time, VerdictKind,
};
use driftwatch::store::Store;
use serde_json::{Value, json};

use crate::common::{Service, get_ok};

const PAGE_BYTES: usize = 1024 * 1024;
const MIB: usize = 1024 * 1024;

/// Rows of every size: `huge` ones of ~6 MiB each (user agent, URI, a
/// changed value), `wide` ones of ~400 KiB made of values just under the
/// cut (so only the page's byte cap bounds them), small ones.
struct Rows {
    huge: usize,
    wide: usize,
    small: usize,
    /// Changes joined to one drift, each with a 100 KiB value.
    drift_changes: usize,
}

const DRIFT_ID: &str = "0d1f7a9c3b5e4d2a8f6c1b0e9d8a7c6b";

/// An hour ago: well inside retention, which runs as the service starts.
fn base_us() -> i64 {
    jiff::Timestamp::now().as_microsecond() - 3_600_000_000
}

fn key(i: usize) -> RequestId {
    let mut key = [0u8; STORE_KEY_LEN];
    let t = (base_us() + i as i64 * 1000) as u64;
    key[..8].copy_from_slice(&(t ^ (1 << 63)).to_be_bytes());
    key[8..16].copy_from_slice(&(i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15).to_le_bytes());
    RequestId::from_store_key(&key).unwrap()
}

fn record(i: usize, uri: String, user_agent: String, changes: Vec<Change>) -> ChangeRecord {
    let request = key(i);
    let us = base_us() + i as i64 * 1000;
    let mut r = ChangeRecord {
        id: request.finding_id(),
        time: Time::from_timestamp(jiff::Timestamp::from_microsecond(us).unwrap()),
        cluster: "prod-eu-1".to_owned(),
        resource: ObjectRef {
            version: "v1".to_owned(),
            resource: "configmaps".to_owned(),
            namespace: Some("shop".to_owned()),
            name: Some(format!("settings-{i}")),
            ..ObjectRef::default()
        },
        verb: "patch".to_owned(),
        audit_id: format!("audit-{i}"),
        request_uri: uri,
        verdict: VerdictKind::Sanctioned,
        changes,
        request,
        ..ChangeRecord::default()
    };
    r.actor.username = "system:serviceaccount:argocd:argocd-application-controller".to_owned();
    r.actor.user_agent = Some(user_agent);
    r
}

fn change(path: &str, new: Value) -> Change {
    Change {
        path: path.to_owned(),
        old: Value::Null,
        new,
        redacted: false,
    }
}

/// Writes the rows; returns every change id written.
fn fill(dir: &std::path::Path, rows: &Rows) -> Result<BTreeSet<String>> {
    let mut store = Store::open(dir)?;
    let mut ids = BTreeSet::new();
    let mut i = 0;
    let mut write = |store: &mut Store, batch: Vec<ChangeRecord>, drifts: &[DriftTransition]| {
        for r in &batch {
            ids.insert(r.id.clone());
        }
        store.write(&batch, drifts)
    };
    for _ in 0..rows.huge {
        let big = "A".repeat(2 * MIB);
        let r = record(
            i,
            format!("/api/v1/namespaces/shop/configmaps/x?{big}"),
            format!("Mozilla/5.0 {big}"),
            vec![change("data.blob", json!(big))],
        );
        write(&mut store, vec![r], &[])?;
        i += 1;
    }
    for _ in 0..rows.wide {
        let changes = (0..100)
            .map(|k| change(&format!("data.k{k}"), json!("w".repeat(4000))))
            .collect();
        let r = record(
            i,
            "/api/v1/namespaces/shop/configmaps/w".into(),
            "kubectl".into(),
            changes,
        );
        write(&mut store, vec![r], &[])?;
        i += 1;
    }
    let small: Vec<ChangeRecord> = (0..rows.small)
        .map(|k| {
            record(
                i + k,
                "/api/v1/namespaces/shop/configmaps/s".into(),
                "kubectl".into(),
                vec![],
            )
        })
        .collect();
    i += rows.small;
    write(&mut store, small, &[])?;
    let mut opened = false;
    for _ in 0..rows.drift_changes {
        let mut r = record(
            i,
            "/api/v1/namespaces/shop/configmaps/d".into(),
            "kubectl".into(),
            vec![change("data.d", json!("d".repeat(100 * 1024)))],
        );
        r.verdict = VerdictKind::Drift;
        r.finding_type = Some(FindingType::OutOfBandChange);
        r.severity = Some(Severity::Medium);
        r.actor.username = "alice@example.com".to_owned();
        r.drift = Some(DriftRef {
            id: DRIFT_ID.to_owned(),
            state: Some(DriftState::Open),
        });
        let open = (!opened).then(|| {
            DriftTransition::Opened(OpenDrift {
                id: DRIFT_ID.to_owned(),
                cluster: "prod-eu-1".to_owned(),
                object: r.resource.clone(),
                opened: r.time.clone(),
                opened_by: "alice@example.com".to_owned(),
                paths: None,
                persisting_since: None,
            })
        });
        opened = true;
        write(&mut store, vec![r], open.as_slice())?;
        i += 1;
    }
    Ok(ids)
}

/// Four queries at once (the default is half the cores): the worst case
/// for memory.
fn config() -> String {
    format!("server:\n  max_query_page_bytes: {PAGE_BYTES}\n  max_concurrent_queries: 4\n")
}

/// Every page of `path`, with each page's body length.
async fn pages(svc: &Service, path: &str) -> Result<Vec<(usize, Value)>> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("{path}?limit=1000");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let page = get_ok(svc, &url).await?;
        let len = serde_json::to_vec(&page["items"])?.len();
        cursor = page["next"].as_str().map(str::to_owned);
        out.push((len, page));
        if cursor.is_none() {
            return Ok(out);
        }
        ensure!(out.len() < 10_000, "the cursor does not end");
    }
}

#[tokio::test]
async fn pages_are_capped_in_bytes_values_are_cut_and_the_cursor_reaches_every_row() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let rows = Rows {
        huge: 3,
        wide: 12,
        small: 300,
        drift_changes: 150,
    };
    let written = fill(&dir.path().join("data"), &rows)?;
    let svc = Service::start_in(dir, Some(&config()))?;

    let pages = pages(&svc, "/api/v1/changes").await?;
    let mut seen = BTreeSet::new();
    for (len, page) in &pages {
        let items = page["items"].as_array().context("items")?;
        ensure!(
            *len <= PAGE_BYTES || items.len() == 1,
            "a page of {} items holds {len} bytes",
            items.len()
        );
        for item in items {
            ensure!(
                seen.insert(item["id"].as_str().context("id")?.to_owned()),
                "an item twice: {}",
                item["id"]
            );
        }
    }
    assert_eq!(seen, written, "the cursor reaches every row, once");
    // Wide rows are ~400 KiB: at most two fit a page.
    assert!(pages.len() >= rows.wide / 2, "{} pages", pages.len());

    let items: Vec<&Value> = pages
        .iter()
        .flat_map(|(_, p)| p["items"].as_array().into_iter().flatten())
        .collect();
    let huge: Vec<&&Value> = items
        .iter()
        .filter(|i| {
            i["request_uri"]
                .as_str()
                .is_some_and(|u| u.contains("configmaps/x"))
        })
        .collect();
    assert_eq!(huge.len(), rows.huge);
    for item in huge {
        assert_eq!(item["truncated"], true, "a cut item says so");
        for value in [
            &item["request_uri"],
            &item["actor"]["user_agent"],
            &item["changes"][0]["new"],
        ] {
            let text = value.as_str().context("a cut value is a string")?;
            assert!(text.len() <= 4096, "{} bytes", text.len());
            assert!(text.ends_with("bytes, truncated]"), "{:.80}", text);
        }
        assert!(
            item["actor"]["user_agent"]
                .as_str()
                .is_some_and(|ua| ua.starts_with("Mozilla/5.0 AAAA"))
        );
    }
    let whole = items.iter().filter(|i| i["truncated"].is_null()).count();
    // The drift's changes carry 100 KiB values: cut in this list too.
    assert_eq!(
        whole,
        rows.wide + rows.small,
        "items under the bounds are whole and not flagged"
    );

    // A drift in a list: its changes and audit ids capped and flagged;
    // by its own route, whole.
    let listed = get_ok(&svc, "/api/v1/drifts").await?;
    let drift = &listed["items"][0];
    assert_eq!(drift["id"], DRIFT_ID);
    assert_eq!(drift["truncated"], true);
    assert_eq!(drift["changes"].as_array().map(Vec::len), Some(100));
    assert_eq!(drift["audit_ids"].as_array().map(Vec::len), Some(100));
    let one = get_ok(&svc, &format!("/api/v1/drifts/{DRIFT_ID}")).await?;
    assert!(one["truncated"].is_null());
    assert_eq!(
        one["changes"].as_array().map(Vec::len),
        Some(rows.drift_changes)
    );
    assert_eq!(
        one["changes"][0]["new"].as_str().map(str::len),
        Some(100 * 1024)
    );
    Ok(())
}

/// The service's peak resident memory, in KiB.
fn vm_hwm(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("VmHWM in /proc/PID/status")
}

/// Four clients paging `limit=1000` through 48 rows of ~6 MiB (about
/// 290 MiB a page before this change, held four times over: gigabytes).
#[test]
fn four_clients_paging_through_huge_rows_keep_the_peak_rss_bounded() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let rows = Rows {
        huge: 48,
        wide: 0,
        small: 0,
        drift_changes: 0,
    };
    let written = fill(&dir.path().join("data"), &rows)?;
    let svc = Service::start_in(dir, Some(&config()))?;
    let before = vm_hwm(svc.child.id())?;
    let svc = std::sync::Arc::new(svc);
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let svc = std::sync::Arc::clone(&svc);
            std::thread::spawn(move || {
                crate::common::block_on(async move {
                    let pages = pages(&svc, "/api/v1/changes").await?;
                    Ok(pages
                        .iter()
                        .map(|(_, p)| p["items"].as_array().map_or(0, Vec::len))
                        .sum::<usize>())
                })
            })
        })
        .collect();
    for r in readers {
        let seen = r
            .join()
            .map_err(|_| anyhow::anyhow!("a reader panicked"))??;
        assert_eq!(seen, written.len(), "each client reads every row");
    }
    let peak = vm_hwm(svc.child.id())?;
    eprintln!(
        "VmHWM {before} KiB at start, {peak} KiB after 4 clients paged through 48 rows of ~6 MiB"
    );
    // A page's items are capped at 1 MiB and each client reads one row at
    // a time: what remains is a row or two in flight per client.
    assert!(
        peak < 256 * 1024,
        "peak RSS {peak} KiB while 4 clients paged (at start: {before} KiB)"
    );
    Ok(())
}
