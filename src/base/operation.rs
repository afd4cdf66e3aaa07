//! The bounded set of operations whose failures `vram_exporter_poll_errors_total` counts: label
//! values every stage may name (the NVML source, the Kubernetes readers, the self-metrics).

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
    /// The container runtime's CRI runtime service (not NVML; counted with the poll errors).
    Runtime,
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
            Operation::Runtime => "runtime",
        }
    }
}
