//! The newest report of each connected client, and its join with a poll's sample.
//!
//! The listener writes a [`ClientTable`] into a `watch` channel (one entry per connected,
//! identified process, so its size is bounded by the client limit); the poller thread's
//! [`Joiner`] reads it once per poll, as it reads the pod-resources list, and puts each fresh
//! report on the process NVML lists under that pid (and start time) on that GPU. A report for a
//! GPU on which NVML does not list the process is refused and counted once per report.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::watch;

use super::message::Refusal;
use super::telemetry::ClientMetrics;
use crate::source::sample::{
    AllocatorStats, ClientEvent, PollSample, ProcessAllocator, ProcessList,
};

/// How many poll or report intervals a report stays fresh.
pub const FRESH_INTERVALS: u32 = 3;

/// The newest report of every identified client, by the pid NVML lists it under.
#[derive(Debug, Clone, Default)]
pub struct ClientTable {
    pub entries: HashMap<u32, Arc<Entry>>,
}

/// One process's newest report and its latest events.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The connection that wrote it (a reconnected process replaces its old connection's entry).
    pub conn: u64,
    pub start_ticks: u64,
    /// Increases with each report, so a refusal is counted once per report.
    pub seq: u64,
    /// When the newest report arrived (None: only events so far).
    pub received: Option<(Instant, SystemTime)>,
    /// The interval the client announced.
    pub interval: Duration,
    pub devices: Vec<DeviceReport>,
    pub events: Arc<[ClientEvent]>,
}

/// One GPU's figures in a report.
#[derive(Debug, Clone)]
pub struct DeviceReport {
    pub uuid: String,
    pub stats: AllocatorStats,
    pub released: Option<u64>,
}

/// The poller's side: joins the newest reports into each sample.
pub struct Joiner {
    table: watch::Receiver<ClientTable>,
    metrics: ClientMetrics,
    /// The last report seq whose refusals were counted, per pid.
    counted: HashMap<u32, u64>,
}

impl Joiner {
    pub fn new(table: watch::Receiver<ClientTable>, metrics: ClientMetrics) -> Self {
        Joiner {
            table,
            metrics,
            counted: HashMap::new(),
        }
    }

    /// Puts each fresh report on the process it describes; `poll_interval` sets the freshness
    /// with the client's own interval (a report is stale after three of the longer of the two).
    pub fn annotate(&mut self, sample: &mut PollSample, poll_interval: Duration) {
        // Holding the channel's read lock only for a copy of at most the client limit's Arcs.
        let table = self.table.borrow().entries.clone();
        let now = Instant::now();
        let fresh = |e: &Entry| {
            e.received.is_some_and(|(at, _)| {
                now.duration_since(at) <= e.interval.max(poll_interval) * FRESH_INTERVALS
            })
        };
        // Each GPU answers to its own UUID and its MIG instances' (a job on a MIG slice reports
        // the slice; NVML lists its process on the parent), without the GPU-/MIG- prefix.
        let keys: Vec<HashSet<String>> = sample
            .devices
            .iter()
            .map(|d| {
                std::iter::once(&d.identity.uuid)
                    .chain(d.migs.iter().map(|m| &m.uuid))
                    .map(|u| uuid_key(u).to_string())
                    .collect()
            })
            .collect();
        let mut joined: HashSet<(u32, &str)> = HashSet::new();
        let mut listed_ok: HashSet<&str> = HashSet::new();
        for (dev, keys) in sample.devices.iter_mut().zip(&keys) {
            let ProcessList::Listed(procs) = &mut dev.processes else {
                continue;
            };
            listed_ok.extend(keys.iter().map(String::as_str));
            for p in procs.iter_mut() {
                let Some(e) = table.get(&p.pid).filter(|e| fresh(e)) else {
                    continue;
                };
                if p.start_ticks != 0 && p.start_ticks != e.start_ticks {
                    continue; // another process now has that pid
                }
                let Some(d) = e.devices.iter().find(|d| keys.contains(uuid_key(&d.uuid))) else {
                    continue;
                };
                joined.insert((p.pid, uuid_key(&d.uuid)));
                p.allocator = Some(Arc::new(ProcessAllocator {
                    stats: d.stats,
                    released: d.released,
                    reported_at: e.received.map_or(SystemTime::UNIX_EPOCH, |(_, at)| at),
                    events: e.events.clone(),
                }));
            }
        }
        // Count each new report's devices that no listed process on that GPU took; a GPU whose
        // process query failed this poll judges nothing.
        let known: HashSet<&str> = keys.iter().flatten().map(String::as_str).collect();
        for (pid, e) in &table {
            if !fresh(e) || self.counted.get(pid) == Some(&e.seq) {
                continue;
            }
            self.counted.insert(*pid, e.seq);
            for d in &e.devices {
                let key = uuid_key(&d.uuid);
                let judged = listed_ok.contains(key) || !known.contains(key);
                if judged && !joined.contains(&(*pid, key)) {
                    self.metrics.refused(Refusal::NotOnGpu);
                }
            }
        }
        self.counted.retain(|pid, _| table.contains_key(pid));
    }
}

/// A GPU or MIG UUID without its "GPU-" or "MIG-" prefix: CUDA (and so PyTorch) gives the bare
/// UUID and cannot tell a MIG slice's from a GPU's.
fn uuid_key(uuid: &str) -> &str {
    uuid.strip_prefix("GPU-")
        .or_else(|| uuid.strip_prefix("MIG-"))
        .unwrap_or(uuid)
}
