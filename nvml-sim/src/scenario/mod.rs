//! Scenario files: reading one, and the one place that turns it into a validated model.
//!
//! Parsing is two-stage, split by job:
//!
//! - `raw`: serde structs mirroring the TOML (unknown keys rejected), with key paths and lines;
//! - `build`: devices, pools, processes and memory curves, every cross-field rule checked once;
//! - `trace`: recorded `(time, bytes)` CSV traces that a `trace` memory curve replays;
//! - `faults`: `[[fault]]` tables, each kind with only the keys it uses;
//! - this module: [`load_file`] / [`load_str`], top-level keys and whole-scenario rules.
//!
//! The submodules depend on each other one way (`build` → `trace` → `raw`, `faults` → `raw`) and
//! never on this module; units come from [`crate::units`]. Nothing downstream re-validates. Every
//! failure is a [`ScenarioError`] naming the key path (`device[1].process[0].memory`) and the
//! problem, so init can print exactly one line about it.

mod build;
mod faults;
mod raw;
mod trace;

use std::fmt;
use std::path::{Path, PathBuf};

use crate::model::Scenario;
pub use crate::units::{parse_size, Rate, Secs, Size};
use build::{build_device, check_c_string, Ctx};
pub use build::{MAX_DEVICES, MAX_MIG_DEVICES, MAX_PROCESSES};
use faults::{build_fault, Built};
use raw::parse_raw;

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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::faults::CallClass;

    fn load(text: &str) -> Result<Scenario, ScenarioError> {
        load_str(text, Path::new("t.toml"), &|_| None, &mut Vec::new())
    }

    fn scenario(faults: &str) -> Scenario {
        let text = format!("[[device]]\ntotal = 100\n[[device]]\ntotal = 100\n{faults}");
        load_str(&text, Path::new("t.toml"), &|_| None, &mut Vec::new()).unwrap()
    }

    #[test]
    fn windows_and_targets() {
        let s = scenario(
            "[[fault]]\nkind = \"device_lost\"\ndevice = 1\nfrom = \"10s\"\nuntil = 20\n\
             [[fault]]\nkind = \"latency\"\ncalls = [\"memory\"]\ndelay = \"250ms\"\n\
             [[fault]]\nkind = \"latency\"\ndevice = 0\ndelay = \"1s\"\n\
             [[fault]]\nkind = \"process_churn\"\ndevice = 0\nextra = 6\n",
        );
        assert!(!s.device_lost(1, 9.9));
        assert!(s.device_lost(1, 10.0));
        assert!(!s.device_lost(1, 20.0));
        assert!(!s.device_lost(0, 15.0));
        assert_eq!(
            s.latency(CallClass::Memory, Some(1), 0.0),
            Duration::from_millis(250)
        );
        assert_eq!(
            s.latency(CallClass::Memory, Some(0), 0.0),
            Duration::from_millis(1250)
        );
        assert_eq!(
            s.latency(CallClass::Info, Some(0), 0.0),
            Duration::from_secs(1)
        );
        assert_eq!(
            s.latency(CallClass::Memory, None, 0.0),
            Duration::from_millis(250)
        );
        assert_eq!(s.latency(CallClass::System, None, 0.0), Duration::ZERO);
        assert_eq!(s.churn(0, 0.0), 6);
        assert_eq!(s.churn(1, 0.0), 0);
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
        let readme = include_str!("../../README.md");
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
