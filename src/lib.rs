//! driftwatch watches the Kubernetes API server audit log and flags every
//! change made outside the sanctioned deployment pipeline: who changed what,
//! when, and which fields.
//!
//! ```text
//! sources ──► decode ──► dedupe ──► classify ──► correlate ──► sinks
//! (webhook,   (Event,    (cluster,  (policy:     (field        (stdout,
//!  replay)     EventList, auditID,   verdict,     changes)      file)
//!              lines)     stage…)    severity)
//! ```
//!
//! Each stage is a module with one job; [`pipeline`] strings them together
//! for every source, and [`app`] wires the service.

pub mod api;
pub mod app;
pub mod classify;
pub mod cli;
pub mod config;
pub mod correlate;
pub mod decode;
pub mod dedupe;
pub mod forensics;
pub mod http;
pub mod pipeline;
pub mod sinks;
pub mod sources;
pub mod store;
pub mod telemetry;
pub mod worker;
