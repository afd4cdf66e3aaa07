//! Integration tests: the real exporter binary on nvml-sim, through the real nvml-wrapper path.

mod abuse;
mod alerting;
mod blind;
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
mod kubernetes;
mod leak;
// Generated from the vendored pod-resources proto by scripts/gen-protos.sh.
#[allow(clippy::all)]
mod podresources_server;
mod self_metrics;
mod status_page;
mod strict_config;
mod tls;
mod unread;
