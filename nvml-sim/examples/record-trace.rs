//! Records a GPU memory trace in the CSV format nvml-sim's `trace` memory curves replay, so users
//! can bring their own traces: one row every `--interval-ms` with the GPU's total / used (v2) /
//! reserved bytes and one process's used bytes.
//!
//! It goes through the normal NVML library (nvml-wrapper loads `libnvidia-ml.so.1`, or `--lib`),
//! so it records a real GPU, or nvml-sim when that is the library found.
//!
//! ```text
//! cargo run -p nvml-sim --example record-trace -- --pid 12345 --interval-ms 200 --duration 60 --out job.csv
//! ```

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;
use nvml_wrapper::enums::device::UsedGpuMemory;
use nvml_wrapper::struct_wrappers::device::ProcessInfo;
use nvml_wrapper::Nvml;

/// The columns, as in `nvml-sim/scenarios/traces/h200-pytorch-phases.csv`.
const HEADER: &str =
    "t_seconds,gpu_total_bytes,gpu_used_bytes,gpu_reserved_bytes,process_used_bytes";

#[derive(Parser)]
#[command(about = "Sample a GPU's memory (and one process's) into a CSV trace for nvml-sim")]
struct Args {
    /// NVML library to load (default: libnvidia-ml.so.1 from the usual search path).
    #[arg(long)]
    lib: Option<PathBuf>,
    /// GPU index.
    #[arg(long, default_value_t = 0)]
    gpu: u32,
    /// Process whose used bytes go in `process_used_bytes` (0 while it is not listed).
    #[arg(long)]
    pid: Option<u32>,
    /// Milliseconds between samples.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..))]
    interval_ms: u64,
    /// Seconds to record (default: until interrupted; every row is flushed as it is written).
    #[arg(long)]
    duration: Option<f64>,
    /// Output file (default: standard output).
    #[arg(long)]
    out: Option<PathBuf>,
}

/// The bytes `pid` uses on the device: its compute entry, else its graphics entry, else 0.
fn process_bytes(
    lists: [Result<Vec<ProcessInfo>, nvml_wrapper::error::NvmlError>; 2],
    pid: u32,
) -> u64 {
    lists
        .into_iter()
        .flat_map(|l| l.unwrap_or_default())
        .find(|p| p.pid == pid)
        .map_or(0, |p| match p.used_gpu_memory {
            UsedGpuMemory::Used(b) => b,
            UsedGpuMemory::Unavailable => 0,
        })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    if args.duration.is_some_and(|d| !(d.is_finite() && d >= 0.0)) {
        eprintln!("record-trace: --duration must be a number of seconds >= 0");
        std::process::exit(2);
    }
    let nvml = match &args.lib {
        Some(lib) => Nvml::builder().lib_path(lib.as_os_str()).init()?,
        None => Nvml::init()?,
    };
    let device = nvml.device_by_index(args.gpu)?;
    let mut out: Box<dyn Write> = match &args.out {
        Some(path) => Box::new(BufWriter::new(File::create(path)?)),
        None => Box::new(std::io::stdout().lock()),
    };
    writeln!(out, "{HEADER}")?;
    out.flush()?;

    let interval = Duration::from_millis(args.interval_ms);
    let started = Instant::now();
    let mut next = started;
    loop {
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let elapsed = started.elapsed();
        if args.duration.is_some_and(|d| elapsed.as_secs_f64() > d) {
            break;
        }
        // The next sample is the first grid point (start + k × interval) after now: the period
        // does not drift, and a stalled recorder skips samples instead of bunching them, so the
        // millisecond times it writes always increase (as replay requires).
        let k = elapsed.as_millis() / interval.as_millis() + 1;
        next = started + Duration::from_millis((k * interval.as_millis()) as u64);
        let memory = device.memory_info()?;
        let process = args.pid.map_or(0, |pid| {
            process_bytes(
                [
                    device.running_compute_processes(),
                    device.running_graphics_processes(),
                ],
                pid,
            )
        });
        let ms = elapsed.as_millis();
        writeln!(
            out,
            "{}.{:03},{},{},{},{process}",
            ms / 1000,
            ms % 1000,
            memory.total,
            memory.used,
            memory.reserved
        )?;
        out.flush()?;
    }
    Ok(())
}
