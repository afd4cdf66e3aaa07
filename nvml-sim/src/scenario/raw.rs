//! The raw scenario format: serde structs that mirror the TOML as closely as possible.
//!
//! Unknown keys are rejected here; nothing else is checked. [`parse_raw`] reports the key path and
//! the line of the first problem, which the caller turns into one `ScenarioError` line.

use serde::de::{self, MapAccess};
use serde::Deserialize;

use crate::units::{
    deserialize_via_scalar, FromScalar, Rate, Refusal, Scalar, Secs, SignedSecs, Size,
};

/// A key path (`device[0].total`, empty for whole-file problems) and a one-line problem.
pub(super) type KeyErr = (String, String);

/// A memory curve: a plain size (constant) or a table with exactly one curve kind.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum RawMemory {
    Constant(u64),
    Table(RawCurveTable),
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCurveTable {
    pub(super) constant: Option<Size>,
    pub(super) linear: Option<RawLinear>,
    pub(super) points: Option<Vec<(Secs, Size)>>,
    pub(super) sawtooth: Option<RawSawtooth>,
    pub(super) trace: Option<RawTrace>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLinear {
    pub(super) start: Size,
    pub(super) rate: Rate,
    pub(super) cap: Option<Size>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSawtooth {
    pub(super) low: Size,
    pub(super) high: Size,
    pub(super) period: Secs,
}

/// A recorded trace to replay: `memory = { trace = { file = "...", ... } }`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTrace {
    pub(super) file: String,
    pub(super) column: Option<String>,
    pub(super) interpolate: Option<RawInterpolation>,
    #[serde(rename = "loop")]
    pub(super) looped: Option<bool>,
    pub(super) speed: Option<f64>,
    pub(super) offset: Option<SignedSecs>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum RawInterpolation {
    Step,
    Linear,
}

impl FromScalar for RawMemory {
    const EXPECTING: &'static str = "a size (\"2GiB\" or integer bytes) or a table with one of \
                                     constant/linear/points/sawtooth/trace";
    fn from_scalar(value: Scalar<'_>) -> Result<Self, Refusal> {
        Size::from_scalar(value).map(|s| RawMemory::Constant(s.0))
    }
    fn from_map<'de, A: MapAccess<'de>>(map: A) -> Result<Self, A::Error> {
        RawCurveTable::deserialize(de::value::MapAccessDeserializer::new(map)).map(RawMemory::Table)
    }
}

deserialize_via_scalar!(RawMemory);

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawScenario {
    pub(super) driver_version: Option<String>,
    pub(super) nvml_version: Option<String>,
    pub(super) cuda_driver_version: Option<i32>,
    pub(super) speed: Option<f64>,
    #[serde(rename = "loop")]
    pub(super) loop_period: Option<Secs>,
    #[serde(default)]
    pub(super) device: Vec<RawDevice>,
    #[serde(default)]
    pub(super) fault: Vec<RawFault>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDevice {
    pub(super) name: Option<String>,
    pub(super) uuid: Option<String>,
    pub(super) pci_bus_id: Option<String>,
    pub(super) pci_device_id: Option<u32>,
    pub(super) pci_subsystem_id: Option<u32>,
    pub(super) total: Size,
    pub(super) reserved: Option<Size>,
    pub(super) overhead: Option<Size>,
    pub(super) gpu_utilization: Option<u32>,
    pub(super) memory_utilization: Option<u32>,
    pub(super) temperature: Option<u32>,
    pub(super) mig_capable: Option<bool>,
    #[serde(default)]
    pub(super) process: Vec<RawProcess>,
    #[serde(default)]
    pub(super) mig: Vec<RawMig>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMig {
    pub(super) name: Option<String>,
    pub(super) uuid: Option<String>,
    pub(super) total: Size,
    pub(super) reserved: Option<Size>,
    pub(super) overhead: Option<Size>,
    pub(super) gpu_instance_id: Option<u32>,
    pub(super) compute_instance_id: Option<u32>,
    #[serde(default)]
    pub(super) process: Vec<RawProcess>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProcess {
    pub(super) pid: Option<u32>,
    pub(super) pid_env: Option<String>,
    pub(super) live: Option<bool>,
    pub(super) name: String,
    #[serde(rename = "type")]
    pub(super) kind: Option<String>,
    pub(super) memory: Option<RawMemory>,
    pub(super) memory_file: Option<String>,
    pub(super) memory_file_env: Option<String>,
    pub(super) start: Option<Secs>,
    pub(super) stop: Option<Secs>,
}

/// A fault as written: one flat table, checked per `kind` when faults are built, so errors can
/// name the exact key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFault {
    pub(super) kind: String,
    pub(super) device: Option<usize>,
    pub(super) from: Option<Secs>,
    pub(super) until: Option<Secs>,
    pub(super) attempts: Option<u32>,
    #[serde(rename = "for")]
    pub(super) for_secs: Option<Secs>,
    pub(super) calls: Option<Vec<String>>,
    pub(super) delay: Option<Secs>,
    pub(super) extra: Option<u32>,
}

impl RawFault {
    /// Names of the optional keys that are set.
    pub(super) fn given(&self) -> Vec<&'static str> {
        [
            ("device", self.device.is_some()),
            ("from", self.from.is_some()),
            ("until", self.until.is_some()),
            ("attempts", self.attempts.is_some()),
            ("for", self.for_secs.is_some()),
            ("calls", self.calls.is_some()),
            ("delay", self.delay.is_some()),
            ("extra", self.extra.is_some()),
        ]
        .into_iter()
        .filter_map(|(k, set)| set.then_some(k))
        .collect()
    }
}

/// Reads and validates a scenario file. `env` looks up environment variables (`pid_env`,
/// Deserializes the raw shape, reporting the key path and a one-line problem on failure.
pub(super) fn parse_raw(text: &str) -> Result<RawScenario, KeyErr> {
    let line_of = |span: Option<std::ops::Range<usize>>| {
        span.map(|s| {
            let upto = s.start.min(text.len());
            format!(" (line {})", text[..upto].matches('\n').count() + 1)
        })
        .unwrap_or_default()
    };
    let de = toml::Deserializer::parse(text).map_err(|e| {
        (
            String::new(),
            format!("{}{}", e.message(), line_of(e.span())),
        )
    })?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let key = if path == "." { String::new() } else { path };
        (key, format!("{}{}", inner.message(), line_of(inner.span())))
    })
}
