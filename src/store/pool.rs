//! Read connections for the query API, kept open between requests so that
//! their prepared-statement caches survive.
//!
//! The writer may have to reopen the database (a file deleted and put back,
//! a WAL deleted, damage repaired). Readers still open on the old files
//! would then read the wrong WAL, so the pool can be closed: no new
//! connection is handed out, idle ones are dropped, and the writer waits
//! for the ones out to come back before it reopens.

use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use rusqlite::Connection;

use super::{StoreError, open_pooled_reader};

/// At most this many idle connections are kept; more may be open at once
/// under load, and are closed when returned.
const MAX_IDLE: usize = 8;

#[derive(Default)]
struct Gate {
    closed: bool,
    /// Bumped when the pool closes: connections of an older generation are
    /// not taken back.
    generation: u64,
    out: usize,
    idle: Vec<Connection>,
}

#[derive(Clone)]
pub struct ReadPool {
    dir: PathBuf,
    gate: Arc<Mutex<Gate>>,
}

/// A connection that goes back to its pool when dropped.
pub struct Pooled {
    conn: Option<Connection>,
    generation: u64,
    /// Taken back into the pool (false for a one-off connection).
    reuse: bool,
    gate: Arc<Mutex<Gate>>,
}

impl ReadPool {
    pub fn new(dir: &Path) -> ReadPool {
        ReadPool {
            dir: dir.to_owned(),
            gate: Arc::new(Mutex::new(Gate::default())),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn lock(&self) -> MutexGuard<'_, Gate> {
        self.gate
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn get(&self) -> Result<Pooled, StoreError> {
        self.take(true)
    }

    /// A connection of its own, with an empty page cache: what the
    /// integrity check reads the file through.
    pub fn fresh(&self) -> Result<Pooled, StoreError> {
        self.take(false)
    }

    fn take(&self, reuse: bool) -> Result<Pooled, StoreError> {
        let (reused, generation) = {
            let mut gate = self.lock();
            if gate.closed {
                return Err(StoreError::Reopening {
                    path: self.dir.join(super::DB_FILE).display().to_string(),
                });
            }
            gate.out += 1;
            let reused = if reuse { gate.idle.pop() } else { None };
            (reused, gate.generation)
        };
        let mut pooled = Pooled {
            conn: reused,
            generation,
            reuse,
            gate: Arc::clone(&self.gate),
        };
        if pooled.conn.is_none() {
            // On failure `pooled` is dropped, which counts it back in.
            pooled.conn = Some(open_pooled_reader(&self.dir)?);
        }
        Ok(pooled)
    }

    /// Closes the pool for a reopen; true once no connection is out.
    pub(super) fn close(&self) -> bool {
        let idle = {
            let mut gate = self.lock();
            gate.closed = true;
            gate.generation += 1;
            std::mem::take(&mut gate.idle)
        };
        drop(idle);
        self.lock().out == 0
    }

    pub(super) fn reopen(&self) {
        self.lock().closed = false;
    }
}

impl Deref for Pooled {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        // Taken only in `drop`; set before a `Pooled` is handed out.
        match &self.conn {
            Some(c) => c,
            None => unreachable!("a pooled connection is present until dropped"),
        }
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        let conn = self.conn.take();
        let mut gate = self
            .gate
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        gate.out = gate.out.saturating_sub(1);
        let keep = self.reuse
            && !gate.closed
            && gate.generation == self.generation
            && gate.idle.len() < MAX_IDLE;
        if let (true, Some(conn)) = (keep, conn) {
            gate.idle.push(conn);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_reused() {
        let dir = tempfile::tempdir().unwrap();
        let store = super::super::Store::open(dir.path()).unwrap();
        let pool = store.readers();
        let idle = || pool.lock().idle.len();
        let first = pool.get().unwrap();
        let second = pool.get().unwrap();
        assert_eq!(idle(), 0);
        drop(first);
        drop(second);
        assert_eq!(idle(), 2);
        let again = pool.get().unwrap();
        assert_eq!(idle(), 1);
        assert!(again.prepare("SELECT 1").is_ok());
        drop(pool.fresh().unwrap());
        assert_eq!(idle(), 1, "a one-off connection is not taken back");
    }

    #[test]
    fn a_closed_pool_hands_out_nothing_and_takes_nothing_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = super::super::Store::open(dir.path()).unwrap();
        let pool = store.readers();
        let out = pool.get().unwrap();
        drop(pool.get().unwrap());
        assert!(!pool.close(), "one connection is still out");
        assert_eq!(pool.lock().idle.len(), 0);
        assert!(matches!(pool.get(), Err(StoreError::Reopening { .. })));
        drop(out);
        assert!(pool.close());
        pool.reopen();
        drop(pool.get().unwrap());
        assert_eq!(pool.lock().idle.len(), 1);
    }
}
