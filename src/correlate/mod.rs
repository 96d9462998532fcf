//! Per-resource attribution: what a change changed.

pub mod changes;

pub use changes::Change;
