//! Command-line flags, spelled as in the node_exporter family (`--web.listen-address`,
//! `--web.telemetry-path`, `--log.level`, `--log.format`; the older spellings stay as aliases).
//! Flags are the last configuration layer; see `config/mod.rs` for the others.

use std::path::PathBuf;

use clap::Parser;

use crate::base::logging::LogFormat;

/// Watches VRAM on every NVIDIA GPU, enforces soft/hard limits and serves Prometheus metrics.
#[derive(Debug, Parser)]
#[command(
    name = "vram-exporter",
    version,
    long_version = crate::base::build_info::LONG_VERSION,
    about
)]
pub struct Cli {
    /// Configuration file (TOML or YAML, by extension).
    #[arg(long, value_name = "FILE", visible_alias = "config.file")]
    pub config: Option<PathBuf>,

    /// Address to listen on, e.g. 0.0.0.0:18726 or :18726 (overrides web.listen).
    #[arg(
        long = "web.listen-address",
        value_name = "ADDR",
        visible_alias = "listen"
    )]
    pub listen: Option<String>,

    /// Path under which metrics are served (overrides web.telemetry_path; default /metrics). The
    /// status page (/), /api/v1/gpus, /-/healthy and /-/ready stay where they are.
    #[arg(long = "web.telemetry-path", value_name = "PATH")]
    pub telemetry_path: Option<String>,

    /// Path of the NVML library (libnvidia-ml.so.1) to load (overrides nvml.library).
    #[arg(long, value_name = "PATH")]
    pub nvml_library: Option<PathBuf>,

    /// Exporter-toolkit web configuration file: TLS, basic auth, response headers.
    #[arg(long = "web.config.file", value_name = "FILE")]
    pub web_config_file: Option<PathBuf>,

    /// Validate the configuration, print the effective configuration and exit.
    #[arg(long)]
    pub check_config: bool,

    /// Run on simulated GPUs: a shipped nvml-sim scenario name (demo, hard-breach, leak,
    /// leak-patterns, h200-trace, device-lost, mig, large-node, single-gpu) or the path of a
    /// scenario file.
    #[arg(long, value_name = "SCENARIO")]
    pub simulate: Option<String>,

    /// Least severe level logged: error, warn, info, debug, trace (overrides log.level; default
    /// info). RUST_LOG, when set, replaces it with tracing directives (e.g.
    /// "info,vram_exporter::source::nvml=debug").
    #[arg(long = "log.level", value_name = "LEVEL")]
    pub log_level: Option<String>,

    /// Log line format (overrides log.format; default text).
    #[arg(
        long = "log.format",
        value_enum,
        value_name = "FORMAT",
        visible_alias = "log-format"
    )]
    pub log_format: Option<LogFormat>,
}
