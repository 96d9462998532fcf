//! What driftwatch's integration tests, benches and examples share.
//!
//! - [`addons`]: one hour of a 20-node cluster's add-on traffic (leader
//!   locks, status writes, scrapes) with labelled attacks, for measuring noise.
//! - [`synth`]: a synthetic, deterministic audit stream shaped like a real
//!   cluster's, for the pipeline bench, the load generator and the Kafka
//!   throughput run.
//! - [`crash`]: the SIGKILL harness of the crash test and the crash soak:
//!   client threads streaming webhook batches, the kill, the restart, the
//!   retries, and the check of the store against the acknowledgements.
//! - [`gojson`]: JSON written the way Go's `encoding/json` writes it, as the
//!   API server's audit backends do.
//! - [`ocsf`]: OCSF documents checked against the shipped schema subset.
//! - [`rng`]: seeded, portable randomness.
//! - [`serve`]: `driftwatch serve` as a child process, its logs drained.
//! - [`time`]: audit timestamps (RFC 3339 in UTC with microseconds).
//!
//! It generates bytes and drives the `driftwatch` binary over HTTP; it does
//! not link the driftwatch library.

// Test code may panic on what it controls.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod addons;
pub mod crash;
pub mod gojson;
pub mod ocsf;
pub mod rng;
pub mod serve;
pub mod synth;
pub mod time;

/// An HTTP client builder: reqwest is built without a crypto provider of
/// its own, so ring is installed as the process's first.
pub fn client_builder() -> reqwest::ClientBuilder {
    // Fails only when a provider is installed already, which is the goal.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
}
