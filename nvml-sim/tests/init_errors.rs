//! Init failures that must be reported on stderr in exactly one line: an invalid scenario (error
//! code NVML_ERROR_UNKNOWN) and a missing NVML_SIM_SCENARIO (NVML_ERROR_DRIVER_NOT_LOADED).
//!
//! The library writes to file descriptor 2 directly, so these tests redirect that descriptor to a
//! file around the init call. They live in their own test binary so no other test's output can
//! land in the capture; within this binary, `CAPTURE_LOCK` serialises the captures.

use std::os::fd::AsRawFd;
use std::sync::Mutex;

use nvml_wrapper::error::NvmlError;
use nvml_wrapper::Nvml;
use vram_testkit::sim::Sim;

/// Descriptor 2 is process-wide: one capture at a time.
static CAPTURE_LOCK: Mutex<()> = Mutex::new(());

/// Runs `f` with stderr redirected to a file and returns (result, captured text).
fn capture_stderr<R>(f: impl FnOnce() -> R) -> (R, String) {
    let _guard = CAPTURE_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let file = tempfile::NamedTempFile::new().unwrap();
    // SAFETY: plain descriptor juggling on valid descriptors; restored before returning.
    let saved = unsafe { libc::dup(2) };
    assert!(saved >= 0);
    assert!(unsafe { libc::dup2(file.as_file().as_raw_fd(), 2) } >= 0);
    let r = f();
    assert!(unsafe { libc::dup2(saved, 2) } >= 0);
    unsafe { libc::close(saved) };
    (r, std::fs::read_to_string(file.path()).unwrap())
}

fn init_invalid(scenario: &str) -> (Result<Nvml, NvmlError>, String, String) {
    let sim = Sim::new(scenario);
    let (r, err) = capture_stderr(|| sim.init());
    (r, err, sim.scenario.display().to_string())
}

#[test]
fn invalid_scenarios_fail_init_with_one_line() {
    let cases = [
        ("[[device]]\ntotal = \"lots\"\n", "device[0].total", "lots"),
        (
            "[[device]]\ntotal = 10\ncolour = \"red\"\n",
            "device[0].colour",
            "unknown field",
        ),
        (
            "[[device]]\ntotal = 10\nreserved = 20\n",
            "device[0].reserved",
            "smaller than total",
        ),
        ("speed = 0\n[[device]]\ntotal = 10\n", "speed", "> 0"),
        ("[[device]\ntotal = 10\n", "(file)", "line 1"),
        (
            "[[device]]\ntotal = 10\n[[device.process]]\npid = 5000001\nname = \"x\"\n",
            "device[0].process[0].memory",
            "missing",
        ),
        (
            "[[device]]\ntotal = 10\n[[fault]]\nkind = \"latency\"\ndelay = \"soon\"\n",
            "fault[0].delay",
            "soon",
        ),
    ];
    for (text, key, problem) in cases {
        let (r, err, file) = init_invalid(text);
        assert!(matches!(r, Err(NvmlError::Unknown)), "{text}: {r:?}");
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), 1, "{text}: {err}");
        assert!(lines[0].contains(&file), "{}", lines[0]);
        assert!(lines[0].contains(&format!("`{key}`")), "{}", lines[0]);
        assert!(lines[0].contains(problem), "{}", lines[0]);
    }
}

#[test]
fn unreadable_scenario_names_the_file() {
    let sim = Sim::new("");
    std::fs::remove_file(&sim.scenario).unwrap();
    let (r, err) = capture_stderr(|| sim.init());
    assert!(matches!(r, Err(NvmlError::Unknown)));
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("cannot read file"), "{err}");
}

#[test]
fn unset_scenario_is_driver_not_loaded() {
    let sim = Sim::new("[[device]]\ntotal = 10\n");
    let (r, err) = capture_stderr(|| {
        let _g = vram_testkit::sim::ENV_LOCK
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        Nvml::builder().lib_path(sim.lib.as_os_str()).init()
    });
    assert!(matches!(r, Err(NvmlError::DriverNotLoaded)), "{r:?}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("NVML_SIM_SCENARIO"), "{err}");
}

#[test]
fn skipped_pid_env_entry_is_noted() {
    let sim = Sim::new(
        "[[device]]\ntotal = 10\n[[device.process]]\npid_env = \"NVML_SIM_TEST_NOPE\"\n\
         name = \"x\"\nmemory = 1\n",
    );
    let (r, err) = capture_stderr(|| sim.init());
    let nvml = r.expect("init succeeds without the entry");
    let d = nvml.device_by_index(0).unwrap();
    assert!(d.running_compute_processes().unwrap().is_empty());
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("NVML_SIM_TEST_NOPE is not set"), "{err}");
}
