//! What cleanup knows from allocator reports: whom a signal should reach first, whom it can skip,
//! and — per process — how much a signal was predicted to free against what NVML then saw freed.
//!
//! Reports are the processes' own claims, so they only order and skip: the set of processes an
//! action may touch is decided by `targets` from NVML's list and the configuration alone, and a
//! kill never looks at a report.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use crate::model::engine::{GpuView, ProcessView};

/// What a report says a signal would free; None without a fresh report.
pub fn predicted(p: &ProcessView) -> Option<u64> {
    p.allocator.as_ref().map(|a| a.stats.reclaimable())
}

/// The order signals go in: processes reporting something to give (most first), then those
/// without a report (largest first), then those reporting nothing to give (largest first).
/// Without reports this is largest first, as it always was.
pub fn signal_order(a: &ProcessView, b: &ProcessView) -> Ordering {
    let class = |p: &ProcessView| match predicted(p) {
        Some(r) if r > 0 => (0, r),
        None => (1, p.allocated),
        Some(_) => (2, p.allocated),
    };
    let (ca, va) = class(a);
    let (cb, vb) = class(b);
    ca.cmp(&cb).then(vb.cmp(&va)).then(a.pid.cmp(&b.pid))
}

/// Whether a signal with `min_reclaimable` set may reach the process: one that reports less to
/// give is skipped; one without a report is not (nothing is known about it).
pub fn gives_enough(p: &ProcessView, min_reclaimable: u64) -> bool {
    predicted(p).is_none_or(|r| r >= min_reclaimable)
}

/// One signalled process: what its report predicted, and what NVML saw it free since.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessReclaim {
    pub pid: u32,
    /// Bytes the process's report said it could free when it was signalled (None: no report).
    pub predicted: Option<u64>,
    /// NVML's bytes for the process when it was signalled.
    pub at_signal: u64,
    /// The lowest NVML bytes since (0 once the process is gone).
    pub lowest: u64,
    /// False while the measurement window is still open.
    pub done: bool,
}

impl ProcessReclaim {
    pub fn measured(&self) -> u64 {
        self.at_signal.saturating_sub(self.lowest)
    }
}

/// The signalled processes of each GPU's latest run, by GPU UUID; read by the JSON API.
pub type ReclaimBoard = Arc<RwLock<HashMap<String, Arc<[ProcessReclaim]>>>>;

/// The processes a GPU's current run has signalled, shared between the run and the dispatcher.
#[derive(Debug, Default, Clone)]
pub struct RunReclaims(Arc<Mutex<Vec<ProcessReclaim>>>);

impl RunReclaims {
    /// Forgets the previous run.
    pub fn clear(&self) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// Records signalled pids with their predictions and current bytes.
    pub fn signalled(&self, gpu: &GpuView, pids: &[u32]) {
        let mut list = self.0.lock().unwrap_or_else(|e| e.into_inner());
        for pid in pids {
            if list.iter().any(|r| r.pid == *pid) {
                continue;
            }
            if let Some(p) = gpu.processes.iter().find(|p| p.pid == *pid) {
                list.push(ProcessReclaim {
                    pid: *pid,
                    predicted: predicted(p),
                    at_signal: p.allocated,
                    lowest: p.allocated,
                    done: false,
                });
            }
        }
    }

    /// Folds a snapshot of the GPU in; `done` closes the window. Returns the list as it stands.
    pub fn observe(&self, gpu: &GpuView, done: bool) -> Arc<[ProcessReclaim]> {
        let mut list = self.0.lock().unwrap_or_else(|e| e.into_inner());
        for r in list.iter_mut().filter(|r| !r.done) {
            let now = gpu
                .processes
                .iter()
                .find(|p| p.pid == r.pid)
                .map_or(0, |p| p.allocated);
            r.lowest = r.lowest.min(now);
            r.done = done;
        }
        list.iter().cloned().collect()
    }
}

/// "pid:bytes" pairs for an audit line ("-" for a process without a report).
pub fn audit_pairs<'a>(items: impl Iterator<Item = (u32, Option<u64>)> + 'a) -> String {
    items
        .map(|(pid, b)| match b {
            Some(b) => format!("{pid}:{b}"),
            None => format!("{pid}:-"),
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::SystemTime;

    use super::*;
    use crate::source::sample::{AllocatorStats, ProcessAllocator};

    fn p(pid: u32, allocated: u64, reclaimable: Option<u64>) -> ProcessView {
        ProcessView {
            pid,
            name: format!("p{pid}"),
            allocated,
            leak_drift_bytes: 0,
            leak_rate: 0.0,
            workload: None,
            allocator: reclaimable.map(|r| {
                Arc::new(ProcessAllocator {
                    stats: AllocatorStats {
                        allocated: 100,
                        active: 100,
                        reserved: 100 + r,
                        ..AllocatorStats::default()
                    },
                    released: None,
                    reported_at: SystemTime::UNIX_EPOCH,
                    events: Arc::new([]),
                })
            }),
        }
    }

    #[test]
    fn most_reclaimable_first_then_unreported_then_nothing_to_give() {
        let mut ps = [
            p(1, 900, Some(0)),
            p(2, 800, None),
            p(3, 100, Some(50)),
            p(4, 200, Some(70)),
            p(5, 950, None),
        ];
        ps.sort_by(signal_order);
        let order: Vec<u32> = ps.iter().map(|p| p.pid).collect();
        assert_eq!(order, [4, 3, 5, 2, 1]);
        assert!(!gives_enough(&ps[1], 60) && gives_enough(&ps[0], 60));
        assert!(gives_enough(&ps[2], u64::MAX), "no report: not skipped");
    }

    #[test]
    fn without_reports_the_order_is_largest_first() {
        let mut ps = [p(1, 10, None), p(2, 30, None), p(3, 20, None)];
        ps.sort_by(signal_order);
        assert_eq!(ps.iter().map(|p| p.pid).collect::<Vec<_>>(), [2, 3, 1]);
    }
}
