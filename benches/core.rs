//! Criterion benchmarks of the exporter's own work on an 8-GPU × 32-process node, NVML excluded.
//!
//! - `poll_cycle/8x32`: what the poller does with one poll besides NVML: policy + drift (the
//!   engine's snapshot) and the exposition render, as published;
//!   the budget is ≤ 20 µs per GPU, so ≤ 160 µs here.
//! - `render/8x32`: rendering the domain exposition alone.
//! - `scrape/8x32`: what a `/metrics` request does: copy the pre-rendered text and encode the
//!   self-metrics (process collector included); budget ≤ 100 µs.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use vram_exporter::publish::Published;
use vram_exporter::sample::PollSample;
use vram_exporter::telemetry::Telemetry;
use vram_testkit::builders::{engine, node};

/// Per-process series per GPU, as by default.
const TOP_N: usize = 16;

fn benches(c: &mut Criterion) {
    let samples: Vec<PollSample> = (0..64).map(|i| node(8, 32, i * 1000)).collect();
    let mut e = engine();
    // Warm the trackers so the steady state is measured, not first sight of every process.
    for s in &samples {
        e.apply(s);
    }
    let mut i = 0usize;
    c.bench_function("poll_cycle/8x32", |b| {
        b.iter(|| {
            i = (i + 1) % samples.len();
            black_box(Published::new(e.apply(black_box(&samples[i])), TOP_N))
        })
    });

    let published = Published::new(e.apply(&samples[0]), TOP_N);
    c.bench_function("render/8x32", |b| {
        b.iter(|| {
            black_box(vram_exporter::exposition::render(
                black_box(&published.snapshot),
                TOP_N,
            ))
        })
    });

    let telemetry = Telemetry::new();
    telemetry.poll_duration.observe(0.001);
    c.bench_function("scrape/8x32", |b| {
        b.iter(|| {
            let mut body = Vec::with_capacity(published.exposition.len() + 4096);
            body.extend_from_slice(&published.exposition);
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
