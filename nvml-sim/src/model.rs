//! The validated scenario and its evaluation at a scenario time.
//!
//! Everything here is plain data plus pure functions of time, except two deliberate contacts with
//! the host: live processes look at `/proc/<pid>/stat`, and `memory_file` sources read a file. Both
//! are bounded (one small read each) so an NVML call stays cheap. The FFI layer asks this module for
//! a [`PoolSample`] and copies it into C structs; it never computes memory itself. The processes
//! (pid sources, memory curves and traces) are in `model/process.rs`.

use std::path::PathBuf;
use std::time::Duration;

use crate::faults::{CallClass, Fault, FaultKind, InitFailure};

mod process;
pub use process::{Curve, Interpolation, MemorySource, PidSource, Process, Trace};

/// A loaded scenario.
#[derive(Debug)]
pub struct Scenario {
    /// Where it was read from (used in messages).
    pub path: PathBuf,
    /// `nvmlSystemGetDriverVersion`.
    pub driver_version: String,
    /// `nvmlSystemGetNVMLVersion`.
    pub nvml_version: String,
    /// `nvmlSystemGetCudaDriverVersion`, e.g. 12040 for CUDA 12.4.
    pub cuda_driver_version: i32,
    /// Scenario seconds per wall-clock second.
    pub speed: f64,
    /// When set, scenario time wraps around after this many scenario seconds.
    pub loop_period: Option<f64>,
    /// Physical GPUs, in index order.
    pub devices: Vec<Device>,
    /// Scheduled per-call faults.
    pub faults: Vec<Fault>,
    /// Failing init attempts, if configured.
    pub init_failure: Option<InitFailure>,
}

/// A physical GPU.
#[derive(Debug)]
pub struct Device {
    /// Marketing name, e.g. `NVIDIA A100-SXM4-80GB`.
    pub name: String,
    /// `GPU-...` identifier.
    pub uuid: String,
    /// PCI location.
    pub pci: PciAddress,
    /// Combined device/vendor id (`0x20B210DE`).
    pub pci_device_id: u32,
    /// Combined subsystem id.
    pub pci_subsystem_id: u32,
    /// Constant GPU utilization in percent.
    pub gpu_utilization: u32,
    /// Constant memory-controller utilization in percent.
    pub memory_utilization: u32,
    /// Constant temperature in degrees C.
    pub temperature: u32,
    /// Whether MIG queries are supported at all.
    pub mig_capable: bool,
    /// MIG devices; MIG mode is enabled when this is not empty.
    pub migs: Vec<MigDevice>,
    /// The GPU's own memory and processes (outside MIG devices).
    pub pool: MemoryPool,
}

/// A MIG device (GPU instance + compute instance) on a physical GPU.
#[derive(Debug)]
pub struct MigDevice {
    /// Name, e.g. `NVIDIA A100-SXM4-80GB MIG 3g.40gb`.
    pub name: String,
    /// `MIG-...` identifier.
    pub uuid: String,
    /// GPU instance id reported for the device and its processes.
    pub gpu_instance_id: u32,
    /// Compute instance id reported for the device and its processes.
    pub compute_instance_id: u32,
    /// The slice's memory and processes.
    pub pool: MemoryPool,
}

/// Memory that processes draw from: a whole GPU or one MIG slice.
#[derive(Debug)]
pub struct MemoryPool {
    /// Total bytes.
    pub total: u64,
    /// Bytes reserved by the driver/firmware (never usable).
    pub reserved: u64,
    /// Bytes used by the driver context whatever the processes do.
    pub overhead: u64,
    /// Processes drawing from this pool.
    pub processes: Vec<Process>,
}

/// A PCI address `domain:bus:device.function`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PciAddress {
    /// PCI domain.
    pub domain: u32,
    /// Bus number.
    pub bus: u32,
    /// Device number.
    pub device: u32,
    /// Function number.
    pub function: u32,
}

