//! Samples: what one poll of NVML saw, as plain data, before any policy is applied.
//!
//! These types are the boundary between `nvml.rs` (the only module that talks to NVML) and the rest
//! of the exporter, so tests and benchmarks can build them by hand.

use std::sync::Arc;
use std::time::SystemTime;

use crate::base::operation::Operation;

/// The identity of a GPU; kept from the last good poll when the device is lost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceIdentity {
    pub index: u32,
    pub uuid: String,
    pub model: String,
    pub pci_bus_id: String,
    /// The device's minor number (`/dev/nvidia<minor>`), which DRA drivers name devices by.
    pub minor: Option<u32>,
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
    /// What the process's own allocator reported for this GPU (`clients`); None without a fresh
    /// report.
    pub allocator: Option<Arc<ProcessAllocator>>,
}

/// What a process's memory allocator (PyTorch's caching allocator) holds on one GPU, as the
/// process itself reported it through `vram_client`. The process's own claims: they order and
/// skip cleanup signals, never widen what an action may touch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AllocatorStats {
    /// Bytes in live tensors.
    pub allocated: u64,
    /// Bytes the allocator holds from the driver (live tensors and its cache).
    pub reserved: u64,
    /// Bytes in active blocks (live tensors and blocks awaiting a stream's use).
    pub active: u64,
    /// Bytes in free pieces of split blocks: cached but not releasable (fragmentation).
    pub inactive_split: u64,
    pub peak_reserved: u64,
    /// Allocations that failed once, freed the cache and retried (`num_alloc_retries`).
    pub alloc_retries: u64,
    /// Allocations that failed with an out-of-memory error (`num_ooms`).
    pub ooms: u64,
}

impl AllocatorStats {
    /// What `empty_cache()` can hand back: reserved memory in no active block and in no split
    /// block.
    pub fn reclaimable(&self) -> u64 {
        self.reserved
            .saturating_sub(self.active.max(self.allocated))
            .saturating_sub(self.inactive_split)
    }
}

/// An event a process annotated (`vram_client.annotate`): a name and a few fields as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientEvent {
    pub at: SystemTime,
    pub event: String,
    pub fields: Vec<(String, String)>,
}

/// A process's newest fresh allocator report for one GPU, with its latest events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessAllocator {
    pub stats: AllocatorStats,
    /// Bytes the process said its last release handed back, when its newest report followed one.
    pub released: Option<u64>,
    pub reported_at: SystemTime,
    /// The process's last few events, oldest first.
    pub events: Arc<[ClientEvent]>,
}

/// Which Kubernetes workload a process belongs to: the pod UID and container ID from its cgroup,
/// the names from the container runtime or inferred from the kubelet's pod-resources API (empty
/// when they cannot be told); `names` says which.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Workload {
    pub namespace: String,
    pub pod: String,
    pub container: String,
    pub pod_uid: String,
    pub container_id: String,
    pub names: NameSource,
}

/// Where a workload's namespace and pod name come from. Only [`NameSource::Runtime`] names may
/// decide a cleanup action; an inferred name is shown, never acted on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NameSource {
    /// No name: the pod UID alone.
    #[default]
    None,
    /// Guessed from the GPU allocation (the pod-resources API names the pod holding the GPU the
    /// process runs on): usually right, but a process of another pod on that GPU gets it too.
    Inferred,
    /// The container runtime's own record of the pod UID (CRI `ListPodSandbox`): authoritative.
    Runtime,
}

impl NameSource {
    /// The `name_source` label value and JSON field: `none`, `inferred` or `runtime`.
    pub fn as_str(self) -> &'static str {
        match self {
            NameSource::None => "none",
            NameSource::Inferred => "inferred",
            NameSource::Runtime => "runtime",
        }
    }
}

/// A container the device plugin gave a GPU (or one of its MIG devices, or a time-slicing
/// replica of it) to, as the kubelet's pod-resources API lists it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Allocation {
    pub namespace: String,
    pub pod: String,
    pub container: String,
    /// The DRA resource claim (in the pod's namespace) the device came with; empty for a device
    /// plugin's allocation.
    pub claim: String,
}

/// A GPU's allocations as published: the first ones in sorted order, up to a cap, and how many
/// more there were (a list of any length never becomes as many series).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allocations {
    pub list: Arc<[Allocation]>,
    /// Distinct allocations left out of `list`.
    pub omitted: usize,
}

impl std::ops::Deref for Allocations {
    type Target = [Allocation];

    fn deref(&self) -> &[Allocation] {
        &self.list
    }
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
    /// The containers allocated this GPU or its MIG devices (`kubernetes`), sorted, each once, at
    /// most `kubernetes::limits::MAX_ALLOCATIONS_PER_GPU`; shared with the pod-resources list it
    /// came from (it changes only when that list does).
    pub allocations: Allocations,
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
