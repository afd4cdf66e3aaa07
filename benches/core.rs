//! Criterion benchmarks of the exporter's own work on an 8-GPU × 32-process node, NVML excluded.
//!
//! - `poll_cycle/8x32`: one poll's policy + drift + metric update (snapshot and exposition render);
//!   the budget is ≤ 20 µs per GPU, so ≤ 160 µs here.
//! - `render/8x32`: rendering the domain exposition alone.
//! - `scrape/8x32`: what a `/metrics` request does: copy the pre-rendered text and encode the
//!   self-metrics (process collector included); budget ≤ 100 µs.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use vram_exporter::metrics::Telemetry;
use vram_exporter::sample::PollSample;

mod common;
use common::{engine, node};

fn benches(c: &mut Criterion) {
    let samples: Vec<PollSample> = (0..64).map(|i| node(8, 32, i * 1000)).collect();
    let mut e = engine(16);
    // Warm the trackers so the steady state is measured, not first sight of every process.
    for s in &samples {
        e.apply(s);
    }
    let mut i = 0usize;
    c.bench_function("poll_cycle/8x32", |b| {
        b.iter(|| {
            i = (i + 1) % samples.len();
            black_box(e.apply(black_box(&samples[i])))
        })
    });

    let snapshot = e.apply(&samples[0]);
    c.bench_function("render/8x32", |b| {
        b.iter(|| black_box(vram_exporter::metrics::render(black_box(&snapshot))))
    });

    let telemetry = Telemetry::new();
    telemetry.poll_duration.observe(0.001);
    c.bench_function("scrape/8x32", |b| {
        b.iter(|| {
            let mut body = Vec::with_capacity(snapshot.exposition.len() + 4096);
            body.extend_from_slice(&snapshot.exposition);
            telemetry.encode_into(&mut body);
            black_box(body)
        })
    });
}

criterion_group! {
    name = core;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = benches
}
criterion_main!(core);
