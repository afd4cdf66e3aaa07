//! Configuration: layered loading (defaults < file < environment < flags) and one validation step.
//!
//! Two stages, as in ripgrep's `LowArgs` → `HiArgs`: [`RawConfig`] mirrors the input as closely as
//! possible (strings for sizes and durations, so an error can quote what the user wrote), and
//! [`RawConfig::validate`] turns it into [`Config`], whose types are already checked. Nothing
//! downstream re-validates. Every error names the key, the value and why, and nothing is applied
//! until the whole configuration is valid.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::cleanup::{CleanupConfig, RawCleanup};
use crate::policy::LimitSpec;

/// The prefix of environment overrides: `VRAM_EXPORTER__POLL__INTERVAL=250ms`.
pub const ENV_PREFIX: &str = "VRAM_EXPORTER";

/// A configuration error: which key, which value, and why it was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{key}: invalid value {value:?}: {reason}")]
    Invalid {
        key: String,
        value: String,
        reason: String,
    },
    #[error("{0}")]
    Load(String),
}

impl ConfigError {
    pub(crate) fn invalid(
        key: impl Into<String>,
        value: impl fmt::Display,
        reason: impl Into<String>,
    ) -> Self {
        ConfigError::Invalid {
            key: key.into(),
            value: value.to_string(),
            reason: reason.into(),
        }
    }
}

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
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawPoll {
    /// How often NVML is read: "1s", "250ms"; at least 100ms.
    pub interval: String,
}

