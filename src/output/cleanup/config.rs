//! The `[cleanup]` configuration: raw as written, then validated once into typed actions.
//!
//! Actions are written as a flat table with a `type` key (rather than a serde-tagged enum) so that
//! every refusal can name the exact key — `cleanup.actions[1].url` — and say why, including keys
//! that exist but do not belong to that action's type. Unsafe or meaningless settings are refused
//! here, never discovered during an emergency: a `kill` without `allow_kill`, a signal that cannot
//! be handled (SIGKILL, SIGSTOP) or that terminates by intent (SIGTERM) without `allow_kill`, an
//! empty `argv`, a webhook URL that is not http(s), a bad regex, a zero or huge timeout.

use std::time::Duration;

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::base::input::{parse_bounded_size, parse_duration_within, ConfigError};

mod predict;
mod signal;
mod url;
mod workload;

pub use predict::{PredictConfig, RawPredict};
use signal::is_terminating;
pub use signal::{parse_signal, Signal};
use url::check_url;
pub use url::{redacted_url, REDACTED};
pub use workload::{WorkloadFilter, DEFAULT_AVOID_NAMESPACES};

/// The `cleanup` section as written.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawCleanup {
    /// Cleanup is off unless this is true.
    pub enabled: bool,
    /// Log and count what would run (`result="dry_run"`), touch nothing.
    pub dry_run: bool,
    /// While a GPU stays in hard breach, the actions run again every `cooldown`.
    pub cooldown: String,
    /// Must be true for a `kill` action or a terminating signal (SIGTERM, SIGINT, SIGQUIT).
    pub allow_kill: bool,
    /// The actions, run in order on each cleanup.
    pub actions: Vec<RawAction>,
    /// Run the actions before the breach, on the predicted time to the hard limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub predict: Option<RawPredict>,
}

impl Default for RawCleanup {
    fn default() -> Self {
        RawCleanup {
            enabled: false,
            dry_run: false,
            cooldown: "30s".into(),
            allow_kill: false,
            actions: Vec::new(),
            predict: None,
        }
    }
}

/// One `[[cleanup.actions]]` table as written; which keys apply depends on `type`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAction {
    /// signal | webhook | exec | kill
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name_regex: Option<String>,
    /// Signal: skip processes whose allocator report says they can free less than this.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_reclaimable: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub argv: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub avoid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// Signal and kill: only processes in a pod whose namespace matches.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace_regex: Option<String>,
    /// Signal and kill: only processes in a pod whose name matches.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod_regex: Option<String>,
    /// Signal and kill: processes in these namespaces are never touched (default kube-system).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub avoid_namespaces: Option<Vec<String>>,
    /// Signal and kill: processes of these user IDs are never touched (unlike a name, a process
    /// cannot choose its uid).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub avoid_uids: Option<Vec<u32>>,
    /// Kill: processes of these user IDs are killed first (like `prefer`, by uid).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefer_uids: Option<Vec<u32>>,
}

/// The validated `cleanup` section.
#[derive(Debug, Clone)]
pub struct CleanupConfig {
    pub enabled: bool,
    pub dry_run: bool,
    pub cooldown: Duration,
    pub actions: Vec<Action>,
    /// Runs before the breach; None: only on hard breach.
    pub predict: Option<PredictConfig>,
}

impl Default for CleanupConfig {
    fn default() -> Self {
        CleanupConfig {
            enabled: false,
            dry_run: false,
            cooldown: DEFAULT_COOLDOWN,
            actions: Vec::new(),
            predict: None,
        }
    }
}

/// One validated action.
#[derive(Debug, Clone)]
pub enum Action {
    Signal(SignalAction),
    Webhook(WebhookAction),
    Exec(ExecAction),
    Kill(KillAction),
}

impl Action {
    /// The `action` label value: the action's type.
    pub fn as_str(&self) -> &'static str {
        match self {
            Action::Signal(_) => Kind::Signal,
            Action::Webhook(_) => Kind::Webhook,
            Action::Exec(_) => Kind::Exec,
            Action::Kill(_) => Kind::Kill,
        }
        .as_str()
    }

    /// Whether the action ends processes (a kill, or a signal that terminates by intent): such
    /// an action runs on a prediction only with `cleanup.predict.allow_kill`.
    pub fn terminates(&self) -> bool {
        match self {
            Action::Kill(_) => true,
            Action::Signal(s) => is_terminating(s.signal),
            Action::Webhook(_) | Action::Exec(_) => false,
        }
    }
}

