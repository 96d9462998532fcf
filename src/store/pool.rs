//! Read connections for the query API, kept open between requests so that
//! their prepared-statement caches survive.

use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::Connection;

use super::{StoreError, open_reader};

/// At most this many idle connections are kept; more may be open at once
/// under load, and are closed when returned.
const MAX_IDLE: usize = 8;

#[derive(Clone)]
pub struct ReadPool {
    dir: PathBuf,
    idle: Arc<Mutex<Vec<Connection>>>,
}

/// A connection that goes back to its pool when dropped.
pub struct Pooled {
    conn: Option<Connection>,
    idle: Arc<Mutex<Vec<Connection>>>,
}

impl ReadPool {
    pub fn new(dir: &Path) -> ReadPool {
        ReadPool {
            dir: dir.to_owned(),
            idle: Arc::new(Mutex::new(Vec::new())),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn get(&self) -> Result<Pooled, StoreError> {
        let reused = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let conn = match reused {
            Some(conn) => conn,
            None => open_reader(&self.dir)?,
        };
        Ok(Pooled {
            conn: Some(conn),
            idle: Arc::clone(&self.idle),
        })
    }
}

impl Deref for Pooled {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        // Taken only in `drop`.
        match &self.conn {
            Some(c) => c,
            None => unreachable!("a pooled connection is present until dropped"),
        }
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        if let (Some(conn), Ok(mut idle)) = (self.conn.take(), self.idle.lock())
            && idle.len() < MAX_IDLE
        {
            idle.push(conn);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_reused() {
        let dir = tempfile::tempdir().unwrap();
        super::super::Store::open(dir.path()).unwrap();
        let pool = ReadPool::new(dir.path());
        let idle = || pool.idle.lock().unwrap().len();
        let first = pool.get().unwrap();
        let second = pool.get().unwrap();
        assert_eq!(idle(), 0);
        drop(first);
        drop(second);
        assert_eq!(idle(), 2);
        let again = pool.get().unwrap();
        assert_eq!(idle(), 1);
        assert!(again.prepare("SELECT 1").is_ok());
    }
}
