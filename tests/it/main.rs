//! Integration tests: the real exporter binary on nvml-sim, through the real nvml-wrapper path.

mod abuse;
mod alerting;
mod attribution;
mod attribution_bounds;
mod blind;
mod cleanup;
mod cleanup_edges;
mod cleanup_pytorch;
mod clients;
mod clients_edges;
mod config_errors;
mod config_fixtures;
mod conventions;
mod conventions_flags;
// Generated from our CRI v1 subset proto by scripts/gen-protos.sh.
#[allow(clippy::all)]
mod cri_server;
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
mod kube_fakes;
mod kubernetes;
mod leak;
mod mps;
// Generated from the vendored pod-resources proto by scripts/gen-protos.sh.
#[allow(clippy::all)]
mod podresources_server;
mod predict;
mod self_metrics;
mod status_page;
mod strict_config;
mod tls;
mod tls_reload;
mod unread;
mod web_config;
