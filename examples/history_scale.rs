//! Scale check of the history store: fills a fresh store with N generated
//! changes through the same `Store::write` the pipeline uses, then times the
//! queries an incident responder runs.
//!
//! ```sh
//! cargo run --release --example history_scale -- --changes 1000000 --dir /tmp/dw-scale
//! cargo run --release --example history_scale -- --changes 10000000 --every 1000000
//! ```
//!
//! `--postgres URL` does the same on a fresh database of that server
//! (`history.backend: postgres`): the same writes, through `PgStore::write`,
//! and the same query through the query API's PostgreSQL path.
//!
//! ```sh
//! scripts/postgres-dev-server start
//! cargo run --release --example history_scale -- --changes 10000000 --every 1000000 \
//!     --postgres postgres://postgres@127.0.0.1:15432/driftwatch
//! ```
//!
//! `--every N` prints the write rate of each step of N rows as the table
//! grows, so a slowdown shows as a curve, not only as a lower average.
//!
//! Reports write throughput (changes/s), database bytes per change, and the
//! latency of a one-resource history query and of `who-changed` (the same
//! query through the CLI code path). Each timing is compared with a bare
//! `SELECT count(*)` over the same table in the same run, because the
//! machine is shared and absolute numbers move.

use std::path::PathBuf;
use std::time::Instant;

use driftwatch::forensics;
use driftwatch::model::{
    Actor, Change, ChangeRecord, DriftRef, DriftState, FindingType, ObjectRef, RequestId, Severity,
    Time, VerdictKind,
};
use driftwatch::store::Store;
use driftwatch::store::query::{self, Filter};

struct Args {
    changes: usize,
    dir: PathBuf,
    batch: usize,
    /// Print the write rate of each step of this many rows: the curve of
    /// throughput as the table grows. 0: only the total.
    every: usize,
    /// A PostgreSQL server to run on instead of SQLite.
    postgres: Option<String>,
}

fn args() -> Args {
    let mut a = Args {
        changes: 1_000_000,
        dir: std::env::temp_dir().join("driftwatch-history-scale"),
        batch: 400,
        every: 0,
        postgres: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_default();
        match flag.as_str() {
            "--changes" => a.changes = value.parse().unwrap_or(a.changes),
            "--dir" => a.dir = PathBuf::from(value),
            "--batch" => a.batch = value.parse().unwrap_or(a.batch),
            "--every" => a.every = value.parse().unwrap_or(a.every),
            "--postgres" => a.postgres = Some(value),
            other => {
                eprintln!("unknown flag {other}; flags: --changes N --dir DIR --batch N --every N");
                std::process::exit(2);
            }
        }
    }
    a
}

/// A deterministic spread: 200 namespaces x 50 deployments, 300 actors,
/// one change in ten by a human (drift), the rest by Argo CD.
fn record(i: usize, base_us: i64) -> ChangeRecord {
    let ns = format!("team-{}", i % 200);
    let name = format!("svc-{}", (i / 200) % 50);
    let human = i.is_multiple_of(10);
    let actor = if human {
        format!("engineer{}@example.com", i % 300)
    } else {
        "system:serviceaccount:argocd:argocd-application-controller".to_owned()
    };
    // The request id is a sha256 prefix in the service: spread it the same way.
    let time_us = base_us + i as i64 * 1_000;
    let mixed = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut key = [0u8; 24];
    key[..8].copy_from_slice(&((time_us as u64) ^ (1 << 63)).to_be_bytes());
    key[8..16].copy_from_slice(&mixed.to_le_bytes());
    key[16..].copy_from_slice(&mixed.rotate_left(29).to_le_bytes());
    let request = RequestId::from_store_key(&key).unwrap_or_default();
    let time = jiff::Timestamp::from_microsecond(time_us)
        .map(Time::from_timestamp)
        .unwrap_or_default();
    ChangeRecord {
        id: request.finding_id(),
        time,
        cluster: "prod-eu-1".to_owned(),
        resource: ObjectRef {
            group: "apps".to_owned(),
            version: "v1".to_owned(),
            resource: "deployments".to_owned(),
            subresource: None,
            namespace: Some(ns.clone()),
            name: Some(name.clone()),
            uid: Some(format!("6f1c2a7e-8b1d-4a51-9d0e-{:012x}", i % 10_000)),
        },
        verb: "patch".to_owned(),
        actor: Actor {
            username: actor,
            groups: vec!["system:authenticated".to_owned()],
            user_agent: Some(if human {
                "kubectl/v1.31.2 (linux/amd64) kubernetes/5864a46".to_owned()
            } else {
                "argocd-application-controller/v2.13.1 (linux/amd64)".to_owned()
            }),
            client: Some(if human { "kubectl" } else { "argocd" }.to_owned()),
            source_ips: vec!["10.0.0.7".to_owned()],
            field_manager: Some(
                if human {
                    "kubectl-edit"
                } else {
                    "argocd-controller"
                }
                .to_owned(),
            ),
            ..Actor::default()
        },
        audit_id: format!("{:08x}-1b0d-4c1e-9a53-{:012x}", i, i),
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
            id: format!("{:032x}", i),
            state: Some(DriftState::Open),
        }),
        changes: vec![Change {
            path: "spec.replicas".to_owned(),
            old: serde_json::Value::from(3),
            new: serde_json::Value::from(if human { 5 } else { 3 }),
            redacted: false,
        }],
        reasons: if human {
            vec!["identity matches no sanctioned pipeline".to_owned()]
        } else {
            Vec::new()
        },
        request,
        ..ChangeRecord::default()
    }
}

