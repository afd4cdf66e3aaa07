//! The `[cleanup.predict]` section: run the gentle cleanup actions before the hard limit is
//! crossed, when the GPU's time to it (`vram_hard_limit_eta_seconds`) has stayed under
//! `eta_below` for `for`. Kills (and terminating signals) take part only with `allow_kill`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Action;
use crate::base::input::{parse_duration_within, ConfigError};
use crate::model::policy::predict::PredictRule;

/// `[cleanup.predict]` as written.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawPredict {
    /// The section is on when written, unless this says false (to keep it written but off).
    pub enabled: bool,
    /// Act when the time to the hard limit is below this (required when enabled).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eta_below: Option<String>,
    /// ... and has stayed below it this long (default 0: at the first such poll).
    #[serde(rename = "for", skip_serializing_if = "Option::is_none")]
    pub hold: Option<String>,
    /// Let a kill action and terminating signals run on a prediction too (default false).
    pub allow_kill: bool,
}

impl Default for RawPredict {
    fn default() -> Self {
        RawPredict {
            enabled: true,
            eta_below: None,
            hold: None,
            allow_kill: false,
        }
    }
}

/// The validated `[cleanup.predict]` section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PredictConfig {
    pub rule: PredictRule,
    /// Kill actions and terminating signals take part in predicted runs.
    pub allow_kill: bool,
}

/// `eta_below` bounds: a prediction further ahead than a day is not an emergency.
const MIN_ETA_BELOW: Duration = Duration::from_millis(100);
const MAX_ETA_BELOW: Duration = Duration::from_secs(24 * 3600);
/// `for` is at most an hour: a prediction must hold well inside its own horizon.
const MAX_HOLD: Duration = Duration::from_secs(3600);

impl RawPredict {
    /// Checks the keys (those given, also when off); `allow_kill` needs `cleanup.allow_kill`, and
    /// without it some action must be one a prediction may run (not a kill, not a terminating
    /// signal). None when the section is off.
    pub fn validate(
        &self,
        cleanup_allow_kill: bool,
        actions: &[Action],
    ) -> Result<Option<PredictConfig>, ConfigError> {
        if !self.enabled && self.eta_below.is_none() {
            return Ok(None);
        }
        let eta_below = match &self.eta_below {
            Some(e) => parse_duration_within(
                "cleanup.predict.eta_below",
                e,
                MIN_ETA_BELOW,
                MAX_ETA_BELOW,
            )?,
            None => {
                return Err(ConfigError::invalid(
                    "cleanup.predict.eta_below",
                    "(missing)",
                    "[cleanup.predict] needs eta_below, the time to the hard limit under which cleanup runs (e.g. \"5m\")",
                ))
            }
        };
        let hold = match &self.hold {
            Some(f) => parse_duration_within("cleanup.predict.for", f, Duration::ZERO, MAX_HOLD)?,
            None => Duration::ZERO,
        };
        if hold >= eta_below {
            return Err(ConfigError::invalid(
                "cleanup.predict.for",
                humantime::format_duration(hold),
                format!(
                    "must be shorter than cleanup.predict.eta_below ({}): the breach would come before the prediction is acted on",
                    humantime::format_duration(eta_below)
                ),
            ));
        }
        if self.allow_kill && !cleanup_allow_kill {
            return Err(ConfigError::invalid(
                "cleanup.predict.allow_kill",
                true,
                "needs cleanup.allow_kill = true: nothing can be killed without it",
            ));
        }
        if !self.enabled {
            return Ok(None);
        }
        if !self.allow_kill && !actions.is_empty() && actions.iter().all(Action::terminates) {
            return Err(ConfigError::invalid(
                "cleanup.predict.allow_kill",
                false,
                "every action ends processes, so a prediction would run none: add a signal, webhook or exec action, or allow kills on a prediction",
            ));
        }
        Ok(Some(PredictConfig {
            rule: PredictRule { eta_below, hold },
            allow_kill: self.allow_kill,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(eta_below: Option<&str>, hold: Option<&str>, allow_kill: bool) -> RawPredict {
        RawPredict {
            enabled: true,
            eta_below: eta_below.map(Into::into),
            hold: hold.map(Into::into),
            allow_kill,
        }
    }

    #[test]
    fn defaults_and_bounds() {
        let p = raw(Some("5m"), None, false)
            .validate(false, &[])
            .unwrap()
            .unwrap();
        assert_eq!(p.rule.eta_below, Duration::from_secs(300));
        assert_eq!(p.rule.hold, Duration::ZERO);
        assert!(!p.allow_kill);
        let p = raw(Some("24h"), Some("1h"), true)
            .validate(true, &[])
            .unwrap()
            .unwrap();
        assert_eq!(p.rule.hold, MAX_HOLD);
        assert!(p.allow_kill);
    }

    #[test]
    fn off_when_enabled_is_false_but_its_values_are_still_checked() {
        let off = |r: RawPredict| RawPredict {
            enabled: false,
            ..r
        };
        assert_eq!(
            off(raw(None, None, false)).validate(false, &[]).unwrap(),
            None
        );
        assert_eq!(
            off(raw(Some("5m"), None, false))
                .validate(false, &[])
                .unwrap(),
            None
        );
        assert!(off(raw(Some("0s"), None, false))
            .validate(false, &[])
            .is_err());
    }

    #[test]
    fn refusals_name_key_value_and_why() {
        let err = |r: RawPredict, kill: bool| r.validate(kill, &[]).unwrap_err().to_string();
        let e = err(raw(None, Some("1m"), false), false);
        assert!(
            e.contains("cleanup.predict.eta_below") && e.contains("(missing)"),
            "{e}"
        );
        let e = err(raw(Some("50ms"), None, false), false);
        assert!(
            e.contains("cleanup.predict.eta_below") && e.contains("50ms"),
            "{e}"
        );
        let e = err(raw(Some("5m"), Some("5m"), false), false);
        assert!(
            e.contains("cleanup.predict.for") && e.contains("shorter"),
            "{e}"
        );
        let e = err(raw(Some("5m"), None, true), false);
        assert!(
            e.contains("cleanup.predict.allow_kill") && e.contains("cleanup.allow_kill"),
            "{e}"
        );
    }
}
