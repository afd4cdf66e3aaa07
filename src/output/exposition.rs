//! The exposition: the public metric contract (`vram_*` families), rendered from a snapshot.
//!
//! Families are written straight from a [`Snapshot`] once per poll into one buffer (see
//! `publish`): a scrape then copies bytes, never walks state, and series of vanished processes and
//! devices disappear by construction. The families are rows of the tables in `catalogue` (and
//! `allocator`), their label sets are made once per render in `labels`, and `encoder` writes the
//! format (the exporter's self-metrics, in `telemetry`, go through it too).

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::base::input::ConfigError;
use crate::model::engine::Snapshot;

mod allocator;
mod catalogue;
mod labels;

/// The `[processes]` section: how many per-process series each GPU publishes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawProcesses {
    /// Per-process series are published for the top N processes of each GPU by allocation.
    pub max_per_gpu: usize,
}

impl Default for RawProcesses {
    fn default() -> Self {
        RawProcesses { max_per_gpu: 16 }
    }
}

impl RawProcesses {
    /// The validated top-N: it bounds the number of per-process series.
    pub fn validate(&self) -> Result<usize, ConfigError> {
        if self.max_per_gpu > 1024 {
            return Err(ConfigError::invalid(
                "processes.max_per_gpu",
                self.max_per_gpu,
                "must be at most 1024 (it bounds the number of per-process series)",
            ));
        }
        Ok(self.max_per_gpu)
    }
}

/// The domain families of one snapshot in the text exposition format.
/// `max_processes_per_gpu` bounds the per-process series of each GPU (largest first).
pub fn render(s: &Snapshot, max_processes_per_gpu: usize) -> Bytes {
    let mut out = String::with_capacity(4096 + s.gpus.len() * (2048 + max_processes_per_gpu * 400));
    let e = &mut crate::base::encoder::Encoder::new(&mut out);
    let l = labels::Labels::new(s, max_processes_per_gpu);
    let build = l.build();
    catalogue::BUILD.write(e, std::iter::once((s, build.as_str())));
    catalogue::EXPORTER.write(e, std::iter::once((s, "")));
    catalogue::GPU_INFO.write(e, labels::each(&l.gpu_infos()));
    catalogue::PER_GPU.write(e, l.gpus());
    if s.gpus.iter().any(|g| !g.migs.is_empty()) {
        let (info, memory) = l.migs();
        catalogue::MIG_INFO.write(e, labels::each(&info));
        catalogue::PER_MIG.write(e, labels::each(&memory));
    }
    if s.gpus.iter().any(|g| !g.allocations.is_empty()) {
        catalogue::ALLOCATION_INFO.write(e, labels::each(&l.allocations()));
        catalogue::ALLOCATIONS.write(e, l.gpus());
    }
    catalogue::PER_PROCESS.write(e, l.processes());
    catalogue::PROCESS_INFO.write(e, l.process_infos());
    // Allocator reports from clients (nothing when no process reports).
    allocator::PER_PROCESS.write(e, l.processes());
    allocator::PER_GPU.write(e, l.gpus());
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initial_snapshot_reports_nvml_down() {
        let bytes = render(&Snapshot::initial(), 16);
        let text = std::str::from_utf8(&bytes).unwrap();
        assert!(text.contains("vram_nvml_up 0\n"));
        assert!(!text.contains("vram_gpu_info"));
    }
}
