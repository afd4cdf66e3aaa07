//! Command-line flags. Flags are the last configuration layer; see `config.rs` for the others.

use std::path::PathBuf;

use clap::{Parser, ValueEnum};

/// Watches VRAM on every NVIDIA GPU, enforces soft/hard limits and serves Prometheus metrics.
#[derive(Debug, Parser)]
#[command(name = "vram-exporter", version, about)]
pub struct Cli {
    /// Configuration file (TOML or YAML, by extension).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Address to listen on, e.g. 0.0.0.0:9862 (overrides web.listen).
    #[arg(long, value_name = "ADDR", visible_alias = "web.listen-address")]
    pub listen: Option<String>,

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

    /// Log line format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}
