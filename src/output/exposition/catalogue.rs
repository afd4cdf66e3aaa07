//! The catalogue of the domain families: one table per family group (the exporter, each GPU, MIG
//! instances, allocations, processes), each giving its series' label names and, per family, the
//! name, type, help and the value read from the group's subject. Adding a family is one row;
//! `exposition::render` walks the tables in order and `encoder` writes them. The allocator
//! families' tables are in `allocator`.

use std::time::UNIX_EPOCH;

use crate::base::encoder::{Encoder, Kind, Value};
use crate::model::engine::{GpuView, ProcessView, Snapshot};
use crate::source::sample::{Allocation, Memory, MigSample};

/// One family of a table: its samples are the table's subjects for which `value` is `Some`.
pub(crate) struct Family<S> {
    pub name: &'static str,
    pub kind: Kind,
    pub help: &'static str,
    pub value: fn(&S) -> Option<Value>,
}

/// When a family's `# HELP`/`# TYPE` lines are written.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Header {
    /// Before its first sample: a family without samples is not written at all.
    WithSamples,
    /// Always, even without samples (the MIG memory families while any GPU has MIG instances).
    Always,
}

/// A family group: the label names of its series, its families in exposition order, and when
/// their headers are written.
pub(crate) struct Table<S: 'static, const N: usize> {
    pub labels: [&'static str; N],
    pub families: &'static [Family<S>],
    pub header: Header,
}

impl<S, const N: usize> Table<S, N> {
    /// Writes every family of the table over `subjects`, each with its label set (escaped, for
    /// this table's label names).
    pub fn write<'s, I>(&self, e: &mut Encoder<'_>, subjects: I)
    where
        I: Iterator<Item = (&'s S, &'s str)> + Clone,
        S: 's,
    {
        for f in self.families {
            let mut wrote_header = false;
            if self.header == Header::Always {
                e.header(f.name, f.kind, f.help);
                wrote_header = true;
            }
            for (subject, labels) in subjects.clone() {
                if let Some(v) = (f.value)(subject) {
                    if !wrote_header {
                        e.header(f.name, f.kind, f.help);
                        wrote_header = true;
                    }
                    e.sample(f.name, labels, v);
                }
            }
        }
    }
}

/// Value 1, for the info families.
fn one<S>(_: &S) -> Option<Value> {
    Some(Value::Int(1))
}

pub(crate) const GPU_LABELS: [&str; 2] = ["gpu", "uuid"];

pub(crate) const PROCESS_LABELS: [&str; 7] = [
    "gpu",
    "uuid",
    "pid",
    "process",
    "namespace",
    "pod",
    "container",
];

/// The exporter's build (with the snapshot's driver).
pub(crate) const BUILD: Table<Snapshot, 3> = Table {
    labels: ["version", "revision", "driver_version"],
    families: &[Family {
        name: "vram_exporter_build_info",
        kind: Kind::Gauge,
        help: "Build of the exporter (version, git revision) and the NVIDIA driver it talks to (value 1).",
        value: one,
    }],
    header: Header::WithSamples,
};

/// The exporter's view of NVML, unlabelled.
pub(crate) const EXPORTER: Table<Snapshot, 0> = Table {
    labels: [],
    families: &[
        Family {
            name: "vram_nvml_up",
            kind: Kind::Gauge,
            help: "Whether NVML is initialised (1) or could not be (0).",
            value: |s| Some(Value::Int(u64::from(s.nvml_up))),
        },
        Family {
            name: "vram_exporter_last_poll_timestamp_seconds",
            kind: Kind::Gauge,
            help:
                "Unix time of the last completed poll; a stale value means NVML calls are hanging.",
            value: |s| {
                let ts = s
                    .taken_at
                    .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                    .map(|d| d.as_secs_f64())
                    .unwrap_or(0.0);
                Some(Value::Millis(ts))
            },
        },
    ],
    header: Header::WithSamples,
};

/// Each GPU's identity.
pub(crate) const GPU_INFO: Table<GpuView, 4> = Table {
    labels: ["gpu", "uuid", "model", "pci_bus_id"],
    families: &[Family {
        name: "vram_gpu_info",
        kind: Kind::Gauge,
        help: "GPU identity (value 1): NVML index, UUID, model name and PCI bus id.",
        value: one,
    }],
    header: Header::WithSamples,
};

/// The memory of an up GPU: its memory families (and those read beside them) are absent
/// otherwise.
fn up_memory(g: &GpuView) -> Option<Memory> {
    g.memory.filter(|_| g.up)
}

