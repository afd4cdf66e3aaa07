//! Builders of plain data: poll samples of synthetic nodes, an engine with the default policy, and
//! published snapshots, so tests and benchmarks share one shape of input.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use vram_exporter::model::drift::LeakConfig;
use vram_exporter::model::engine::{Engine, GpuView, ProcessView, Snapshot};
use vram_exporter::model::policy::limits::{LimitSet, LimitsConfig};
use vram_exporter::model::policy::{Level, LimitSpec, Limits};
use vram_exporter::output::publish::{Published, SharedPublished};
use vram_exporter::source::sample::{
    DeviceIdentity, DeviceSample, Memory, PollSample, ProcessList, ProcessSample,
};

pub const GIB: u64 = 1 << 30;

/// The identity of simulated GPU `index`.
pub fn identity(index: u32) -> DeviceIdentity {
    DeviceIdentity {
        index,
        uuid: format!("GPU-{index:08x}-0000-0000-0000-000000000000"),
        model: "NVIDIA H100 80GB HBM3".into(),
        pci_bus_id: format!("00000000:{:02X}:00.0", index + 1),
        minor: Some(index),
    }
}

/// Memory of an 80 GiB GPU with half a GiB reserved and `allocated` in use.
pub fn memory_80g(allocated: u64) -> Memory {
    Memory {
        total: 80 * GIB,
        reserved: GIB / 2,
        free: (80 * GIB - GIB / 2).saturating_sub(allocated),
        allocated,
    }
}

/// A process as /proc could not see it (start ticks 0).
pub fn process(pid: u32, name: &str, allocated: u64) -> ProcessSample {
    ProcessSample {
        pid,
        name: name.into(),
        start_ticks: 0,
        allocated,
        workload: None,
        allocator: None,
    }
}

/// One up GPU of 80 GiB whose allocation is the sum of its processes'.
pub fn device(index: u32, processes: Vec<ProcessSample>) -> DeviceSample {
    let allocated = processes.iter().map(|p| p.allocated).sum::<u64>();
    device_with(index, allocated, processes)
}

/// One up GPU of 80 GiB with `allocated` in use (contexts and processes NVML does not list
/// included) and `processes` listed.
pub fn device_with(index: u32, allocated: u64, processes: Vec<ProcessSample>) -> DeviceSample {
    DeviceSample {
        identity: identity(index),
        up: true,
        memory: Some(memory_80g(allocated)),
        processes: ProcessList::Listed(processes),
        migs: vec![],
        allocations: Default::default(),
    }
}

/// One poll of `devices`, taken at `t_ms` on the monotonic clock.
pub fn poll(t_ms: u64, devices: Vec<DeviceSample>) -> PollSample {
    PollSample {
        taken_at: SystemTime::UNIX_EPOCH + Duration::from_millis(t_ms),
        monotonic_ms: t_ms,
        nvml_up: true,
        driver_version: "550.54.15".into(),
        devices,
        errors: vec![],
    }
}

/// One poll of `gpus` GPUs with `procs` processes each, taken at `t_ms`; allocations vary a
/// little with time so drift trackers see realistic input, and stay under an 80 GiB total.
pub fn node(gpus: u32, procs: u32, t_ms: u64) -> PollSample {
    poll(
        t_ms,
        (0..gpus)
            .map(|g| {
                let processes = (0..procs)
                    .map(|p| {
                        process(
                            5_000_000 + g * 1000 + p,
                            &format!("python worker_{p}.py"),
                            (u64::from(p % 32) + 1) * 16 * 1024 * 1024 + (t_ms % 1000) * 4096,
                        )
                    })
                    .collect();
                device(g, processes)
            })
            .collect(),
    )
}

/// The default limit set: soft 85%, hard 95%, hysteresis 2%, no overrides.
pub fn default_limits() -> LimitsConfig {
    LimitsConfig {
        default: LimitSet {
            soft: LimitSpec::Percent(85.0),
            hard: LimitSpec::Percent(95.0),
            hysteresis: LimitSpec::Percent(2.0),
        },
        overrides: vec![],
    }
}

/// An engine with the default limits and the given leak windows.
pub fn engine_with(window: Duration, floor_window: Duration) -> Engine {
    Engine::new(
        default_limits(),
        LeakConfig {
            window,
            floor_window,
        },
    )
}

/// An engine with the default configuration (15-minute leak window, 90-second floor).
pub fn engine() -> Engine {
    engine_with(Duration::from_secs(900), Duration::from_secs(90))
}

/// A published snapshot of one 80 GiB GPU at `level` (78 GiB allocated in hard, else 10 GiB)
/// with one process `pid` holding all of it.
pub fn published_one_gpu(level: Level, pid: u32, name: &str) -> SharedPublished {
    let allocated = if level == Level::Hard {
        78 * GIB
    } else {
        10 * GIB
    };
    let mut s = Snapshot::initial();
    s.taken_at = Some(SystemTime::now());
    s.nvml_up = true;
    s.ready = true;
    s.gpus = vec![GpuView {
        identity: identity(0),
        up: true,
        memory: Some(memory_80g(allocated)),
        limits: Some(Limits {
            soft: 68 * GIB,
            hard: 76 * GIB,
            hysteresis: 2 * GIB,
        }),
        level,
        soft_violations: 0,
        hard_violations: 0,
        leak_drift_bytes: 0,
        leak_rate: 0.0,
        hard_limit_eta: None,
        predicted: false,
        processes: vec![ProcessView {
            pid,
            name: name.into(),
            allocated,
            leak_drift_bytes: 0,
            leak_rate: 0.0,
            workload: None,
            allocator: None,
        }],
        migs: vec![],
        allocations: Default::default(),
    }];
    Arc::new(Published::new(s, 16))
}
