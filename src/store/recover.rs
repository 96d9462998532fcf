//! How a store that cannot commit gets back to committing, on its own.
//!
//! The engine asks for a [`Store::probe`] every second. What it does
//! depends on the problem the store's [`Health`] holds:
//!
//! - none: the files are looked at (deleted? replaced? writable?), so that
//!   `/readyz` turns unready without waiting for a batch;
//! - failing (disk full, I/O error, a file made read-only): one small
//!   commit is tried; the first that succeeds, probe or batch, clears it;
//! - corrupt: the whole file is checked (`PRAGMA quick_check`) through a
//!   fresh connection, again only once the files changed; when it passes,
//!   the writer reopens with an empty page cache;
//! - moved (the database file deleted or replaced): what the open file holds
//!   is first copied next to it (`driftwatch.db.rescued-TIME`), since no one
//!   can open the deleted file again; writes stay refused until a driftwatch
//!   database is at the path (that copy moved there, a restored backup),
//!   which the writer then reopens. An empty or foreign file is refused:
//!   starting a new history in place of the one acknowledged would hide it.
//!   A deleted or replaced WAL only: the old WAL is checkpointed into the
//!   database file, which is still the one open, and the writer reopens.
//!
//! Every reopen first closes the reader pool and waits for the readers out
//! to come back.

use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags, TransactionBehavior};

use super::files::{FileFault, FileId, wal_path};
use super::{DB_FILE, Health, ProblemKind, ReadPool, Store, StoreError};
use crate::telemetry::events::{Emit, StoreReopened, StoreRescued, StoreVerified};

/// What a probe did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// The store writes to the file it wrote to before (or cannot write).
    Same,
    /// The store now writes to another database file, put back at its
    /// path: what was remembered of the old one no longer holds.
    Replaced,
}

/// The writer's connection. Closed with the store, except once the
/// database file moved: the last close of a WAL database deletes
/// `<path>-wal` by name, which may by then be the WAL of the database put
/// back at the path. Such a connection stays open until the process ends.
pub(super) struct Writer {
    conn: Option<Connection>,
    keep_open: bool,
}

impl Writer {
    pub fn new(conn: Connection) -> Writer {
        Writer {
            conn: Some(conn),
            keep_open: false,
        }
    }
}

impl Deref for Writer {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        // Taken only in `drop`.
        match &self.conn {
            Some(c) => c,
            None => unreachable!("the writer's connection is present until dropped"),
        }
    }
}

impl DerefMut for Writer {
    fn deref_mut(&mut self) -> &mut Connection {
        match &mut self.conn {
            Some(c) => c,
            None => unreachable!("the writer's connection is present until dropped"),
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if let (true, Some(conn)) = (self.keep_open, self.conn.take()) {
            std::mem::forget(conn);
        }
    }
}

/// What recovery remembers between probes.
#[derive(Debug, Default)]
pub(super) struct Recovery {
    /// The copy written of a file that moved; a new one is needed only
    /// once something was committed since.
    rescued: Option<PathBuf>,
    /// The files as they were when a check of the whole file last failed:
    /// checked again only once they change.
    damaged: Option<Fingerprint>,
    /// The last failure was a full disk: a probe waits for room first.
    disk_full: bool,
}

impl Recovery {
    pub fn committed(&mut self) {
        self.rescued = None;
        self.disk_full = false;
    }
}

/// After a full disk, probes wait for this much room: a page or two may
/// still fit in blocks the WAL holds, and readiness would flap with every
/// probe while no batch fits.
const ROOM_AFTER_DISK_FULL: u64 = 4 * 1024 * 1024;

/// Bytes free on the filesystem of `path` (for an unprivileged process).
fn room(path: &Path) -> Option<u64> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let vfs = rustix::fs::statvfs(dir).ok()?;
    Some(vfs.f_bavail.saturating_mul(vfs.f_frsize))
}

/// Sizes and modification times of the database and its WAL.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Fingerprint(Vec<Option<(u64, std::time::SystemTime)>>);

impl Fingerprint {
    fn of(db: &Path) -> Fingerprint {
        let stamp = |p: &Path| {
            std::fs::metadata(p)
                .ok()
                .and_then(|m| Some((m.len(), m.modified().ok()?)))
        };
        Fingerprint(vec![stamp(db), stamp(&wal_path(db))])
    }
}

/// The first problem `PRAGMA quick_check` finds; `None` when there is none.
pub fn check_integrity(conn: &Connection) -> Result<Option<String>, rusqlite::Error> {
    match conn.query_row("PRAGMA quick_check(1)", [], |r| r.get::<_, String>(0)) {
        Ok(first) if first == "ok" => Ok(None),
        Ok(first) => Ok(Some(first)),
        Err(e) if super::is_corruption(&e) => Ok(Some(e.to_string())),
        Err(e) => Err(e),
    }
}

