//! nvml-sim's own test harness (its integration tests use it): a private copy of the built library
//! per test, a per-test scenario and time file, and raw FFI access for what nvml-wrapper does not
//! expose. The exporter's tests start the real binary instead ([`crate::exporter`]).
//!
//! Library state is global per loaded copy, so every test copies `libnvml_sim.so` to its own
//! temporary path (dlopen of distinct paths gives distinct instances). Environment variables are
//! process-global, so setting them and calling init happens under [`ENV_LOCK`]; the library reads
//! them only during init.

// A device handle here is an opaque token nvml-sim decodes and checks (a stray value is refused
// with INVALID_ARGUMENT, never dereferenced), so the raw calls that take one are safe to call.
#![allow(clippy::not_unsafe_ptr_arg_deref)]

use std::ffi::{c_char, c_double, c_uint, c_void, CStr};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use nvml_wrapper::error::NvmlError;
use nvml_wrapper::Nvml;
use nvml_wrapper_sys::bindings::{
    nvmlDevice_t, nvmlMemory_t, nvmlMemory_v2_t, nvmlProcessInfo_t, nvmlProcessInfo_v1_t,
    nvmlReturn_t,
};

/// Serialises environment changes plus init across the tests of one test binary.
pub static ENV_LOCK: Mutex<()> = Mutex::new(());

pub const GIB: u64 = 1 << 30;
pub const MIB: u64 = 1 << 20;

