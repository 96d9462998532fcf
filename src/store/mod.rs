//! The history store: SQLite under the data directory. One writer (the
//! engine's thread) with one transaction per group of batches; readers take
//! connections from a pool, which WAL mode lets run beside the writer.
//!
//! Every connection goes through SQLite's `unix-excl` VFS: the process
//! holds the database exclusively and keeps the WAL index in heap memory,
//! shared by its own connections, instead of in the memory-mapped `-shm`
//! file. A fault of that file (made immutable, its filesystem full or
//! failing) would otherwise reach the process as SIGBUS on a store to the
//! mapping, with nothing logged. The price: no other process can read the
//! store while `serve` runs (ask the running service: `who-changed --server`).
//!
//! Before each commit the writer checks that the files at the store's
//! paths are still the ones it opened ([`files`]); a store that cannot
//! commit says why in its [`Health`], which `/readyz` reports, and recovers
//! on its own once the fault is gone ([`recover`]).

mod backend;
mod clauses;
mod compact;
mod dict;
mod files;
mod health;
mod pool;
pub mod postgres;
pub mod query;
pub mod read;
mod records;
mod recover;
mod schema;
pub mod view;

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags, params};

use crate::model::{
    ChangeRecord, DriftTransition, ObjectRef, OpenDrift, STORE_KEY_LEN, Time, time,
};
pub use backend::Backend;
pub use files::FileFault;
use files::Files;
pub use health::{Health, Problem, ProblemKind};
pub use pool::{Pooled, ReadPool};
pub use recover::{Probe, check_integrity, damaged, verify};

/// The store's idempotency key: see [`crate::model::RequestId::store_key`].
pub type StoreKey = [u8; STORE_KEY_LEN];

pub const DB_FILE: &str = "driftwatch.db";

/// See the module documentation.
const VFS: &str = "unix-excl";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create data directory {path}: {source}")]
    Dir {
        path: String,
        source: std::io::Error,
    },
    #[error("history store {path}: {source}")]
    Sqlite {
        path: String,
        source: rusqlite::Error,
    },
    #[error(
        "history store {path} has schema version {found}, newer than this driftwatch knows ({known}); upgrade driftwatch"
    )]
    TooNew {
        path: String,
        found: i64,
        known: i64,
    },
    #[error("history store: {0}")]
    File(#[from] FileFault),
    /// Known not to be able to commit: nothing was tried.
    #[error("history store takes no writes: {0}")]
    Refused(String),
    #[error("history store {path} is being reopened; try again shortly")]
    Reopening { path: String },
    #[error(
        "history store {path} is held by another process (a running `driftwatch serve` holds its store exclusively): stop it, use another --data-dir, or ask it with `who-changed --server URL`"
    )]
    Locked { path: String },
    #[error("history store {url}: {}", postgres_reason(.source))]
    Postgres {
        url: String,
        source: ::postgres::Error,
    },
    #[error("history store {url}: {reason}")]
    PostgresTls { url: String, reason: String },
    #[error("{path} is not a driftwatch history store: {reason}")]
    NotAStore { path: String, reason: String },
}

/// What the server or the connection said: the client's own message for a
/// server error is only "db error", and the reason is beneath it.
fn postgres_reason(e: &::postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return match db.hint() {
            Some(hint) => format!("{}: {} (hint: {hint})", db.severity(), db.message()),
            None => format!("{}: {}", db.severity(), db.message()),
        };
    }
    crate::telemetry::with_causes(e)
}

impl StoreError {
    fn sqlite(path: &Path, source: rusqlite::Error) -> StoreError {
        if source.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy) {
            return StoreError::Locked {
                path: path.display().to_string(),
            };
        }
        StoreError::Sqlite {
            path: path.display().to_string(),
            source,
        }
    }

    /// SQLite found the file damaged.
    pub fn is_corruption(&self) -> bool {
        matches!(self, StoreError::Sqlite { source, .. } if is_corruption(source))
    }

    fn is_disk_full(&self) -> bool {
        matches!(self, StoreError::Sqlite { source, .. }
            if source.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull))
    }

    /// What this error says about the store's ability to commit.
    fn problem(&self) -> ProblemKind {
        match self {
            StoreError::File(f) if f.is_moved() => ProblemKind::Moved,
            e if e.is_corruption() => ProblemKind::Corrupt,
            _ => ProblemKind::Failing,
        }
    }
}

