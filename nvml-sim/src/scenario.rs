//! Scenario files: the raw TOML shape and the one place that turns it into a validated model.
//!
//! Parsing is two-stage. `Raw*` structs mirror the TOML as closely as possible (serde, unknown keys
//! rejected); [`load_str`] then checks cross-field rules and builds the rich types of
//! [`crate::model`] and [`crate::faults`]. Nothing downstream re-validates. Every failure is a
//! [`ScenarioError`] naming the key path (`device[1].process[0].memory`) and the problem, so init can
//! print exactly one line about it.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use crate::faults::{CallClass, Fault, FaultKind, InitFailure, Window};
use crate::model::{
    Curve, Device, MemoryPool, MemorySource, MigDevice, PciAddress, PidSource, Process, Scenario,
};

/// Largest MIG device count a physical device reports (`nvmlDeviceGetMaxMigDeviceCount`).
pub const MAX_MIG_DEVICES: usize = 7;
/// Largest number of devices a scenario may declare (handles encode the index in 12 bits).
pub const MAX_DEVICES: usize = 64;
/// Largest number of processes per device or MIG device, which keeps every call bounded.
pub const MAX_PROCESSES: usize = 4096;

/// A scenario that could not be loaded: which file, which key, what is wrong.
#[derive(Debug, Clone, PartialEq)]
pub struct ScenarioError {
    /// The scenario file.
    pub file: PathBuf,
    /// Dotted key path, e.g. `device[0].total`; empty for whole-file problems.
    pub key: String,
    /// What is wrong, one line.
    pub problem: String,
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = if self.key.is_empty() {
            "(file)"
        } else {
            &self.key
        };
        write!(
            f,
            "nvml-sim: invalid scenario {}: key `{}`: {}",
            self.file.display(),
            key,
            self.problem.replace('\n', " ")
        )
    }
}

impl std::error::Error for ScenarioError {}

