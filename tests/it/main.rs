//! Integration tests: the real exporter binary on nvml-sim, through the real nvml-wrapper path.

mod abuse;
mod alerting;
mod cleanup;
mod config_errors;
mod conventions;
mod engine;
mod exporter;
mod faults;
mod golden;
mod hardening;
mod harness;
mod hostile_input;
mod leak;
mod status_page;
mod tls;