/// SQLite's word for a damaged file (or one that is no database at all).
pub fn is_corruption(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase)
    )
}

/// Opens `path` through [`VFS`] with the settings every connection needs.
fn connect(path: &Path, flags: OpenFlags) -> Result<Connection, StoreError> {
    let err = |source| StoreError::sqlite(path, source);
    let conn =
        Connection::open_with_flags_and_vfs(path, flags | OpenFlags::SQLITE_OPEN_NO_MUTEX, VFS)
            .map_err(err)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(err)?;
    conn.pragma_update(None, "foreign_keys", "ON")
        .map_err(err)?;
    // No memory map of the database file either, whatever SQLite's default
    // becomes: an I/O error must come back as an error, not a signal.
    conn.pragma_update(None, "mmap_size", 0).map_err(err)?;
    Ok(conn)
}

/// The writer's page cache. SQLite's default (2 MiB) holds a few
/// thousand index pages: past a million rows nearly every insert into the
/// per-object index read its page back from the OS (417 `pread`s per
/// batch of 400 at 600k rows, a third of the write time).
const WRITER_CACHE_KIB: i64 = 64 * 1024;

/// WAL pages between automatic checkpoints. At SQLite's default (1000) a
/// batch of 400 changes, which dirties a few hundred index pages, set off
/// a checkpoint and its fsync nearly every other commit; a page rewritten
/// by many commits is also copied into the database once per checkpoint,
/// not once per commit.
const CHECKPOINT_PAGES: i64 = 16 * 1024;

/// The write side.
pub struct Store {
    conn: recover::Writer,
    path: PathBuf,
    files: Files,
    health: Health,
    readers: ReadPool,
    durability: crate::config::Durability,
    /// Recovery's memory: the copy written of a file that moved, damage seen.
    recovery: recover::Recovery,
    /// The ids of dictionary entries already stored.
    dict: dict::Dictionaries,
    /// A row's own detail, encoded here batch after batch.
    buf: Vec<u8>,
}

/// What one batch write did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    pub inserted: usize,
    /// Rows whose dedupe key was already stored: redeliveries.
    pub duplicates: usize,
}

