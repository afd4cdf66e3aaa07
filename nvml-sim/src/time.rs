//! Scenario time: how many scenario seconds have passed, and who decides.
//!
//! In order of precedence: a value set in-process with `nvmlSimSetTime` (tests that load the
//! library themselves); the file named by `NVML_SIM_TIME_FILE` at init (tests that drive another
//! process, e.g. the exporter); otherwise wall-clock seconds since init times `speed`. Looping
//! (`loop = "120s"`) applies to all three.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Bit pattern meaning "no override" (a NaN no caller can set, since NaN is rejected).
const NO_OVERRIDE: u64 = u64::MAX;

static OVERRIDE: AtomicU64 = AtomicU64::new(NO_OVERRIDE);

/// Sets the in-process time override; `None` clears it. Returns false for NaN, infinite or
/// negative seconds.
pub fn set_override(seconds: Option<f64>) -> bool {
    match seconds {
        None => {
            OVERRIDE.store(NO_OVERRIDE, Ordering::SeqCst);
            true
        }
        Some(s) if s.is_finite() && s >= 0.0 => {
            OVERRIDE.store(s.to_bits(), Ordering::SeqCst);
            true
        }
        Some(_) => false,
    }
}

fn current_override() -> Option<f64> {
    match OVERRIDE.load(Ordering::SeqCst) {
        NO_OVERRIDE => None,
        bits => Some(f64::from_bits(bits)),
    }
}

/// The clock of one initialised library instance.
#[derive(Debug)]
pub struct Clock {
    started: Instant,
    speed: f64,
    loop_period: Option<f64>,
    time_file: Option<PathBuf>,
}

impl Clock {
    /// A clock starting now.
    pub fn new(speed: f64, loop_period: Option<f64>, time_file: Option<PathBuf>) -> Self {
        Clock {
            started: Instant::now(),
            speed,
            loop_period,
            time_file,
        }
    }

    /// Current scenario time in seconds.
    pub fn now(&self) -> f64 {
        let raw = current_override()
            .or_else(|| self.time_file.as_ref().map(|p| read_time_file(p)))
            .unwrap_or_else(|| self.started.elapsed().as_secs_f64() * self.speed);
        match self.loop_period {
            Some(p) => raw % p,
            None => raw,
        }
    }
}

/// Seconds written in a time file; a missing, empty or unparsable file (or a negative or
/// non-finite number) reads as 0.
fn read_time_file(path: &std::path::Path) -> f64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| t.trim().parse::<f64>().ok())
        .filter(|v| v.is_finite() && *v >= 0.0)
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_file_and_loop() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t");
        let clock = Clock::new(1.0, Some(100.0), Some(path.clone()));
        assert_eq!(clock.now(), 0.0);
        std::fs::write(&path, "12.5\n").unwrap();
        assert_eq!(clock.now(), 12.5);
        std::fs::write(&path, "250").unwrap();
        assert_eq!(clock.now(), 50.0);
        std::fs::write(&path, "").unwrap();
        assert_eq!(clock.now(), 0.0);
        std::fs::write(&path, "-3").unwrap();
        assert_eq!(clock.now(), 0.0);
    }

    #[test]
    fn wall_clock_scales_with_speed() {
        let clock = Clock::new(1000.0, None, None);
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert!(clock.now() >= 20.0);
    }
}