/// The scheduled check of the whole file (`history.integrity_check_interval`),
/// through a connection of its own: damage found makes the store refuse
/// writes until it is repaired. Skipped while the store has a problem
/// already: the probe looks after it.
pub fn verify(readers: &ReadPool, health: &Health) {
    if health.problem().is_some() {
        return;
    }
    let path = readers.dir().join(DB_FILE);
    let started = std::time::Instant::now();
    let checked = readers.fresh().and_then(|conn| {
        check_integrity(&conn).map_err(|source| StoreError::sqlite(&path, source))
    });
    let problem = match checked {
        Ok(None) => None,
        Ok(Some(problem)) => Some(problem),
        // Not a verdict on the file (it is being reopened, the disk is
        // busy): the next check or commit tells.
        Err(e) => Some(e.to_string()).filter(|_| e.is_corruption()),
    };
    StoreVerified {
        problem: problem.as_deref(),
        seconds: started.elapsed().as_secs_f64(),
    }
    .emit();
    if let Some(problem) = problem {
        health.set(ProblemKind::Corrupt, damaged(&path, &problem));
    }
}

impl Store {
    /// Opens a database put back at `path`: it must exist and be a
    /// driftwatch store already.
    fn reopen_at(path: &Path, readers: ReadPool, health: Health) -> Result<Store, StoreError> {
        let conn = super::connect(path, OpenFlags::SQLITE_OPEN_READ_WRITE)?;
        let version = conn.pragma_query_value(None, "user_version", |r| r.get::<_, i64>(0));
        let not_a_store = |reason: String| StoreError::NotAStore {
            path: path.display().to_string(),
            reason,
        };
        match version {
            Ok(0) => {
                return Err(not_a_store(
                    "it holds no history (an empty database); a new history is not started in place of the one that was acknowledged: put the store back, or restart driftwatch to start one".to_owned(),
                ));
            }
            Ok(_) => {}
            Err(e) => return Err(not_a_store(e.to_string())),
        }
        // Kept open while the writer opens: the checked file cannot change
        // under it, and closing this connection alone drops nothing.
        let store = Store::open_at(path, OpenFlags::SQLITE_OPEN_READ_WRITE, readers, health);
        drop(conn);
        store
    }

    /// Looks at the files and, while the store cannot commit, tries to get
    /// it committing again. See the module documentation.
    pub fn probe(&mut self) -> Probe {
        match self.health.problem().map(|p| p.kind) {
            None => {
                if let Err(fault) = self.files.check() {
                    self.failed(&fault.into());
                }
                Probe::Same
            }
            Some(ProblemKind::Failing) => {
                if self.recovery.disk_full
                    && room(&self.path).is_some_and(|free| free < ROOM_AFTER_DISK_FULL)
                {
                    return Probe::Same;
                }
                let result = self.probe_commit();
                let _ = self.outcome(result);
                Probe::Same
            }
            Some(ProblemKind::Corrupt) => {
                self.recover_damage();
                Probe::Same
            }
            Some(ProblemKind::Moved) => self.recover_moved(),
        }
    }

    /// Records a failed write or look in the store's health.
    pub(super) fn failed(&mut self, e: &StoreError) {
        self.recovery.disk_full |= e.is_disk_full();
        match e {
            StoreError::File(fault) if fault.is_moved() => self.moved(fault),
            _ => self.health.set(e.problem(), e.to_string()),
        }
    }

    /// One page rewritten as it is, and committed: what a batch needs to
    /// succeed again, without touching the history.
    fn probe_commit(&mut self) -> Result<(), StoreError> {
        let path = self.path.clone();
        let err = |source| StoreError::sqlite(&path, source);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(err)?;
        let version: i64 = tx
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(err)?;
        tx.pragma_update(None, "user_version", version)
            .map_err(err)?;
        self.files.check()?;
        tx.commit().map_err(err)
    }

    /// The file at the path is not the one open: rescue what it holds and
    /// say what to do.
    fn moved(&mut self, fault: &FileFault) {
        let path = self.path.display().to_string();
        if fault.wal_only() {
            self.health.set(
                ProblemKind::Moved,
                format!("{fault}; its content goes into {path}, which is then reopened"),
            );
            return;
        }
        self.conn.keep_open = true;
        let message = match self.rescue() {
            Ok(copy) => format!(
                "{fault}: nothing is written until a driftwatch store is back at {path}; everything it held is copied to {}: move that copy to {path} and driftwatch reopens it",
                copy.display()
            ),
            Err(e) => format!(
                "{fault}: nothing is written until a driftwatch store is back at {path}; copying what it held failed ({e}) and is tried again every second"
            ),
        };
        self.health.set(ProblemKind::Moved, message);
    }

    /// Copies the open database, deleted or not, next to its path.
    fn rescue(&mut self) -> Result<PathBuf, StoreError> {
        if let Some(copy) = &self.recovery.rescued {
            return Ok(copy.clone());
        }
        let copy = rescue_path(&self.path);
        let target = copy.to_str().ok_or_else(|| StoreError::NotAStore {
            path: copy.display().to_string(),
            reason: "not a UTF-8 path".to_owned(),
        })?;
        self.conn
            .execute("VACUUM INTO ?1", [target])
            .map_err(self.err())?;
        StoreRescued {
            from: &self.path,
            to: &copy,
        }
        .emit();
        self.recovery.rescued = Some(copy.clone());
        Ok(copy)
    }

