//! The query API's side of either backend: a pool of read connections and
//! the history queries, answered the same by SQLite and PostgreSQL.

use std::path::PathBuf;

use super::postgres::{self as pg, PgReaders};
use super::query::{self, DriftItem, Filter, Page, QueryError};
use super::view::Bounds;
use super::{Pooled, ReadPool, StoreError};
use crate::model::{ChangeRecord, DriftState};

#[derive(Clone)]
pub enum Readers {
    Sqlite(ReadPool),
    Postgres(PgReaders),
}

/// One read connection, back to its pool when dropped.
pub enum Conn {
    Sqlite(Pooled),
    Postgres(pg::PgConn),
}

impl Readers {
    pub fn get(&self) -> Result<Conn, StoreError> {
        match self {
            Readers::Sqlite(p) => p.get().map(Conn::Sqlite),
            Readers::Postgres(p) => p.get().map(Conn::Postgres),
        }
    }

    /// The SQLite file, for reporting damage a query found.
    pub fn sqlite_file(&self) -> Option<PathBuf> {
        match self {
            Readers::Sqlite(p) => Some(p.dir().join(super::DB_FILE)),
            Readers::Postgres(_) => None,
        }
    }
}

pub fn changes(c: &mut Conn, f: &Filter, b: &Bounds) -> Result<Page<ChangeRecord>, QueryError> {
    match c {
        Conn::Sqlite(conn) => query::changes(conn, f, b),
        Conn::Postgres(conn) => pg::query::changes(conn.client()?, f, b),
    }
}

pub fn drifts(c: &mut Conn, f: &Filter, b: &Bounds) -> Result<Page<DriftItem>, QueryError> {
    match c {
        Conn::Sqlite(conn) => query::drifts(conn, f, b),
        Conn::Postgres(conn) => pg::query::drifts(conn.client()?, f, b),
    }
}

pub fn drift(c: &mut Conn, id: &str) -> Result<Option<DriftItem>, QueryError> {
    match c {
        Conn::Sqlite(conn) => query::drift(conn, id),
        Conn::Postgres(conn) => pg::query::drift(conn.client()?, id),
    }
}

pub fn drift_live_target(
    c: &mut Conn,
    id: &str,
) -> Result<Option<(DriftState, crate::context::live::Target)>, QueryError> {
    match c {
        Conn::Sqlite(conn) => query::drift_live_target(conn, id),
        Conn::Postgres(conn) => pg::query::drift_live_target(conn.client()?, id),
    }
}