impl Default for RawPoll {
    fn default() -> Self {
        RawPoll {
            interval: "1s".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLimits {
    /// Soft limit for every GPU: a percentage of total ("85%") or a size ("70GiB").
    pub soft: String,
    /// Hard limit for every GPU, same forms as `soft`.
    pub hard: String,
    /// How far usage must fall below a limit before a new episode can be counted.
    pub hysteresis: String,
    /// Per-GPU overrides, matched by UUID, index or model name; the first match wins.
    pub overrides: Vec<RawOverride>,
}

impl Default for RawLimits {
    fn default() -> Self {
        RawLimits {
            soft: "85%".into(),
            hard: "95%".into(),
            hysteresis: "2%".into(),
            overrides: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawOverride {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub soft: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hard: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hysteresis: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLeak {
    /// How far back the usage floor is compared: drift = floor now − floor one window ago.
    pub window: String,
    /// The span the floor (rolling minimum) is taken over; longer than a training step.
    /// Defaults to a tenth of `window`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub floor_window: Option<String>,
}

impl Default for RawLeak {
    fn default() -> Self {
        RawLeak {
            window: "15m".into(),
            floor_window: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawProcesses {
    /// Per-process series are published for the top N processes of each GPU by allocation.
    pub max_per_gpu: usize,
}

impl Default for RawProcesses {
    fn default() -> Self {
        RawProcesses { max_per_gpu: 16 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawWeb {
    /// Address to listen on: "0.0.0.0:9862", "[::]:9862" or ":9862".
    pub listen: String,
    /// Requests served at once; more are answered 503 at once rather than queued.
    pub max_concurrent_requests: usize,
    /// A request that takes longer is answered 408.
    pub request_timeout: String,
    /// An exporter-toolkit web configuration file (TLS, basic auth, headers).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config_file: Option<PathBuf>,
}

impl Default for RawWeb {
    fn default() -> Self {
        RawWeb {
            listen: "0.0.0.0:9862".into(),
            max_concurrent_requests: 64,
            request_timeout: "10s".into(),
            config_file: None,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawNvml {
    /// Path of libnvidia-ml.so.1; by default the dynamic loader's search path is used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub library: Option<PathBuf>,
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
}

#[derive(Debug, Clone, PartialEq)]
pub struct LimitsConfig {
    pub default: LimitSet,
    pub overrides: Vec<LimitOverride>,
}

/// One set of limit specifications, resolved against a device's total when it is seen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LimitSet {
    pub soft: LimitSpec,
    pub hard: LimitSpec,
    pub hysteresis: LimitSpec,
}

#[derive(Debug, Clone, PartialEq)]
pub enum DeviceMatch {
    Uuid(String),
    Index(u32),
    Model(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct LimitOverride {
    pub matcher: DeviceMatch,
    pub limits: LimitSet,
}

impl LimitsConfig {
    /// The limit set for a device: the first override that matches it, else the default.
    pub fn for_device(&self, index: u32, uuid: &str, model: &str) -> &LimitSet {
        self.overrides
            .iter()
            .find(|o| match &o.matcher {
                DeviceMatch::Uuid(u) => u.eq_ignore_ascii_case(uuid),
                DeviceMatch::Index(i) => *i == index,
                DeviceMatch::Model(m) => m == model,
            })
            .map(|o| &o.limits)
            .unwrap_or(&self.default)
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LeakConfig {
    pub window: Duration,
    pub floor_window: Duration,
}

#[derive(Debug, Clone)]
pub struct WebConfig {
    pub listen: SocketAddr,
    pub max_concurrent_requests: usize,
    pub request_timeout: Duration,
    pub config_file: Option<PathBuf>,
    /// The loaded and checked `config_file`: TLS, basic auth, headers (see `web/`).
    pub security: Option<crate::web::WebSettings>,
}

/// The shortest poll interval accepted.
pub const MIN_POLL_INTERVAL: Duration = Duration::from_millis(100);

impl RawConfig {
    /// Checks every value and builds the typed configuration; the first problem is returned.
    pub fn validate(&self) -> Result<Config, ConfigError> {
        let poll_interval = parse_duration("poll.interval", &self.poll.interval)?;
        if poll_interval < MIN_POLL_INTERVAL {
            return Err(ConfigError::invalid(
                "poll.interval",
                &self.poll.interval,
                "must be at least 100ms",
            ));
        }
        if poll_interval > Duration::from_secs(3600) {
            return Err(ConfigError::invalid(
                "poll.interval",
                &self.poll.interval,
                "must be at most 1h",
            ));
        }

        let default = limit_set(
            "limits",
            &self.limits.soft,
            &self.limits.hard,
            &self.limits.hysteresis,
        )?;
        let mut overrides = Vec::with_capacity(self.limits.overrides.len());
        for (i, o) in self.limits.overrides.iter().enumerate() {
            let prefix = format!("limits.overrides[{i}]");
            let matcher = match (&o.uuid, o.index, &o.model) {
                (Some(u), None, None) if !u.trim().is_empty() => {
                    DeviceMatch::Uuid(u.trim().to_string())
                }
                (None, Some(i), None) => DeviceMatch::Index(i),
                (None, None, Some(m)) if !m.trim().is_empty() => {
                    DeviceMatch::Model(m.trim().to_string())
                }
                _ => {
                    return Err(ConfigError::invalid(
                        prefix,
                        format_args!("uuid={:?} index={:?} model={:?}", o.uuid, o.index, o.model),
                        "set exactly one non-empty matcher: uuid, index or model",
                    ))
                }
            };
            let limits = limit_set(
                &prefix,
                o.soft.as_deref().unwrap_or(&self.limits.soft),
                o.hard.as_deref().unwrap_or(&self.limits.hard),
                o.hysteresis.as_deref().unwrap_or(&self.limits.hysteresis),
            )?;
            overrides.push(LimitOverride { matcher, limits });
        }

        let window = parse_duration("leak.window", &self.leak.window)?;
        if window < Duration::from_secs(1) {
            return Err(ConfigError::invalid(
                "leak.window",
                &self.leak.window,
                "must be at least 1s",
            ));
        }
        let floor_window = match &self.leak.floor_window {
            Some(f) => parse_duration("leak.floor_window", f)?,
            None => window / 10,
        };
        if floor_window >= window || floor_window.is_zero() {
            return Err(ConfigError::invalid(
                "leak.floor_window",
                humantime::format_duration(floor_window),
                format!(
                    "must be shorter than leak.window ({}) and not zero",
                    humantime::format_duration(window)
                ),
            ));
        }
        if floor_window < poll_interval {
            return Err(ConfigError::invalid(
                "leak.floor_window",
                humantime::format_duration(floor_window),
                format!(
                    "must be at least poll.interval ({}), or the floor is a single sample",
                    humantime::format_duration(poll_interval)
                ),
            ));
        }

        if self.processes.max_per_gpu > 1024 {
            return Err(ConfigError::invalid(
                "processes.max_per_gpu",
                self.processes.max_per_gpu,
                "must be at most 1024 (it bounds the number of per-process series)",
            ));
        }

        let listen = parse_listen(&self.web.listen)?;
        if self.web.max_concurrent_requests == 0 || self.web.max_concurrent_requests > 65_536 {
            return Err(ConfigError::invalid(
                "web.max_concurrent_requests",
                self.web.max_concurrent_requests,
                "must be between 1 and 65536",
            ));
        }
        let request_timeout = parse_duration("web.request_timeout", &self.web.request_timeout)?;
        if request_timeout.is_zero() {
            return Err(ConfigError::invalid(
                "web.request_timeout",
                &self.web.request_timeout,
                "must be greater than zero",
            ));
        }
        let cleanup = self.cleanup.validate()?;
        let security = crate::web::WebSettings::load_optional(self.web.config_file.as_deref())?;

        Ok(Config {
            poll_interval,
            limits: LimitsConfig { default, overrides },
            leak: LeakConfig {
                window,
                floor_window,
            },
            max_processes_per_gpu: self.processes.max_per_gpu,
            web: WebConfig {
                listen,
                max_concurrent_requests: self.web.max_concurrent_requests,
                request_timeout,
                config_file: self.web.config_file.clone(),
                security,
            },
            nvml_library: self.nvml.library.clone(),
            cleanup,
        })
    }

    /// The effective configuration as TOML, for `--check-config`.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self)
            .unwrap_or_else(|e| format!("# cannot print configuration: {e}\n"))
    }
}

fn limit_set(
    prefix: &str,
    soft: &str,
    hard: &str,
    hysteresis: &str,
) -> Result<LimitSet, ConfigError> {
    let soft_key = format!("{prefix}.soft");
    let hard_key = format!("{prefix}.hard");
    let soft_spec = parse_limit(&soft_key, soft)?;
    let hard_spec = parse_limit(&hard_key, hard)?;
    let hyst_key = format!("{prefix}.hysteresis");
    let hyst_spec = parse_limit(&hyst_key, hysteresis)?;
    if let LimitSpec::Percent(p) = hyst_spec {
        if p >= 50.0 {
            return Err(ConfigError::invalid(
                hyst_key,
                hysteresis,
                "must be below 50%",
            ));
        }
    }
    let comparable = match (soft_spec, hard_spec) {
        (LimitSpec::Percent(s), LimitSpec::Percent(h)) => Some(s >= h),
        (LimitSpec::Bytes(s), LimitSpec::Bytes(h)) => Some(s >= h),
        _ => None,
    };
    if comparable == Some(true) {
        return Err(ConfigError::invalid(
            soft_key,
            soft,
            format!("must be lower than {hard_key} ({hard})"),
        ));
    }
    Ok(LimitSet {
        soft: soft_spec,
        hard: hard_spec,
        hysteresis: hyst_spec,
    })
}

/// Parses "90%", "70GiB", "512MB" or a plain number of bytes.
pub fn parse_limit(key: &str, value: &str) -> Result<LimitSpec, ConfigError> {
    let v = value.trim();
    if let Some(p) = v.strip_suffix('%') {
        let pct: f64 = p
            .trim()
            .parse()
            .map_err(|_| ConfigError::invalid(key, value, "is not a percentage like \"90%\""))?;
        if !(pct > 0.0 && pct <= 100.0) {
            return Err(ConfigError::invalid(
                key,
                value,
                "a percentage must be above 0% and at most 100%",
            ));
        }
        return Ok(LimitSpec::Percent(pct));
    }
    let bytes = parse_size(key, value)?;
    if bytes == 0 {
        return Err(ConfigError::invalid(
            key,
            value,
            "must be greater than zero",
        ));
    }
    Ok(LimitSpec::Bytes(bytes))
}

/// Parses a size such as "70GiB", "512 MB" or "1073741824".
pub fn parse_size(key: &str, value: &str) -> Result<u64, ConfigError> {
    bytesize::ByteSize::from_str(value.trim())
        .map(|b| b.as_u64())
        .map_err(|_| {
            ConfigError::invalid(
                key,
                value,
                "is not a size like \"70GiB\", \"512MB\" or a number of bytes, nor a percentage like \"90%\"",
            )
        })
}

/// Parses a duration such as "250ms", "1s" or "15m".
pub fn parse_duration(key: &str, value: &str) -> Result<Duration, ConfigError> {
    humantime::parse_duration(value.trim()).map_err(|e| {
        ConfigError::invalid(
            key,
            value,
            format!("is not a duration like \"250ms\" or \"15m\" ({e})"),
        )
    })
}

fn parse_listen(value: &str) -> Result<SocketAddr, ConfigError> {
    let v = value.trim();
    let candidate = if let Some(port) = v.strip_prefix(':') {
        format!("0.0.0.0:{port}")
    } else {
        v.to_string()
    };
    candidate.parse().map_err(|_| {
        ConfigError::invalid(
            "web.listen",
            value,
            "is not an address like \"0.0.0.0:9862\", \"[::]:9862\" or \":9862\"",
        )
    })
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
        assert_eq!(cfg.limits.default.soft, LimitSpec::Percent(85.0));
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
        let set = cfg.limits.for_device(3, "GPU-x", "Other");
        assert_eq!(set.hard, LimitSpec::Bytes(70 * 1024 * 1024 * 1024));
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

    #[test]
    fn limits_parse() {
        assert_eq!(parse_limit("k", "90%").unwrap(), LimitSpec::Percent(90.0));
        assert_eq!(parse_limit("k", "1GiB").unwrap(), LimitSpec::Bytes(1 << 30));
        assert_eq!(parse_limit("k", "1000").unwrap(), LimitSpec::Bytes(1000));
        assert!(parse_limit("k", "0%").is_err());
        assert!(parse_limit("k", "101%").is_err());
        assert!(parse_limit("k", "lots").is_err());
    }

    #[test]
    fn listen_forms() {
        assert_eq!(parse_listen(":9862").unwrap().port(), 9862);
        assert!(parse_listen("[::]:9862").is_ok());
        assert!(parse_listen("localhost").is_err());
    }
}