impl Store {
    /// Opens (creating if needed) `DIR/driftwatch.db` and migrates it.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Dir {
            path: dir.display().to_string(),
            source,
        })?;
        let path = dir.join(DB_FILE);
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE;
        Store::open_at(&path, flags, ReadPool::new(dir), Health::default())
    }

    /// Opens the database at `path` as the writer and migrates it.
    fn open_at(
        path: &Path,
        flags: OpenFlags,
        readers: ReadPool,
        health: Health,
    ) -> Result<Store, StoreError> {
        let err = |source| StoreError::sqlite(path, source);
        let mut conn = connect(path, flags)?;
        // WAL: readers never block the writer. NORMAL: a commit survives a
        // process crash; an OS crash may lose the last transactions.
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(err)?;
        conn.pragma_update(None, "cache_size", -WRITER_CACHE_KIB)
            .map_err(err)?;
        conn.pragma_update(None, "wal_autocheckpoint", CHECKPOINT_PAGES)
            .map_err(err)?;
        migrate(&mut conn, path)?;
        Ok(Store {
            files: Files::capture(path)?,
            conn: recover::Writer::new(conn),
            path: path.to_owned(),
            health,
            readers,
            durability: crate::config::Durability::Normal,
            recovery: recover::Recovery::default(),
            dict: dict::Dictionaries::default(),
            buf: Vec::new(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the store can commit; shared with `/readyz` and the readers.
    pub fn health(&self) -> Health {
        self.health.clone()
    }

    /// The query side's connections.
    pub fn readers(&self) -> ReadPool {
        self.readers.clone()
    }

    /// `full`: every commit is fsynced, so an acknowledged batch survives
    /// power loss too; `normal` (the default) survives a crash of the process.
    pub fn set_durability(
        &mut self,
        durability: crate::config::Durability,
    ) -> Result<(), StoreError> {
        let mode = match durability {
            crate::config::Durability::Normal => "NORMAL",
            crate::config::Durability::Full => "FULL",
        };
        self.conn
            .pragma_update(None, "synchronous", mode)
            .map_err(self.err())?;
        self.durability = durability;
        Ok(())
    }

    fn err(&self) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        |source| StoreError::sqlite(&self.path, source)
    }

    /// Refuses at once while the file is known damaged or gone, so that
    /// nothing is stacked on it; counted like any failed write.
    pub fn writable(&self) -> Result<(), StoreError> {
        match self.health.refuses_writes() {
            Some(p) => Err(StoreError::Refused(p.message)),
            None => Ok(()),
        }
    }

    /// Records what a write's outcome says about the store.
    fn outcome<T>(&mut self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        match &result {
            Ok(_) => {
                self.recovery.committed();
                self.health.clear(ProblemKind::Failing);
            }
            Err(StoreError::Refused(_)) => {}
            Err(e) => self.failed(e),
        }
        result
    }

    /// Which of `keys` are already stored: one statement per 64 keys.
    pub fn known_keys(&self, keys: &[StoreKey]) -> Result<foldhash::HashSet<StoreKey>, StoreError> {
        const CHUNK: usize = 64;
        let mut known = foldhash::HashSet::default();
        if keys.is_empty() {
            return Ok(known);
        }
        let placeholders = vec!["?"; CHUNK].join(",");
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT dedupe_key FROM changes WHERE dedupe_key IN ({placeholders})"
            ))
            .map_err(self.err())?;
        for chunk in keys.chunks(CHUNK) {
            // A short last chunk repeats its last key: one statement for all.
            let padded = (0..CHUNK).map(|i| &chunk[i.min(chunk.len() - 1)][..]);
            let mut rows = stmt
                .query(rusqlite::params_from_iter(padded))
                .map_err(self.err())?;
            while let Some(row) = rows.next().map_err(self.err())? {
                let key: Vec<u8> = row.get(0).map_err(self.err())?;
                if let Ok(key) = StoreKey::try_from(key.as_slice()) {
                    known.insert(key);
                }
            }
        }
        Ok(known)
    }

    /// Writes a batch in one transaction. A change whose dedupe key is
    /// already stored is skipped, so redelivery is idempotent across restarts.
    pub fn write(
        &mut self,
        changes: &[ChangeRecord],
        drifts: &[DriftTransition],
    ) -> Result<Written, StoreError> {
        let result = self
            .writable()
            .and_then(|()| self.write_tx(changes, drifts));
        if result.is_err() {
            // Ids taken in the transaction may have been rolled back.
            self.dict.forget();
        }
        self.outcome(result)
    }

    fn write_tx(
        &mut self,
        changes: &[ChangeRecord],
        drifts: &[DriftTransition],
    ) -> Result<Written, StoreError> {
        let path = self.path.clone();
        let err = |source| StoreError::sqlite(&path, source);
        let tx = self.conn.transaction().map_err(err)?;
        let mut written = Written::default();
        {
            let mut insert = tx.prepare_cached(INSERT_CHANGE).map_err(err)?;
            let mut row = Row {
                tx: &tx,
                dict: &mut self.dict,
                buf: &mut self.buf,
            };
            for c in changes {
                if row.insert(&mut insert, c).map_err(err)? {
                    written.inserted += 1;
                } else {
                    written.duplicates += 1;
                }
            }
            for d in drifts {
                write_drift(&tx, d).map_err(err)?;
            }
        }
        // Last, so that a file deleted while the rows were written is seen.
        self.files.check()?;
        tx.commit().map_err(err)?;
        Ok(written)
    }

    /// Open and persisting drifts, to restore the tracker after a restart.
    pub fn open_drifts(&self) -> Result<Vec<OpenDrift>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT id, cluster, api_group, resource, namespace, name, opened_at, opened_at_us, opened_by,
                    drifted_paths, persisting_at, persisting_at_us
                 FROM drifts WHERE state IN ('open', 'persisting')",
            )
            .map_err(self.err())?;
        let rows = stmt
            .query_map([], |r| {
                let namespace: String = r.get(4)?;
                let id: String = r.get(0)?;
                let paths = records::drifted_paths(&id, r.get(9)?);
                let persisting: Option<String> = r.get(10)?;
                let persisting_us: Option<i64> = r.get(11)?;
                Ok(OpenDrift {
                    id,
                    cluster: r.get(1)?,
                    object: ObjectRef {
                        group: r.get(2)?,
                        resource: r.get(3)?,
                        namespace: Some(namespace).filter(|n| !n.is_empty()),
                        name: Some(r.get(5)?),
                        ..ObjectRef::default()
                    },
                    opened: Time::stored(r.get(7)?, r.get(6)?),
                    opened_by: r.get(8)?,
                    paths,
                    persisting_since: persisting
                        .map(|text| Time::stored(persisting_us.unwrap_or(0), text)),
                })
            })
            .map_err(self.err())?;
        rows.collect::<Result<Vec<_>, _>>().map_err(self.err())
    }

    /// Deletes changes older than `cutoff_us` and drifts closed before it.
    /// A change is as old as its event time, or its receive time when that
    /// was recorded (the event's own was too far from it: a 1970 stamp is
    /// not deleted at the first pass, a 9999 one not kept forever). Open
    /// drifts are kept whatever their age. Returns rows deleted.
    pub fn purge_before(&mut self, cutoff_us: i64) -> Result<usize, StoreError> {
        let result = self.writable().and_then(|()| self.purge_tx(cutoff_us));
        self.outcome(result)
    }

    fn purge_tx(&mut self, cutoff_us: i64) -> Result<usize, StoreError> {
        let path = self.path.clone();
        let err = |source| StoreError::sqlite(&path, source);
        let tx = self.conn.transaction().map_err(err)?;
        // Two statements, each on its index.
        let changes = tx
            .execute(
                "DELETE FROM changes WHERE time_us < ?1 AND received_us IS NULL",
                [cutoff_us],
            )
            .map_err(err)?
            + tx.execute("DELETE FROM changes WHERE received_us < ?1", [cutoff_us])
                .map_err(err)?;
        let drifts = tx
            .execute(
                "DELETE FROM drifts WHERE state != 'open' AND closed_at_us < ?1",
                [cutoff_us],
            )
            .map_err(err)?;
        self.files.check()?;
        tx.commit().map_err(err)?;
        Ok(changes + drifts)
    }
}

