//! Samples: what one poll of NVML saw, as plain data, before any policy is applied.
//!
//! These types are the boundary between `nvml.rs` (the only module that talks to NVML) and the rest
//! of the exporter, so tests and benchmarks can build them by hand.

use std::sync::Arc;
use std::time::SystemTime;

/// The identity of a GPU; kept from the last good poll when the device is lost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceIdentity {
    pub index: u32,
    pub uuid: String,
    pub model: String,
    pub pci_bus_id: String,
}

/// Memory as NVML's `nvmlMemory_v2_t` reports it; `used` excludes `reserved`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Memory {
    pub total: u64,
    pub reserved: u64,
    pub free: u64,
    /// NVML's "used": what processes and contexts have allocated.
    pub allocated: u64,
}

/// One process on one GPU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessSample {
    pub pid: u32,
    pub name: String,
    /// Start time from /proc (clock ticks since boot), 0 when /proc cannot see the process. With
    /// the name it tells a reused pid from the process that had it before.
    pub start_ticks: u64,
    pub allocated: u64,
    /// The Kubernetes pod and container the process runs in (`kubernetes`); None outside
    /// Kubernetes or with attribution off.
    pub workload: Option<Arc<Workload>>,
}

/// Which Kubernetes workload a process belongs to: the pod UID and container ID from its cgroup,
/// the names from the kubelet's pod-resources API (empty when they cannot be told).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Workload {
    pub namespace: String,
    pub pod: String,
    pub container: String,
    pub pod_uid: String,
    pub container_id: String,
}

/// A container the device plugin gave a GPU (or one of its MIG devices, or a time-slicing
/// replica of it) to, as the kubelet's pod-resources API lists it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Allocation {
    pub namespace: String,
    pub pod: String,
    pub container: String,
}

/// One MIG instance of a GPU in MIG mode. Its memory is part of its parent's; it is published in
/// `vram_mig_*` families of its own so that sums over GPUs never count it twice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigSample {
    /// The MIG device's index on its parent.
    pub index: u32,
    pub uuid: String,
    /// The profile, e.g. "3g.40gb" (the MIG device name's suffix).
    pub profile: String,
    /// None when its memory query failed.
    pub memory: Option<Memory>,
}

/// One GPU in one poll.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceSample {
    pub identity: DeviceIdentity,
    /// False when NVML reports the GPU lost (or its handle cannot be had).
    pub up: bool,
    /// None when the device is down or its memory query failed.
    pub memory: Option<Memory>,
    /// Compute and graphics processes merged by pid, or why there is no list this poll.
    pub processes: ProcessList,
    /// MIG instances, when the GPU is in MIG mode.
    pub migs: Vec<MigSample>,
    /// The containers allocated this GPU or its MIG devices (`kubernetes`), sorted, each once;
    /// shared with the pod-resources list it came from (it changes only when that list does).
    pub allocations: Arc<[Allocation]>,
}

/// A device's processes in one poll: listed, not reported by this device, or a failed query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProcessList {
    /// NVML listed the processes (possibly none), largest first.
    Listed(Vec<ProcessSample>),
    /// The device does not report processes (NVML's NOT_SUPPORTED): no error, just no list.
    NotSupported,
    /// The query failed this poll; the last good list may be held for a few polls.
    Failed,
}

impl ProcessList {
    /// The processes listed this poll; none when not supported or failed.
    pub fn listed(&self) -> &[ProcessSample] {
        match self {
            ProcessList::Listed(p) => p,
            ProcessList::NotSupported | ProcessList::Failed => &[],
        }
    }
}

/// The bounded set of NVML operations named in `vram_exporter_poll_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Operation {
    Init,
    DeviceCount,
    Handle,
    Identity,
    Memory,
    Processes,
    Mig,
    /// The kubelet's pod-resources API (not NVML; counted with the poll errors).
    PodResources,
}

impl Operation {
    /// The operations that are not about one device (`gpu=""`).
    pub const SYSTEM: [Operation; 3] = [
        Operation::Init,
        Operation::DeviceCount,
        Operation::PodResources,
    ];
    /// The operations on one device.
    pub const PER_DEVICE: [Operation; 5] = [
        Operation::Handle,
        Operation::Identity,
        Operation::Memory,
        Operation::Processes,
        Operation::Mig,
    ];

    /// The `operation` label value of `vram_exporter_poll_errors_total`.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Init => "init",
            Operation::DeviceCount => "device_count",
            Operation::Handle => "handle",
            Operation::Identity => "identity",
            Operation::Memory => "memory",
            Operation::Processes => "processes",
            Operation::Mig => "mig",
            Operation::PodResources => "pod_resources",
        }
    }
}

/// A failed NVML call in one poll; `gpu` is None for calls that are not about one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PollError {
    pub gpu: Option<u32>,
    pub operation: Operation,
}

/// Everything one poll saw.
#[derive(Debug, Clone, PartialEq)]
pub struct PollSample {
    pub taken_at: SystemTime,
    /// Milliseconds on the exporter's monotonic clock, for drift buckets.
    pub monotonic_ms: u64,
    pub nvml_up: bool,
    pub driver_version: String,
    pub devices: Vec<DeviceSample>,
    pub errors: Vec<PollError>,
}
