//! The cleanup metrics: `vram_cleanups_total{gpu,uuid,action,result}` and
//! `vram_cleanup_reclaimed_bytes{gpu,uuid}`, registered in the exporter's self-metrics registry.
//!
//! They are exporter self-metrics (events the exporter caused), so they live in the `prometheus`
//! registry next to the poll counters rather than in the per-poll domain exposition. Every
//! (action, result) pair of the configured actions starts at 0 when a GPU is first seen, so
//! `increase()` in alerts works from the first failure on.

use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};

use crate::cleanup::actions::ActionResult;
use crate::cleanup::config::CleanupConfig;
use crate::engine::GpuView;

#[derive(Clone)]
pub struct CleanupMetrics {
    cleanups: IntCounterVec,
    reclaimed: IntGaugeVec,
}

impl CleanupMetrics {
    pub fn new() -> Self {
        let cleanups = IntCounterVec::new(
            Opts::new(
                "vram_cleanups_total",
                "Cleanup actions run on hard-limit breach, by GPU, action type and result (ok, failed, skipped, dry_run).",
            ),
            &["gpu", "uuid", "action", "result"],
        )
        .expect("valid counter");
        let reclaimed = IntGaugeVec::new(
            Opts::new(
                "vram_cleanup_reclaimed_bytes",
                "Memory freed on the GPU within a few polls after its last cleanup run (allocated at the run minus the lowest allocation seen since).",
            ),
            &["gpu", "uuid"],
        )
        .expect("valid gauge");
        CleanupMetrics {
            cleanups,
            reclaimed,
        }
    }

    /// Adds both families to `registry`.
    pub fn register(&self, registry: &Registry) -> prometheus::Result<()> {
        registry.register(Box::new(self.cleanups.clone()))?;
        registry.register(Box::new(self.reclaimed.clone()))
    }

    /// Creates the GPU's series at 0 for every configured action type and result.
    pub fn init_gpu(&self, gpu: &GpuView, config: &CleanupConfig) {
        let idx = gpu.identity.index.to_string();
        for action in &config.actions {
            for v in ActionResult::ALL {
                self.cleanups.with_label_values(&[
                    &idx,
                    &gpu.identity.uuid,
                    action.as_str(),
                    v.as_str(),
                ]);
            }
        }
        self.reclaimed
            .with_label_values(&[&idx, &gpu.identity.uuid])
            .set(0);
    }

    pub fn count(&self, gpu: &GpuView, action: &str, result: ActionResult) {
        self.cleanups
            .with_label_values(&[
                &gpu.identity.index.to_string(),
                &gpu.identity.uuid,
                action,
                result.as_str(),
            ])
            .inc();
    }

    pub fn set_reclaimed(&self, gpu: &GpuView, bytes: u64) {
        self.reclaimed
            .with_label_values(&[&gpu.identity.index.to_string(), &gpu.identity.uuid])
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }
}

impl Default for CleanupMetrics {
    fn default() -> Self {
        Self::new()
    }
}
