//! Self-telemetry: the exporter's own metrics (poll duration, poll errors, cleanup counters,
//! `process_*`) in a `prometheus` crate registry, encoded at each scrape after the exposition.

use prometheus::{Encoder, Histogram, HistogramOpts, IntCounterVec, Opts, Registry, TextEncoder};

/// The exporter's self-metrics registry.
#[derive(Clone)]
pub struct Telemetry {
    pub registry: Registry,
    pub poll_duration: Histogram,
    pub poll_errors: IntCounterVec,
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
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .expect("unique");
        Telemetry {
            registry,
            poll_duration,
            poll_errors,
        }
    }

    /// Appends the self-metrics in the text format.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let families = self.registry.gather();
        if let Err(e) = TextEncoder::new().encode(&families, out) {
            tracing::error!(error = %e, "self-metrics could not be encoded");
        }
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