const INSERT_CHANGE: &str = "INSERT OR IGNORE INTO changes (dedupe_key, time_us, time, object,
    actor, shape, audit_id, drift_id, paths, uri, detail, received_us)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)";

/// What writing a row needs besides its statement: the transaction (for
/// new dictionary entries), the dictionaries, a buffer.
struct Row<'t, 'c> {
    tx: &'t rusqlite::Transaction<'c>,
    dict: &'t mut dict::Dictionaries,
    buf: &'t mut Vec<u8>,
}

impl Row<'_, '_> {
    /// Inserts one change in the compact format; false when its key was
    /// already stored.
    fn insert(
        &mut self,
        stmt: &mut rusqlite::CachedStatement<'_>,
        c: &ChangeRecord,
    ) -> rusqlite::Result<bool> {
        let (tx, d) = (self.tx, &mut *self.dict);
        // Serializing our own structs cannot fail.
        let profile = serde_json::to_string(&compact::ProfileRef::of(c)).unwrap_or_default();
        let ownership =
            compact::OwnershipRef::of(c).map(|o| serde_json::to_string(&o).unwrap_or_default());
        compact::encode_own(c, self.buf);
        let audit_id = match compact::audit_id_bytes(&c.audit_id) {
            Some(bytes) => rusqlite::types::Value::Blob(bytes.to_vec()),
            None => rusqlite::types::Value::Text(c.audit_id.clone()),
        };
        // The text of `time_us` is not stored again.
        let time = (c.time.text != time::format_us(c.time.us)).then_some(c.time.text.as_str());
        let shape = dict::Shape([
            Some(d.string(tx, &c.verb)?),
            Some(d.string(tx, c.verdict.as_str())?),
            d.opt_string(tx, c.pipeline.as_deref())?,
            d.opt_string(tx, c.finding_type.map(|t| t.as_str()))?,
            d.opt_string(tx, c.severity.map(|s| s.as_str()))?,
            Some(d.string(tx, &profile)?),
            d.opt_string(tx, ownership.as_deref())?,
        ]);
        let n = stmt.execute(params![
            &c.request.store_key()[..],
            c.time.us,
            time,
            d.object(tx, &c.cluster, &c.resource)?,
            d.string(tx, &c.actor.username)?,
            d.shape(tx, shape)?,
            audit_id,
            c.drift.as_ref().map(|d| compact::drift_key(&d.id)),
            d.paths(tx, &compact::path_set(c))?,
            d.string(tx, &c.request_uri)?,
            &self.buf[..],
            c.received.as_ref().map(|t| t.us),
        ])?;
        Ok(n == 1)
    }
}