impl PciAddress {
    /// Parses `DDDD:BB:DD.F` or `DDDDDDDD:BB:DD.F` (hex).
    pub fn parse(s: &str) -> Result<Self, String> {
        let bad = || format!("expected a PCI bus id like \"00000000:07:00.0\", got {s:?}");
        let (domain, rest) = s.split_once(':').ok_or_else(bad)?;
        let (bus, rest) = rest.split_once(':').ok_or_else(bad)?;
        let (device, function) = rest.split_once('.').ok_or_else(bad)?;
        let hex = |t: &str, max: u32| {
            u32::from_str_radix(t, 16)
                .ok()
                .filter(|v| *v <= max && !t.is_empty())
                .ok_or_else(bad)
        };
        Ok(PciAddress {
            domain: hex(domain, u32::MAX)?,
            bus: hex(bus, 0xFF)?,
            device: hex(device, 0x1F)?,
            function: hex(function, 0x7)?,
        })
    }

    /// The 8-digit-domain form NVML puts in `busId`.
    pub fn bus_id(&self) -> String {
        format!(
            "{:08X}:{:02X}:{:02X}.{:X}",
            self.domain, self.bus, self.device, self.function
        )
    }

    /// The 4-digit-domain form NVML puts in `busIdLegacy`.
    pub fn bus_id_legacy(&self) -> String {
        format!(
            "{:04X}:{:02X}:{:02X}.{:X}",
            self.domain & 0xFFFF,
            self.bus,
            self.device,
            self.function
        )
    }
}

/// One process as a client sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcSample {
    /// pid.
    pub pid: u32,
    /// Used bytes.
    pub bytes: u64,
    /// Listed as compute.
    pub compute: bool,
    /// Listed as graphics.
    pub graphics: bool,
    /// Listed as an MPS client.
    pub mps: bool,
    /// GPU instance id, `u32::MAX` when not on a MIG device.
    pub gpu_instance_id: u32,
    /// Compute instance id, `u32::MAX` when not on a MIG device.
    pub compute_instance_id: u32,
}

/// Memory of a pool at one instant. Always `used + reserved + free == total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemSample {
    /// Total bytes.
    pub total: u64,
    /// Reserved bytes.
    pub reserved: u64,
    /// Used bytes, excluding reserved (the v2 meaning).
    pub used: u64,
    /// Free bytes.
    pub free: u64,
}

/// Memory plus processes of a pool at one instant.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolSample {
    /// Memory.
    pub memory: MemSample,
    /// Processes present, in scenario order.
    pub processes: Vec<ProcSample>,
}

impl MemoryPool {
    fn processes_at(&self, t: f64, out: &mut Vec<ProcSample>) -> u64 {
        let mut sum = 0u64;
        for p in &self.processes {
            if !p.present(t) {
                continue;
            }
            let bytes = p.memory.bytes(t - p.start);
            sum = sum.saturating_add(bytes);
            let (gi, ci) = p.instance.unwrap_or((u32::MAX, u32::MAX));
            out.push(ProcSample {
                pid: p.pid.pid(),
                bytes,
                compute: p.compute,
                graphics: p.graphics,
                mps: p.mps,
                gpu_instance_id: gi,
                compute_instance_id: ci,
            });
        }
        sum
    }

    fn memory(&self, demand: u64) -> MemSample {
        let usable = self.total - self.reserved;
        let used = demand.min(usable);
        MemSample {
            total: self.total,
            reserved: self.reserved,
            used,
            free: usable - used,
        }
    }

    /// This pool alone at scenario time `t`.
    pub fn sample(&self, t: f64) -> PoolSample {
        let mut processes = Vec::new();
        let sum = self.processes_at(t, &mut processes);
        PoolSample {
            memory: self.memory(sum.saturating_add(self.overhead)),
            processes,
        }
    }
}

