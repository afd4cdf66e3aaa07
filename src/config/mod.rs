//! Configuration: layered loading (defaults < file < environment < flags) and one validation step.
//!
//! Two stages, as in ripgrep's `LowArgs` → `HiArgs`: [`RawConfig`] mirrors the input as closely as
//! possible (strings for sizes and durations, so an error can quote what the user wrote), and
//! [`RawConfig::validate`] turns it into [`Config`], whose types are already checked. Each section
//! is owned and validated by the module that uses it (`[poll]` by `server::poller`, `[limits]` by
//! `model::policy::limits`, `[leak]` by `model::drift`, `[processes]` by `output::exposition`,
//! `[nvml]` by `source::nvml`, `[web]` by `server::web::section`, `[cleanup]` by
//! `output::cleanup`, `[kubernetes]` by `source::kubernetes`, `[clients]` by `source::clients`;
//! `[log]` by `base::logging`); this module only layers the input and
//! dispatches. Nothing downstream re-validates. Every error names the key, the value and why, and
//! nothing is applied until the whole configuration is valid. The layered values reach the
//! sections through [`strict`], which never converts one kind into another (a float is never
//! rounded into an integer key).

pub mod cli;
pub mod simulate;
mod strict;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::base::input::ConfigError;
use crate::base::logging::{LogConfig, LogFormat, RawLog};
use crate::model::drift::{LeakConfig, RawLeak};
use crate::model::policy::limits::{LimitsConfig, RawLimits};
use crate::output::cleanup::{CleanupConfig, RawCleanup};
use crate::output::exposition::RawProcesses;
use crate::server::poller::RawPoll;
use crate::server::web::section::{RawWeb, WebConfig};
use crate::source::clients::{ClientsConfig, RawClients};
use crate::source::kubernetes::{KubernetesConfig, RawKubernetes};
use crate::source::nvml::RawNvml;

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
    pub clients: RawClients,
    pub log: RawLog,
}

/// Values given on the command line; they override every other layer.
#[derive(Debug, Clone, Default)]
pub struct FlagOverrides {
    pub listen: Option<String>,
    pub nvml_library: Option<PathBuf>,
    pub web_config_file: Option<PathBuf>,
    pub telemetry_path: Option<String>,
    pub log_level: Option<String>,
    pub log_format: Option<LogFormat>,
}

/// Loads the layers: built-in defaults < `file` (TOML or YAML by extension) < environment < flags.
///
/// `env` is the environment to read; `None` reads the process environment. Tests pass their own map.
pub fn load(
    file: Option<&Path>,
    env: Option<BTreeMap<String, String>>,
    flags: &FlagOverrides,
) -> Result<RawConfig, ConfigError> {
    load_with_preset(None, file, env, flags)
}

/// [`load`] with a `preset` (TOML) between the defaults and the file: the settings of a
/// simulated demo (`simulate::preset`), never applied on a real node.
pub fn load_with_preset(
    preset: Option<&str>,
    file: Option<&Path>,
    env: Option<BTreeMap<String, String>>,
    flags: &FlagOverrides,
) -> Result<RawConfig, ConfigError> {
    use config::{Config as Layers, Environment, File, FileFormat};

    let mut builder = Layers::builder().add_source(
        config::Config::try_from(&RawConfig::default())
            .map_err(|e| ConfigError::Load(e.to_string()))?,
    );
    if let Some(preset) = preset {
        builder = builder.add_source(File::from_str(preset, FileFormat::Toml));
    }
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
        let text = crate::base::files::read_regular_text(path, MAX_CONFIG_BYTES).map_err(|e| {
            ConfigError::invalid("--config", path.display(), format!("cannot be read: {e}"))
        })?;
        // The parsers are bounded before the `config` crate sees the text: its YAML loader
        // expands aliases by copying (an alias bomb of a few hundred bytes grows to gigabytes)
        // and converts nested maps recursively; its TOML errors span several lines.
        match format {
            FileFormat::Yaml => check_yaml_shape(&text),
            _ => check_toml(&text),
        }
        .map_err(|why| ConfigError::invalid("--config", path.display(), why))?;
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
    if let Some(path) = &flags.telemetry_path {
        builder = set(builder, "web.telemetry_path", path.clone())?;
    }
    if let Some(level) = &flags.log_level {
        builder = set(builder, "log.level", level.clone())?;
    }
    if let Some(format) = flags.log_format {
        let name = match format {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        };
        builder = set(builder, "log.format", name.to_string())?;
    }
    let layered = builder
        .build()
        .map_err(|e| ConfigError::Load(describe_config_error(&e)))?;
    let value: config::Value = layered
        .try_deserialize()
        .map_err(|e| ConfigError::Load(describe_config_error(&e)))?;
    serde_path_to_error::deserialize::<_, RawConfig>(strict::Node::from(value)).map_err(|e| {
        let key = e.path().to_string();
        ConfigError::Load(format!("{key}: {}", e.into_inner()))
    })
}

