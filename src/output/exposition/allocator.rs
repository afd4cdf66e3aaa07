//! The allocator families (reports from `clients`), rendered with the rest of the exposition from a snapshot: per process
//! (the labels and top-N of `vram_process_allocated_bytes`, only processes with a fresh report)
//! and per GPU (`vram_allocator_reclaimable_bytes`, over every reporting process of the GPU).
//! With no report anywhere nothing is written, so an exporter without clients exposes what it
//! always did.

use std::fmt::Write as _;

use super::{family, Labels};
use crate::model::engine::ProcessView;
use crate::source::sample::AllocatorStats;

type Figure = fn(&AllocatorStats) -> u64;

/// The per-process families: name, type, help, value.
const PROCESS_FAMILIES: [(&str, &str, &str, Figure); 5] = [
    (
        "vram_process_allocator_allocated_bytes",
        "gauge",
        "Memory in live tensors, as the process's allocator reports it (same processes as vram_process_allocated_bytes, those with a fresh report).",
        |s| s.allocated,
    ),
    (
        "vram_process_allocator_reserved_bytes",
        "gauge",
        "Memory the process's caching allocator holds from the driver: live tensors and its cache.",
        |s| s.reserved,
    ),
    (
        "vram_process_allocator_reclaimable_bytes",
        "gauge",
        "Cached memory the process's allocator can hand back on empty_cache(): reserved, less active blocks and split blocks.",
        AllocatorStats::reclaimable,
    ),
    (
        "vram_process_allocator_alloc_retries_total",
        "counter",
        "Allocations that failed, freed the allocator's cache and retried (num_alloc_retries); rising means thrashing near an OOM.",
        |s| s.alloc_retries,
    ),
    (
        "vram_process_allocator_ooms_total",
        "counter",
        "Allocations that failed with an out-of-memory error in the process (num_ooms).",
        |s| s.ooms,
    ),
];

/// Writes the allocator families of the snapshot behind `labels`.
pub(crate) fn render(w: &mut String, labels: &Labels<'_>) {
    let reported = |p: &ProcessView| p.allocator.is_some();
    let any = labels
        .s
        .gpus
        .iter()
        .zip(&labels.process)
        .any(|(g, ls)| g.processes.iter().take(ls.len()).any(reported));
    if any {
        for (name, kind, help, figure) in PROCESS_FAMILIES {
            family(w, name, kind, help);
            for (g, ls) in labels.s.gpus.iter().zip(&labels.process) {
                for (p, l) in g.processes.iter().zip(ls) {
                    if let Some(a) = &p.allocator {
                        let _ = writeln!(w, "{name}{{{l}}} {}", figure(&a.stats));
                    }
                }
            }
        }
    }
    let mut wrote_header = false;
    for (g, l) in labels.s.gpus.iter().zip(&labels.gpu) {
        if !g.up || !g.processes.iter().any(reported) {
            continue;
        }
        if !wrote_header {
            family(
                w,
                "vram_allocator_reclaimable_bytes",
                "gauge",
                "Cached memory the GPU's reporting processes could hand back on empty_cache(), summed over all of them.",
            );
            wrote_header = true;
        }
        // The figures are the processes' claims: a sum of huge ones saturates, never overflows.
        let sum = g
            .processes
            .iter()
            .filter_map(|p| p.allocator.as_ref())
            .fold(0u64, |sum, a| sum.saturating_add(a.stats.reclaimable()));
        let _ = writeln!(w, "vram_allocator_reclaimable_bytes{{{l}}} {sum}");
    }
}
