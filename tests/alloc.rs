//! Allocations on the path of an ignored event (a read: most of a real
//! stream), counted by a counting allocator that is this test binary's
//! global allocator alone, so the other tests and the benches run on the
//! ordinary one. The path is the whole engine: decode, first verdict,
//! dedupe screen, stats; per-batch costs (the event vector, the arena) are
//! shared by the batch's 400 events.

use std::alloc::System;
use std::sync::Arc;

use bytes::Bytes;
use driftwatch::config::Config;
use driftwatch::engine::{Engine, Input};
use driftwatch::sinks::Sinks;
use driftwatch::telemetry::events::Source;
use driftwatch_testkit::synth::{self, Kind};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const BATCH: usize = 400;

/// An EventList of `BATCH` synthetic events of the kinds `pick` keeps.
fn batch(generator: &mut synth::Generator, pick: impl Fn(Kind) -> bool) -> Bytes {
    let mut items = Vec::with_capacity(BATCH);
    while items.len() < BATCH {
        let (kind, _, json) = generator.next_tagged();
        if pick(kind) {
            items.push(json);
        }
    }
    Bytes::from(format!(
        r#"{{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[{}]}}"#,
        items.join(",")
    ))
}

/// Allocations (reallocations included) per event of ingesting `body`.
fn per_event(engine: &mut Engine, body: Bytes) -> f64 {
    let input = Input::whole(body, None, Source::Webhook);
    let region = Region::new(GLOBAL);
    let outcome = engine.ingest(vec![input]);
    let change = region.change();
    assert!(
        matches!(outcome.as_slice(), [Ok(a)] if a.stats.events == BATCH as u64),
        "{outcome:?}"
    );
    drop(outcome);
    (change.allocations + change.reallocations) as f64 / BATCH as f64
}

#[test]
fn an_ignored_event_costs_at_most_two_allocations() {
    let config = Config::from_yaml(synth::POLICY_YAML, "synth policy").unwrap();
    let mut engine = Engine::new(Arc::new(config), None, Sinks::new(Vec::new())).unwrap();
    let mut generator = synth::Generator::new(synth::DEFAULT_SEED);
    // Warm: the dedupe filter and the engine's tables exist.
    per_event(&mut engine, batch(&mut generator, |k| k == Kind::Read));
    let reads = per_event(&mut engine, batch(&mut generator, |k| k == Kind::Read));
    // The counter counts: a batch of changes that are judged further
    // (diffs, records) costs more.
    let writes = per_event(&mut engine, batch(&mut generator, Kind::is_mutation));
    eprintln!("allocations per event: reads {reads:.2}, mutations {writes:.2}");
    assert!(reads <= 2.0, "{reads:.2} allocations per ignored event");
    assert!(writes > reads, "mutations {writes:.2} vs reads {reads:.2}");
}
