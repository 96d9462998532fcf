//! The read side: operational endpoints now, query routes as the store grows.

pub mod ops;