/// Per GPU.
pub(crate) const PER_GPU: Table<GpuView, 2> = Table {
    labels: GPU_LABELS,
    families: &[
        Family {
            name: "vram_device_up",
            kind: Kind::Gauge,
            help: "Whether the GPU answers NVML (0 when lost).",
            value: |g| Some(Value::Int(u64::from(g.up))),
        },
        Family {
            name: "vram_total_bytes",
            kind: Kind::Gauge,
            help: "Total memory of the GPU.",
            value: |g| up_memory(g).map(|m| Value::Int(m.total)),
        },
        Family {
            name: "vram_allocated_bytes",
            kind: Kind::Gauge,
            help: "Memory allocated on the GPU (NVML \"used\", excluding reserved).",
            value: |g| up_memory(g).map(|m| Value::Int(m.allocated)),
        },
        Family {
            name: "vram_reserved_bytes",
            kind: Kind::Gauge,
            help: "Memory reserved by the driver and firmware, unavailable to processes.",
            value: |g| up_memory(g).map(|m| Value::Int(m.reserved)),
        },
        Family {
            name: "vram_free_bytes",
            kind: Kind::Gauge,
            help: "Memory free on the GPU.",
            value: |g| up_memory(g).map(|m| Value::Int(m.free)),
        },
        Family {
            name: "vram_soft_limit_bytes",
            kind: Kind::Gauge,
            help: "Effective soft limit (warning) of the GPU.",
            value: |g| g.limits.map(|l| Value::Int(l.soft)),
        },
        Family {
            name: "vram_hard_limit_bytes",
            kind: Kind::Gauge,
            help: "Effective hard limit (page, cleanup) of the GPU.",
            value: |g| g.limits.map(|l| Value::Int(l.hard)),
        },
        Family {
            name: "vram_pressure_level",
            kind: Kind::Gauge,
            help: "Memory pressure: 0 ok, 1 above the soft limit, 2 above the hard limit (held until usage falls below limit minus hysteresis).",
            value: |g| up_memory(g).map(|_| Value::Int(u64::from(g.level.as_u8()))),
        },
        Family {
            name: "vram_soft_limit_violations_total",
            kind: Kind::Counter,
            help: "Episodes of allocation reaching the soft limit (rising edges, with hysteresis).",
            value: |g| Some(Value::Int(g.soft_violations)),
        },
        Family {
            name: "vram_hard_limit_violations_total",
            kind: Kind::Counter,
            help: "Episodes of allocation reaching the hard limit (rising edges, with hysteresis).",
            value: |g| Some(Value::Int(g.hard_violations)),
        },
        Family {
            name: "vram_leak_drift_bytes",
            kind: Kind::Gauge,
            help: "Memory a leak has taken on the GPU: sustained growth of the allocation floor (rolling minimum) times how long it has grown, within the leak window; 0 when the floor is not growing.",
            value: |g| up_memory(g).map(|_| Value::Int(g.leak_drift_bytes)),
        },
        Family {
            name: "vram_leak_rate_bytes_per_second",
            kind: Kind::Gauge,
            help: "Sustained growth rate of the GPU's allocation floor (rolling minimum); 0 when it is not growing.",
            // Whole bytes per second: finer is noise, and integers render several times faster.
            value: |g| up_memory(g).map(|_| Value::Int(g.leak_rate.round() as u64)),
        },
        Family {
            name: "vram_hard_limit_eta_seconds",
            kind: Kind::Gauge,
            help: "Seconds until allocation reaches the hard limit at the current leak rate; 0 at or above it, absent while nothing grows.",
            value: |g| {
                g.hard_limit_eta
                    .filter(|_| g.up)
                    .map(|eta| Value::Float((eta * 10.0).round() / 10.0))
            },
        },
    ],
    header: Header::WithSamples,
};

/// Each MIG instance's identity (written while any GPU has MIG instances).
pub(crate) const MIG_INFO: Table<MigSample, 5> = Table {
    labels: ["gpu", "uuid", "mig", "mig_uuid", "profile"],
    families: &[Family {
        name: "vram_mig_info",
        kind: Kind::Gauge,
        help: "A MIG instance of a GPU in MIG mode (value 1): the parent's gpu and uuid, the MIG index, UUID and profile.",
        value: one,
    }],
    header: Header::WithSamples,
};

