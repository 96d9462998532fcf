//! Storage faults on a real filesystem (a loop-mounted ext4 image, see
//! [`LoopFs`]), each under a running `serve`: the `-shm`, WAL or database
//! file made immutable, the database files deleted, the disk full, the
//! database damaged. For each: the webhook answers `503` with `Retry-After`
//! and a JSON error (or, for `-shm`, which the store no longer uses, keeps
//! answering `200`), `/readyz` is `503` while the store cannot commit, the
//! process never dies, it recovers on its own once the fault is removed,
//! and after a restart every change acknowledged with `200` is stored.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use serde_json::Value;

use crate::common::{ARGOCD_CONFIG, Ev, LoopFs, Service, client, event_list, wait_until};

const DB: &str = "driftwatch.db";

/// A service on its own filesystem, and what it acknowledged.
struct Run {
    fs: LoopFs,
    svc: Option<Service>,
    config: String,
    /// Changes in batches answered `200`: each is one stored row.
    acked: usize,
    next: usize,
}

/// The answer to one webhook batch.
struct Answer {
    status: u16,
    retry_after: Option<String>,
    json: Value,
}

impl Run {
    fn start(megabytes: u64, extra_config: &str) -> Result<Run> {
        let fs = LoopFs::new(megabytes)?;
        let config = format!("{ARGOCD_CONFIG}{extra_config}");
        let svc = Service::start_on(&fs.mount.join("data"), Some(&config))?;
        Ok(Run {
            fs,
            svc: Some(svc),
            config,
            acked: 0,
            next: 0,
        })
    }

    fn svc(&self) -> Result<&Service> {
        self.svc.as_ref().context("the service is stopped")
    }

    fn data(&self) -> PathBuf {
        self.fs.mount.join("data")
    }

    fn file(&self, suffix: &str) -> PathBuf {
        self.data().join(format!("{DB}{suffix}"))
    }

    /// Posts `n` out-of-band patches by alice (each a stored change, with a
    /// body of about `pad` bytes) and counts them when acknowledged.
    fn post(&mut self, n: usize, pad: usize) -> Result<Answer> {
        let events: Vec<Value> = (0..n)
            .map(|i| {
                let k = self.next + i;
                let uri = format!("/api/v1/namespaces/shop/configmaps/settings-{k}");
                Ev::new("patch", &uri)
                    .body(serde_json::json!({"data": {"note": "x".repeat(pad)}}))
                    .item()
            })
            .collect();
        self.next += n;
        let body = serde_json::to_vec(&event_list(events))?;
        let url = self.svc()?.url("/audit/webhook");
        let answer = crate::common::block_on(async move {
            let r = client()?
                .post(url)
                .header("Content-Type", "application/json")
                .body(body)
                .send()
                .await?;
            let status = r.status().as_u16();
            let retry_after = r
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let text = r.text().await?;
            let json = serde_json::from_str(&text)
                .with_context(|| format!("{status} with a body that is not JSON: {text:.300}"))?;
            Ok(Answer {
                status,
                retry_after,
                json,
            })
        })?;
        if answer.status == 200 {
            self.acked += n;
        }
        Ok(answer)
    }

    fn post_ok(&mut self, n: usize) -> Result<()> {
        let a = self.post(n, 64)?;
        ensure!(a.status == 200, "webhook answered {}: {}", a.status, a.json);
        Ok(())
    }

    /// A batch while the store cannot commit: refused, to be retried.
    fn post_refused(&mut self) -> Result<String> {
        let a = self.post(5, 64)?;
        ensure!(a.status == 503, "webhook answered {}: {}", a.status, a.json);
        ensure!(a.retry_after.is_some(), "503 without Retry-After");
        let error = a.json["error"].as_str().context("a JSON error")?;
        Ok(error.to_owned())
    }

