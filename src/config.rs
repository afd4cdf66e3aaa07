//! Configuration: layered loading (defaults < file < environment < flags) and one validation step.
//!
//! Two stages, as in ripgrep's `LowArgs` → `HiArgs`: [`RawConfig`] mirrors the input as closely as
//! possible (strings for sizes and durations, so an error can quote what the user wrote), and
//! [`RawConfig::validate`] turns it into [`Config`], whose types are already checked. Each section
//! is owned and validated by the module that uses it (`[poll]` by `poller`, `[limits]` by
//! `policy::limits`, `[leak]` by `drift`, `[processes]` by `exposition`, `[nvml]` by `nvml`,
//! `[web]` by `web::section`, `[cleanup]` by `cleanup`, `[kubernetes]` by `kubernetes`); this module only layers the input and
//! dispatches. Nothing downstream re-validates. Every error names the key, the value and why, and
//! nothing is applied until the whole configuration is valid.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::cleanup::{CleanupConfig, RawCleanup};
use crate::drift::{LeakConfig, RawLeak};
use crate::exposition::RawProcesses;
use crate::input::ConfigError;
use crate::kubernetes::{KubernetesConfig, RawKubernetes};
use crate::nvml::RawNvml;
use crate::policy::limits::{LimitsConfig, RawLimits};
use crate::poller::RawPoll;
use crate::web::section::{RawWeb, WebConfig};

/// The prefix of environment overrides: `VRAM_EXPORTER__POLL__INTERVAL=250ms`.
pub const ENV_PREFIX: &str = "VRAM_EXPORTER";

/// The configuration as written by the user, after layering, before validation.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    pub poll: RawPoll,
    pub limits: RawLimits,
    pub leak: RawLeak,
    pub processes: RawProcesses,
    pub web: RawWeb,
    pub nvml: RawNvml,
    pub cleanup: RawCleanup,
    pub kubernetes: RawKubernetes,
}

/// Values given on the command line; they override every other layer.
#[derive(Debug, Clone, Default)]
pub struct FlagOverrides {
    pub listen: Option<String>,
    pub nvml_library: Option<PathBuf>,
    pub web_config_file: Option<PathBuf>,
}

/// Loads the layers: built-in defaults < `file` (TOML or YAML by extension) < environment < flags.
///
/// `env` is the environment to read; `None` reads the process environment. Tests pass their own map.
pub fn load(
    file: Option<&Path>,
    env: Option<BTreeMap<String, String>>,
    flags: &FlagOverrides,
) -> Result<RawConfig, ConfigError> {
    use config::{Config as Layers, Environment, File, FileFormat};

    let mut builder = Layers::builder().add_source(
        config::Config::try_from(&RawConfig::default())
            .map_err(|e| ConfigError::Load(e.to_string()))?,
    );
    if let Some(path) = file {
        let format = match path.extension().and_then(|e| e.to_str()) {
            Some("yaml") | Some("yml") => FileFormat::Yaml,
            Some("toml") => FileFormat::Toml,
            _ => {
                return Err(ConfigError::invalid(
                    "--config",
                    path.display(),
                    "the file name must end in .toml, .yaml or .yml",
                ))
            }
        };
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::invalid("--config", path.display(), format!("cannot be read: {e}"))
        })?;
        builder = builder.add_source(File::from_str(&text, format));
    }
    let env_source = Environment::with_prefix(ENV_PREFIX)
        .prefix_separator("__")
        .separator("__")
        .try_parsing(true)
        .source(env.map(|m| m.into_iter().collect()));
    builder = builder.add_source(env_source);
    let set = |b: config::ConfigBuilder<config::builder::DefaultState>, key: &str, v: String| {
        b.set_override(key, v)
            .map_err(|e| ConfigError::Load(e.to_string()))
    };
    if let Some(listen) = &flags.listen {
        builder = set(builder, "web.listen", listen.clone())?;
    }
    if let Some(lib) = &flags.nvml_library {
        builder = set(builder, "nvml.library", lib.display().to_string())?;
    }
    if let Some(web) = &flags.web_config_file {
        builder = set(builder, "web.config_file", web.display().to_string())?;
    }
    let layered = builder
        .build()
        .map_err(|e| ConfigError::Load(describe_config_error(&e)))?;
    let value: config::Value = layered
        .try_deserialize()
        .map_err(|e| ConfigError::Load(describe_config_error(&e)))?;
    serde_path_to_error::deserialize::<_, RawConfig>(value).map_err(|e| {
        let key = e.path().to_string();
        ConfigError::Load(format!("{key}: {}", e.into_inner()))
    })
}

