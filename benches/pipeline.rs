//! Throughput of one webhook batch (a 400-event `EventList` of the synthetic
//! stream of `driftwatch_testkit::synth`), against the floor set by serde_json itself:
//!
//! - `a_serde_ignored_any`: parse the bytes into `IgnoredAny` (validate, build nothing)
//! - `b_serde_value`: parse the bytes into `serde_json::Value` (a DOM)
//! - `c_decode`: `driftwatch::decode::decode_bytes`
//! - `d_engine_fresh`: the whole engine, `Engine::ingest` of the body (decode,
//!   dedupe, classify, correlate, assemble, deliver to no sink, commit) under a
//!   policy that declares Argo CD and Flux, on a fresh engine per iteration
//!   (created outside the timing) so that every iteration does the same work
//! - `c2_prepare`: `engine::prepare`: decode and what is read ahead (first
//!   verdicts, the objects writes left, risks), the part of (d) that runs
//!   on the receiving threads, in parallel
//! - `e_judge_prepared`: (d) of an input already prepared: the part that
//!   runs on the one engine thread, which bounds throughput
//! - `f_engine_steady_state`: one long-lived engine fed a new batch every
//!   iteration (generated outside the timing): dedupe and per-object state
//!   are warm, as in `serve`, without SQLite
//! - `g_engine_fresh_prometheus`: (d) with the Prometheus recorder installed,
//!   as `serve` runs it; last, because the recorder is global
//!
//! Throughput is in events, so criterion reports events/s. Run with
//! `cargo bench --bench pipeline -- --warm-up-time 1 --measurement-time 5`.

use std::hint::black_box;
use std::sync::Arc;

use bytes::Bytes;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use driftwatch::config::Config;
use driftwatch::decode::decode_bytes;
use driftwatch::engine::{Engine, Input, Stats, prepare};
use driftwatch::model::VerdictKind;
use driftwatch::sinks::Sinks;
use driftwatch::telemetry::events::Source;
use driftwatch_testkit::synth;

const BATCH: usize = 400;

/// The pipelines of the stream, plus small caches: a fresh pipeline per
/// iteration would otherwise start from large, never-touched tables, and each
/// iteration would pay page faults that a running service does not. A batch
/// touches far fewer objects than either bound.
fn policy() -> String {
    format!(
        "{}dedupe:\n  capacity: 8192\nhistory:\n  max_tracked_objects: 8192\n",
        synth::POLICY_YAML
    )
}

fn engine(config: &Arc<Config>) -> Engine {
    Engine::new(Arc::clone(config), None, Sinks::new(Vec::new())).unwrap_or_else(|e| panic!("{e}"))
}

/// One body through the engine: decode, judge, deliver (to no sink).
fn ingest(engine: &mut Engine, body: &Bytes) -> Stats {
    let input = Input::whole(body.clone(), None, Source::Webhook);
    match engine.ingest(vec![input]).pop() {
        Some(Ok(accepted)) => accepted.stats,
        other => panic!("ingest: {other:?}"),
    }
}

fn pipeline(c: &mut Criterion) {
    let mut generator = synth::Generator::new(synth::DEFAULT_SEED);
    // Skip the first batch so the bench does not start at a cold, unusual spot.
    let _ = generator.event_list(BATCH);
    let body = Bytes::from(generator.event_list(BATCH));
    let config =
        Arc::new(Config::from_yaml(&policy(), "synth policy").unwrap_or_else(|e| panic!("{e}")));

    // What one pass does, so the numbers can be read against the mix.
    let decoded = decode_bytes(&body);
    assert_eq!(decoded.events.len(), BATCH, "every item decodes");
    assert!(decoded.rejections.is_empty(), "{:?}", decoded.rejections);
    drop(decoded);
    let s = ingest(&mut engine(&config), &body);
    eprintln!(
        "batch: {} bytes, {} events ({:.0} bytes/event); mutations {}, deduplicated {}, \
         ignored {}, system {}, sanctioned {}, drift {}, findings {}",
        body.len(),
        s.events,
        body.len() as f64 / s.events as f64,
        s.mutations(),
        s.deduplicated(),
        s.verdict(VerdictKind::Ignored),
        s.verdict(VerdictKind::System),
        s.verdict(VerdictKind::Sanctioned),
        s.verdict(VerdictKind::Drift),
        s.findings_total()
    );

    let mut group = c.benchmark_group("eventlist_400");
    group.throughput(Throughput::Elements(BATCH as u64));

    group.bench_function("a_serde_ignored_any", |b| {
        b.iter(|| serde_json::from_slice::<serde::de::IgnoredAny>(black_box(&body)).is_ok())
    });
    group.bench_function("b_serde_value", |b| {
        b.iter(|| serde_json::from_slice::<serde_json::Value>(black_box(&body)).is_ok())
    });
    group.bench_function("c_decode", |b| {
        b.iter(|| decode_bytes(black_box(&body)).events.len())
    });
    group.bench_function("c2_prepare", |b| {
        b.iter(|| {
            let input = Input::whole(body.clone(), None, Source::Webhook);
            prepare(&config, black_box(input))
        })
    });
    let fresh = || engine(&config);
    group.bench_function("e_judge_prepared", |b| {
        b.iter_batched(
            || {
                let input = Input::whole(body.clone(), None, Source::Webhook);
                (engine(&config), vec![prepare(&config, input)])
            },
            |(mut e, ready)| {
                // The inputs are freed inside the timing, as on the engine
                // thread; the engine outside it.
                let outcome = e.ingest_ready(black_box(ready));
                (e, outcome)
            },
            BatchSize::PerIteration,
        )
    });
    group.bench_function("d_engine_fresh", |b| {
        b.iter_batched(
            fresh,
            |mut e| {
                let stats = ingest(&mut e, black_box(&body));
                // Dropped outside the timing, like the service.
                (e, stats)
            },
            BatchSize::PerIteration,
        )
    });
    group.bench_function("f_engine_steady_state", |b| {
        // The default cache sizes: this engine lives long, like `serve`'s.
        let config = Arc::new(
            Config::from_yaml(synth::POLICY_YAML, "synth policy").unwrap_or_else(|e| panic!("{e}")),
        );
        let mut e = engine(&config);
        let mut steady = synth::Generator::new(synth::DEFAULT_SEED ^ 0x5eed);
        // Warm the dedupe filter and the tracker with a minute of traffic.
        for _ in 0..600 {
            ingest(&mut e, &Bytes::from(steady.event_list(BATCH)));
        }
        b.iter_batched(
            || Bytes::from(steady.event_list(BATCH)),
            |body| {
                let stats = ingest(&mut e, black_box(&body));
                (body, stats)
            },
            BatchSize::PerIteration,
        )
    });
    group.bench_function("g_engine_fresh_prometheus", |b| {
        let _handle = driftwatch::telemetry::init_metrics();
        b.iter_batched(
            fresh,
            |mut e| {
                let stats = ingest(&mut e, black_box(&body));
                (e, stats)
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