    fn recover_moved(&mut self) -> Probe {
        match self.files.check() {
            // Put back as it was (moved away and back).
            Ok(()) => self.health.clear(ProblemKind::Moved),
            Err(fault) if !fault.is_moved() => {
                self.health.clear(ProblemKind::Moved);
                self.failed(&fault.into());
            }
            Err(fault) if fault.wal_only() => {
                if self.checkpoint_old_wal() && self.reopen_same() {
                    self.health.clear(ProblemKind::Moved);
                }
            }
            Err(fault) => return self.take_over(&fault),
        }
        Probe::Same
    }

    /// Moves what the WAL holds into the database file (still the one
    /// open), so that a reopen with the WAL at the path loses nothing.
    fn checkpoint_old_wal(&self) -> bool {
        let done = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                r.get::<_, i64>(0)
            });
        done == Ok(0)
    }

    /// Switches to the database now at the path, once what the old one
    /// held is copied.
    fn take_over(&mut self, fault: &FileFault) -> Probe {
        if !matches!(FileId::at(&self.path), Ok(Some(_))) || self.recovery.rescued.is_none() {
            // Nothing at the path yet, or the copy still to make.
            self.moved(fault);
            return Probe::Same;
        }
        if !self.readers.close() {
            return Probe::Same;
        }
        let opened = Store::reopen_at(&self.path, self.readers.clone(), self.health.clone())
            .and_then(|mut store| store.set_durability(self.durability).map(|()| store));
        self.readers.reopen();
        match opened {
            Ok(store) => {
                let rescued = self.recovery.rescued.clone();
                *self = store;
                self.health.clear(ProblemKind::Moved);
                StoreReopened {
                    path: &self.path,
                    rescued: rescued.as_deref(),
                }
                .emit();
                Probe::Replaced
            }
            Err(e) => {
                let copy = self
                    .recovery
                    .rescued
                    .as_ref()
                    .map_or_else(String::new, |c| {
                        format!("; what the old file held is in {}", c.display())
                    });
                self.health.set(
                    ProblemKind::Moved,
                    format!("{fault}, and the file now there cannot be used: {e}{copy}"),
                );
                Probe::Same
            }
        }
    }

    /// A new writer on the same database file, with an empty page cache
    /// and the WAL at the path; readers reconnect after it.
    fn reopen_same(&mut self) -> bool {
        if !self.readers.close() {
            return false;
        }
        let opened = Store::open_at(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE,
            self.readers.clone(),
            self.health.clone(),
        )
        .and_then(|mut store| store.set_durability(self.durability).map(|()| store));
        self.readers.reopen();
        match opened {
            Ok(store) => {
                // The new writer shares the file with the old one, whose
                // close is therefore not the last and deletes nothing.
                *self = store;
                StoreReopened {
                    path: &self.path,
                    rescued: None,
                }
                .emit();
                true
            }
            Err(e) => {
                self.failed(&e);
                false
            }
        }
    }

    /// Damage found: checked again whole once the files changed.
    fn recover_damage(&mut self) {
        if let Err(fault) = self.files.check() {
            self.failed(&fault.into());
            return;
        }
        let now = Fingerprint::of(&self.path);
        if self.recovery.damaged.as_ref() == Some(&now) {
            return;
        }
        let checked = self
            .readers
            .fresh()
            .and_then(|conn| check_integrity(&conn).map_err(self.err()));
        match checked {
            Ok(None) => {
                if self.reopen_same() {
                    self.health.clear(ProblemKind::Corrupt);
                }
            }
            Ok(Some(problem)) => {
                self.recovery.damaged = Some(now);
                self.health
                    .set(ProblemKind::Corrupt, damaged(&self.path, &problem));
            }
            Err(e) => {
                self.recovery.damaged = Some(now);
                self.health
                    .set(ProblemKind::Corrupt, damaged(&self.path, &e.to_string()));
            }
        }
    }
}

/// The message of a damaged store: what SQLite found and what to do.
pub fn damaged(path: &Path, problem: &str) -> String {
    format!(
        "{} is damaged ({problem}): nothing is written until it passes `PRAGMA quick_check`; restore it from a backup (driftwatch checks it again when it changes)",
        path.display()
    )
}

/// `driftwatch.db.rescued-20261120T100000Z` beside the database, made
/// unique with a counter.
fn rescue_path(db: &Path) -> PathBuf {
    let stamp = jiff::Timestamp::now()
        .strftime("%Y%m%dT%H%M%SZ")
        .to_string();
    let dir = db.parent().unwrap_or(Path::new("."));
    let mut copy = dir.join(format!("{DB_FILE}.rescued-{stamp}"));
    let mut n = 1;
    while copy.exists() {
        copy = dir.join(format!("{DB_FILE}.rescued-{stamp}-{n}"));
        n += 1;
    }
    copy
}
