//! Integration tests: the real exporter binary on nvml-sim, through the real nvml-wrapper path.

mod alerting;
mod config_errors;
mod exporter;
mod golden;
mod harness;