/// A size in bytes, written as an integer or as a string such as `"2GiB"` or `"512 MB"`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Size(pub u64);

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Size;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size: integer bytes or a string like \"2GiB\"")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Size, E> {
                Ok(Size(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Size, E> {
                u64::try_from(v)
                    .map(Size)
                    .map_err(|_| E::custom(format!("size must not be negative, got {v}")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Size, E> {
                parse_size(v).map(Size).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// Parses a size string (`"2GiB"`, `"1.5 GB"`, `"1048576"`) into bytes.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    if let Ok(n) = t.parse::<u64>() {
        return Ok(n);
    }
    bytesize::ByteSize::from_str(t)
        .map(|b| b.as_u64())
        .map_err(|e| format!("cannot parse size {text:?}: {e}"))
}

/// A rate in bytes per scenario second: `"16MiB"`, `"16MiB/s"`, or an integer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate(pub f64);

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Rate;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a rate: bytes per second as an integer or a string like \"8MiB/s\"")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Rate, E> {
                Ok(Rate(v as f64))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Rate, E> {
                Ok(Rate(v as f64))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Rate, E> {
                Ok(Rate(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Rate, E> {
                let t = v.trim();
                let (neg, t) = match t.strip_prefix('-') {
                    Some(rest) => (true, rest),
                    None => (false, t),
                };
                let t = t.strip_suffix("/s").unwrap_or(t);
                let bytes = parse_size(t).map_err(E::custom)? as f64;
                Ok(Rate(if neg { -bytes } else { bytes }))
            }
        }
        d.deserialize_any(V)
    }
}

/// A span of (scenario) time: seconds as a number, or a string like `"30s"`, `"1m30s"`, `"250ms"`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Secs(pub f64);

impl<'de> Deserialize<'de> for Secs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Secs;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration: seconds as a number or a string like \"30s\"")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Secs, E> {
                Ok(Secs(v as f64))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Secs, E> {
                if v < 0 {
                    return Err(E::custom(format!("duration must not be negative, got {v}")));
                }
                Ok(Secs(v as f64))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Secs, E> {
                if !(v.is_finite() && v >= 0.0) {
                    return Err(E::custom(format!(
                        "duration must be a finite number >= 0, got {v}"
                    )));
                }
                Ok(Secs(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Secs, E> {
                humantime::parse_duration(v.trim())
                    .map(|d| Secs(d.as_secs_f64()))
                    .map_err(|e| E::custom(format!("cannot parse duration {v:?}: {e}")))
            }
        }
        d.deserialize_any(V)
    }
}

/// A memory curve: a plain size (constant) or a table with exactly one curve kind.
#[derive(Debug, Clone, PartialEq)]
enum RawMemory {
    Constant(u64),
    Table(RawCurveTable),
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCurveTable {
    constant: Option<Size>,
    linear: Option<RawLinear>,
    points: Option<Vec<(Secs, Size)>>,
    sawtooth: Option<RawSawtooth>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLinear {
    start: Size,
    rate: Rate,
    cap: Option<Size>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSawtooth {
    low: Size,
    high: Size,
    period: Secs,
}

impl<'de> Deserialize<'de> for RawMemory {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawMemory;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a size (\"2GiB\" or integer bytes) or a table with one of \
                     constant/linear/points/sawtooth",
                )
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawMemory, E> {
                Ok(RawMemory::Constant(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawMemory, E> {
                Size::deserialize(de::value::I64Deserializer::new(v))
                    .map(|s| RawMemory::Constant(s.0))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawMemory, E> {
                parse_size(v).map(RawMemory::Constant).map_err(E::custom)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawMemory, A::Error> {
                RawCurveTable::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(RawMemory::Table)
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    driver_version: Option<String>,
    nvml_version: Option<String>,
    cuda_driver_version: Option<i32>,
    speed: Option<f64>,
    #[serde(rename = "loop")]
    loop_period: Option<Secs>,
    #[serde(default)]
    device: Vec<RawDevice>,
    #[serde(default)]
    fault: Vec<RawFault>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDevice {
    name: Option<String>,
    uuid: Option<String>,
    pci_bus_id: Option<String>,
    pci_device_id: Option<u32>,
    pci_subsystem_id: Option<u32>,
    total: Size,
    reserved: Option<Size>,
    overhead: Option<Size>,
    gpu_utilization: Option<u32>,
    memory_utilization: Option<u32>,
    temperature: Option<u32>,
    mig_capable: Option<bool>,
    #[serde(default)]
    process: Vec<RawProcess>,
    #[serde(default)]
    mig: Vec<RawMig>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMig {
    name: Option<String>,
    uuid: Option<String>,
    total: Size,
    reserved: Option<Size>,
    overhead: Option<Size>,
    gpu_instance_id: Option<u32>,
    compute_instance_id: Option<u32>,
    #[serde(default)]
    process: Vec<RawProcess>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProcess {
    pid: Option<u32>,
    pid_env: Option<String>,
    live: Option<bool>,
    name: String,
    #[serde(rename = "type")]
    kind: Option<String>,
    memory: Option<RawMemory>,
    memory_file: Option<String>,
    memory_file_env: Option<String>,
    start: Option<Secs>,
    stop: Option<Secs>,
}

/// A fault as written: one flat table, checked per `kind` in [`build_fault`] so errors can name
/// the exact key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFault {
    kind: String,
    device: Option<usize>,
    from: Option<Secs>,
    until: Option<Secs>,
    attempts: Option<u32>,
    #[serde(rename = "for")]
    for_secs: Option<Secs>,
    calls: Option<Vec<String>>,
    delay: Option<Secs>,
    extra: Option<u32>,
}

impl RawFault {
    /// Names of the optional keys that are set.
    fn given(&self) -> Vec<&'static str> {
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
/// `memory_file_env`); `notes` receives one-line remarks about skipped entries.
pub fn load_file(
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    notes: &mut Vec<String>,
) -> Result<Scenario, ScenarioError> {
    let text = std::fs::read_to_string(path).map_err(|e| ScenarioError {
        file: path.to_path_buf(),
        key: String::new(),
        problem: format!("cannot read file: {e}"),
    })?;
    load_str(&text, path, env, notes)
}

/// Parses scenario text; `path` is used in messages and to resolve relative `memory_file`s.
pub fn load_str(
    text: &str,
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    notes: &mut Vec<String>,
) -> Result<Scenario, ScenarioError> {
    let err = |key: &str, problem: String| ScenarioError {
        file: path.to_path_buf(),
        key: key.to_string(),
        problem,
    };
    let raw = parse_raw(text).map_err(|(key, problem)| err(&key, problem))?;
    let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();

    let speed = raw.speed.unwrap_or(1.0);
    if !(speed.is_finite() && speed > 0.0) {
        return Err(err("speed", format!("must be a number > 0, got {speed}")));
    }
    let loop_period = match raw.loop_period {
        Some(Secs(p)) if p <= 0.0 => return Err(err("loop", "must be longer than 0s".into())),
        Some(Secs(p)) => Some(p),
        None => None,
    };
    if raw.device.len() > MAX_DEVICES {
        return Err(err(
            "device",
            format!("at most {MAX_DEVICES} devices are supported"),
        ));
    }
    let driver_version = raw
        .driver_version
        .unwrap_or_else(|| "550.54.15".to_string());
    check_c_string("driver_version", &driver_version, 80).map_err(|p| err("driver_version", p))?;
    let nvml_version = raw
        .nvml_version
        .unwrap_or_else(|| format!("12.{driver_version}"));
    check_c_string("nvml_version", &nvml_version, 80).map_err(|p| err("nvml_version", p))?;

    let ctx = Ctx {
        base_dir: &base_dir,
        env,
    };
    let mut devices = Vec::with_capacity(raw.device.len());
    for (i, d) in raw.device.into_iter().enumerate() {
        devices.push(build_device(i, d, &ctx, notes).map_err(|(k, p)| err(&k, p))?);
    }
    let mut uuids: Vec<&str> = Vec::new();
    for (i, d) in devices.iter().enumerate() {
        for u in std::iter::once(d.uuid.as_str()).chain(d.migs.iter().map(|m| m.uuid.as_str())) {
            if uuids.contains(&u) {
                return Err(err(
                    &format!("device[{i}].uuid"),
                    format!("uuid {u:?} is used twice"),
                ));
            }
            uuids.push(u);
        }
    }

    let mut faults = Vec::new();
    let mut init_failure = None;
    for (i, f) in raw.fault.into_iter().enumerate() {
        let key = format!("fault[{i}]");
        match build_fault(f, devices.len()).map_err(|(k, p)| err(&format!("{key}{k}"), p))? {
            Built::Fault(f) => faults.push(f),
            Built::Init(f) => {
                if init_failure.is_some() {
                    return Err(err(&key, "only one init_failure fault is allowed".into()));
                }
                init_failure = Some(f);
            }
        }
    }

    Ok(Scenario {
        path: path.to_path_buf(),
        driver_version,
        nvml_version,
        cuda_driver_version: raw.cuda_driver_version.unwrap_or(12040),
        speed,
        loop_period,
        devices,
        faults,
        init_failure,
    })
}

/// Deserializes the raw shape, reporting the key path and a one-line problem on failure.
fn parse_raw(text: &str) -> Result<RawScenario, (String, String)> {
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

struct Ctx<'a> {
    base_dir: &'a Path,
    env: &'a dyn Fn(&str) -> Option<String>,
}

type KeyErr = (String, String);

fn check_c_string(what: &str, s: &str, max: usize) -> Result<(), String> {
    if s.contains('\0') {
        return Err(format!("{what} must not contain NUL"));
    }
    if s.len() >= max {
        return Err(format!("{what} must be shorter than {max} bytes"));
    }
    Ok(())
}

fn build_device(
    i: usize,
    d: RawDevice,
    ctx: &Ctx<'_>,
    notes: &mut Vec<String>,
) -> Result<Device, KeyErr> {
    let key = |k: &str| format!("device[{i}].{k}");
    let name = d.name.unwrap_or_else(|| "NVIDIA Simulated GPU".to_string());
    check_c_string("name", &name, 96).map_err(|p| (key("name"), p))?;
    let uuid = d
        .uuid
        .unwrap_or_else(|| format!("GPU-6e766d6c-5349-4d00-8000-{i:012x}"));
    check_c_string("uuid", &uuid, 80).map_err(|p| (key("uuid"), p))?;
    let pci = match d.pci_bus_id {
        Some(s) => PciAddress::parse(&s).map_err(|p| (key("pci_bus_id"), p))?,
        None => PciAddress {
            domain: 0,
            bus: 0x10 + i as u32,
            device: 0,
            function: 0,
        },
    };
    for (k, v) in [
        ("gpu_utilization", d.gpu_utilization),
        ("memory_utilization", d.memory_utilization),
    ] {
        if v.is_some_and(|v| v > 100) {
            return Err((key(k), "must be a percentage 0..=100".into()));
        }
    }
    let pool = build_pool(
        &format!("device[{i}]"),
        d.total.0,
        d.reserved,
        d.overhead,
        d.process,
        None,
        ctx,
        notes,
    )?;
    if d.mig.len() > MAX_MIG_DEVICES {
        return Err((
            key("mig"),
            format!("at most {MAX_MIG_DEVICES} MIG devices per GPU"),
        ));
    }
    if d.mig_capable == Some(false) && !d.mig.is_empty() {
        return Err((
            key("mig_capable"),
            "is false but MIG devices are declared".into(),
        ));
    }
    let mut migs = Vec::with_capacity(d.mig.len());
    let mut mig_total = 0u64;
    for (m_i, m) in d.mig.into_iter().enumerate() {
        let mkey = format!("device[{i}].mig[{m_i}]");
        let gi = m.gpu_instance_id.unwrap_or(m_i as u32 + 1);
        let ci = m.compute_instance_id.unwrap_or(0);
        let mname = m
            .name
            .unwrap_or_else(|| format!("{name} MIG {}GiB", m.total.0 >> 30));
        check_c_string("name", &mname, 96).map_err(|p| (format!("{mkey}.name"), p))?;
        let muuid = m
            .uuid
            .unwrap_or_else(|| format!("MIG-6e766d6c-5349-4d00-8{m_i:03x}-{i:012x}"));
        check_c_string("uuid", &muuid, 80).map_err(|p| (format!("{mkey}.uuid"), p))?;
        mig_total = mig_total.saturating_add(m.total.0);
        let pool = build_pool(
            &mkey,
            m.total.0,
            m.reserved,
            m.overhead,
            m.process,
            Some((gi, ci)),
            ctx,
            notes,
        )?;
        migs.push(MigDevice {
            name: mname,
            uuid: muuid,
            gpu_instance_id: gi,
            compute_instance_id: ci,
            pool,
        });
    }
    if mig_total > pool.total - pool.reserved {
        return Err((
            key("mig"),
            "MIG device totals exceed the GPU's total minus reserved".into(),
        ));
    }
    Ok(Device {
        name,
        uuid,
        pci,
        pci_device_id: d.pci_device_id.unwrap_or(0x20B2_10DE),
        pci_subsystem_id: d.pci_subsystem_id.unwrap_or(0x1463_10DE),
        gpu_utilization: d.gpu_utilization.unwrap_or(0),
        memory_utilization: d.memory_utilization.unwrap_or(0),
        temperature: d.temperature.unwrap_or(40),
        mig_capable: d.mig_capable.unwrap_or(!migs.is_empty()),
        migs,
        pool,
    })
}

#[allow(clippy::too_many_arguments)]
fn build_pool(
    prefix: &str,
    total: u64,
    reserved: Option<Size>,
    overhead: Option<Size>,
    raw_procs: Vec<RawProcess>,
    instance: Option<(u32, u32)>,
    ctx: &Ctx<'_>,
    notes: &mut Vec<String>,
) -> Result<MemoryPool, KeyErr> {
    let reserved = reserved.map_or(0, |s| s.0);
    let overhead = overhead.map_or(0, |s| s.0);
    if total == 0 {
        return Err((format!("{prefix}.total"), "must be greater than 0".into()));
    }
    if reserved >= total {
        return Err((
            format!("{prefix}.reserved"),
            "must be smaller than total".into(),
        ));
    }
    if overhead > total - reserved {
        return Err((
            format!("{prefix}.overhead"),
            "must not exceed total minus reserved".into(),
        ));
    }
    if raw_procs.len() > MAX_PROCESSES {
        return Err((
            format!("{prefix}.process"),
            format!("at most {MAX_PROCESSES} processes per device"),
        ));
    }
    let mut processes = Vec::with_capacity(raw_procs.len());
    for (p_i, p) in raw_procs.into_iter().enumerate() {
        let pkey = format!("{prefix}.process[{p_i}]");
        if let Some(p) = build_process(&pkey, p, instance, ctx, notes)? {
            processes.push(p);
        }
    }
    Ok(MemoryPool {
        total,
        reserved,
        overhead,
        processes,
    })
}

fn build_process(
    pkey: &str,
    p: RawProcess,
    instance: Option<(u32, u32)>,
    ctx: &Ctx<'_>,
    notes: &mut Vec<String>,
) -> Result<Option<Process>, KeyErr> {
    let key = |k: &str| format!("{pkey}.{k}");
    check_c_string("name", &p.name, 1024).map_err(|e| (key("name"), e))?;
    let pid = match (p.pid, &p.pid_env) {
        (Some(_), Some(_)) => {
            return Err((
                key("pid_env"),
                "give either pid or pid_env, not both".into(),
            ))
        }
        (None, None) => return Err((key("pid"), "missing: give pid or pid_env".into())),
        (Some(pid), None) => {
            if pid == 0 {
                return Err((key("pid"), "must be greater than 0".into()));
            }
            if p.live.unwrap_or(false) {
                PidSource::live(pid)
            } else {
                PidSource::Simulated(pid)
            }
        }
        (None, Some(var)) => {
            if p.live == Some(false) {
                return Err((key("live"), "pid_env entries are always live".into()));
            }
            match (ctx.env)(var) {
                None => {
                    notes.push(format!(
                        "nvml-sim: {pkey}: environment variable {var} is not set; entry skipped"
                    ));
                    return Ok(None);
                }
                Some(v) => match v.trim().parse::<u32>() {
                    Ok(pid) if pid > 0 => PidSource::live(pid),
                    _ => return Err((key("pid_env"), format!("{var}={v:?} is not a process id"))),
                },
            }
        }
    };
    let (compute, graphics) = match p.kind.as_deref() {
        None | Some("compute") => (true, false),
        Some("graphics") => (false, true),
        Some("both") => (true, true),
        Some(other) => {
            return Err((
                key("type"),
                format!("expected compute, graphics or both, got {other:?}"),
            ))
        }
    };
    let file_path = match (&p.memory_file, &p.memory_file_env) {
        (Some(_), Some(_)) => {
            return Err((
                key("memory_file_env"),
                "give either memory_file or memory_file_env, not both".into(),
            ))
        }
        (Some(f), None) => Some(ctx.base_dir.join(f)),
        (None, Some(var)) => match (ctx.env)(var) {
            Some(f) => Some(ctx.base_dir.join(f)),
            None => {
                notes.push(format!(
                    "nvml-sim: {pkey}: environment variable {var} is not set; entry skipped"
                ));
                return Ok(None);
            }
        },
        (None, None) => None,
    };
    let memory = match (file_path, p.memory) {
        (Some(_), Some(_)) => {
            return Err((
                key("memory"),
                "give either memory or memory_file(_env), not both".into(),
            ))
        }
        (Some(path), None) => MemorySource::file(path),
        (None, Some(m)) => MemorySource::Curve(build_curve(m).map_err(|e| (key("memory"), e))?),
        (None, None) => {
            return Err((
                key("memory"),
                "missing: give memory, memory_file or memory_file_env".into(),
            ))
        }
    };
    let start = p.start.map_or(0.0, |s| s.0);
    let stop = p.stop.map(|s| s.0);
    if stop.is_some_and(|s| s <= start) {
        return Err((key("stop"), "must be later than start".into()));
    }
    Ok(Some(Process {
        pid,
        name: p.name,
        compute,
        graphics,
        memory,
        start,
        stop,
        instance,
    }))
}

fn build_curve(m: RawMemory) -> Result<Curve, String> {
    let t = match m {
        RawMemory::Constant(b) => return Ok(Curve::Constant(b)),
        RawMemory::Table(t) => t,
    };
    let given = [
        t.constant.is_some(),
        t.linear.is_some(),
        t.points.is_some(),
        t.sawtooth.is_some(),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    if given != 1 {
        return Err("give exactly one of constant, linear, points, sawtooth".into());
    }
    if let Some(c) = t.constant {
        return Ok(Curve::Constant(c.0));
    }
    if let Some(l) = t.linear {
        if !l.rate.0.is_finite() {
            return Err("linear.rate must be finite".into());
        }
        return Ok(Curve::Linear {
            start: l.start.0,
            rate: l.rate.0,
            cap: l.cap.map(|c| c.0),
        });
    }
    if let Some(points) = t.points {
        if points.is_empty() {
            return Err("points must not be empty".into());
        }
        if points.windows(2).any(|w| w[1].0 .0 <= w[0].0 .0) {
            return Err("points must have strictly increasing times".into());
        }
        return Ok(Curve::Points(
            points.into_iter().map(|(t, s)| (t.0, s.0)).collect(),
        ));
    }
    if let Some(s) = t.sawtooth {
        if s.period.0 <= 0.0 {
            return Err("sawtooth.period must be longer than 0s".into());
        }
        if s.high.0 < s.low.0 {
            return Err("sawtooth.high must be >= sawtooth.low".into());
        }
        return Ok(Curve::Sawtooth {
            low: s.low.0,
            high: s.high.0,
            period: s.period.0,
        });
    }
    Err("give exactly one of constant, linear, points, sawtooth".into())
}

enum Built {
    Fault(Fault),
    Init(InitFailure),
}

fn window(from: Option<Secs>, until: Option<Secs>) -> Result<Window, KeyErr> {
    let w = Window {
        from: from.map_or(0.0, |s| s.0),
        until: until.map(|s| s.0),
    };
    if w.until.is_some_and(|u| u <= w.from) {
        return Err((".until".into(), "must be later than from".into()));
    }
    Ok(w)
}

fn check_device(device: Option<usize>, count: usize) -> Result<(), KeyErr> {
    match device {
        Some(d) if d >= count => Err((
            ".device".into(),
            format!("no device with index {d} (the scenario has {count})"),
        )),
        _ => Ok(()),
    }
}

fn calls(list: Option<Vec<String>>) -> Result<Vec<CallClass>, KeyErr> {
    let list = list.unwrap_or_else(|| vec!["all".to_string()]);
    if list.is_empty() {
        return Err((".calls".into(), "must name at least one call class".into()));
    }
    list.iter()
        .map(|c| CallClass::parse(c).map_err(|e| (".calls".to_string(), e)))
        .collect()
}

fn build_fault(f: RawFault, device_count: usize) -> Result<Built, KeyErr> {
    const WINDOW: [&str; 3] = ["device", "from", "until"];
    let allowed: &[&str] = match f.kind.as_str() {
        "device_lost" | "processes_not_supported" => &WINDOW,
        "init_failure" => &["attempts", "for"],
        "latency" => &["device", "from", "until", "calls", "delay"],
        "process_churn" => &["device", "from", "until", "extra"],
        "internal_error" => &["device", "from", "until", "calls"],
        "driver_reset" => &["from"],
        other => {
            return Err((
                ".kind".into(),
                format!(
                    "unknown fault kind {other:?}; expected device_lost, processes_not_supported, \
                     init_failure, latency, process_churn, internal_error or driver_reset"
                ),
            ))
        }
    };
    if let Some(k) = f.given().into_iter().find(|k| !allowed.contains(k)) {
        return Err((
            format!(".{k}"),
            format!("not used by faults of kind {}", f.kind),
        ));
    }
    check_device(f.device, device_count)?;
    let fault = |kind| {
        Ok(Built::Fault(Fault {
            device: f.device,
            kind,
            window: window(f.from, f.until)?,
        }))
    };
    match f.kind.as_str() {
        "device_lost" => {
            if f.device.is_none() {
                return Err((".device".into(), "missing: which device is lost".into()));
            }
            fault(FaultKind::DeviceLost)
        }
        "processes_not_supported" => fault(FaultKind::ProcessesNotSupported),
        "driver_reset" => {
            if f.from.is_none() {
                return Err((".from".into(), "missing: when the driver is reset".into()));
            }
            fault(FaultKind::DriverReset)
        }
        "init_failure" => {
            if f.attempts.is_none() && f.for_secs.is_none() {
                return Err((
                    String::new(),
                    "init_failure needs attempts and/or for".into(),
                ));
            }
            Ok(Built::Init(InitFailure {
                attempts: f.attempts,
                for_secs: f.for_secs.map(|s| s.0),
            }))
        }
        "latency" => {
            let delay = f.delay.ok_or_else(|| {
                (
                    ".delay".to_string(),
                    "missing: how long to delay".to_string(),
                )
            })?;
            fault(FaultKind::Latency {
                delay: Duration::from_secs_f64(delay.0),
                calls: calls(f.calls.clone())?,
            })
        }
        "process_churn" => {
            let extra = f.extra.ok_or_else(|| {
                (
                    ".extra".to_string(),
                    "missing: how many processes appear".to_string(),
                )
            })?;
            if extra == 0 || extra > 1024 {
                return Err((".extra".into(), "must be between 1 and 1024".into()));
            }
            fault(FaultKind::ProcessChurn { extra })
        }
        _ => fault(FaultKind::InternalError {
            calls: calls(f.calls.clone())?,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Scenario, ScenarioError> {
        load_str(text, Path::new("t.toml"), &|_| None, &mut Vec::new())
    }

    #[test]
    fn sizes_and_durations_parse() {
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("512 MiB"), Ok(512 << 20));
        assert_eq!(parse_size("1000"), Ok(1000));
        assert!(parse_size("lots").is_err());
        let s = load("loop = \"1m30s\"\n[[device]]\ntotal = \"1GB\"\n").unwrap();
        assert_eq!(s.loop_period, Some(90.0));
        assert_eq!(s.devices[0].pool.total, 1_000_000_000);
    }

    #[test]
    fn unknown_key_names_its_path() {
        let e =
            load("[[device]]\ntotal = 10\n[[device.process]]\npid = 5\nname = \"a\"\nmemroy = 1\n")
                .unwrap_err();
        assert_eq!(e.key, "device[0].process[0].memroy");
        assert!(e.problem.contains("memroy"), "{e}");
        assert!(e.problem.contains("line 6"), "{e}");
        assert_eq!(e.to_string().lines().count(), 1);
    }

    #[test]
    fn bad_size_names_the_key() {
        let e = load("[[device]]\ntotal = \"eighty\"\n").unwrap_err();
        assert_eq!(e.key, "device[0].total");
        assert!(e.problem.contains("eighty"), "{e}");
    }

    #[test]
    fn semantic_errors_name_the_key() {
        let e = load("[[device]]\ntotal = 10\nreserved = 10\n").unwrap_err();
        assert_eq!(e.key, "device[0].reserved");
        let e = load("[[device]]\ntotal = 10\n[[fault]]\nkind = \"device_lost\"\ndevice = 3\n")
            .unwrap_err();
        assert_eq!(e.key, "fault[0].device");
        let e = load(
            "[[device]]\ntotal = 10\n[[device.process]]\npid = 1\nname = \"x\"\n\
             memory = { linear = { start = 1, rate = 1 }, constant = 2 }\n",
        )
        .unwrap_err();
        assert_eq!(e.key, "device[0].process[0].memory");
        let e = load("[[fault]]\nkind = \"meteor\"\n").unwrap_err();
        assert_eq!(e.key, "fault[0].kind");
        assert!(e.problem.contains("meteor"), "{e}");
    }

    #[test]
    fn pid_env_resolves_or_skips() {
        let text = "[[device]]\ntotal = 100\n[[device.process]]\npid_env = \"P\"\nname = \"x\"\nmemory = 1\n";
        let mut notes = Vec::new();
        let s = load_str(text, Path::new("t.toml"), &|_| None, &mut notes).unwrap();
        assert!(s.devices[0].pool.processes.is_empty());
        assert_eq!(notes.len(), 1);
        assert!(notes[0].contains("P is not set"));
        let env = |k: &str| (k == "P").then(|| "4242".to_string());
        let s = load_str(text, Path::new("t.toml"), &env, &mut Vec::new()).unwrap();
        assert_eq!(s.devices[0].pool.processes[0].pid.pid(), 4242);
        assert!(s.devices[0].pool.processes[0].pid.is_live());
    }

    #[test]
    fn readme_example_is_valid() {
        let readme = include_str!("../README.md");
        let section = readme
            .split("### A complete example")
            .nth(1)
            .expect("README has the example section");
        let body = section
            .split("```toml")
            .nth(1)
            .and_then(|s| s.split("```").next())
            .expect("example is a toml block");
        let env = |k: &str| (k == "MY_JOB_PID").then(|| std::process::id().to_string());
        let s = load_str(body, Path::new("example.toml"), &env, &mut Vec::new())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.devices.len(), 2);
        assert_eq!(s.faults.len(), 2);
        assert!(s.init_failure.is_some());
    }

    #[test]
    fn shipped_scenarios_load() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().and_then(|e| e.to_str()) != Some("toml") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(
                text.starts_with('#'),
                "{} must open with a comment",
                path.display()
            );
            let s = load_file(&path, &|_| None, &mut Vec::new()).unwrap_or_else(|e| panic!("{e}"));
            assert!(!s.devices.is_empty(), "{}", path.display());
            for d in &s.devices {
                for p in d
                    .pool
                    .processes
                    .iter()
                    .chain(d.migs.iter().flat_map(|m| m.pool.processes.iter()))
                {
                    assert!(
                        p.pid.pid() > 4_194_304,
                        "{}: pid {} may be real",
                        path.display(),
                        p.pid.pid()
                    );
                }
            }
            seen += 1;
        }
        assert!(seen >= 7, "expected the shipped scenarios, found {seen}");
    }
}
