//! Integration tests: one binary, so the crate links once. They drive the
//! real `driftwatch` binary over real HTTP and real files.

mod common;
mod corpus;
mod scenarios;
mod webhook;