fn describe_config_error(e: &config::ConfigError) -> String {
    format!(
        "configuration could not be read: {}",
        one_line(&e.to_string())
    )
}

/// The largest configuration file read (a real one is a few KiB; parsing 256 KiB of YAML takes
/// about half a second and 35 MiB in a debug build).
pub const MAX_CONFIG_BYTES: u64 = 256 * 1024;

/// The most YAML nodes a configuration may hold once its aliases are expanded.
pub const MAX_YAML_NODES: u64 = 100_000;

/// The deepest nesting of maps and lists (aliases expanded); the deepest real key is 4 levels.
pub const MAX_NESTING: usize = 32;

/// Text on one line: line breaks and the indentation after them become single spaces.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Parses TOML once to report a syntax error on one line, with its line and column.
fn check_toml(text: &str) -> Result<(), String> {
    let Err(e) = toml::from_str::<toml::Table>(text) else {
        return Ok(());
    };
    let at = e
        .span()
        .map(|span| {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!(" at line {line} column {column}")
        })
        .unwrap_or_default();
    Err(format!("is not valid TOML{at}: {}", one_line(e.message())))
}

/// Walks the YAML events without building anything and refuses a document whose aliases would
/// expand past [`MAX_YAML_NODES`] nodes or whose nesting (through aliases too) passes
/// [`MAX_NESTING`]. Work and memory are proportional to the text, never to the expansion.
fn check_yaml_shape(text: &str) -> Result<(), String> {
    use std::collections::HashMap;
    use yaml_rust2::parser::{Event, Parser};

    /// An open map or list: its anchor, nodes so far (itself included), height of its subtree.
    struct Open {
        anchor: usize,
        nodes: u64,
        height: usize,
    }
    // Anchor id → (nodes, height) of the node it names.
    let mut anchors: HashMap<usize, (u64, usize)> = HashMap::new();
    let mut open: Vec<Open> = Vec::new();
    let mut parser = Parser::new_from_str(text);
    loop {
        let (event, mark) = parser
            .next_token()
            .map_err(|e| format!("is not valid YAML: {}", one_line(&e.to_string())))?;
        let at = || format!("(line {} column {})", mark.line(), mark.col() + 1);
        // A finished node: (anchor, nodes, height).
        let done = match event {
            Event::StreamEnd => return Ok(()),
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                if open.len() >= MAX_NESTING {
                    return Err(format!(
                        "is nested deeper than {MAX_NESTING} levels {}",
                        at()
                    ));
                }
                open.push(Open {
                    anchor,
                    nodes: 1,
                    height: 1,
                });
                continue;
            }
            Event::SequenceEnd | Event::MappingEnd => match open.pop() {
                Some(o) => (o.anchor, o.nodes, o.height),
                None => continue,
            },
            Event::Scalar(_, _, anchor, _) => (anchor, 1, 0),
            Event::Alias(id) => {
                let (nodes, height) = anchors.get(&id).copied().unwrap_or((1, 0));
                if open.len() + height > MAX_NESTING {
                    return Err(format!(
                        "is nested deeper than {MAX_NESTING} levels once its aliases are expanded {}",
                        at()
                    ));
                }
                (0, nodes, height)
            }
            _ => continue,
        };
        let (anchor, nodes, height) = done;
        if anchor != 0 {
            anchors.insert(anchor, (nodes, height));
        }
        let total = match open.last_mut() {
            Some(parent) => {
                parent.nodes = parent.nodes.saturating_add(nodes);
                parent.height = parent.height.max(height + 1);
                parent.nodes
            }
            None => nodes,
        };
        if total > MAX_YAML_NODES {
            return Err(format!(
                "holds more than {MAX_YAML_NODES} YAML nodes once its aliases are expanded {}",
                at()
            ));
        }
    }
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
    pub clients: ClientsConfig,
    pub log: LogConfig,
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
        let clients = self.clients.validate(&self.kubernetes.proc_root)?;
        let log = self.log.validate()?;
        // The web configuration file is read last: its errors are reported after every key's.
        web.security =
            crate::server::web::WebSettings::load_optional(self.web.config_file.as_deref())?;
        Ok(Config {
            poll_interval,
            limits,
            leak,
            max_processes_per_gpu,
            web,
            nvml_library: self.nvml.library.clone(),
            cleanup,
            kubernetes,
            clients,
            log,
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
            crate::model::policy::LimitSpec::Percent(85.0)
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
        use crate::model::policy::LimitSpec;
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