    fn readyz(&self) -> Result<(u16, String)> {
        let url = self.svc()?.url("/readyz");
        crate::common::block_on(async move {
            let r = client()?.get(url).send().await?;
            Ok((r.status().as_u16(), r.text().await?))
        })
    }

    /// Waits (10 s at most: the store is probed every second) for `/readyz`
    /// to answer `code`; returns its text.
    fn wait_ready(&self, code: u16) -> Result<String> {
        wait_until(
            Duration::from_secs(10),
            || format!("/readyz answering {code}: {:?}", self.readyz().ok()),
            || {
                self.readyz()
                    .ok()
                    .filter(|(c, _)| *c == code)
                    .map(|(_, t)| t)
            },
        )
    }

    /// The process is alive (SIGBUS would have ended it).
    fn alive(&mut self) -> Result<()> {
        let svc = self.svc.as_mut().context("the service is stopped")?;
        let status = svc.child.try_wait()?;
        ensure!(
            status.is_none(),
            "the service died: {status:?}; logs: {:#?}",
            svc.logs.lock().unwrap()
        );
        Ok(())
    }

    fn stop(&mut self) -> Result<()> {
        let svc = self.svc.take().context("already stopped")?;
        ensure!(svc.stop()? == 0, "serve exits cleanly on SIGTERM");
        Ok(())
    }

    fn restart(&mut self) -> Result<()> {
        self.stop()?;
        self.svc = Some(Service::start_on(&self.data(), Some(&self.config))?);
        Ok(())
    }

    /// Stops the service and counts the stored changes: every one
    /// acknowledged is there.
    fn stop_and_count(&mut self) -> Result<()> {
        self.stop()?;
        let conn = driftwatch::store::open_reader(&self.data())?;
        let stored: i64 = conn.query_row("SELECT count(*) FROM changes", [], |r| r.get(0))?;
        assert_eq!(
            usize::try_from(stored)?,
            self.acked,
            "acknowledged changes vs stored ones after a restart"
        );
        Ok(())
    }
}

/// Immutable WAL or database file: refused until `chattr -i`.
fn immutable(suffix: &str) -> Result<()> {
    let mut run = Run::start(32, "")?;
    run.post_ok(20)?;
    let file = run.file(suffix);
    run.fs.immutable(&file, true)?;
    let error = run.post_refused()?;
    assert!(error.contains("immutable"), "{error}");
    let why = run.wait_ready(503)?;
    assert!(why.contains("chattr -i"), "{why}");
    run.alive()?;
    run.fs.immutable(&file, false)?;
    run.wait_ready(200)?;
    run.post_ok(20)?;
    run.stop_and_count()
}

#[test]
fn an_immutable_wal_is_refused_and_recovered() -> Result<()> {
    immutable("-wal")
}

#[test]
fn an_immutable_database_file_is_refused_and_recovered() -> Result<()> {
    immutable("")
}

/// The `-shm` file killed the process with SIGBUS once made immutable: the
/// store keeps its WAL index in memory now, and creates no `-shm` at all.
#[test]
fn an_immutable_shm_file_changes_nothing() -> Result<()> {
    let mut run = Run::start(32, "")?;
    run.post_ok(20)?;
    let shm = run.file("-shm");
    assert!(!shm.exists(), "no -shm file is created");
    // One left by an older driftwatch, made immutable.
    std::fs::write(&shm, vec![0u8; 32 * 1024])?;
    run.fs.immutable(&shm, true)?;
    for _ in 0..5 {
        run.post_ok(20)?;
    }
    assert_eq!(run.readyz()?.0, 200);
    run.alive()?;
    run.fs.immutable(&shm, false)?;
    run.stop_and_count()
}

