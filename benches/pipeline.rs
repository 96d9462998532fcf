//! Throughput of one webhook batch (a 400-event `EventList` of the synthetic
//! stream of `driftwatch_testkit::synth`), against the floor set by serde_json itself:
//!
//! - `a_serde_ignored_any`: parse the bytes into `IgnoredAny` (validate, build nothing)
//! - `b_serde_value`: parse the bytes into `serde_json::Value` (a DOM)
//! - `c_decode`: `driftwatch::decode::decode_bytes`
//! - `d_decode_classify`: decode, then `Pipeline::process` (dedupe, classify,
//!   correlate, findings) under a policy that declares Argo CD and Flux, on a
//!   fresh `Pipeline` per iteration (created outside the timing) so that every
//!   iteration does the same work
//! - `e_classify_only`: (d) on a batch decoded once, outside the timing
//! - `f_steady_state_deliver`: one long-lived pipeline fed a new batch every
//!   iteration (generated outside the timing), decode + process + `deliver`
//!   to an empty sink set (findings are still serialized): dedupe and the
//!   per-resource tracker are warm, as in `serve`, without SQLite
//! - `g_decode_classify_prometheus`: (d) with the Prometheus recorder
//!   installed, as `serve` runs it; last, because the recorder is global
//!
//! Throughput is in events, so criterion reports events/s. Run with
//! `cargo bench --bench pipeline -- --warm-up-time 1 --measurement-time 5`.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use driftwatch::config::Config;
use driftwatch::decode::decode_bytes;
use driftwatch::pipeline::Pipeline;
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

fn pipeline(c: &mut Criterion) {
    let mut generator = synth::Generator::new(synth::DEFAULT_SEED);
    // Skip the first batch so the bench does not start at a cold, unusual spot.
    let _ = generator.event_list(BATCH);
    let body = generator.event_list(BATCH);
    let config =
        Arc::new(Config::from_yaml(&policy(), "synth policy").unwrap_or_else(|e| panic!("{e}")));

    // What one pass does, so the numbers can be read against the mix.
    let decoded = decode_bytes(&body);
    assert_eq!(decoded.events.len(), BATCH, "every item decodes");
    assert!(decoded.rejections.is_empty(), "{:?}", decoded.rejections);
    let batch = Pipeline::new(Arc::clone(&config)).process(&decoded, None, Source::Replay, "bench");
    let s = &batch.stats;
    eprintln!(
        "batch: {} bytes, {} events ({:.0} bytes/event); mutations {}, deduplicated {}, \
         ignored {}, system {}, sanctioned {}, drift {}, findings {}",
        body.len(),
        s.events,
        body.len() as f64 / s.events as f64,
        s.mutations,
        s.deduplicated,
        s.ignored,
        s.system,
        s.sanctioned,
        s.drift,
        s.findings_total()
    );
    drop(batch);

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
    let fresh = || Pipeline::new(Arc::clone(&config));
    group.bench_function("d_decode_classify", |b| {
        b.iter_batched(
            fresh,
            |mut p| {
                let decoded = decode_bytes(black_box(&body));
                let batch = p.process(&decoded, None, Source::Webhook, "bench");
                // Dropped outside the timing, like the pipeline.
                (p, batch)
            },
            BatchSize::PerIteration,
        )
    });
    group.bench_function("e_classify_only", |b| {
        b.iter_batched(
            fresh,
            |mut p| {
                let batch = p.process(black_box(&decoded), None, Source::Webhook, "bench");
                (p, batch)
            },
            BatchSize::PerIteration,
        )
    });
    group.bench_function("f_steady_state_deliver", |b| {
        // The default cache sizes: this pipeline lives long, like `serve`'s.
        let config =
            Config::from_yaml(synth::POLICY_YAML, "synth policy").unwrap_or_else(|e| panic!("{e}"));
        let mut p = Pipeline::new(Arc::new(config));
        let mut sinks = Sinks::new(Vec::new());
        let mut steady = synth::Generator::new(synth::DEFAULT_SEED ^ 0x5eed);
        // Warm the dedupe filter and the tracker with a minute of traffic.
        for _ in 0..600 {
            let body = steady.event_list(BATCH);
            let decoded = decode_bytes(&body);
            let batch = p.process(&decoded, None, Source::Webhook, "bench");
            if let Err(e) = p.deliver(&batch, &mut sinks) {
                panic!("deliver: {e}");
            }
        }
        b.iter_batched(
            || steady.event_list(BATCH),
            |body| {
                let decoded = decode_bytes(black_box(&body));
                let batch = p.process(&decoded, None, Source::Webhook, "bench");
                if let Err(e) = p.deliver(&batch, &mut sinks) {
                    panic!("deliver: {e}");
                }
                drop(decoded);
                (body, batch)
            },
            BatchSize::PerIteration,
        )
    });
    group.bench_function("g_decode_classify_prometheus", |b| {
        let _handle = driftwatch::telemetry::init_metrics();
        b.iter_batched(
            fresh,
            |mut p| {
                let decoded = decode_bytes(black_box(&body));
                let batch = p.process(&decoded, None, Source::Webhook, "bench");
                (p, batch)
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
