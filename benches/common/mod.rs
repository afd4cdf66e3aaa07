//! Synthetic nodes shared by the criterion benchmarks: poll samples of G GPUs × P processes and an
//! engine with the default policy, so every benchmark measures the same shape of input.

use std::time::{Duration, SystemTime};

use vram_exporter::config::{LeakConfig, LimitSet, LimitsConfig};
use vram_exporter::policy::LimitSpec;
use vram_exporter::sample::{DeviceIdentity, DeviceSample, Memory, PollSample, ProcessSample};
use vram_exporter::state::Engine;

pub const GIB: u64 = 1 << 30;

/// One poll of `gpus` GPUs with `procs` processes each, taken at `t_ms`; allocations vary a
/// little with time so drift trackers see realistic input, and stay under an 80 GiB total.
pub fn node(gpus: u32, procs: u32, t_ms: u64) -> PollSample {
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
                        name: format!("python worker_{p}.py"),
                        start_time: 0,
                        allocated: (u64::from(p % 32) + 1) * 16 * 1024 * 1024
                            + (t_ms % 1000) * 4096,
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
                    migs: vec![],
                }
            })
            .collect(),
        errors: vec![],
    }
}

pub fn engine(top_n: usize) -> Engine {
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
        top_n,
    )
}