/// The database files deleted under the service: nothing more is
/// acknowledged into the deleted file, what it held is copied beside it,
/// and moving that copy back resumes with every row.
#[test]
fn deleted_database_files_are_rescued_and_reopened_once_put_back() -> Result<()> {
    let mut run = Run::start(32, "")?;
    for _ in 0..4 {
        run.post_ok(20)?;
    }
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(run.file(suffix));
    }
    let why = run.wait_ready(503)?;
    assert!(why.contains("deleted"), "{why}");
    for _ in 0..5 {
        let error = run.post_refused()?;
        assert!(error.contains("was deleted"), "{error}");
    }
    assert!(!run.file("").exists(), "no new empty store at the path");
    let copy = rescued(&run.data())?;
    assert!(why.contains(&copy.display().to_string()), "{why}");
    run.alive()?;

    std::fs::rename(&copy, run.file(""))?;
    run.wait_ready(200)?;
    run.post_ok(20)?;
    run.stop_and_count()
}

/// The copy of a deleted database: `driftwatch.db.rescued-TIME`.
fn rescued(data: &Path) -> Result<PathBuf> {
    let copies: Vec<PathBuf> = std::fs::read_dir(data)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().contains(".rescued-"))
        .collect();
    ensure!(copies.len() == 1, "one rescued copy: {copies:?}");
    Ok(copies[0].clone())
}

/// A full disk: refused (and not ready, even though a page might still
/// fit) until space is freed.
#[test]
fn a_full_disk_is_refused_and_recovered() -> Result<()> {
    let mut run = Run::start(24, "")?;
    run.post_ok(20)?;
    let filler = run.fs.mount.join("filler");
    run.fs.fill(&filler)?;
    // The WAL may have a little room left in blocks it holds already:
    // batches of ~200 KB run out of it within a few.
    let mut refused = None;
    for _ in 0..20 {
        let a = run.post(40, 4096)?;
        match a.status {
            200 => continue,
            503 => {
                ensure!(a.retry_after.is_some(), "503 without Retry-After");
                refused = Some(a.json["error"].as_str().unwrap_or("").to_owned());
                break;
            }
            other => anyhow::bail!("webhook answered {other}: {}", a.json),
        }
    }
    let error = refused.context("a batch refused once the disk is full")?;
    assert!(error.contains("full"), "{error}");
    let why = run.wait_ready(503)?;
    assert!(why.contains("full"), "{why}");
    run.post_refused()?;
    run.alive()?;

    std::fs::remove_file(&filler)?;
    run.wait_ready(200)?;
    run.post_ok(20)?;
    run.stop_and_count()
}

/// Pages of the database overwritten: found by the integrity check (every
/// second here), refused until the file is repaired.
#[test]
fn a_damaged_database_is_refused_until_repaired() -> Result<()> {
    let mut run = Run::start(32, "history:\n  integrity_check_interval: 1s\n")?;
    for _ in 0..10 {
        run.post_ok(20)?;
    }
    // After a restart the rows are in the database file, not its WAL.
    run.restart()?;
    let db = run.file("");
    let good = std::fs::read(&db)?;
    let page = 4096;
    ensure!(good.len() > 8 * page, "a store of {} bytes", good.len());
    let mut bad = good.clone();
    for b in &mut bad[2 * page..] {
        *b = 0x5a;
    }
    std::fs::write(&db, &bad)?;

    // Found by the integrity check ("damaged"), or by the writer itself
    // when its commit or probe reads a bad page first ("corrupt"): which
    // one comes first depends on timing, and both refuse.
    let why = run.wait_ready(503)?;
    assert!(
        why.contains("damaged") || why.contains("(corrupt)"),
        "{why}"
    );
    // The writer's own error is SQLite's ("database disk image is
    // malformed") when its commit reads the bad page before a refusal by the
    // recorded health ("damaged", "(corrupt)").
    let error = run.post_refused()?;
    assert!(
        ["damaged", "(corrupt)", "malformed"]
            .iter()
            .any(|w| error.contains(w)),
        "{error}"
    );
    run.alive()?;

    std::fs::write(&db, &good)?;
    run.wait_ready(200)?;
    run.post_ok(20)?;
    run.stop_and_count()
}