#[derive(Debug, Clone)]
pub struct SignalAction {
    pub signal: Signal,
    pub target: Target,
    pub workloads: WorkloadFilter,
    /// Processes whose allocator report says they can free less than this are skipped (0: none).
    pub min_reclaimable: u64,
}

/// Which of a GPU's processes a signal action reaches.
#[derive(Debug, Clone)]
pub enum Target {
    All,
    /// The N largest by allocation.
    Top(usize),
    /// Those whose process name matches.
    Match(Regex),
}

#[derive(Debug, Clone)]
pub struct WebhookAction {
    pub url: String,
    /// `url` as logs, audit lines and errors show it: credentials and query values redacted.
    pub shown: String,
    pub timeout: Duration,
    pub retries: u32,
}

#[derive(Debug, Clone)]
pub struct ExecAction {
    pub argv: Vec<String>,
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct KillAction {
    /// Time between SIGTERM and SIGKILL.
    pub grace: Duration,
    /// Processes whose name matches are never killed.
    pub avoid: Option<Regex>,
    /// Processes whose name matches are killed first (largest of them).
    pub prefer: Option<Regex>,
    /// Processes of these user IDs are killed first too.
    pub prefer_uids: Vec<u32>,
    /// Kill only once the GPU has been in hard breach this long (lets cheaper actions work first).
    pub after: Duration,
    pub workloads: WorkloadFilter,
}

pub const DEFAULT_COOLDOWN: Duration = Duration::from_secs(30);
const DEFAULT_WEBHOOK_TIMEOUT: &str = "5s";
const DEFAULT_EXEC_TIMEOUT: &str = "10s";
const DEFAULT_GRACE: &str = "5s";
const DEFAULT_RETRIES: u32 = 2;
const MAX_RETRIES: u32 = 10;
const MAX_TOP: usize = 1024;
const MIN_TIMEOUT: Duration = Duration::from_millis(100);
const MAX_TIMEOUT: Duration = Duration::from_secs(600);
const MIN_COOLDOWN: Duration = Duration::from_secs(1);
const MAX_COOLDOWN: Duration = Duration::from_secs(24 * 3600);
const MAX_AFTER: Duration = Duration::from_secs(24 * 3600);
/// Compiled-regex size bound: a name filter never needs more, and a huge one is a mistake.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

impl RawCleanup {
    pub fn validate(&self) -> Result<CleanupConfig, ConfigError> {
        let cooldown = parse_duration_within(
            "cleanup.cooldown",
            &self.cooldown,
            MIN_COOLDOWN,
            MAX_COOLDOWN,
        )?;
        let mut actions = Vec::with_capacity(self.actions.len());
        for (i, raw) in self.actions.iter().enumerate() {
            actions.push(raw.validate(&format!("cleanup.actions[{i}]"), self.allow_kill)?);
        }
        if actions
            .iter()
            .filter(|a| matches!(a, Action::Kill(_)))
            .count()
            > 1
        {
            return Err(ConfigError::invalid(
                "cleanup.actions",
                "two kill actions",
                "give at most one kill action: at most one process per GPU is killed per cooldown",
            ));
        }
        if self.enabled && actions.is_empty() {
            return Err(ConfigError::invalid(
                "cleanup.actions",
                "[]",
                "cleanup.enabled is true but no action is configured; add [[cleanup.actions]] or set enabled = false",
            ));
        }
        let predict = self
            .predict
            .as_ref()
            .map(|p| p.validate(self.allow_kill, &actions))
            .transpose()?
            .flatten();
        Ok(CleanupConfig {
            enabled: self.enabled,
            dry_run: self.dry_run,
            cooldown,
            actions,
            predict,
        })
    }
}

/// The four action types and the keys each one takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Signal,
    Webhook,
    Exec,
    Kill,
}

impl Kind {
    fn parse(written: &str) -> Option<Kind> {
        match written.trim() {
            "signal" => Some(Kind::Signal),
            "webhook" => Some(Kind::Webhook),
            "exec" => Some(Kind::Exec),
            "kill" => Some(Kind::Kill),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Kind::Signal => "signal",
            Kind::Webhook => "webhook",
            Kind::Exec => "exec",
            Kind::Kill => "kill",
        }
    }

    /// The optional keys an action of this type takes; any other one given is refused.
    fn keys(self) -> &'static [&'static str] {
        match self {
            Kind::Signal => &[
                "signal",
                "target",
                "top",
                "name_regex",
                "min_reclaimable",
                "namespace_regex",
                "pod_regex",
                "avoid_namespaces",
                "avoid_uids",
            ],
            Kind::Webhook => &["url", "timeout", "retries"],
            Kind::Exec => &["argv", "timeout"],
            Kind::Kill => &[
                "grace",
                "avoid",
                "prefer",
                "prefer_uids",
                "after",
                "namespace_regex",
                "pod_regex",
                "avoid_namespaces",
                "avoid_uids",
            ],
        }
    }
}

