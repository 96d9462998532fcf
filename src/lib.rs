//! driftwatch watches the Kubernetes API server audit log and flags every
//! change made outside the sanctioned deployment pipeline: who changed what,
//! when, and which fields.
//!
//! ```text
//! sources ──► decode ──► dedupe ──► classify ──► correlate ──► sinks, store
//! (webhook,   (Event,    (request   (policy:     (object state,   (findings;
//!  kafka,      EventList, identity)  verdict,     field changes,   history)
//!  replay)     envelopes)            severity)    drift lifecycle)
//! ```
//!
//! The words every stage shares live in [`model`]; [`engine`] runs the
//! stages for every source and is the only builder of a finding and its
//! history record; [`app`] wires the service; [`api`] is the read side;
//! [`suggest`] proposes allowances by replaying logs through the engine.

pub mod admission;
pub mod api;
pub mod app;
pub mod classify;
pub mod cli;
pub mod config;
pub mod context;
pub mod correlate;
pub mod decode;
pub mod dedupe;
pub mod engine;
pub mod forensics;
pub mod http;
pub mod model;
pub mod sinks;
pub mod sources;
pub mod store;
pub mod suggest;
pub mod telemetry;
pub mod tls;