/// The write rate of each step of `every` rows, and the store's size then:
/// the time of a step includes generating its records, as the total does.
struct Step {
    every: usize,
    next: usize,
    since: Instant,
    rows_then: usize,
}

impl Step {
    fn new(every: usize) -> Step {
        Step {
            every,
            next: every,
            since: Instant::now(),
            rows_then: 0,
        }
    }

    fn passed(&mut self, rows: usize, dir: &std::path::Path) {
        if self.every == 0 || rows < self.next {
            return;
        }
        let s = self.since.elapsed().as_secs_f64();
        let db = dir.join(driftwatch::store::DB_FILE);
        let bytes = std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0)
            + std::fs::metadata(db.with_extension("db-wal"))
                .map(|m| m.len())
                .unwrap_or(0);
        println!(
            "at {rows:>10} rows:  {:>8.0} changes/s over the last {}, {:.0} bytes/change (db+wal)",
            (rows - self.rows_then) as f64 / s,
            rows - self.rows_then,
            bytes as f64 / rows as f64
        );
        self.rows_then = rows;
        self.next = rows - rows % self.every + self.every;
        self.since = Instant::now();
    }
}

fn median_ms(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(|a, b| a.total_cmp(b));
    samples[samples.len() / 2]
}

fn main() -> anyhow::Result<()> {
    let a = args();
    if let Some(url) = &a.postgres {
        return on_postgres(&a, url);
    }
    if a.dir.exists() {
        std::fs::remove_dir_all(&a.dir)?;
    }
    let mut store = Store::open(&a.dir)?;
    let base_us = jiff::Timestamp::now().as_microsecond() - a.changes as i64 * 1_000;

    let started = Instant::now();
    let mut batch = Vec::with_capacity(a.batch);
    let mut i = 0;
    let mut step = Step::new(a.every);
    while i < a.changes {
        batch.clear();
        batch.extend((i..(i + a.batch).min(a.changes)).map(|j| record(j, base_us)));
        store.write(&batch, &[])?;
        i += batch.len();
        step.passed(i, &a.dir);
    }
    let write_s = started.elapsed().as_secs_f64();
    drop(store);

    let db = a.dir.join(driftwatch::store::DB_FILE);
    let conn = driftwatch::store::open_reader(&a.dir)?;
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);").ok();
    let bytes = std::fs::metadata(&db)?.len()
        + std::fs::metadata(db.with_extension("db-wal"))
            .map(|m| m.len())
            .unwrap_or(0);

    // Baseline: a full count over the table, same run, same file.
    let mut base = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let _: i64 = conn.query_row("SELECT count(*) FROM changes", [], |r| r.get(0))?;
        base.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let filter = Filter {
        namespace: Some("team-7".to_owned()),
        group: Some("apps".to_owned()),
        resource: Some("deployments".to_owned()),
        name: Some("svc-3".to_owned()),
        limit: Some(100),
        ..Filter::default()
    };
    let mut history = Vec::new();
    let mut rows = 0;
    for _ in 0..20 {
        let t = Instant::now();
        rows = query::changes(&conn, &filter, &driftwatch::store::view::Bounds::WHOLE)?
            .items
            .len();
        history.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let req = Filter {
        namespace: Some("team-7".to_owned()),
        field: Some("spec.replicas".to_owned()),
        limit: Some(100),
        ..forensics::target("deploy/svc-3")?
    };
    let mut who = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        let items = forensics::from_store(&a.dir, &req)?;
        let _ = forensics::table(&items);
        who.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let base_ms = median_ms(base);
    let history_ms = median_ms(history);
    let who_ms = median_ms(who);
    println!("changes:               {}", a.changes);
    println!(
        "write:                 {:.1} s, {:.0} changes/s (batches of {})",
        write_s,
        a.changes as f64 / write_s,
        a.batch
    );
    println!(
        "database:              {} bytes, {:.0} bytes/change",
        bytes,
        bytes as f64 / a.changes as f64
    );
    println!("count(*) baseline:     {base_ms:.2} ms (median of 5)");
    println!(
        "one-resource history:  {history_ms:.2} ms for {rows} rows (median of 20), {:.3}x the count(*) baseline",
        history_ms / base_ms
    );
    println!(
        "who-changed --field:   {who_ms:.2} ms incl. opening the store and rendering (median of 20), {:.3}x baseline",
        who_ms / base_ms
    );
    Ok(())
}

