//! The validated scenario and its evaluation at a scenario time.
//!
//! Everything here is plain data plus pure functions of time, except two deliberate contacts with
//! the host: live processes look at `/proc/<pid>/stat`, and `memory_file` sources read a file. Both
//! are bounded (one small read each) so an NVML call stays cheap. The FFI layer asks this module for
//! a [`PoolSample`] and copies it into C structs; it never computes memory itself.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::faults::{CallClass, Fault, FaultKind, InitFailure};

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

/// Where a process's pid comes from.
#[derive(Debug)]
pub enum PidSource {
    /// A made-up pid; present whenever its time window says so.
    Simulated(u32),
    /// A real process; present only while it exists and is not a zombie. `start_ticks` is its
    /// start time as seen at init, so a recycled pid does not bring the entry back.
    Live {
        /// The real pid.
        pid: u32,
        /// Field 22 of `/proc/<pid>/stat` at init, if the process existed then.
        start_ticks: Option<u64>,
    },
}

impl PidSource {
    /// A live source, remembering the process's current start time.
    pub fn live(pid: u32) -> Self {
        let start_ticks = proc_stat(pid).map(|s| s.start_ticks);
        PidSource::Live { pid, start_ticks }
    }

    /// The pid reported to clients.
    pub fn pid(&self) -> u32 {
        match self {
            PidSource::Simulated(p) | PidSource::Live { pid: p, .. } => *p,
        }
    }

    /// Whether this entry follows a real process.
    pub fn is_live(&self) -> bool {
        matches!(self, PidSource::Live { .. })
    }

    fn alive(&self) -> bool {
        match self {
            PidSource::Simulated(_) => true,
            PidSource::Live { pid, start_ticks } => match (proc_stat(*pid), start_ticks) {
                (Some(s), Some(t0)) => s.state != 'Z' && s.start_ticks == *t0,
                _ => false,
            },
        }
    }
}

struct ProcStat {
    state: char,
    start_ticks: u64,
}

/// Reads the state and start time of a real process; `None` if it does not exist. Read as bytes,
/// as the real driver does: a process name may hold any byte but NUL (invalid UTF-8, `)`,
/// newlines), and such a process is still listed.
fn proc_stat(pid: u32) -> Option<ProcStat> {
    let bytes = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain anything; fields after the
    // last ')' are space separated: state is field 3, starttime field 22.
    let close = bytes.iter().rposition(|&b| b == b')')?;
    let after = String::from_utf8_lossy(&bytes[close + 1..]);
    let mut fields = after.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let start_ticks = fields.nth(18)?.parse().ok()?;
    Some(ProcStat { state, start_ticks })
}

/// A process's memory over time, or a file it rewrites.
#[derive(Debug)]
pub enum MemorySource {
    /// A function of the process's age.
    Curve(Curve),
    /// Bytes read from a file on each evaluation. A missing, empty or unparsable file yields the
    /// last good value (0 before the first good read).
    File {
        /// The file (relative paths were resolved against the scenario's directory).
        path: PathBuf,
        /// Last value read successfully.
        last_good: AtomicU64,
    },
}

impl MemorySource {
    /// A file source with no good value yet.
    pub fn file(path: PathBuf) -> Self {
        MemorySource::File {
            path,
            last_good: AtomicU64::new(0),
        }
    }

    fn bytes(&self, age: f64) -> u64 {
        match self {
            MemorySource::Curve(c) => c.at(age),
            MemorySource::File { path, last_good } => {
                let parsed = std::fs::read_to_string(path)
                    .ok()
                    .and_then(|t| crate::units::parse_size(t.trim()).ok());
                match parsed {
                    Some(v) => {
                        last_good.store(v, Ordering::Relaxed);
                        v
                    }
                    None => last_good.load(Ordering::Relaxed),
                }
            }
        }
    }
}

/// Memory as a function of the process's age (scenario seconds since its `start`).
#[derive(Debug, Clone, PartialEq)]
pub enum Curve {
    /// Always the same.
    Constant(u64),
    /// `start + rate * age`, floored at 0 and optionally capped.
    Linear {
        /// Bytes at age 0.
        start: u64,
        /// Bytes per second (may be negative).
        rate: f64,
        /// Upper bound.
        cap: Option<u64>,
    },
    /// Linear interpolation between `(age, bytes)` points; flat before the first and after the last.
    Points(Vec<(f64, u64)>),
    /// Rises linearly from `low` to `high` over `period`, then drops back to `low`.
    Sawtooth {
        /// Bytes at the start of each cycle.
        low: u64,
        /// Bytes just before the drop.
        high: u64,
        /// Cycle length in seconds.
        period: f64,
    },
    /// A recorded trace, replayed.
    Trace(Trace),
}

