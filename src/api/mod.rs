//! The read side: query routes over the history store, and the operational
//! endpoints.

pub mod ops;
pub mod query;