/// The cdylib cargo built for this test run: `<target dir>/<profile>/libnvml_sim.so`.
pub fn built_library() -> PathBuf {
    const NAME: &str = "libnvml_sim.so";
    // Test executables live in `<target dir>/<profile>/deps/`, next to the cdylib cargo built for
    // this run (`cargo build` also copies it one level up); walk up from there.
    if let Ok(exe) = std::env::current_exe() {
        for dir in exe.ancestors().skip(1) {
            let candidate = dir.join(NAME);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        let candidate = Path::new(&dir).join("debug").join(NAME);
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!("cannot find {NAME}; build it with `cargo build -p nvml-sim`");
}

/// One test's private library copy, scenario and time file.
pub struct Sim {
    pub dir: tempfile::TempDir,
    pub lib: PathBuf,
    pub scenario: PathBuf,
    pub time_file: PathBuf,
}

impl Sim {
    /// A private library with `scenario` as its scenario text and scenario time 0.
    pub fn new(scenario: &str) -> Sim {
        let dir = tempfile::tempdir().expect("tempdir");
        let lib = dir.path().join("libnvidia-ml.so.1");
        std::fs::copy(built_library(), &lib).expect("copy library");
        let scenario_path = dir.path().join("scenario.toml");
        std::fs::write(&scenario_path, scenario).expect("write scenario");
        let time_file = dir.path().join("time");
        std::fs::write(&time_file, "0").expect("write time file");
        Sim {
            dir,
            lib,
            scenario: scenario_path,
            time_file,
        }
    }

    /// A private library running a shipped scenario from `nvml-sim/scenarios/`; the shipped
    /// `traces/` folder is linked beside the copy so relative trace paths resolve.
    pub fn shipped(name: &str) -> Sim {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../nvml-sim/scenarios");
        let sim =
            Sim::new(&std::fs::read_to_string(dir.join(name)).expect("read shipped scenario"));
        std::os::unix::fs::symlink(dir.join("traces"), sim.dir.path().join("traces"))
            .expect("link traces");
        sim
    }

    /// Sets scenario time through the time file.
    pub fn set_time(&self, seconds: f64) {
        std::fs::write(&self.time_file, format!("{seconds}")).expect("write time file");
    }

    /// Runs `f` (an init) with this test's scenario, time file and `extra` variables in the
    /// environment, holding [`ENV_LOCK`].
    pub fn with_env<R>(&self, extra: &[(&str, &str)], f: impl FnOnce() -> R) -> R {
        let _guard = ENV_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        std::env::set_var("NVML_SIM_SCENARIO", &self.scenario);
        std::env::set_var("NVML_SIM_TIME_FILE", &self.time_file);
        for (k, v) in extra {
            std::env::set_var(k, v);
        }
        let result = f();
        std::env::remove_var("NVML_SIM_SCENARIO");
        std::env::remove_var("NVML_SIM_TIME_FILE");
        for (k, _) in extra {
            std::env::remove_var(k);
        }
        result
    }

    /// Initialises nvml-wrapper on this copy with the scenario and time file (plus `extra` env).
    pub fn init_with_env(&self, extra: &[(&str, &str)]) -> Result<Nvml, NvmlError> {
        self.with_env(extra, || {
            Nvml::builder().lib_path(self.lib.as_os_str()).init()
        })
    }

    /// Raw `nvmlInit_v2` on this copy with the test's environment.
    pub fn raw_init(&self, raw: &Raw) -> nvmlReturn_t {
        self.with_env(&[], || raw.init())
    }

    pub fn init(&self) -> Result<Nvml, NvmlError> {
        self.init_with_env(&[])
    }

    /// Raw access to the same loaded instance (dlopen of the same path shares state).
    pub fn raw(&self) -> Raw {
        // SAFETY: loading our own library; its constructor only reads the clock.
        let lib = unsafe { libloading::Library::new(&self.lib) }.expect("dlopen");
        Raw { lib }
    }
}

/// Raw C calls into a loaded copy.
pub struct Raw {
    pub lib: libloading::Library,
}

pub type ProcFnV1 =
    unsafe extern "C" fn(nvmlDevice_t, *mut c_uint, *mut nvmlProcessInfo_v1_t) -> nvmlReturn_t;
pub type ProcFn =
    unsafe extern "C" fn(nvmlDevice_t, *mut c_uint, *mut nvmlProcessInfo_t) -> nvmlReturn_t;

impl Raw {
    /// Looks up a symbol of type `T`.
    pub fn sym<T: Copy>(&self, name: &str) -> T {
        // SAFETY: callers name the NVML signature that matches `T`.
        unsafe {
            *self
                .lib
                .get::<T>(name.as_bytes())
                .unwrap_or_else(|e| panic!("{name}: {e}"))
        }
    }

    pub fn has(&self, name: &str) -> bool {
        // SAFETY: only checks presence.
        unsafe { self.lib.get::<*const c_void>(name.as_bytes()).is_ok() }
    }

    pub fn init(&self) -> nvmlReturn_t {
        let f: unsafe extern "C" fn() -> nvmlReturn_t = self.sym("nvmlInit_v2");
        unsafe { f() }
    }

    pub fn shutdown(&self) -> nvmlReturn_t {
        let f: unsafe extern "C" fn() -> nvmlReturn_t = self.sym("nvmlShutdown");
        unsafe { f() }
    }

    pub fn handle(&self, index: u32) -> (nvmlReturn_t, nvmlDevice_t) {
        let f: unsafe extern "C" fn(c_uint, *mut nvmlDevice_t) -> nvmlReturn_t =
            self.sym("nvmlDeviceGetHandleByIndex_v2");
        let mut h: nvmlDevice_t = std::ptr::null_mut();
        let r = unsafe { f(index, &mut h) };
        (r, h)
    }

    pub fn memory_v1(&self, h: nvmlDevice_t) -> (nvmlReturn_t, nvmlMemory_t) {
        let f: unsafe extern "C" fn(nvmlDevice_t, *mut nvmlMemory_t) -> nvmlReturn_t =
            self.sym("nvmlDeviceGetMemoryInfo");
        let mut m = nvmlMemory_t {
            total: 0,
            free: 0,
            used: 0,
        };
        let r = unsafe { f(h, &mut m) };
        (r, m)
    }

    pub fn memory_v2(&self, h: nvmlDevice_t, version: u32) -> (nvmlReturn_t, nvmlMemory_v2_t) {
        let f: unsafe extern "C" fn(nvmlDevice_t, *mut nvmlMemory_v2_t) -> nvmlReturn_t =
            self.sym("nvmlDeviceGetMemoryInfo_v2");
        let mut m = nvmlMemory_v2_t {
            version,
            total: 0,
            reserved: 0,
            free: 0,
            used: 0,
        };
        let r = unsafe { f(h, &mut m) };
        (r, m)
    }

    /// Count-then-fill with a v1 (16-byte) entry point; returns (code, entries).
    pub fn processes_v1(
        &self,
        name: &str,
        h: nvmlDevice_t,
    ) -> (nvmlReturn_t, Vec<nvmlProcessInfo_v1_t>) {
        let f: ProcFnV1 = self.sym(name);
        let mut count: c_uint = 0;
        let r = unsafe { f(h, &mut count, std::ptr::null_mut()) };
        if r != 7 {
            return (r, Vec::new());
        }
        let mut buf = vec![
            nvmlProcessInfo_v1_t {
                pid: 0,
                usedGpuMemory: 0
            };
            count as usize
        ];
        let r = unsafe { f(h, &mut count, buf.as_mut_ptr()) };
        buf.truncate(count as usize);
        (r, buf)
    }

    /// Count-then-fill with a 24-byte entry point; `headroom` extra slots on the fill call.
    pub fn processes(
        &self,
        name: &str,
        h: nvmlDevice_t,
        headroom: u32,
    ) -> (nvmlReturn_t, u32, Vec<nvmlProcessInfo_t>) {
        let f: ProcFn = self.sym(name);
        let mut count: c_uint = 0;
        let r = unsafe { f(h, &mut count, std::ptr::null_mut()) };
        if r != 7 {
            return (r, count, Vec::new());
        }
        let first = count;
        let zero = nvmlProcessInfo_t {
            pid: 0,
            usedGpuMemory: 0,
            gpuInstanceId: 0,
            computeInstanceId: 0,
        };
        count += headroom;
        let mut buf = vec![zero; count as usize];
        let r = unsafe { f(h, &mut count, buf.as_mut_ptr()) };
        buf.truncate((count as usize).min(buf.len()));
        (r, first, buf)
    }

    pub fn set_time(&self, seconds: f64) -> nvmlReturn_t {
        let f: unsafe extern "C" fn(c_double) -> nvmlReturn_t = self.sym("nvmlSimSetTime");
        unsafe { f(seconds) }
    }

    pub fn clear_time(&self) -> nvmlReturn_t {
        let f: unsafe extern "C" fn() -> nvmlReturn_t = self.sym("nvmlSimClearTime");
        unsafe { f() }
    }

    pub fn error_string(&self, code: nvmlReturn_t) -> String {
        let f: unsafe extern "C" fn(nvmlReturn_t) -> *const c_char = self.sym("nvmlErrorString");
        let p = unsafe { f(code) };
        assert!(!p.is_null());
        unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
    }
}

/// Asserts the invariants every memory reading must satisfy.
pub fn check_memory(v2: &nvml_wrapper::struct_wrappers::device::MemoryInfo) {
    assert_eq!(v2.used + v2.reserved + v2.free, v2.total, "{v2:?}");
}
