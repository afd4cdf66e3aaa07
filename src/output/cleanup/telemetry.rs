//! The cleanup metrics: `vram_cleanups_total{gpu,uuid,action,result,trigger}`,
//! `vram_cleanup_reclaimed_bytes{gpu,uuid}` and `vram_cleanup_predictions_unmoved_total{gpu,uuid}`,
//! registered in the exporter's self-metrics registry.
//!
//! They are exporter self-metrics (events the exporter caused), so they live in the `prometheus`
//! registry next to the poll counters rather than in the per-poll domain exposition. Every
//! (action, result, trigger) of the configured actions starts at 0 when a GPU is first seen (the
//! `predicted` trigger only with `[cleanup.predict]`, for the actions a prediction may run), so
//! `increase()` in alerts works from the first failure on.

use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};

use crate::model::engine::GpuView;
use crate::model::policy::predict::Trigger;
use crate::output::cleanup::actions::ActionResult;
use crate::output::cleanup::config::{Action, CleanupConfig};

#[derive(Clone)]
pub struct CleanupMetrics {
    cleanups: IntCounterVec,
    reclaimed: IntGaugeVec,
    unmoved: IntCounterVec,
}

impl CleanupMetrics {
    pub fn new() -> Self {
        let cleanups = IntCounterVec::new(
            Opts::new(
                "vram_cleanups_total",
                "Cleanup actions run, by GPU, action type, result (ok, failed, skipped, dry_run) and trigger (hard: above the hard limit; predicted: before it, on the time to it).",
            ),
            &["gpu", "uuid", "action", "result", "trigger"],
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
        let unmoved = IntCounterVec::new(
            Opts::new(
                "vram_cleanup_predictions_unmoved_total",
                "Predicted-breach cleanup runs after which the GPU's time to the hard limit did not grow (the cleanup did not push the breach away).",
            ),
            &["gpu", "uuid"],
        )
        .expect("valid counter");
        CleanupMetrics {
            cleanups,
            reclaimed,
            unmoved,
        }
    }

    /// Adds both families to `registry`.
    pub fn register(&self, registry: &Registry) -> prometheus::Result<()> {
        registry.register(Box::new(self.cleanups.clone()))?;
        registry.register(Box::new(self.reclaimed.clone()))?;
        registry.register(Box::new(self.unmoved.clone()))
    }

    /// Creates the GPU's series at 0 for every configured action type, result and trigger.
    pub fn init_gpu(&self, gpu: &GpuView, config: &CleanupConfig) {
        let idx = gpu.identity.index.to_string();
        for trigger in Trigger::ALL {
            let runs = |a: &&Action| match trigger {
                Trigger::Hard => true,
                Trigger::Predicted => config
                    .predict
                    .is_some_and(|p| p.allow_kill || !a.terminates()),
            };
            for action in config.actions.iter().filter(runs) {
                for v in ActionResult::ALL {
                    self.cleanups.with_label_values(&[
                        &idx,
                        &gpu.identity.uuid,
                        action.as_str(),
                        v.as_str(),
                        trigger.as_str(),
                    ]);
                }
            }
        }
        self.reclaimed
            .with_label_values(&[&idx, &gpu.identity.uuid])
            .set(0);
        if config.predict.is_some() {
            self.unmoved.with_label_values(&[&idx, &gpu.identity.uuid]);
        }
    }

    pub fn count(&self, gpu: &GpuView, action: &str, result: ActionResult, trigger: Trigger) {
        self.cleanups
            .with_label_values(&[
                &gpu.identity.index.to_string(),
                &gpu.identity.uuid,
                action,
                result.as_str(),
                trigger.as_str(),
            ])
            .inc();
    }

    /// Counts a predicted run that did not move the GPU's time to the hard limit.
    pub fn count_unmoved(&self, gpu: &GpuView) {
        self.unmoved
            .with_label_values(&[&gpu.identity.index.to_string(), &gpu.identity.uuid])
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
