//! Integration tests: the real exporter binary on nvml-sim, through the real nvml-wrapper path.

mod abuse;
mod alerting;
mod cleanup;
mod config_errors;
mod conventions;
mod demo;
mod engine;
mod exporter;
mod faults;
mod forecast;
mod golden;
mod hardening;
mod harness;
mod history;
mod history_fold;
mod hostile_input;
mod kubernetes;
mod leak;
// Generated from the vendored pod-resources proto by scripts/gen-protos.sh.
#[allow(clippy::all)]
mod podresources_server;
mod predict;
mod status_page;
mod tls;
