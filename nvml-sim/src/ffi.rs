//! The exported NVML C entry points.
//!
//! Every function here has the same shape: [`guard`] catches panics (an `extern "C"` function
//! must never unwind into its caller) and turns them into NVML_ERROR_UNKNOWN; [`with_sim`] /
//! [`with_device`] check init, decode the handle, apply faults (latency, lost device, injected
//! internal errors) and hand a [`Dev`] view to the body, which only copies model values into the
//! caller's C structs. Null out-pointers give NVML_ERROR_INVALID_ARGUMENT. The entry points are
//! in `ffi/`, by job: `system.rs` (init, system queries, enumeration), `device.rs` (identity,
//! memory, utilization), `processes.rs`, `mig.rs` (and the calls the simulator does not model).
//!
//! # Safety
//! These functions are called from C. Callers must pass either null or valid, writable pointers
//! of the documented NVML types, buffers at least as long as the `length` they state, and
//! NUL-terminated strings where NVML expects them; this is the NVML contract itself.

#![allow(non_snake_case, clippy::missing_safety_doc)]

mod device;
mod mig;
mod processes;
mod system;

use std::ffi::{c_char, c_double, c_int, c_uint, c_void, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::abi::code::*;
use crate::abi::*;
use crate::faults::CallClass;
use crate::model::{Device, MemSample, PciAddress, PoolSample, ProcSample};
use crate::state::{self, InitError, Sim};

type Ret = nvmlReturn_t;

/// High bits of every handle, so stray pointers are recognised and rejected.
const HANDLE_TAG: usize = 0x4E56_4D4C;
/// First pid of the transient processes a `process_churn` fault adds (above Linux's pid_max).
const CHURN_PID_BASE: u32 = 4_900_001;

fn encode(gpu: usize, mig: Option<usize>) -> nvmlDevice_t {
    let v = (HANDLE_TAG << 24) | (gpu << 8) | mig.map_or(0, |m| m + 1);
    std::ptr::without_provenance_mut(v)
}

/// A decoded handle: the device, or a MIG device on it.
struct Dev<'a> {
    sim: &'a Sim,
    t: f64,
    gpu: usize,
    mig: Option<usize>,
}

impl Dev<'_> {
    fn device(&self) -> &Device {
        &self.sim.scenario.devices[self.gpu]
    }

    fn sample(&self) -> PoolSample {
        match self.mig {
            Some(m) => self.device().migs[m].pool.sample(self.t),
            None => self.device().sample(self.t),
        }
    }

    fn memory(&self) -> MemSample {
        self.sample().memory
    }

    fn name(&self) -> &str {
        match self.mig {
            Some(m) => &self.device().migs[m].name,
            None => &self.device().name,
        }
    }

    fn uuid(&self) -> &str {
        match self.mig {
            Some(m) => &self.device().migs[m].uuid,
            None => &self.device().uuid,
        }
    }

    fn physical(&self) -> Result<&Device, Ret> {
        match self.mig {
            Some(_) => Err(NOT_SUPPORTED),
            None => Ok(self.device()),
        }
    }
}

fn decode(sim: &Sim, handle: nvmlDevice_t) -> Result<(usize, Option<usize>), Ret> {
    let v = handle.addr();
    if v >> 24 != HANDLE_TAG {
        return Err(INVALID_ARGUMENT);
    }
    let gpu = (v >> 8) & 0xFFFF;
    let slot = v & 0xFF;
    let dev = sim.scenario.devices.get(gpu).ok_or(INVALID_ARGUMENT)?;
    let mig = match slot {
        0 => None,
        s if s <= dev.migs.len() => Some(s - 1),
        _ => return Err(INVALID_ARGUMENT),
    };
    Ok((gpu, mig))
}

/// Runs `f`, mapping a panic to NVML_ERROR_UNKNOWN.
fn guard(f: impl FnOnce() -> Result<(), Ret>) -> Ret {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => SUCCESS,
        Ok(Err(code)) => code,
        Err(_) => UNKNOWN,
    }
}

fn apply_faults(sim: &Sim, call: CallClass, device: Option<usize>, t: f64) {
    let delay = sim.scenario.latency(call, device, t);
    if !delay.is_zero() {
        std::thread::sleep(delay);
    }
    if sim.scenario.internal_error(call, device, t) {
        panic!("nvml-sim: injected internal error (internal_error fault)");
    }
}

fn with_sim(call: CallClass, f: impl FnOnce(&Sim, f64) -> Result<(), Ret>) -> Ret {
    guard(|| {
        let sim = state::current().ok_or(UNINITIALIZED)?;
        let t = sim.clock.now();
        if sim.scenario.reset_since(sim.init_time, t) {
            return Err(UNINITIALIZED);
        }
        apply_faults(&sim, call, None, t);
        f(&sim, t)
    })
}

fn with_device(
    handle: nvmlDevice_t,
    call: CallClass,
    f: impl FnOnce(&Dev<'_>) -> Result<(), Ret>,
) -> Ret {
    guard(|| {
        let sim = state::current().ok_or(UNINITIALIZED)?;
        let (gpu, mig) = decode(&sim, handle)?;
        let t = sim.clock.now();
        if sim.scenario.reset_since(sim.init_time, t) {
            return Err(UNINITIALIZED);
        }
        apply_faults(&sim, call, Some(gpu), t);
        if sim.scenario.device_lost(gpu, t) {
            return Err(GPU_IS_LOST);
        }
        f(&Dev {
            sim: &sim,
            t,
            gpu,
            mig,
        })
    })
}

/// Writes `v` through `p`, or fails with INVALID_ARGUMENT when `p` is null.
///
/// # Safety
/// `p` must be null or valid for writing a `T`.
unsafe fn put<T>(p: *mut T, v: T) -> Result<(), Ret> {
    if p.is_null() {
        return Err(INVALID_ARGUMENT);
    }
    // SAFETY: non-null and, by the NVML contract, valid for writes of T.
    unsafe { p.write_unaligned(v) };
    Ok(())
}

/// Copies `s` and a terminating NUL into `buf` of `len` bytes.
///
/// # Safety
/// `buf` must be null or valid for writing `len` bytes.
unsafe fn put_str(buf: *mut c_char, len: c_uint, s: &str) -> Result<(), Ret> {
    if buf.is_null() {
        return Err(INVALID_ARGUMENT);
    }
    let bytes = s.as_bytes();
    if bytes.len() >= len as usize {
        return Err(INSUFFICIENT_SIZE);
    }
    // SAFETY: `buf` holds `len > bytes.len()` writable bytes by the caller's contract.
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr().cast::<c_char>(), buf, bytes.len());
        buf.add(bytes.len()).write(0);
    }
    Ok(())
}

/// Reads a NUL-terminated UTF-8 string argument.
///
/// # Safety
/// `p` must be null or point at a NUL-terminated string.
unsafe fn arg_str<'a>(p: *const c_char) -> Result<&'a str, Ret> {
    if p.is_null() {
        return Err(INVALID_ARGUMENT);
    }
    // SAFETY: non-null and NUL-terminated by the caller's contract.
    unsafe { CStr::from_ptr(p) }
        .to_str()
        .map_err(|_| INVALID_ARGUMENT)
}

fn fixed<const N: usize>(s: &str) -> [c_char; N] {
    let mut out = [0 as c_char; N];
    for (o, b) in out.iter_mut().zip(s.bytes().take(N - 1)) {
        *o = b as c_char;
    }
    out
}