fn describe_config_error(e: &config::ConfigError) -> String {
    format!("configuration could not be read: {e}")
}

/// The validated configuration the exporter runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub poll_interval: Duration,
    pub limits: LimitsConfig,
    pub leak: LeakConfig,
    pub max_processes_per_gpu: usize,
    pub web: WebConfig,
    pub nvml_library: Option<PathBuf>,
    pub cleanup: CleanupConfig,
    pub kubernetes: KubernetesConfig,
}

impl RawConfig {
    /// Checks every value and builds the typed configuration; the first problem is returned.
    pub fn validate(&self) -> Result<Config, ConfigError> {
        let poll_interval = self.poll.validate()?;
        let limits = self.limits.validate()?;
        let leak = self.leak.validate(poll_interval)?;
        let max_processes_per_gpu = self.processes.validate()?;
        let mut web = self.web.validate()?;
        let cleanup = self.cleanup.validate()?;
        let kubernetes = self.kubernetes.validate()?;
        // The web configuration file is read last: its errors are reported after every key's.
        web.security = crate::web::WebSettings::load_optional(self.web.config_file.as_deref())?;
        Ok(Config {
            poll_interval,
            limits,
            leak,
            max_processes_per_gpu,
            web,
            nvml_library: self.nvml.library.clone(),
            cleanup,
            kubernetes,
        })
    }

    /// The effective configuration as TOML, for `--check-config`.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self)
            .unwrap_or_else(|e| format!("# cannot print configuration: {e}\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Option<BTreeMap<String, String>> {
        Some(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn defaults_validate() {
        let raw = load(None, env(&[]), &FlagOverrides::default()).unwrap();
        let cfg = raw.validate().unwrap();
        assert_eq!(cfg.poll_interval, Duration::from_secs(1));
        assert_eq!(cfg.leak.window, Duration::from_secs(900));
        assert_eq!(cfg.leak.floor_window, Duration::from_secs(90));
        assert_eq!(
            cfg.limits.default.soft,
            crate::policy::LimitSpec::Percent(85.0)
        );
        assert_eq!(cfg.max_processes_per_gpu, 16);
    }

    #[test]
    fn layers_apply_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            "[poll]\ninterval = \"500ms\"\n[web]\nlisten = \"127.0.0.1:1\"\n",
        )
        .unwrap();
        let flags = FlagOverrides {
            listen: Some("127.0.0.1:3".into()),
            ..Default::default()
        };
        let raw = load(
            Some(&file),
            env(&[
                ("VRAM_EXPORTER__POLL__INTERVAL", "250ms"),
                ("VRAM_EXPORTER__WEB__LISTEN", "127.0.0.1:2"),
            ]),
            &flags,
        )
        .unwrap();
        assert_eq!(raw.poll.interval, "250ms");
        assert_eq!(raw.web.listen, "127.0.0.1:3");
    }

    #[test]
    fn yaml_file_and_overrides() {
        use crate::policy::LimitSpec;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.yaml");
        std::fs::write(
            &file,
            "limits:\n  soft: 60GiB\n  hard: 70GiB\n  overrides:\n    - model: NVIDIA H100\n      hard: 99%\n      soft: 90%\n",
        )
        .unwrap();
        let cfg = load(Some(&file), env(&[]), &FlagOverrides::default())
            .unwrap()
            .validate()
            .unwrap();
        assert_eq!(
            cfg.limits.default.hard,
            LimitSpec::Bytes(70 * 1024 * 1024 * 1024)
        );
        let set = cfg.limits.for_device(3, "GPU-x", "NVIDIA H100");
        assert_eq!(set.hard, LimitSpec::Percent(99.0));
    }

    #[test]
    fn env_number_is_parsed() {
        let raw = load(
            None,
            env(&[("VRAM_EXPORTER__PROCESSES__MAX_PER_GPU", "4")]),
            &FlagOverrides::default(),
        )
        .unwrap();
        assert_eq!(raw.processes.max_per_gpu, 4);
    }

    #[test]
    fn unknown_key_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "[poll]\nintervall = \"1s\"\n").unwrap();
        let err = load(Some(&file), env(&[]), &FlagOverrides::default()).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("poll") && msg.contains("intervall"), "{msg}");
    }
}