/// A recorded `(time, bytes)` trace replayed as a curve.
///
/// At process age `a` the trace is read at trace time `τ = offset + a × speed`. Before the first
/// row and after the last the first / last value holds; with `looped`, `τ` wraps around over
/// `[first time, last time)` instead, so the trace repeats every `last − first` trace seconds.
#[derive(Debug, Clone, PartialEq)]
pub struct Trace {
    /// `(trace seconds, bytes)`, at least one row, times strictly increasing.
    pub rows: Vec<(f64, u64)>,
    /// How values between rows are read.
    pub interpolation: Interpolation,
    /// Whether the trace repeats.
    pub looped: bool,
    /// Trace seconds per scenario second (> 0).
    pub speed: f64,
    /// Trace time at process age 0.
    pub offset: f64,
}

/// How a trace is read between two rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interpolation {
    /// A row's value holds until the next row (what a sampler saw).
    Step,
    /// Straight lines between rows.
    Linear,
}

impl Trace {
    /// Bytes at process age `age`.
    pub fn at(&self, age: f64) -> u64 {
        let (Some(first), Some(last)) = (self.rows.first(), self.rows.last()) else {
            return 0;
        };
        let mut tau = self.offset + age * self.speed;
        let span = last.0 - first.0;
        if self.looped && span > 0.0 && tau.is_finite() {
            tau = first.0 + (tau - first.0).rem_euclid(span);
        }
        if tau.is_nan() || tau <= first.0 {
            return first.1;
        }
        if tau >= last.0 {
            return last.1;
        }
        // The first row later than tau; 1..len since first.0 < tau < last.0.
        let next = self.rows.partition_point(|r| r.0 <= tau);
        let (t0, b0) = self.rows[next - 1];
        match self.interpolation {
            Interpolation::Step => b0,
            Interpolation::Linear => {
                let (t1, b1) = self.rows[next];
                let f = (tau - t0) / (t1 - t0);
                to_bytes(b0 as f64 + (b1 as f64 - b0 as f64) * f)
            }
        }
    }
}

impl Curve {
    /// Bytes at `age` seconds.
    pub fn at(&self, age: f64) -> u64 {
        let age = age.max(0.0);
        match self {
            Curve::Constant(b) => *b,
            Curve::Linear { start, rate, cap } => {
                let v = to_bytes(*start as f64 + rate * age);
                cap.map_or(v, |c| v.min(c))
            }
            Curve::Points(points) => {
                let (first, last) = match (points.first(), points.last()) {
                    (Some(f), Some(l)) => (f, l),
                    _ => return 0,
                };
                if age <= first.0 {
                    return first.1;
                }
                if age >= last.0 {
                    return last.1;
                }
                for w in points.windows(2) {
                    let ((t0, b0), (t1, b1)) = (w[0], w[1]);
                    if age <= t1 {
                        let f = (age - t0) / (t1 - t0);
                        return to_bytes(b0 as f64 + (b1 as f64 - b0 as f64) * f);
                    }
                }
                last.1
            }
            Curve::Sawtooth { low, high, period } => {
                let phase = (age % period) / period;
                to_bytes(*low as f64 + (*high as f64 - *low as f64) * phase)
            }
            Curve::Trace(trace) => trace.at(age),
        }
    }
}

fn to_bytes(v: f64) -> u64 {
    if v.is_nan() || v <= 0.0 {
        0
    } else if v >= u64::MAX as f64 {
        u64::MAX
    } else {
        v.round() as u64
    }
}

/// A process on a GPU or MIG device.
#[derive(Debug)]
pub struct Process {
    /// Its pid.
    pub pid: PidSource,
    /// Name returned by `nvmlSystemGetProcessName`.
    pub name: String,
    /// Listed by the compute-process queries.
    pub compute: bool,
    /// Listed by the graphics-process queries.
    pub graphics: bool,
    /// An MPS client: listed by the MPS compute-process queries only.
    pub mps: bool,
    /// Its memory.
    pub memory: MemorySource,
    /// Scenario time it appears.
    pub start: f64,
    /// Scenario time it disappears, if ever.
    pub stop: Option<f64>,
    /// `(gpuInstanceId, computeInstanceId)` for processes on MIG devices.
    pub instance: Option<(u32, u32)>,
}

impl Process {
    /// Whether the process is listed at scenario time `t` (time window and, if live, /proc).
    pub fn present(&self, t: f64) -> bool {
        t >= self.start && self.stop.is_none_or(|s| t < s) && self.pid.alive()
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
