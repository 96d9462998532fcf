//! Integration tests: one binary, so the crate links once. They drive the
//! real `driftwatch` binary over real HTTP and real files.

// Test code may panic on what it controls.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod admission;
mod alerts;
mod bounded;
mod cluster;
mod common;
mod context;
mod corpus;
mod crash;
mod deploy;
mod envelopes;
mod history;
mod kafka;
mod listener;
mod precision;
mod query_bounds;
mod receivers;
mod recorded;
mod redaction;
mod robustness;
mod scaleout;
mod scenarios;
mod sinks;
mod storage;
mod suggest;
mod tls;
mod webhook;
