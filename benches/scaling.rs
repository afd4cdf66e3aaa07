//! Criterion scaling benchmark: how the exporter's own work per poll grows with the node.
//!
//! For 1, 8 and 16 GPUs × 16, 64 and 256 processes per GPU, on synthetic samples (NVML excluded):
//! - `scaling_poll/<G>gpu-x<P>proc`: `Engine::apply` and the publication — policy, leak drift for
//!   the GPU and for every process, the snapshot and the exposition render (per-process series
//!   bounded to the top 16);
//! - `scaling_render/<G>gpu-x<P>proc`: `exposition::render` of that snapshot alone.
//!
//! After measuring, it prints a Markdown table (per GPU and per GPU × process costs, to show the
//! growth is linear) and, when `VRAM_SCALING_TABLE` names a file, writes the table there for
//! `tools/bench/compare`. MIG devices are not modelled here (they add a few gauges per instance to
//! the render); the real binary on a 56-MIG-instance scenario is measured by `tools/bench/compare`.

use std::fmt::Write as _;
use std::hint::black_box;
use std::path::PathBuf;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion};
use vram_exporter::output::publish::Published;
use vram_exporter::source::sample::PollSample;
use vram_testkit::builders::{engine, node};

const GPUS: [u32; 3] = [1, 8, 16];
const PROCESSES: [u32; 3] = [16, 64, 256];
const TOP_N: usize = 16;

fn id(gpus: u32, procs: u32) -> String {
    format!("{gpus}gpu-x{procs}proc")
}

fn benches(c: &mut Criterion) {
    for gpus in GPUS {
        for procs in PROCESSES {
            let samples: Vec<PollSample> = (0..64).map(|i| node(gpus, procs, i * 1000)).collect();
            let mut e = engine();
            // Warm the trackers so the steady state is measured, not first sight of every process.
            for s in &samples {
                e.apply(s);
            }
            let mut i = 0usize;
            let mut group = c.benchmark_group("scaling_poll");
            group.bench_function(BenchmarkId::from_parameter(id(gpus, procs)), |b| {
                b.iter(|| {
                    i = (i + 1) % samples.len();
                    black_box(Published::new(e.apply(black_box(&samples[i])), TOP_N))
                })
            });
            group.finish();
            let snapshot = e.apply(&samples[0]);
            let mut group = c.benchmark_group("scaling_render");
            group.bench_function(BenchmarkId::from_parameter(id(gpus, procs)), |b| {
                b.iter(|| {
                    black_box(vram_exporter::output::exposition::render(
                        black_box(&snapshot),
                        TOP_N,
                    ))
                })
            });
            group.finish();
        }
    }
}

/// Criterion's output folder, as criterion itself picks it when run by `cargo bench`.
fn criterion_dir() -> PathBuf {
    std::env::var_os("CRITERION_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("target"))
                .join("criterion")
        })
}

/// The median estimate of one benchmark, in nanoseconds, from criterion's `estimates.json`.
fn median_ns(dir: &std::path::Path, group: &str, id: &str) -> Option<f64> {
    let text = std::fs::read_to_string(dir.join(group).join(id).join("new/estimates.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v["median"]["point_estimate"].as_f64()
}

fn table(dir: &std::path::Path) -> Option<String> {
    let mut t = String::new();
    t.push_str(
        "| GPUs × processes per GPU | poll cycle (median) | per GPU | each process beyond the first 16 | render (median) | render per GPU |\n",
    );
    t.push_str("|---|---:|---:|---:|---:|---:|\n");
    for gpus in GPUS {
        let base = median_ns(dir, "scaling_poll", &id(gpus, PROCESSES[0]))?;
        for procs in PROCESSES {
            let poll = median_ns(dir, "scaling_poll", &id(gpus, procs))?;
            let render = median_ns(dir, "scaling_render", &id(gpus, procs))?;
            // The marginal cost of one more tracked process: flat when growth is linear.
            let marginal = if procs > PROCESSES[0] {
                format!(
                    "{:.0} ns",
                    (poll - base) / f64::from(gpus * (procs - PROCESSES[0]))
                )
            } else {
                "—".to_string()
            };
            let _ = writeln!(
                t,
                "| {gpus} × {procs} | {:.1} µs | {:.2} µs | {marginal} | {:.1} µs | {:.2} µs |",
                poll / 1000.0,
                poll / 1000.0 / f64::from(gpus),
                render / 1000.0,
                render / 1000.0 / f64::from(gpus),
            );
        }
    }
    Some(t)
}

fn main() {
    let dir = criterion_dir();
    let mut c = Criterion::default()
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500))
        .sample_size(30)
        .output_directory(&dir)
        .configure_from_args();
    benches(&mut c);
    c.final_summary();
    // `cargo test --benches` / `--test` runs each benchmark once: no fresh estimates to show.
    let measuring =
        !std::env::args().any(|a| a == "--test" || a == "--list" || a == "--profile-time");
    if let Some(t) = table(&dir).filter(|_| measuring) {
        println!("\n{t}");
        if let Some(path) = std::env::var_os("VRAM_SCALING_TABLE") {
            if let Err(e) = std::fs::write(&path, &t) {
                eprintln!("cannot write {}: {e}", PathBuf::from(path).display());
            }
        }
    }
}