impl Device {
    /// The whole GPU at scenario time `t`: its own processes plus every MIG device's, and its used
    /// memory includes each MIG device's used and reserved bytes.
    pub fn sample(&self, t: f64) -> PoolSample {
        let mut processes = Vec::new();
        let mut demand = self
            .pool
            .processes_at(t, &mut processes)
            .saturating_add(self.pool.overhead);
        for m in &self.migs {
            let s = m.pool.sample(t);
            demand = demand.saturating_add(s.memory.used + s.memory.reserved);
            processes.extend(s.processes);
        }
        PoolSample {
            memory: self.pool.memory(demand),
            processes,
        }
    }
}

impl Scenario {
    /// The name of `pid` if some device lists it at time `t`.
    pub fn process_name(&self, pid: u32, t: f64) -> Option<&str> {
        self.devices
            .iter()
            .flat_map(|d| {
                d.pool
                    .processes
                    .iter()
                    .chain(d.migs.iter().flat_map(|m| m.pool.processes.iter()))
            })
            .find(|p| p.pid.pid() == pid && p.present(t))
            .map(|p| p.name.as_str())
    }
}

/// The fault questions the FFI layer asks before doing the work of a call.
impl Scenario {
    fn active(&self, device: Option<usize>, t: f64) -> impl Iterator<Item = &Fault> {
        self.faults.iter().filter(move |f| {
            f.window.contains(t) && (f.device.is_none() || device.is_none() || f.device == device)
        })
    }

    /// Whether a driver reset happened after a session initialised at `init_t` and by `t`.
    pub fn reset_since(&self, init_t: f64, t: f64) -> bool {
        self.faults.iter().any(|f| {
            f.kind == FaultKind::DriverReset && f.window.from > init_t && f.window.from <= t
        })
    }

    /// Whether device `index` is lost at `t`.
    pub fn device_lost(&self, index: usize, t: f64) -> bool {
        self.active(Some(index), t)
            .any(|f| f.device.is_some() && f.kind == FaultKind::DeviceLost)
    }

    /// Whether process queries on device `index` are unsupported at `t`.
    pub fn processes_unsupported(&self, index: usize, t: f64) -> bool {
        self.active(Some(index), t)
            .any(|f| f.kind == FaultKind::ProcessesNotSupported)
    }

    /// Total injected delay for a call of class `call` on `device` (or a device-less call).
    pub fn latency(&self, call: CallClass, device: Option<usize>, t: f64) -> Duration {
        self.active(device, t)
            .filter(|f| device.is_some() || f.device.is_none())
            .filter_map(|f| match &f.kind {
                FaultKind::Latency { delay, calls } if CallClass::matches(calls, call) => {
                    Some(*delay)
                }
                _ => None,
            })
            .sum()
    }

    /// Extra processes a fill call on `device` sees at `t`.
    pub fn churn(&self, index: usize, t: f64) -> u32 {
        self.active(Some(index), t)
            .filter_map(|f| match f.kind {
                FaultKind::ProcessChurn { extra } => Some(extra),
                _ => None,
            })
            .fold(0u32, u32::saturating_add)
    }

