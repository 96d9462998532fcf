//! The history store: SQLite under the data directory. One writer (the
//! engine's thread) with one transaction per group of batches; readers take
//! connections from a pool, which WAL mode lets run beside the writer.

mod pool;
pub mod query;
mod records;
mod schema;

use std::path::{Path, PathBuf};

use rusqlite::{Connection, params};

use crate::model::{ChangeRecord, DriftTransition, ObjectRef, OpenDrift, STORE_KEY_LEN, Time};
pub use pool::{Pooled, ReadPool};

/// The store's idempotency key: see [`crate::model::RequestId::store_key`].
pub type StoreKey = [u8; STORE_KEY_LEN];

pub const DB_FILE: &str = "driftwatch.db";

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
}

/// Applies the connection settings every connection needs.
fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(())
}

/// The write side.
pub struct Store {
    conn: Connection,
    path: PathBuf,
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
        let err = |source| StoreError::Sqlite {
            path: path.display().to_string(),
            source,
        };
        let mut conn = Connection::open(&path).map_err(err)?;
        configure(&conn).map_err(err)?;
        // WAL: readers never block the writer. NORMAL: a commit survives a
        // process crash; an OS crash may lose the last transactions.
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(err)?;
        migrate(&mut conn, &path)?;
        Ok(Store { conn, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `full`: every commit is fsynced, so an acknowledged batch survives
    /// power loss too; `normal` (the default) survives a crash of the process.
    pub fn set_durability(&self, durability: crate::config::Durability) -> Result<(), StoreError> {
        let mode = match durability {
            crate::config::Durability::Normal => "NORMAL",
            crate::config::Durability::Full => "FULL",
        };
        self.conn
            .pragma_update(None, "synchronous", mode)
            .map_err(self.err())
    }

    fn err(&self) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        |source| StoreError::Sqlite {
            path: self.path.display().to_string(),
            source,
        }
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
        let path = self.path.display().to_string();
        let err = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(err)?;
        let mut written = Written::default();
        {
            let mut insert = tx.prepare_cached(INSERT_CHANGE).map_err(err)?;
            for c in changes {
                if insert_change(&mut insert, c).map_err(err)? {
                    written.inserted += 1;
                } else {
                    written.duplicates += 1;
                }
            }
            for d in drifts {
                write_drift(&tx, d).map_err(err)?;
            }
        }
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
        let path = self.path.display().to_string();
        let err = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
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
        tx.commit().map_err(err)?;
        Ok(changes + drifts)
    }
}

const INSERT_CHANGE: &str = "INSERT OR IGNORE INTO changes (dedupe_key, time, time_us, cluster,
    api_group, api_version, resource, subresource, namespace, name, uid, verb, actor, impersonator,
    client, field_manager, audit_id, verdict, pipeline, finding_type, severity, drift_id,
    changed_paths, detail, received_us)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19,
    ?20, ?21, ?22, ?23, ?24, ?25)";

/// Inserts one change; false when its key was already stored.
fn insert_change(
    stmt: &mut rusqlite::CachedStatement<'_>,
    c: &ChangeRecord,
) -> rusqlite::Result<bool> {
    // Serializing our own struct to a string cannot fail.
    let detail =
        serde_json::to_string(&records::DetailRef::of(c)).unwrap_or_else(|_| "{}".to_owned());
    let r = &c.resource;
    let n = stmt.execute(params![
        &c.request.store_key()[..],
        c.time.text,
        c.time.us,
        c.cluster,
        r.group,
        r.version,
        r.resource,
        r.subresource,
        r.namespace_str(),
        r.name_str(),
        r.uid,
        c.verb,
        c.actor.username,
        c.actor
            .impersonated_by
            .as_ref()
            .map(|i| i.username.as_str()),
        c.actor.client,
        c.actor.field_manager,
        c.audit_id,
        c.verdict.as_str(),
        c.pipeline,
        c.finding_type.map(|t| t.as_str()),
        c.severity.map(|s| s.as_str()),
        c.drift.as_ref().map(|d| d.id.as_str()),
        records::changed_paths(c),
        detail,
        c.received.as_ref().map(|t| t.us),
    ])?;
    Ok(n == 1)
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
    let err = |source| StoreError::Sqlite {
        path: path.display().to_string(),
        source,
    };
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

/// Opens a read connection (queries, the CLI).
pub fn open_reader(dir: &Path) -> Result<Connection, StoreError> {
    let path = dir.join(DB_FILE);
    let err = |source| StoreError::Sqlite {
        path: path.display().to_string(),
        source,
    };
    let conn = Connection::open_with_flags(
        &path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(err)?;
    configure(&conn).map_err(err)?;
    Ok(conn)
}
