//! Criterion benchmarks of the exporter's own work on an 8-GPU × 32-process node, NVML excluded.
//!
//! - `poll_cycle/8x32`: one poll's policy + drift + metric update (snapshot and exposition render);
//!   the budget is ≤ 20 µs per GPU, so ≤ 160 µs here.
//! - `render/8x32`: rendering the domain exposition alone.
//! - `scrape/8x32`: what a `/metrics` request does: copy the pre-rendered text and encode the
//!   self-metrics (process collector included); budget ≤ 100 µs.

use std::hint::black_box;
use std::time::{Duration, SystemTime};

use criterion::{criterion_group, criterion_main, Criterion};
use vram_exporter::config::{LeakConfig, LimitSet, LimitsConfig};
use vram_exporter::metrics::Telemetry;
use vram_exporter::policy::LimitSpec;
use vram_exporter::sample::{DeviceIdentity, DeviceSample, Memory, PollSample, ProcessSample};
use vram_exporter::state::Engine;

const GIB: u64 = 1 << 30;

fn node(gpus: u32, procs: u32, t_ms: u64) -> PollSample {
    PollSample {
        taken_at: SystemTime::now(),
        monotonic_ms: t_ms,
        nvml_up: true,
        driver_version: "550.54.15".into(),
        devices: (0..gpus)
            .map(|g| {
                let processes: Vec<ProcessSample> = (0..procs)
                    .map(|p| ProcessSample {
                        pid: 5_000_000 + g * 1000 + p,
                        name: format!("worker-{p}"),
                        start_time: 0,
                        allocated: (p as u64 + 1) * 64 * 1024 * 1024 + (t_ms % 1000) * 4096,
                    })
                    .collect();
                let allocated = processes.iter().map(|p| p.allocated).sum::<u64>();
                DeviceSample {
                    identity: DeviceIdentity {
                        index: g,
                        uuid: format!("GPU-{g:08x}-0000-0000-0000-000000000000"),
                        model: "NVIDIA H100 80GB HBM3".into(),
                        pci_bus_id: format!("00000000:{:02X}:00.0", g + 1),
                    },
                    up: true,
                    memory: Some(Memory {
                        total: 80 * GIB,
                        reserved: GIB / 2,
                        free: 80 * GIB - GIB / 2 - allocated,
                        allocated,
                    }),
                    processes,
                }
            })
            .collect(),
        errors: vec![],
    }
}

fn engine() -> Engine {
    Engine::new(
        LimitsConfig {
            default: LimitSet {
                soft: LimitSpec::Percent(85.0),
                hard: LimitSpec::Percent(95.0),
                hysteresis: LimitSpec::Percent(2.0),
            },
            overrides: vec![],
        },
        LeakConfig {
            window: Duration::from_secs(900),
            floor_window: Duration::from_secs(90),
        },
        16,
    )
}

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
