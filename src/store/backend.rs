//! The engine's side of either backend. SQLite is the embedded default for
//! one replica; PostgreSQL is shared by several, and is the only one whose
//! per-object state is locked and shared ([`Backend::shares_state`]).

use super::postgres::{Held, Keep, PgStore};
use super::read::Readers;
use super::{Health, Probe, Store, StoreError, StoreKey, Written};
use crate::model::{ChangeRecord, DriftTransition, ObjectRef, OpenDrift};

pub enum Backend {
    Sqlite(Store),
    Postgres(PgStore),
}

impl From<Store> for Backend {
    fn from(s: Store) -> Backend {
        Backend::Sqlite(s)
    }
}

impl Backend {
    pub fn readers(&self) -> Readers {
        match self {
            Backend::Sqlite(s) => Readers::Sqlite(s.readers()),
            Backend::Postgres(s) => Readers::Postgres(s.readers()),
        }
    }

    pub fn health(&self) -> Health {
        match self {
            Backend::Sqlite(s) => s.health(),
            Backend::Postgres(s) => s.health(),
        }
    }

    /// Whether other replicas write the same history: per-object state is
    /// then read and written under the object's lock.
    pub fn shares_state(&self) -> bool {
        matches!(self, Backend::Postgres(_))
    }

    pub fn writable(&self) -> Result<(), StoreError> {
        match self {
            Backend::Sqlite(s) => s.writable(),
            Backend::Postgres(s) => s.writable(),
        }
    }

    pub fn known_keys(
        &mut self,
        keys: &[StoreKey],
    ) -> Result<foldhash::HashSet<StoreKey>, StoreError> {
        match self {
            Backend::Sqlite(s) => s.known_keys(keys),
            Backend::Postgres(s) => s.known_keys(keys),
        }
    }

    /// Locks `objects` for the batch and returns what the store holds of
    /// them; nothing for a store no one else writes.
    pub fn lock(&mut self, objects: &[(String, ObjectRef)]) -> Result<Vec<Held>, StoreError> {
        match self {
            Backend::Sqlite(_) => Ok(Vec::new()),
            Backend::Postgres(s) => s.lock(objects),
        }
    }

    /// The unclosed drift `id`, its object locked for the batch (a shared
    /// store only).
    pub fn lock_drift(&mut self, id: &str) -> Result<Option<Held>, StoreError> {
        match self {
            Backend::Sqlite(_) => Ok(None),
            Backend::Postgres(s) => s.lock_drift(id),
        }
    }

    /// Ends a batch that will not be written.
    pub fn rollback(&mut self) {
        if let Backend::Postgres(s) = self {
            s.rollback();
        }
    }

    /// Writes a batch and ends it. A batch with nothing to write (a repeat,
    /// a status write that changed no remembered state) writes nothing, but
    /// still ends its PostgreSQL transaction: that releases its objects'
    /// locks, which every other replica may be waiting on.
    pub fn write(
        &mut self,
        changes: &[ChangeRecord],
        drifts: &[DriftTransition],
        keep: &[Keep],
    ) -> Result<Written, StoreError> {
        if changes.is_empty() && drifts.is_empty() && keep.is_empty() {
            self.rollback();
            return Ok(Written::default());
        }
        match self {
            Backend::Sqlite(s) => s.write(changes, drifts),
            Backend::Postgres(s) => s.write(changes, drifts, keep),
        }
    }

    pub fn open_drifts(&mut self) -> Result<Vec<OpenDrift>, StoreError> {
        match self {
            Backend::Sqlite(s) => s.open_drifts(),
            Backend::Postgres(s) => s.open_drifts(),
        }
    }

    pub fn purge_before(&mut self, cutoff_us: i64) -> Result<usize, StoreError> {
        match self {
            Backend::Sqlite(s) => s.purge_before(cutoff_us),
            Backend::Postgres(s) => s.purge_before(cutoff_us),
        }
    }

    /// Lets a SQLite store look at its files and recover; a server
    /// recovers on its own, and is tried again at the next batch.
    pub fn probe(&mut self) -> Probe {
        match self {
            Backend::Sqlite(s) => s.probe(),
            Backend::Postgres(_) => Probe::Same,
        }
    }
}