/// The same fill and query on a fresh PostgreSQL database.
fn on_postgres(a: &Args, url: &str) -> anyhow::Result<()> {
    use driftwatch::store::postgres::{PgConfig, PgStore};
    let name = format!("history_scale_{}", std::process::id());
    let mut admin = postgres::Client::connect(url, postgres::NoTls)?;
    admin.batch_execute(&format!("CREATE DATABASE {name}"))?;
    let root = url.rsplit_once('/').map_or(url, |(r, _)| r);
    let config = PgConfig {
        url: format!("{root}/{name}"),
        pool: 1,
        tls: None,
    };
    let mut store = PgStore::open(&config)?;
    let base_us = jiff::Timestamp::now().as_microsecond() - a.changes as i64 * 1_000;
    let started = Instant::now();
    let (mut i, mut step_at, mut step_i) = (0, Instant::now(), 0);
    let mut batch = Vec::with_capacity(a.batch);
    while i < a.changes {
        batch.clear();
        batch.extend((i..(i + a.batch).min(a.changes)).map(|j| record(j, base_us)));
        store.write(&batch, &[], &[])?;
        i += batch.len();
        if a.every > 0 && i - step_i >= a.every {
            println!(
                "at {i:>10} rows:  {:>8.0} changes/s over the last {}",
                (i - step_i) as f64 / step_at.elapsed().as_secs_f64(),
                i - step_i
            );
            (step_at, step_i) = (Instant::now(), i);
        }
    }
    let write_s = started.elapsed().as_secs_f64();
    let mut client = postgres::Client::connect(&config.url, postgres::NoTls)?;
    client.batch_execute("VACUUM ANALYZE changes")?;
    let bytes: i64 = client
        .query_one("SELECT pg_total_relation_size('changes')", &[])?
        .get(0);
    let mut base = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let _: i64 = client
            .query_one("SELECT count(*) FROM changes", &[])?
            .get(0);
        base.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let filter = Filter {
        namespace: Some("team-7".to_owned()),
        group: Some("apps".to_owned()),
        resource: Some("deployments".to_owned()),
        name: Some("svc-3".to_owned()),
        limit: Some(100),
        ..Filter::default()
    };
    let readers = store.readers();
    let mut conn = readers.get()?;
    let mut history = Vec::new();
    let mut rows = 0;
    for _ in 0..20 {
        let t = Instant::now();
        rows = driftwatch::store::postgres::query::changes(
            conn.client()?,
            &filter,
            &driftwatch::store::view::Bounds::WHOLE,
        )?
        .items
        .len();
        history.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let base_ms = median_ms(base);
    let history_ms = median_ms(history);
    println!("backend:               postgres ({})", config.shown());
    println!("changes:               {}", a.changes);
    println!(
        "write:                 {:.1} s, {:.0} changes/s (batches of {})",
        write_s,
        a.changes as f64 / write_s,
        a.batch
    );
    println!(
        "table and indexes:     {} bytes, {:.0} bytes/change",
        bytes,
        bytes as f64 / a.changes as f64
    );
    println!("count(*) baseline:     {base_ms:.2} ms (median of 5)");
    println!(
        "one-resource history:  {history_ms:.2} ms for {rows} rows (median of 20), {:.3}x the count(*) baseline",
        history_ms / base_ms
    );
    drop(conn);
    drop(readers);
    drop(store);
    drop(client);
    admin.batch_execute(&format!("DROP DATABASE {name}"))?;
    Ok(())
}
