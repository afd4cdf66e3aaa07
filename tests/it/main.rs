//! Integration tests: the real exporter binary on nvml-sim, through the real nvml-wrapper path.

mod alerting;
mod cleanup;
mod config_errors;
mod exporter;
mod golden;
mod harness;
mod status_page;
mod tls;
