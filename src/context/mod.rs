//! Live-object context: what the Kubernetes API says about a changed object
//! when the audit event does not (`Metadata` level logs no bodies).
//!
//! correlate -> **context** -> store/sinks. For drift and sanctioned
//! records only, after judging: the object's metadata
//! (`PartialObjectMetadata`: labels, annotations, ownerReferences,
//! managedFields) through an LRU cache with TTLs and negative entries, a
//! concurrency limit, one deadline per group of batches and a circuit
//! breaker per cluster. A lookup that fails or is late leaves the finding as
//! it was, marked `unavailable`.
//!
//! - [`client`]: one client per cluster name, the metadata fetch.
//! - [`cache`]: the answers, 404 and 403 included.
//! - [`breaker`]: per cluster, no lookups while its API server is not
//!   answering (`circuit_open`), one probe after a cooldown.
//! - [`enrich`]: the [`Enricher`] the engine calls.
//! - [`apply`]: `managed_by`, owner roll-up, `field_managers`, `changes`.
//! - [`fields`]: managedFields' FieldsV1 as change paths.
//! - [`inventory`]: Argo CD and Flux pipeline objects, watched, for
//!   objects without markers and for the pipeline's source.
//! - [`live`]: the live values of an unclosed drift's fields, asked for
//!   through the query API (`?live=true`), sharing the clients and breakers.

mod apply;
mod breaker;
mod cache;
pub mod client;
mod enrich;
mod fields;
pub mod inventory;
pub mod live;
mod meta;

pub use client::{Clients, ContextError};
pub use enrich::Enricher;
pub use inventory::Inventories;
pub use live::Live;
