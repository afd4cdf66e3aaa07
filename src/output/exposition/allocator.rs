//! The allocator families (reports from `clients`) as catalogue tables: per process (the labels
//! and top-N of `vram_process_allocated_bytes`, only processes with a fresh report) and per GPU
//! (`vram_allocator_reclaimable_bytes`, over every reporting process of the GPU). With no report
//! anywhere they have no samples and nothing is written, so an exporter without clients exposes
//! what it always did.

use super::catalogue::{Family, Header, Table, GPU_LABELS, PROCESS_LABELS};
use crate::base::encoder::{Kind, Value};
use crate::model::engine::{GpuView, ProcessView};
use crate::source::sample::AllocatorStats;

/// A figure of the process's fresh report, if it has one.
fn reported(p: &ProcessView, figure: fn(&AllocatorStats) -> u64) -> Option<Value> {
    p.allocator.as_ref().map(|a| Value::Int(figure(&a.stats)))
}

/// Per published process with a fresh report.
pub(crate) const PER_PROCESS: Table<ProcessView, 7> = Table {
    labels: PROCESS_LABELS,
    families: &[
        Family {
            name: "vram_process_allocator_allocated_bytes",
            kind: Kind::Gauge,
            help: "Memory in live tensors, as the process's allocator reports it (same processes as vram_process_allocated_bytes, those with a fresh report).",
            value: |p| reported(p, |s| s.allocated),
        },
        Family {
            name: "vram_process_allocator_reserved_bytes",
            kind: Kind::Gauge,
            help: "Memory the process's caching allocator holds from the driver: live tensors and its cache.",
            value: |p| reported(p, |s| s.reserved),
        },
        Family {
            name: "vram_process_allocator_reclaimable_bytes",
            kind: Kind::Gauge,
            help: "Cached memory the process's allocator can hand back on empty_cache(): reserved, less active blocks and split blocks.",
            value: |p| reported(p, AllocatorStats::reclaimable),
        },
        Family {
            name: "vram_process_allocator_alloc_retries_total",
            kind: Kind::Counter,
            help: "Allocations that failed, freed the allocator's cache and retried (num_alloc_retries); rising means thrashing near an OOM.",
            value: |p| reported(p, |s| s.alloc_retries),
        },
        Family {
            name: "vram_process_allocator_ooms_total",
            kind: Kind::Counter,
            help: "Allocations that failed with an out-of-memory error in the process (num_ooms).",
            value: |p| reported(p, |s| s.ooms),
        },
    ],
    header: Header::WithSamples,
};

/// Per up GPU with a reporting process.
pub(crate) const PER_GPU: Table<GpuView, 2> = Table {
    labels: GPU_LABELS,
    families: &[Family {
        name: "vram_allocator_reclaimable_bytes",
        kind: Kind::Gauge,
        help: "Cached memory the GPU's reporting processes could hand back on empty_cache(), summed over all of them.",
        value: reclaimable,
    }],
    header: Header::WithSamples,
};

/// The sum over every reporting process of the GPU (not only the published ones).
fn reclaimable(g: &GpuView) -> Option<Value> {
    let mut reports = g.processes.iter().filter_map(|p| p.allocator.as_ref());
    let first = reports.next().filter(|_| g.up)?;
    // The figures are the processes' claims: a sum of huge ones saturates, never overflows.
    let sum = reports.fold(first.stats.reclaimable(), |sum, a| {
        sum.saturating_add(a.stats.reclaimable())
    });
    Some(Value::Int(sum))
}