fn write_drift(tx: &rusqlite::Transaction<'_>, d: &DriftTransition) -> rusqlite::Result<()> {
    match d {
        DriftTransition::Opened(o) => {
            tx.prepare_cached(
                "INSERT OR IGNORE INTO drifts (id, state, cluster, api_group, resource, namespace, name,
                    opened_at, opened_at_us, opened_by, drifted_paths)
                 VALUES (?1, 'open', ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )?
            .execute(params![
                o.id,
                o.cluster,
                o.object.group,
                o.object.resource,
                o.object.namespace_str(),
                o.object.name_str(),
                o.opened.text,
                o.opened.us,
                o.opened_by,
                records::paths_json(o.paths.as_deref()),
            ])?;
        }
        DriftTransition::Joined { id, paths, .. } => {
            tx.prepare_cached(
                "UPDATE drifts SET drifted_paths = ?2 WHERE id = ?1 AND state IN ('open', 'persisting')",
            )?
            .execute(params![id, records::paths_json(paths.as_deref())])?;
        }
        DriftTransition::Persisting {
            id,
            since,
            pipeline,
            audit_id,
            paths,
        } => {
            tx.prepare_cached(
                "UPDATE drifts SET state = 'persisting', persisting_at = ?2, persisting_at_us = ?3,
                    persisting_pipeline = ?4, persisting_audit_id = ?5, drifted_paths = ?6
                 WHERE id = ?1 AND state IN ('open', 'persisting')",
            )?
            .execute(params![
                id,
                since.text,
                since.us,
                pipeline,
                audit_id,
                records::paths_json(Some(paths))
            ])?;
        }
        DriftTransition::Reconciled {
            id,
            at,
            pipeline,
            audit_id,
            actor,
            seconds,
            verification,
        } => {
            tx.prepare_cached(
                "UPDATE drifts SET state = 'reconciled', closed_at = ?2, closed_at_us = ?3,
                    closed_pipeline = ?4, closed_audit_id = ?5, closed_actor = ?6, reconcile_seconds = ?7,
                    reconcile_verification = ?8
                 WHERE id = ?1 AND state IN ('open', 'persisting')",
            )?
            .execute(params![
                id,
                at.text,
                at.us,
                pipeline,
                audit_id,
                actor,
                seconds,
                verification.as_str()
            ])?;
        }
        DriftTransition::Accepted { id, at, by, reason } => {
            tx.prepare_cached(
                "UPDATE drifts SET state = 'accepted', closed_at = ?2, closed_at_us = ?3,
                    closed_actor = ?4, closed_reason = ?5
                 WHERE id = ?1 AND state IN ('open', 'persisting')",
            )?
            .execute(params![id, at.text, at.us, by, reason])?;
        }
    }
    Ok(())
}

fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let err = |source| StoreError::sqlite(path, source);
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(err)?;
    let known = schema::MIGRATIONS.len() as i64;
    if version > known {
        return Err(StoreError::TooNew {
            path: path.display().to_string(),
            found: version,
            known,
        });
    }
    for (i, sql) in schema::MIGRATIONS.iter().enumerate().skip(version as usize) {
        let tx = conn.transaction().map_err(err)?;
        tx.execute_batch(sql).map_err(err)?;
        tx.pragma_update(None, "user_version", i as i64 + 1)
            .map_err(err)?;
        tx.commit().map_err(err)?;
    }
    Ok(())
}

/// Opens a read connection for another process than `serve` (the CLI,
/// tools): read-only, through SQLite's default VFS.
pub fn open_reader(dir: &Path) -> Result<Connection, StoreError> {
    let path = dir.join(DB_FILE);
    let err = |source| StoreError::sqlite(&path, source);
    let conn = Connection::open_with_flags(
        &path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(err)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(err)?;
    // Take the lock now: a store held by a running `serve` is said so here,
    // not as "database is locked" from the first query.
    conn.query_row("SELECT count(*) FROM sqlite_schema", [], |_| Ok(()))
        .map_err(err)?;
    Ok(conn)
}

/// A reader of the writer's own process: the same VFS, so it shares the
/// writer's lock and WAL index. Opened read-write (never created) so that
/// no connection of the process ever asks the OS for a lock of its own,
/// and made query-only.
fn open_pooled_reader(dir: &Path) -> Result<Connection, StoreError> {
    let path = dir.join(DB_FILE);
    let conn = connect(&path, OpenFlags::SQLITE_OPEN_READ_WRITE)?;
    conn.pragma_update(None, "query_only", true)
        .map_err(|source| StoreError::sqlite(&path, source))?;
    Ok(conn)
}

#[cfg(test)]
mod migration_tests;
#[cfg(test)]
mod tests;
