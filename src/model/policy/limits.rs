//! Limits: the `[limits]` section (a default set and per-GPU overrides), its validation, and the
//! resolution of a device's limit set into bytes.
//!
//! Everything but validation errors is pure: which set applies to a device (first matching
//! override, else the default) and what it means in bytes for that device's total.

use serde::{Deserialize, Serialize};

use crate::base::input::{parse_bounded_size, ConfigError};

/// A limit as configured: a percentage of the device's total or an absolute size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LimitSpec {
    Percent(f64),
    Bytes(u64),
}

impl LimitSpec {
    /// The limit in bytes for a device of `total` bytes, and whether it had to be clamped.
    pub fn resolve(self, total: u64) -> (u64, bool) {
        match self {
            LimitSpec::Percent(p) => (((total as f64) * p / 100.0).round() as u64, false),
            LimitSpec::Bytes(b) if b > total => (total, true),
            LimitSpec::Bytes(b) => (b, false),
        }
    }
}

/// Effective limits of one device, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub soft: u64,
    pub hard: u64,
    pub hysteresis: u64,
}

/// What resolving a limit set against a device's total had to adjust, for a warning log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Adjustments {
    pub soft_clamped: bool,
    pub hard_clamped: bool,
    /// Soft ended up at or above hard (mixed units or clamping); soft was lowered to just below hard.
    pub soft_lowered: bool,
}

impl Adjustments {
    pub fn any(&self) -> bool {
        self.soft_clamped || self.hard_clamped || self.soft_lowered
    }
}

/// One set of limit specifications, resolved against a device's total when it is seen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LimitSet {
    pub soft: LimitSpec,
    pub hard: LimitSpec,
    pub hysteresis: LimitSpec,
}

impl LimitSet {
    /// Turns the specifications into bytes for a device of `total` bytes.
    pub fn resolve(&self, total: u64) -> (Limits, Adjustments) {
        let (mut soft_b, soft_clamped) = self.soft.resolve(total);
        let (hard_b, hard_clamped) = self.hard.resolve(total);
        let (hyst_b, _) = self.hysteresis.resolve(total);
        let soft_lowered = soft_b >= hard_b;
        if soft_lowered {
            soft_b = hard_b.saturating_sub(1);
        }
        (
            Limits {
                soft: soft_b,
                hard: hard_b,
                hysteresis: hyst_b,
            },
            Adjustments {
                soft_clamped,
                hard_clamped,
                soft_lowered,
            },
        )
    }
}

/// How an override picks its GPUs.
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

/// The validated `[limits]` section.
#[derive(Debug, Clone, PartialEq)]
pub struct LimitsConfig {
    pub default: LimitSet,
    pub overrides: Vec<LimitOverride>,
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

/// The `[limits]` section as written.
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

impl RawLimits {
    /// Checks the default set and every override; the first problem is returned.
    pub fn validate(&self) -> Result<LimitsConfig, ConfigError> {
        let default = limit_set("limits", &self.soft, &self.hard, &self.hysteresis)?;
        let mut overrides = Vec::with_capacity(self.overrides.len());
        for (i, o) in self.overrides.iter().enumerate() {
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
                o.soft.as_deref().unwrap_or(&self.soft),
                o.hard.as_deref().unwrap_or(&self.hard),
                o.hysteresis.as_deref().unwrap_or(&self.hysteresis),
            )?;
            overrides.push(LimitOverride { matcher, limits });
        }
        Ok(LimitsConfig { default, overrides })
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
    let bytes = parse_bounded_size(key, value)?;
    if bytes == 0 {
        return Err(ConfigError::invalid(
            key,
            value,
            "must be greater than zero",
        ));
    }
    Ok(LimitSpec::Bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    fn set(soft: LimitSpec, hard: LimitSpec) -> LimitSet {
        LimitSet {
            soft,
            hard,
            hysteresis: LimitSpec::Percent(2.0),
        }
    }

    #[test]
    fn resolves_percent_and_clamps_bytes() {
        let (l, adj) = set(LimitSpec::Percent(85.0), LimitSpec::Percent(95.0)).resolve(80 * GIB);
        assert_eq!(l.soft, 68 * GIB);
        assert_eq!(l.hard, 76 * GIB);
        assert_eq!(l.hysteresis, (80 * GIB) / 50);
        assert!(!adj.any());
        let (l, adj) =
            set(LimitSpec::Bytes(60 * GIB), LimitSpec::Bytes(100 * GIB)).resolve(80 * GIB);
        assert_eq!(l.hard, 80 * GIB);
        assert!(adj.hard_clamped && !adj.soft_clamped && !adj.soft_lowered);
    }

    #[test]
    fn soft_at_or_above_hard_after_resolution_is_lowered() {
        let (l, adj) = set(LimitSpec::Bytes(79 * GIB), LimitSpec::Percent(50.0)).resolve(80 * GIB);
        assert!(adj.soft_lowered);
        assert!(l.soft < l.hard);
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
    fn first_matching_override_wins() {
        let cfg = RawLimits {
            soft: "60GiB".into(),
            hard: "70GiB".into(),
            overrides: vec![
                RawOverride {
                    model: Some("NVIDIA H100".into()),
                    soft: Some("90%".into()),
                    hard: Some("99%".into()),
                    ..Default::default()
                },
                RawOverride {
                    index: Some(3),
                    hard: Some("75GiB".into()),
                    ..Default::default()
                },
            ],
            ..Default::default()
        }
        .validate()
        .unwrap();
        assert_eq!(
            cfg.for_device(3, "GPU-x", "NVIDIA H100").hard,
            LimitSpec::Percent(99.0)
        );
        assert_eq!(
            cfg.for_device(3, "GPU-x", "Other").hard,
            LimitSpec::Bytes(75 * GIB)
        );
        assert_eq!(
            cfg.for_device(0, "GPU-x", "Other").hard,
            LimitSpec::Bytes(70 * GIB)
        );
    }

    #[test]
    fn an_override_needs_exactly_one_matcher() {
        let err = RawLimits {
            overrides: vec![RawOverride {
                index: Some(1),
                model: Some("X".into()),
                ..Default::default()
            }],
            ..Default::default()
        }
        .validate()
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("limits.overrides[0]"), "{err}");
    }
}
