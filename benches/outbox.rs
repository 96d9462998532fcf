//! The cost of a network sink's durable acceptance: appending a batch of
//! rendered findings to its outbox, one fsync per batch, in a temp dir (on
//! the disk `TMPDIR` is on: the fsync dominates and depends on it), and of
//! reading a batch back. Baseline: a batch of 1 (the fsync alone).
//! `cargo bench --bench outbox -- --warm-up-time 1 --measurement-time 5`.

// A bench may panic on what it sets up itself.
#![allow(clippy::expect_used)]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use driftwatch::sinks::outbox;

/// About the size of a native finding.
const RECORD: usize = 1200;

fn append(c: &mut Criterion) {
    let mut group = c.benchmark_group("outbox_append");
    for batch in [1usize, 16, 100] {
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut writer, mut reader) = outbox::open(dir.path(), u64::MAX).expect("outbox");
        let records = vec![vec![b'x'; RECORD]; batch];
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_function(format!("batch_{batch}"), |b| {
            b.iter(|| {
                black_box(writer.append(1, &records).expect("append"));
                // Delivered at once, so that the outbox stays small.
                let pending = reader.peek(usize::MAX, usize::MAX).expect("peek");
                reader.commit(&pending).expect("commit");
            });
        });
    }
    group.finish();
}

criterion_group!(benches, append);
criterion_main!(benches);
