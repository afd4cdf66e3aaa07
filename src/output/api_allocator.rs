//! The JSON API's view of a process's allocator report (`/api/v1/gpus`, `processes[].allocator`):
//! an edge type built from a snapshot's `ProcessView`, next to `api` so that file stays small.
//!
//! Events are listed here and only here: their names and fields are free text, never labels.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::model::engine::ProcessView;
use crate::source::sample::ClientEvent;

/// What the process's own allocator reported for this GPU; null without a fresh report.
#[derive(Debug, Serialize)]
pub struct Allocator<'a> {
    /// Unix time of the report, in seconds.
    pub reported_at: f64,
    pub allocated_bytes: u64,
    pub reserved_bytes: u64,
    pub active_bytes: u64,
    pub inactive_split_bytes: u64,
    /// What `empty_cache()` can hand back: reserved less active and split blocks.
    pub reclaimable_bytes: u64,
    pub peak_reserved_bytes: u64,
    pub alloc_retries: u64,
    pub ooms: u64,
    /// NVML's bytes for the process less what the allocator reserved: CUDA context, NCCL and
    /// cuBLAS workspaces, other allocators (0 when the allocator claims more than NVML sees).
    pub non_allocator_bytes: u64,
    /// What the process said its last release handed back, in the report right after it.
    pub released_bytes: Option<u64>,
    /// The process's last few events, oldest first.
    pub events: Vec<Event<'a>>,
}

#[derive(Debug, Serialize)]
pub struct Event<'a> {
    pub at: f64,
    pub event: &'a str,
    pub fields: std::collections::BTreeMap<&'a str, &'a str>,
}

fn unix(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl<'a> Allocator<'a> {
    pub fn new(p: &'a ProcessView) -> Option<Self> {
        let a = p.allocator.as_deref()?;
        let s = &a.stats;
        Some(Allocator {
            reported_at: unix(a.reported_at),
            allocated_bytes: s.allocated,
            reserved_bytes: s.reserved,
            active_bytes: s.active,
            inactive_split_bytes: s.inactive_split,
            reclaimable_bytes: s.reclaimable(),
            peak_reserved_bytes: s.peak_reserved,
            alloc_retries: s.alloc_retries,
            ooms: s.ooms,
            non_allocator_bytes: p.allocated.saturating_sub(s.reserved),
            released_bytes: a.released,
            events: a.events.iter().map(Event::new).collect(),
        })
    }
}

impl<'a> Event<'a> {
    fn new(e: &'a ClientEvent) -> Self {
        Event {
            at: unix(e.at),
            event: &e.event,
            fields: e
                .fields
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect(),
        }
    }
}

/// One process signalled by the GPU's latest cleanup run: what its report predicted it would free
/// and what NVML saw it free (`gpus[].cleanup_reclaim`).
#[derive(Debug, Serialize)]
pub struct CleanupReclaim {
    pub pid: u32,
    /// Null when the process had no fresh allocator report.
    pub predicted_bytes: Option<u64>,
    pub measured_bytes: u64,
    /// True while the measurement window is still open.
    pub measuring: bool,
}

impl CleanupReclaim {
    pub fn list(r: &[crate::output::cleanup::reclaim::ProcessReclaim]) -> Vec<CleanupReclaim> {
        r.iter()
            .map(|p| CleanupReclaim {
                pid: p.pid,
                predicted_bytes: p.predicted,
                measured_bytes: p.measured(),
                measuring: !p.done,
            })
            .collect()
    }
}
