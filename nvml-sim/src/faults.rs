//! Scheduled faults: which NVML calls misbehave, on which device, during which scenario window.
//!
//! Faults are plain data with no knowledge of the rest of the scenario. The FFI layer asks the
//! scenario (`model::Scenario`: `device_lost`, `latency`, ...) before doing the real work
//! of a call, so every entry point gets fault behaviour the same way.

use std::time::Duration;

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

    /// Whether `list` (a fault's `calls`) covers `call`.
    pub fn matches(list: &[CallClass], call: CallClass) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;

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
