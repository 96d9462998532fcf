//! Per-resource attribution: what a change changed, who manages the object,
//! and the drift it opens or closes.

pub mod changes;
pub mod ownership;
mod reconcile;
pub mod redact;
mod shared;
mod state;
pub mod tracker;

pub use changes::Change;
pub use ownership::{ManagedBy, Owner};
pub use state::result_object;
pub use tracker::{Correlation, Observation, Tracker};
