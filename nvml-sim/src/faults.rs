//! Scheduled faults: which NVML calls misbehave, on which device, during which scenario window.
//!
//! Faults are data; the FFI layer asks [`Faults`]-style questions (`lost`, `latency`, ...) before
//! doing the real work of a call, so every entry point gets fault behaviour the same way.

use std::time::Duration;

use crate::model::Scenario;

/// A half-open scenario-time window `[from, until)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    /// Start, in scenario seconds.
    pub from: f64,
    /// End, in scenario seconds; open-ended when `None`.
    pub until: Option<f64>,
}

impl Window {
    /// Whether `t` lies inside the window.
    pub fn contains(&self, t: f64) -> bool {
        t >= self.from && self.until.is_none_or(|u| t < u)
    }
}

/// Groups of NVML calls a latency or internal-error fault can target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallClass {
    /// `nvmlInit*` (latency only; applied while init holds the library lock).
    Init,
    /// Device count and handle lookups.
    Handles,
    /// Memory info v1/v2.
    Memory,
    /// Running-process lists and `nvmlSystemGetProcessName`.
    Processes,
    /// Name, UUID, PCI info, index, MIG queries.
    Info,
    /// Utilization, temperature and the NOT_SUPPORTED telemetry stubs.
    Telemetry,
    /// Driver/NVML/CUDA version queries.
    System,
    /// Every class.
    All,
}

impl CallClass {
    /// Parses the scenario spelling.
    pub fn parse(s: &str) -> Result<Self, String> {
        Ok(match s {
            "init" => CallClass::Init,
            "handles" => CallClass::Handles,
            "memory" => CallClass::Memory,
            "processes" => CallClass::Processes,
            "info" => CallClass::Info,
            "telemetry" => CallClass::Telemetry,
            "system" => CallClass::System,
            "all" => CallClass::All,
            other => {
                return Err(format!(
                    "unknown call class {other:?}; expected init, handles, memory, processes, \
                     info, telemetry, system or all"
                ))
            }
        })
    }

    fn matches(list: &[CallClass], call: CallClass) -> bool {
        list.iter().any(|c| *c == CallClass::All || *c == call)
    }
}

/// What a fault does.
#[derive(Debug, Clone, PartialEq)]
pub enum FaultKind {
    /// Every per-device call returns NVML_ERROR_GPU_IS_LOST.
    DeviceLost,
    /// Running-process queries return NVML_ERROR_NOT_SUPPORTED.
    ProcessesNotSupported,
    /// Matching calls sleep before answering.
    Latency {
        /// How long.
        delay: Duration,
        /// Which calls.
        calls: Vec<CallClass>,
    },
    /// A process-list fill call sees `extra` processes more than the count call reported.
    ProcessChurn {
        /// How many processes appear between the two calls.
        extra: u32,
    },
    /// Matching calls hit an internal panic, which the FFI edge turns into NVML_ERROR_UNKNOWN.
    InternalError {
        /// Which calls.
        calls: Vec<CallClass>,
    },
    /// The driver is reloaded at the window's start: a library session initialised before then
    /// gets NVML_ERROR_UNINITIALIZED from every call until the client shuts down and inits again.
    DriverReset,
}

/// A fault with its target and window.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    /// Device index it applies to; `None` means every device (and device-less calls).
    pub device: Option<usize>,
    /// What it does.
    pub kind: FaultKind,
    /// When.
    pub window: Window,
}

/// Init attempts that fail with NVML_ERROR_DRIVER_NOT_LOADED.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InitFailure {
    /// The first N init attempts in this process fail.
    pub attempts: Option<u32>,
    /// Init attempts fail until this many wall-clock seconds after the library was loaded.
    pub for_secs: Option<f64>,
}

impl InitFailure {
    /// Whether init attempt number `attempt` (1-based), `since_load` seconds after load, fails.
    pub fn fails(&self, attempt: u64, since_load: f64) -> bool {
        self.attempts.is_some_and(|n| attempt <= u64::from(n))
            || self.for_secs.is_some_and(|s| since_load < s)
    }
}

impl Scenario {
    fn active(&self, device: Option<usize>, t: f64) -> impl Iterator<Item = &Fault> {
        self.faults.iter().filter(move |f| {
            f.window.contains(t) && (f.device.is_none() || device.is_none() || f.device == device)
        })
    }

    /// Whether a driver reset happened after a session initialised at `init_t` and by `t`.
    pub fn reset_since(&self, init_t: f64, t: f64) -> bool {
        self.faults.iter().any(|f| {
            f.kind == FaultKind::DriverReset && f.window.from > init_t && f.window.from <= t
        })
    }

    /// Whether device `index` is lost at `t`.
    pub fn device_lost(&self, index: usize, t: f64) -> bool {
        self.active(Some(index), t)
            .any(|f| f.device.is_some() && f.kind == FaultKind::DeviceLost)
    }

    /// Whether process queries on device `index` are unsupported at `t`.
    pub fn processes_unsupported(&self, index: usize, t: f64) -> bool {
        self.active(Some(index), t)
            .any(|f| f.kind == FaultKind::ProcessesNotSupported)
    }

    /// Total injected delay for a call of class `call` on `device` (or a device-less call).
    pub fn latency(&self, call: CallClass, device: Option<usize>, t: f64) -> Duration {
        self.active(device, t)
            .filter(|f| device.is_some() || f.device.is_none())
            .filter_map(|f| match &f.kind {
                FaultKind::Latency { delay, calls } if CallClass::matches(calls, call) => {
                    Some(*delay)
                }
                _ => None,
            })
            .sum()
    }

    /// Extra processes a fill call on `device` sees at `t`.
    pub fn churn(&self, index: usize, t: f64) -> u32 {
        self.active(Some(index), t)
            .filter_map(|f| match f.kind {
                FaultKind::ProcessChurn { extra } => Some(extra),
                _ => None,
            })
            .fold(0u32, u32::saturating_add)
    }

    /// Whether a call of class `call` on `device` hits an injected internal error at `t`.
    pub fn internal_error(&self, call: CallClass, device: Option<usize>, t: f64) -> bool {
        self.active(device, t)
            .filter(|f| device.is_some() || f.device.is_none())
            .any(|f| matches!(&f.kind, FaultKind::InternalError { calls } if CallClass::matches(calls, call)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn scenario(faults: &str) -> Scenario {
        let text = format!("[[device]]\ntotal = 100\n[[device]]\ntotal = 100\n{faults}");
        crate::scenario::load_str(&text, Path::new("t.toml"), &|_| None, &mut Vec::new()).unwrap()
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
    fn init_failure_rules() {
        let f = InitFailure {
            attempts: Some(2),
            for_secs: None,
        };
        assert!(f.fails(1, 100.0) && f.fails(2, 100.0) && !f.fails(3, 0.0));
        let f = InitFailure {
            attempts: None,
            for_secs: Some(5.0),
        };
        assert!(f.fails(9, 4.9) && !f.fails(1, 5.0));
    }
}