/// `prefix.name`, e.g. `cleanup.actions[1].url`.
fn key(prefix: &str, name: &str) -> String {
    format!("{prefix}.{name}")
}

impl RawAction {
    /// Checks the type and that every key given belongs to it, then the type's own keys.
    fn validate(&self, prefix: &str, allow_kill: bool) -> Result<Action, ConfigError> {
        let kind = Kind::parse(&self.kind).ok_or_else(|| {
            ConfigError::invalid(
                key(prefix, "type"),
                &self.kind,
                "expected one of signal, webhook, exec, kill",
            )
        })?;
        let allowed = kind.keys();
        if let Some((name, value)) = self
            .given()
            .into_iter()
            .find(|(name, _)| !allowed.contains(name))
        {
            return Err(ConfigError::invalid(
                key(prefix, name),
                value,
                format!(
                    "is not a key of a {} action (its keys: {})",
                    kind.as_str(),
                    allowed.join(", ")
                ),
            ));
        }
        Ok(match kind {
            Kind::Signal => Action::Signal(self.signal_action(prefix, allow_kill)?),
            Kind::Webhook => Action::Webhook(self.webhook_action(prefix)?),
            Kind::Exec => Action::Exec(self.exec_action(prefix)?),
            Kind::Kill => Action::Kill(self.kill_action(prefix, allow_kill)?),
        })
    }

    fn signal_action(&self, prefix: &str, allow_kill: bool) -> Result<SignalAction, ConfigError> {
        let written = self.signal.as_deref().unwrap_or("SIGUSR1");
        let signal = parse_signal(&key(prefix, "signal"), written)?;
        if is_terminating(signal) && !allow_kill {
            return Err(ConfigError::invalid(
                key(prefix, "signal"),
                written,
                "terminates the process; set cleanup.allow_kill = true to send it (or use a kill action)",
            ));
        }
        let target = self.target(prefix, signal)?;
        if self.top.is_some() && !matches!(target, Target::Top(_)) {
            return Err(ConfigError::invalid(
                key(prefix, "top"),
                self.top.unwrap_or_default(),
                "is only used with target = \"top\"",
            ));
        }
        if self.name_regex.is_some() && !matches!(target, Target::Match(_)) {
            return Err(ConfigError::invalid(
                key(prefix, "name_regex"),
                self.name_regex.as_deref().unwrap_or_default(),
                "is only used with target = \"match\"",
            ));
        }
        let min_reclaimable = match &self.min_reclaimable {
            None => 0,
            Some(m) => parse_bounded_size(&key(prefix, "min_reclaimable"), m)?,
        };
        Ok(SignalAction {
            signal,
            target,
            workloads: self.workload_filter(prefix)?,
            min_reclaimable,
        })
    }

    /// `target` (with `top` or `name_regex`): which processes a signal action reaches. There is
    /// no default, because a process with no handler for the signal is terminated by it.
    fn target(&self, prefix: &str, signal: Signal) -> Result<Target, ConfigError> {
        match self.target.as_deref().map(str::trim) {
            Some("all") => Ok(Target::All),
            Some("top") => {
                let n = self.top.unwrap_or(1);
                if n == 0 || n > MAX_TOP {
                    return Err(ConfigError::invalid(
                        key(prefix, "top"),
                        n,
                        format!("must be between 1 and {MAX_TOP}"),
                    ));
                }
                Ok(Target::Top(n))
            }
            Some("match") => match &self.name_regex {
                Some(r) => Ok(Target::Match(regex(&key(prefix, "name_regex"), r)?)),
                None => Err(ConfigError::invalid(
                    key(prefix, "name_regex"),
                    "(missing)",
                    "target = \"match\" needs name_regex, a regex on the process name",
                )),
            },
            other => Err(ConfigError::invalid(
                key(prefix, "target"),
                other.unwrap_or("(missing)"),
                format!(
                    "expected all, top (with top = N) or match (with name_regex); choose deliberately: \
                     a process with no handler for {} is terminated by it",
                    signal.name
                ),
            )),
        }
    }

