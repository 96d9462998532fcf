//! The history store's write path: one batch of 400 changes committed
//! through `Store::write` (dictionaries, compact rows, five indexes, the
//! file check before the commit) into a store that already holds
//! `PREFILL` rows, against a baseline in the same group: the same rows
//! inserted bare into a plain table (a key, the time, the record as JSON
//! text; no index), one transaction per batch, same pragmas, same disk.
//! Throughput is in changes, so criterion reports changes/s. Run with
//! `cargo bench --bench store -- --warm-up-time 1 --measurement-time 5`.
//! The growth curve up to 10M rows is `examples/history_scale --every`.

// A bench may panic on what it sets up itself.
#![allow(clippy::expect_used)]

use std::cell::Cell;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use driftwatch::model::{
    Actor, Change, ChangeRecord, DriftRef, DriftState, FindingType, ObjectRef, RequestId, Severity,
    Time, VerdictKind,
};
use driftwatch::store::Store;

const BATCH: usize = 400;
/// Rows in the store before the measured batches: past the first pages.
const PREFILL: usize = 200_000;

/// The mix of `examples/history_scale`: 200 namespaces x 50 deployments,
/// one change in ten by one of 300 people (drift), the rest by Argo CD.
fn record(i: usize) -> ChangeRecord {
    let human = i.is_multiple_of(10);
    let ns = format!("team-{}", i % 200);
    let name = format!("svc-{}", (i / 200) % 50);
    let time_us = 1_760_000_000_000_000 + i as i64 * 1_000;
    let mixed = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut key = [0u8; 24];
    key[..8].copy_from_slice(&((time_us as u64) ^ (1 << 63)).to_be_bytes());
    key[8..16].copy_from_slice(&mixed.to_le_bytes());
    key[16..].copy_from_slice(&mixed.rotate_left(29).to_le_bytes());
    let request = RequestId::from_store_key(&key).unwrap_or_default();
    ChangeRecord {
        id: request.finding_id(),
        time: Time::from_us(time_us),
        cluster: "prod-eu-1".to_owned(),
        resource: ObjectRef {
            group: "apps".to_owned(),
            version: "v1".to_owned(),
            resource: "deployments".to_owned(),
            namespace: Some(ns.clone()),
            name: Some(name.clone()),
            uid: Some(format!("6f1c2a7e-8b1d-4a51-9d0e-{:012x}", i % 10_000)),
            ..ObjectRef::default()
        },
        verb: "patch".to_owned(),
        actor: Actor {
            username: if human {
                format!("engineer{}@example.com", i % 300)
            } else {
                "system:serviceaccount:argocd:argocd-application-controller".to_owned()
            },
            groups: vec!["system:authenticated".to_owned()],
            user_agent: Some(
                if human {
                    "kubectl/v1.31.2"
                } else {
                    "argocd/v2.13.1"
                }
                .to_owned(),
            ),
            source_ips: vec!["10.0.0.7".to_owned()],
            ..Actor::default()
        },
        audit_id: format!("{i:08x}-1b0d-4c1e-9a53-{i:012x}"),
        request_uri: format!("/apis/apps/v1/namespaces/{ns}/deployments/{name}"),
        verdict: if human {
            VerdictKind::Drift
        } else {
            VerdictKind::Sanctioned
        },
        pipeline: (!human).then(|| "argocd".to_owned()),
        finding_type: human.then_some(FindingType::OutOfBandChange),
        severity: human.then_some(Severity::High),
        drift: human.then(|| DriftRef {
            id: format!("{i:032x}"),
            state: Some(DriftState::Open),
        }),
        changes: vec![Change {
            path: "spec.replicas".to_owned(),
            old: serde_json::Value::from(3),
            new: serde_json::Value::from(if human { 5 } else { 3 }),
            redacted: false,
        }],
        request,
        ..ChangeRecord::default()
    }
}

/// The next `BATCH` records: every measured batch is new rows.
fn next_batch(next: &Cell<usize>) -> Vec<ChangeRecord> {
    let from = next.get();
    next.set(from + BATCH);
    (from..from + BATCH).map(record).collect()
}

fn bare_table(dir: &std::path::Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(dir.join("bare.db")).expect("open");
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
         CREATE TABLE plain (key BLOB, time_us INTEGER, record TEXT);",
    )
    .expect("schema");
    conn
}

fn bare_insert(conn: &mut rusqlite::Connection, batch: &[ChangeRecord]) {
    let tx = conn.transaction().expect("begin");
    {
        let mut insert = tx
            .prepare_cached("INSERT INTO plain VALUES (?1, ?2, ?3)")
            .expect("prepare");
        for c in batch {
            let json = serde_json::to_string(c).expect("json");
            insert
                .execute(rusqlite::params![
                    &c.request.store_key()[..],
                    c.time.us,
                    json
                ])
                .expect("insert");
        }
    }
    tx.commit().expect("commit");
}

fn store_write(c: &mut Criterion) {
    let next = Cell::new(0);
    let dir = tempfile::tempdir().expect("temp dir");
    let mut store = Store::open(&dir.path().join("store")).expect("store");
    let mut bare = bare_table(dir.path());
    while next.get() < PREFILL {
        let batch = next_batch(&next);
        store.write(&batch, &[]).expect("prefill");
        bare_insert(&mut bare, &batch);
    }

    let mut group = c.benchmark_group("store_write");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("a_bare_insert_plain_table", |b| {
        b.iter_batched(
            || next_batch(&next),
            |batch| bare_insert(&mut bare, &batch),
            BatchSize::LargeInput,
        );
    });
    group.bench_function("b_store_write", |b| {
        b.iter_batched(
            || next_batch(&next),
            |batch| store.write(&batch, &[]).expect("write"),
            BatchSize::LargeInput,
        );
    });
    group.finish();
}

criterion_group!(benches, store_write);
criterion_main!(benches);
