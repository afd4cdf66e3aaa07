//! Process-wide library state: the reference-counted init, the loaded scenario and its clock.
//!
//! Like real NVML, every successful `nvmlInit*` must be paired with an `nvmlShutdown`; the scenario
//! is read when the count goes from 0 to 1 and dropped when it returns to 0. Calls take a cheap
//! `Arc` of the current [`Sim`] under the lock and do their work (including injected delays)
//! without holding it.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Instant;

use crate::faults::CallClass;
use crate::model::Scenario;
use crate::time::Clock;

/// Environment variable naming the scenario file.
pub const SCENARIO_ENV: &str = "NVML_SIM_SCENARIO";
/// Environment variable naming a file that holds the scenario time in seconds.
pub const TIME_FILE_ENV: &str = "NVML_SIM_TIME_FILE";

/// An initialised simulation.
#[derive(Debug)]
pub struct Sim {
    /// The scenario.
    pub scenario: Scenario,
    /// Its clock.
    pub clock: Clock,
    /// Scenario time when this session was initialised (for `driver_reset` faults).
    pub init_time: f64,
}

#[derive(Default)]
struct Global {
    refcount: u32,
    sim: Option<Arc<Sim>>,
    /// Init attempts that had to load a scenario, over the whole life of the process.
    load_attempts: u64,
}

static GLOBAL: Mutex<Global> = Mutex::new(Global {
    refcount: 0,
    sim: None,
    load_attempts: 0,
});

static LOADED_AT: OnceLock<Instant> = OnceLock::new();

/// Records when the library was loaded (called from an ELF constructor, see `lib.rs`).
pub fn mark_loaded() {
    LOADED_AT.get_or_init(Instant::now);
}

fn lock() -> MutexGuard<'static, Global> {
    // A panic while holding the lock cannot leave `Global` half-updated in a harmful way (every
    // field is written in one assignment), so a poisoned lock is still usable.
    GLOBAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The current simulation, if initialised.
pub fn current() -> Option<Arc<Sim>> {
    lock().sim.clone()
}

/// Why init failed.
#[derive(Debug, PartialEq, Eq)]
pub enum InitError {
    /// `NVML_SIM_SCENARIO` unset, or an `init_failure` fault: behave like a host without a driver.
    DriverNotLoaded,
    /// The scenario file is invalid (already reported on stderr).
    BadScenario,
}

/// Makes panics inside the library print one line instead of a backtrace. The hook belongs to
/// this library's own copy of std, so the host program's panic handling is untouched.
fn quiet_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let msg = info
                .payload()
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| info.payload().downcast_ref::<String>().map(String::as_str))
                .unwrap_or("panic");
            let at = info
                .location()
                .map(|l| format!(" at {}:{}", l.file(), l.line()))
                .unwrap_or_default();
            eprintln!("nvml-sim: internal error{at}: {msg}; the call returns NVML_ERROR_UNKNOWN");
        }));
    });
}

/// `nvmlInit*`: loads the scenario on the first reference.
pub fn init() -> Result<(), InitError> {
    quiet_panics();
    let mut g = lock();
    if g.refcount > 0 {
        g.refcount = g.refcount.saturating_add(1);
        return Ok(());
    }
    g.load_attempts += 1;
    let attempt = g.load_attempts;
    let since_load = LOADED_AT.get_or_init(Instant::now).elapsed().as_secs_f64();

    let Some(path) = std::env::var_os(SCENARIO_ENV).filter(|p| !p.is_empty()) else {
        eprintln!(
            "nvml-sim: {SCENARIO_ENV} is not set; behaving like a host without an NVIDIA driver"
        );
        return Err(InitError::DriverNotLoaded);
    };
    let path = PathBuf::from(path);
    let mut notes = Vec::new();
    let env = |k: &str| std::env::var(k).ok();
    let scenario = match crate::scenario::load_file(&path, &env, &mut notes) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return Err(InitError::BadScenario);
        }
    };
    for n in &notes {
        eprintln!("{n}");
    }
    if scenario
        .init_failure
        .is_some_and(|f| f.fails(attempt, since_load))
    {
        return Err(InitError::DriverNotLoaded);
    }
    let time_file = std::env::var_os(TIME_FILE_ENV)
        .filter(|p| !p.is_empty())
        .map(PathBuf::from);
    let clock = Clock::new(scenario.speed, scenario.loop_period, time_file);
    let init_time = clock.now();
    let sim = Sim {
        scenario,
        clock,
        init_time,
    };
    let delay = sim.scenario.latency(CallClass::Init, None, sim.clock.now());
    if !delay.is_zero() {
        std::thread::sleep(delay);
    }
    g.sim = Some(Arc::new(sim));
    g.refcount = 1;
    Ok(())
}

/// `nvmlShutdown`: false when the library was not initialised.
pub fn shutdown() -> bool {
    let mut g = lock();
    if g.refcount == 0 {
        return false;
    }
    g.refcount -= 1;
    if g.refcount == 0 {
        g.sim = None;
    }
    true
}