    fn webhook_action(&self, prefix: &str) -> Result<WebhookAction, ConfigError> {
        let url = self.url.as_deref().unwrap_or_default().trim().to_string();
        check_url(&key(prefix, "url"), &url)?;
        let timeout = action_timeout(
            &key(prefix, "timeout"),
            self.timeout.as_deref(),
            DEFAULT_WEBHOOK_TIMEOUT,
        )?;
        let retries = self.retries.unwrap_or(DEFAULT_RETRIES);
        if retries > MAX_RETRIES {
            return Err(ConfigError::invalid(
                key(prefix, "retries"),
                retries,
                format!("must be at most {MAX_RETRIES}"),
            ));
        }
        Ok(WebhookAction {
            shown: redacted_url(&url),
            url,
            timeout,
            retries,
        })
    }

    fn exec_action(&self, prefix: &str) -> Result<ExecAction, ConfigError> {
        let argv = self.argv.clone().unwrap_or_default();
        if argv.first().is_none_or(|a| a.trim().is_empty()) {
            return Err(ConfigError::invalid(
                key(prefix, "argv"),
                format_args!("{argv:?}"),
                "must name a program: argv = [\"/path/to/program\", \"arg\", ...] (it is run directly, never through a shell)",
            ));
        }
        if argv.iter().any(|a| a.contains('\0')) {
            return Err(ConfigError::invalid(
                key(prefix, "argv"),
                format_args!("{argv:?}"),
                "an argument contains a NUL byte",
            ));
        }
        let timeout = action_timeout(
            &key(prefix, "timeout"),
            self.timeout.as_deref(),
            DEFAULT_EXEC_TIMEOUT,
        )?;
        Ok(ExecAction { argv, timeout })
    }

    fn kill_action(&self, prefix: &str, allow_kill: bool) -> Result<KillAction, ConfigError> {
        if !allow_kill {
            return Err(ConfigError::invalid(
                key(prefix, "type"),
                "kill",
                "a kill action needs cleanup.allow_kill = true",
            ));
        }
        let grace = action_timeout(&key(prefix, "grace"), self.grace.as_deref(), DEFAULT_GRACE)?;
        let after = match &self.after {
            None => Duration::ZERO,
            Some(a) => parse_duration_within(&key(prefix, "after"), a, Duration::ZERO, MAX_AFTER)?,
        };
        let name_filter = |name: &str, written: &Option<String>| {
            written
                .as_deref()
                .map(|r| regex(&key(prefix, name), r))
                .transpose()
        };
        Ok(KillAction {
            grace,
            avoid: name_filter("avoid", &self.avoid)?,
            prefer: name_filter("prefer", &self.prefer)?,
            prefer_uids: self.prefer_uids.clone().unwrap_or_default(),
            after,
            workloads: self.workload_filter(prefix)?,
        })
    }

    /// Every optional key that was given, in a fixed order, with its value as an error shows it.
    fn given(&self) -> Vec<(&'static str, String)> {
        let text = |o: &Option<String>| o.clone();
        [
            ("signal", text(&self.signal)),
            ("target", text(&self.target)),
            ("top", self.top.map(|t| t.to_string())),
            ("name_regex", text(&self.name_regex)),
            ("min_reclaimable", text(&self.min_reclaimable)),
            ("url", self.url.as_deref().map(redacted_url)),
            ("retries", self.retries.map(|t| t.to_string())),
            ("timeout", text(&self.timeout)),
            ("argv", self.argv.as_ref().map(|a| format!("{a:?}"))),
            ("grace", text(&self.grace)),
            ("avoid", text(&self.avoid)),
            ("prefer", text(&self.prefer)),
            ("after", text(&self.after)),
            ("namespace_regex", text(&self.namespace_regex)),
            ("pod_regex", text(&self.pod_regex)),
            (
                "avoid_namespaces",
                self.avoid_namespaces.as_ref().map(|a| format!("{a:?}")),
            ),
            (
                "avoid_uids",
                self.avoid_uids.as_ref().map(|a| format!("{a:?}")),
            ),
            (
                "prefer_uids",
                self.prefer_uids.as_ref().map(|a| format!("{a:?}")),
            ),
        ]
        .into_iter()
        .filter_map(|(name, value)| value.map(|v| (name, v)))
        .collect()
    }
}

/// A webhook or exec `timeout`, or a kill `grace`: `default` when not given.
fn action_timeout(
    key: &str,
    written: Option<&str>,
    default: &str,
) -> Result<Duration, ConfigError> {
    parse_duration_within(key, written.unwrap_or(default), MIN_TIMEOUT, MAX_TIMEOUT)
}

fn regex(key: &str, pattern: &str) -> Result<Regex, ConfigError> {
    regex::RegexBuilder::new(pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| {
            let first = e.to_string();
            let reason = first
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("invalid")
                .trim()
                .to_string();
            ConfigError::invalid(key, pattern, format!("is not a valid regex: {reason}"))
        })
}

#[cfg(test)]
mod tests;
