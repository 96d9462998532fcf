//! Read connections for the query API: at most `history.postgres.pool` idle
//! ones kept between requests; a connection that failed is not kept.

use std::sync::{Arc, Mutex};

use postgres::Client;

use super::{PgConfig, StoreError, connect};
use crate::store::query::QueryError;

#[derive(Clone)]
pub struct PgReaders {
    config: PgConfig,
    idle: Arc<Mutex<Vec<Client>>>,
}

/// A connection that goes back to its pool when dropped, unless it broke.
pub struct PgConn {
    client: Option<Client>,
    idle: Arc<Mutex<Vec<Client>>>,
    max_idle: usize,
}

impl PgReaders {
    pub fn new(config: PgConfig) -> PgReaders {
        PgReaders {
            config,
            idle: Arc::default(),
        }
    }

    pub fn describe(&self) -> String {
        self.config.shown()
    }

    pub fn get(&self) -> Result<PgConn, StoreError> {
        let reused = self
            .idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop();
        let client = match reused {
            Some(c) if !c.is_closed() => c,
            _ => connect(&self.config)?,
        };
        Ok(PgConn {
            client: Some(client),
            idle: Arc::clone(&self.idle),
            max_idle: self.config.pool.max(1),
        })
    }
}

impl PgConn {
    /// The connection; taken only when it goes back to the pool.
    pub fn client(&mut self) -> Result<&mut Client, QueryError> {
        self.client.as_mut().ok_or(QueryError::Unavailable(
            "its connection went back to the pool",
        ))
    }
}

impl Drop for PgConn {
    fn drop(&mut self) {
        let Some(client) = self.client.take() else {
            return;
        };
        if client.is_closed() {
            return;
        }
        let mut idle = self
            .idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if idle.len() < self.max_idle {
            idle.push(client);
        }
    }
}