/// A memory figure of a MIG instance whose memory query succeeded.
fn mig_memory(m: &MigSample, figure: fn(&Memory) -> u64) -> Option<Value> {
    m.memory.as_ref().map(|mem| Value::Int(figure(mem)))
}

/// Per MIG instance (written while any GPU has MIG instances).
pub(crate) const PER_MIG: Table<MigSample, 4> = Table {
    labels: ["gpu", "uuid", "mig", "mig_uuid"],
    families: &[
        Family {
            name: "vram_mig_total_bytes",
            kind: Kind::Gauge,
            help: "Total memory of a MIG instance (part of its parent's vram_total_bytes).",
            value: |m| mig_memory(m, |mem| mem.total),
        },
        Family {
            name: "vram_mig_allocated_bytes",
            kind: Kind::Gauge,
            help: "Memory allocated in a MIG instance (part of its parent's vram_allocated_bytes).",
            value: |m| mig_memory(m, |mem| mem.allocated),
        },
        Family {
            name: "vram_mig_reserved_bytes",
            kind: Kind::Gauge,
            help: "Memory reserved in a MIG instance.",
            value: |m| mig_memory(m, |mem| mem.reserved),
        },
        Family {
            name: "vram_mig_free_bytes",
            kind: Kind::Gauge,
            help: "Memory free in a MIG instance.",
            value: |m| mig_memory(m, |mem| mem.free),
        },
    ],
    header: Header::Always,
};

/// Each allocation of a GPU (written while any GPU has allocations).
pub(crate) const ALLOCATION_INFO: Table<Allocation, 6> = Table {
    labels: ["gpu", "uuid", "namespace", "pod", "container", "claim"],
    families: &[Family {
        name: "vram_gpu_allocation_info",
        kind: Kind::Gauge,
        help: "A container the device plugin allocated the GPU, one of its MIG devices or a time-slicing replica of it to, or a DRA claim gave it (claim: the claim's name, in the pod's namespace; empty for a device plugin's allocation) (value 1), from the kubelet's pod-resources API.",
        value: one,
    }],
    header: Header::WithSamples,
};

/// Per GPU, while any GPU has allocations.
pub(crate) const ALLOCATIONS: Table<GpuView, 2> = Table {
    labels: GPU_LABELS,
    families: &[Family {
        name: "vram_gpu_allocations_omitted",
        kind: Kind::Gauge,
        help: "Allocations of the GPU left out of vram_gpu_allocation_info, which lists at most 64 per GPU.",
        value: |g| Some(Value::Int(g.allocations.omitted as u64)),
    }],
    header: Header::WithSamples,
};

/// Per published process (the top N of each up GPU).
pub(crate) const PER_PROCESS: Table<ProcessView, 7> = Table {
    labels: PROCESS_LABELS,
    families: &[
        Family {
            name: "vram_process_allocated_bytes",
            kind: Kind::Gauge,
            help: "Memory allocated by a process on the GPU (the largest processes.max_per_gpu per GPU).",
            value: |p| Some(Value::Int(p.allocated)),
        },
        Family {
            name: "vram_process_leak_drift_bytes",
            kind: Kind::Gauge,
            help: "Memory a leak has taken in a process: sustained growth of its allocation floor times how long it has grown, within the leak window (same processes as vram_process_allocated_bytes).",
            value: |p| Some(Value::Int(p.leak_drift_bytes)),
        },
        Family {
            name: "vram_process_leak_rate_bytes_per_second",
            kind: Kind::Gauge,
            help: "Sustained growth rate of a process's allocation floor; 0 when it is not growing (same processes as vram_process_allocated_bytes).",
            value: |p| Some(Value::Int(p.leak_rate.round() as u64)),
        },
    ],
    header: Header::WithSamples,
};

/// Per published process in a pod.
pub(crate) const PROCESS_INFO: Table<ProcessView, 7> = Table {
    labels: [
        "gpu",
        "uuid",
        "pid",
        "process",
        "pod_uid",
        "container_id",
        "name_source",
    ],
    families: &[Family {
        name: "vram_process_info",
        kind: Kind::Gauge,
        help: "The Kubernetes pod UID and container ID of a process in a pod (value 1), from its cgroup (same processes as vram_process_allocated_bytes); join with kube_pod_info on uid. name_source: where the process's namespace and pod labels come from (runtime, inferred from the GPU allocation, or none).",
        value: |p| p.workload.as_ref().map(|_| Value::Int(1)),
    }],
    header: Header::WithSamples,
};
