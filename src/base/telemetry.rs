//! Self-telemetry: the exporter's own metrics (poll duration, poll errors, cleanup counters,
//! `process_*` with exact CPU seconds, dropped log lines, component supervision) in a
//! `prometheus` crate registry, gathered at each scrape and written after the exposition by the
//! exposition's encoder (`text`). Every labelled
//! counter has its series at 0 from the start (or from the first poll that sees its GPU), so
//! `increase()` sees the first error.

mod read_at_scrape;
mod text;

pub use read_at_scrape::cpu_seconds;

use prometheus::{Histogram, HistogramOpts, IntCounterVec, Opts, Registry};

use crate::base::operation::Operation;
use crate::base::supervise::ComponentMetrics;

/// The exporter's self-metrics registry.
#[derive(Clone)]
pub struct Telemetry {
    pub registry: Registry,
    pub poll_duration: Histogram,
    pub poll_errors: IntCounterVec,
    pub components: ComponentMetrics,
}

impl Telemetry {
    pub fn new() -> Self {
        let registry = Registry::new();
        let poll_duration = Histogram::with_opts(
            HistogramOpts::new(
                "vram_exporter_poll_duration_seconds",
                "Time one poll of every GPU took, NVML calls included.",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0,
            ]),
        )
        .expect("valid histogram");
        let poll_errors = IntCounterVec::new(
            Opts::new(
                "vram_exporter_poll_errors_total",
                "NVML calls that failed during polls, by GPU index (empty for system calls) and operation.",
            ),
            &["gpu", "operation"],
        )
        .expect("valid counter");
        registry
            .register(Box::new(poll_duration.clone()))
            .expect("unique");
        registry
            .register(Box::new(poll_errors.clone()))
            .expect("unique");
        #[cfg(target_os = "linux")]
        registry
            .register(Box::new(read_at_scrape::ExactProcess::for_self()))
            .expect("unique");
        registry
            .register(Box::new(
                read_at_scrape::ReadCounter::new(
                    "vram_exporter_log_lines_dropped_total",
                    "Log lines dropped because stderr was closed, full or not read fast enough (the log queue was full).",
                    crate::base::logging::sink::dropped,
                )
                .expect("valid counter"),
            ))
            .expect("unique");
        for op in Operation::SYSTEM {
            poll_errors.with_label_values(&["", op.as_str()]);
        }
        let components = ComponentMetrics::new(&registry).expect("unique");
        Telemetry {
            registry,
            poll_duration,
            poll_errors,
            components,
        }
    }

    /// Creates GPU `gpu`'s poll-error series at 0 for every per-device operation.
    pub fn init_gpu_errors(&self, gpu: u32) {
        let gpu = gpu.to_string();
        for op in Operation::PER_DEVICE {
            self.poll_errors
                .with_label_values(&[gpu.as_str(), op.as_str()]);
        }
    }

    /// Appends the self-metrics in the text format.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let mut text = String::with_capacity(8192);
        text::write(&mut text, &self.registry.gather());
        out.extend_from_slice(text.as_bytes());
    }
}

impl Default for Telemetry {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_metrics_encode() {
        let t = Telemetry::new();
        t.poll_errors.with_label_values(&["0", "memory"]).inc();
        let mut out = Vec::new();
        t.encode_into(&mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("vram_exporter_poll_errors_total{gpu=\"0\",operation=\"memory\"} 1"));
        assert!(text.contains("# HELP vram_exporter_poll_duration_seconds"));
    }
}