    /// Whether a call of class `call` on `device` hits an injected internal error at `t`.
    pub fn internal_error(&self, call: CallClass, device: Option<usize>, t: f64) -> bool {
        self.active(device, t)
            .filter(|f| device.is_some() || f.device.is_none())
            .any(|f| matches!(&f.kind, FaultKind::InternalError { calls } if CallClass::matches(calls, call)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn curves() {
        assert_eq!(Curve::Constant(7).at(100.0), 7);
        let lin = Curve::Linear {
            start: 100,
            rate: 10.0,
            cap: Some(150),
        };
        assert_eq!(lin.at(0.0), 100);
        assert_eq!(lin.at(2.5), 125);
        assert_eq!(lin.at(60.0), 150);
        let down = Curve::Linear {
            start: 100,
            rate: -10.0,
            cap: None,
        };
        assert_eq!(down.at(50.0), 0);
        let pts = Curve::Points(vec![(10.0, 100), (20.0, 300), (30.0, 0)]);
        assert_eq!(pts.at(0.0), 100);
        assert_eq!(pts.at(15.0), 200);
        assert_eq!(pts.at(25.0), 150);
        assert_eq!(pts.at(99.0), 0);
        let saw = Curve::Sawtooth {
            low: 0,
            high: 100,
            period: 10.0,
        };
        assert_eq!(saw.at(5.0), 50);
        assert_eq!(saw.at(10.0), 0);
        assert_eq!(saw.at(19.0), 90);
    }

    #[test]
    fn trace_steps_interpolates_and_loops() {
        let mut trace = Trace {
            rows: vec![(-1.0, 10), (0.0, 100), (2.0, 300), (4.0, 0)],
            interpolation: Interpolation::Step,
            looped: false,
            speed: 1.0,
            offset: 0.0,
        };
        assert_eq!(trace.at(0.0), 100);
        assert_eq!(trace.at(1.9), 100);
        assert_eq!(trace.at(2.0), 300);
        assert_eq!(trace.at(99.0), 0);
        assert_eq!(trace.at(f64::MAX), 0);
        trace.interpolation = Interpolation::Linear;
        assert_eq!(trace.at(1.0), 200);
        assert_eq!(trace.at(3.0), 150);
        trace.offset = -1.0;
        assert_eq!(trace.at(0.5), 55);
        trace.speed = 10.0;
        trace.offset = 0.0;
        assert_eq!(trace.at(0.1), 200);
        trace.looped = true;
        // Span 5 s: age 0.6 -> tau 6 -> 1 s into the second pass.
        assert_eq!(trace.at(0.6), 200);
        assert_eq!(trace.at(0.45), 55);
        assert_eq!(trace.at(f64::MAX), 0);
    }

    fn proc(pid: u32, bytes: u64, start: f64, stop: Option<f64>) -> Process {
        Process {
            pid: PidSource::Simulated(pid),
            name: format!("p{pid}"),
            compute: true,
            graphics: false,
            mps: false,
            memory: MemorySource::Curve(Curve::Constant(bytes)),
            start,
            stop,
            instance: None,
        }
    }

    #[test]
    fn pool_memory_adds_up_and_clamps() {
        let pool = MemoryPool {
            total: 1000,
            reserved: 100,
            overhead: 50,
            processes: vec![proc(1, 300, 0.0, None), proc(2, 900, 10.0, Some(20.0))],
        };
        let s = pool.sample(5.0);
        assert_eq!(s.memory.used, 350);
        assert_eq!(s.memory.free, 550);
        assert_eq!(s.processes.len(), 1);
        let s = pool.sample(15.0);
        assert_eq!(s.memory.used, 900);
        assert_eq!(s.memory.free, 0);
        assert_eq!(
            s.memory.used + s.memory.reserved + s.memory.free,
            s.memory.total
        );
        assert_eq!(pool.sample(20.0).processes.len(), 1);
    }

    #[test]
    fn pci_address_parses_and_formats() {
        let a = PciAddress::parse("0000:3b:00.0").unwrap();
        assert_eq!(a.bus, 0x3b);
        assert_eq!(a.bus_id(), "00000000:3B:00.0");
        assert_eq!(a.bus_id_legacy(), "0000:3B:00.0");
        assert!(PciAddress::parse("3b:00.0").is_err());
        assert!(PciAddress::parse("0000:3b:40.0").is_err());
    }

    #[test]
    fn live_pid_tracks_real_process() {
        let me = PidSource::live(std::process::id());
        assert!(me.alive());
        // pid_max on Linux is at most 4194304, so this pid cannot exist.
        let ghost = PidSource::live(4_194_305);
        assert!(!ghost.alive());
    }

    #[test]
    fn memory_file_keeps_last_good_value() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mem");
        let src = MemorySource::file(path.clone());
        assert_eq!(src.bytes(0.0), 0);
        std::fs::write(&path, "1GiB\n").unwrap();
        assert_eq!(src.bytes(0.0), 1 << 30);
        std::fs::write(&path, "garbage").unwrap();
        assert_eq!(src.bytes(0.0), 1 << 30);
        std::fs::write(&path, "4096").unwrap();
        assert_eq!(src.bytes(0.0), 4096);
    }
}
