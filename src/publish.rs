//! What readers get after each poll: the engine's snapshot together with its exposition, rendered
//! once here, where the snapshot is published, so the engine renders nothing and a scrape only
//! copies bytes.

use std::sync::Arc;

use bytes::Bytes;

use crate::engine::Snapshot;
use crate::exposition;

/// One poll's result as every reader (HTTP handlers, cleanup) sees it; never mutated.
#[derive(Debug, Clone)]
pub struct Published {
    pub snapshot: Snapshot,
    /// The domain part of `/metrics` for `snapshot`.
    pub exposition: Bytes,
    /// `processes.max_per_gpu`: the processes per GPU that the exposition and the JSON API list.
    pub max_processes_per_gpu: usize,
}

/// A shared handle to the newest publication, as carried by the poller's `watch` channel.
pub type SharedPublished = Arc<Published>;

impl Published {
    /// Renders `snapshot`'s exposition with at most `max_processes_per_gpu` process series per GPU.
    pub fn new(snapshot: Snapshot, max_processes_per_gpu: usize) -> Self {
        let exposition = exposition::render(&snapshot, max_processes_per_gpu);
        Published {
            snapshot,
            exposition,
            max_processes_per_gpu,
        }
    }

    /// What readers see before the first poll: not ready, NVML not (yet) up.
    pub fn initial(max_processes_per_gpu: usize) -> Self {
        Self::new(Snapshot::initial(), max_processes_per_gpu)
    }
}
