//! A minimal NVML client, the baseline for "what is ours" in the exporter's memory: it initialises
//! NVML through nvml-wrapper and runs the exporter's own poll (`nvml::NvmlSource`: the same
//! per-device and per-process queries) at the same interval, with no server, policy or metrics.
//! Whatever vram-exporter holds above this process's VmRSS / RssAnon is ours.
//!
//! `cargo build --release -p vram-bench`, then
//! `target/release/nvml-baseline [--interval 1s] [--nvml-library PATH]`; it prints one
//! line once the first poll is done and runs until killed. gpu-check and bench/compare start it.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use vram_exporter::source::nvml::NvmlSource;

fn main() -> ExitCode {
    let mut interval = Duration::from_secs(1);
    let mut library: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next();
        match (flag.as_str(), value) {
            ("--interval", Some(v)) => match humantime::parse_duration(&v) {
                Ok(d) if d >= Duration::from_millis(100) => interval = d,
                _ => return usage(&format!("--interval {v:?}: a duration of 100ms or more")),
            },
            ("--nvml-library", Some(v)) => library = Some(v.into()),
            (other, _) => return usage(&format!("unknown or incomplete argument {other:?}")),
        }
    }
    let mut source = NvmlSource::new(library, interval);
    let mut next = Instant::now();
    let mut first = true;
    loop {
        let sample = source.poll();
        if first {
            eprintln!(
                "nvml-baseline: polling {} GPU(s) every {} (NVML up: {})",
                sample.devices.len(),
                humantime::format_duration(interval),
                sample.nvml_up
            );
            first = false;
        }
        std::hint::black_box(&sample);
        next += interval;
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        } else {
            next = now;
        }
    }
}

fn usage(problem: &str) -> ExitCode {
    eprintln!(
        "nvml-baseline: {problem}\nusage: nvml-baseline [--interval 1s] [--nvml-library PATH]"
    );
    ExitCode::from(2)
}
