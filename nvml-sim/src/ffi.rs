//! The exported NVML C entry points.
//!
//! Every function here has the same shape: [`guard`] catches panics (an `extern "C"` function
//! must never unwind into its caller) and turns them into NVML_ERROR_UNKNOWN; [`with_sim`] /
//! [`with_device`] check init, decode the handle, apply faults (latency, lost device, injected
//! internal errors) and hand a [`Dev`] view to the body, which only copies model values into the
//! caller's C structs. Null out-pointers give NVML_ERROR_INVALID_ARGUMENT.
//!
//! # Safety
//! These functions are called from C. Callers must pass either null or valid, writable pointers
//! of the documented NVML types, buffers at least as long as the `length` they state, and
//! NUL-terminated strings where NVML expects them; this is the NVML contract itself.

#![allow(non_snake_case, clippy::missing_safety_doc)]

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

// ---------------------------------------------------------------------------------------------
// Init, shutdown, errors, simulator controls.

fn init() -> Ret {
    guard(|| match state::init() {
        Ok(()) => Ok(()),
        Err(InitError::DriverNotLoaded) => Err(DRIVER_NOT_LOADED),
        Err(InitError::BadScenario) => Err(UNKNOWN),
    })
}

#[no_mangle]
pub unsafe extern "C" fn nvmlInit_v2() -> Ret {
    init()
}

#[no_mangle]
pub unsafe extern "C" fn nvmlInit() -> Ret {
    init()
}

/// Flags (`NVML_INIT_FLAG_NO_GPUS`, `NVML_INIT_FLAG_NO_ATTACH`) are accepted and ignored.
#[no_mangle]
pub unsafe extern "C" fn nvmlInitWithFlags(_flags: c_uint) -> Ret {
    init()
}

#[no_mangle]
pub unsafe extern "C" fn nvmlShutdown() -> Ret {
    guard(|| {
        if state::shutdown() {
            Ok(())
        } else {
            Err(UNINITIALIZED)
        }
    })
}

#[no_mangle]
pub unsafe extern "C" fn nvmlErrorString(result: Ret) -> *const c_char {
    error_string(result).as_ptr()
}

/// Simulator extension: pins scenario time (seconds, before looping) for this process.
/// Returns INVALID_ARGUMENT for NaN, infinite or negative values. Works without init.
#[no_mangle]
pub unsafe extern "C" fn nvmlSimSetTime(seconds: c_double) -> Ret {
    guard(|| {
        if crate::time::set_override(Some(seconds)) {
            Ok(())
        } else {
            Err(INVALID_ARGUMENT)
        }
    })
}

/// Simulator extension: returns to file- or clock-driven scenario time.
#[no_mangle]
pub unsafe extern "C" fn nvmlSimClearTime() -> Ret {
    guard(|| {
        crate::time::set_override(None);
        Ok(())
    })
}

// ---------------------------------------------------------------------------------------------
// System queries.

#[no_mangle]
pub unsafe extern "C" fn nvmlSystemGetDriverVersion(version: *mut c_char, length: c_uint) -> Ret {
    with_sim(CallClass::System, |sim, _| unsafe {
        put_str(version, length, &sim.scenario.driver_version)
    })
}

#[no_mangle]
pub unsafe extern "C" fn nvmlSystemGetNVMLVersion(version: *mut c_char, length: c_uint) -> Ret {
    with_sim(CallClass::System, |sim, _| unsafe {
        put_str(version, length, &sim.scenario.nvml_version)
    })
}

#[no_mangle]
pub unsafe extern "C" fn nvmlSystemGetCudaDriverVersion(version: *mut c_int) -> Ret {
    with_sim(CallClass::System, |sim, _| unsafe {
        put(version, sim.scenario.cuda_driver_version)
    })
}

#[no_mangle]
pub unsafe extern "C" fn nvmlSystemGetCudaDriverVersion_v2(version: *mut c_int) -> Ret {
    with_sim(CallClass::System, |sim, _| unsafe {
        put(version, sim.scenario.cuda_driver_version)
    })
}

/// The scenario's name for a pid listed on some device now; NOT_FOUND otherwise.
#[no_mangle]
pub unsafe extern "C" fn nvmlSystemGetProcessName(
    pid: c_uint,
    name: *mut c_char,
    length: c_uint,
) -> Ret {
    with_sim(CallClass::Processes, |sim, t| {
        if name.is_null() || length == 0 {
            return Err(INVALID_ARGUMENT);
        }
        let found = sim.scenario.process_name(pid, t).ok_or(NOT_FOUND)?;
        unsafe { put_str(name, length, found) }
    })
}

// ---------------------------------------------------------------------------------------------
// Device enumeration.

fn device_count(count: *mut c_uint) -> Ret {
    with_sim(CallClass::Handles, |sim, _| unsafe {
        put(count, sim.scenario.devices.len() as c_uint)
    })
}

#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetCount_v2(count: *mut c_uint) -> Ret {
    device_count(count)
}

#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetCount(count: *mut c_uint) -> Ret {
    device_count(count)
}

fn handle_by_index(index: c_uint, device: *mut nvmlDevice_t) -> Ret {
    with_sim(CallClass::Handles, |sim, _| {
        let i = index as usize;
        if i >= sim.scenario.devices.len() {
            return Err(INVALID_ARGUMENT);
        }
        unsafe { put(device, encode(i, None)) }
    })
}

#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetHandleByIndex_v2(
    index: c_uint,
    device: *mut nvmlDevice_t,
) -> Ret {
    handle_by_index(index, device)
}

#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetHandleByIndex(
    index: c_uint,
    device: *mut nvmlDevice_t,
) -> Ret {
    handle_by_index(index, device)
}

/// Finds GPUs and MIG devices by UUID (lookups succeed even for a lost device).
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetHandleByUUID(
    uuid: *const c_char,
    device: *mut nvmlDevice_t,
) -> Ret {
    with_sim(CallClass::Handles, |sim, _| {
        let wanted = unsafe { arg_str(uuid) }?;
        for (i, d) in sim.scenario.devices.iter().enumerate() {
            if d.uuid == wanted {
                return unsafe { put(device, encode(i, None)) };
            }
            if let Some(m) = d.migs.iter().position(|m| m.uuid == wanted) {
                return unsafe { put(device, encode(i, Some(m))) };
            }
        }
        Err(NOT_FOUND)
    })
}

fn handle_by_pci(bus_id: *const c_char, device: *mut nvmlDevice_t) -> Ret {
    with_sim(CallClass::Handles, |sim, _| {
        let text = unsafe { arg_str(bus_id) }?;
        let wanted = PciAddress::parse(text).map_err(|_| INVALID_ARGUMENT)?;
        let i = sim
            .scenario
            .devices
            .iter()
            .position(|d| d.pci == wanted)
            .ok_or(NOT_FOUND)?;
        unsafe { put(device, encode(i, None)) }
    })
}

#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetHandleByPciBusId_v2(
    bus_id: *const c_char,
    device: *mut nvmlDevice_t,
) -> Ret {
    handle_by_pci(bus_id, device)
}

#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetHandleByPciBusId(
    bus_id: *const c_char,
    device: *mut nvmlDevice_t,
) -> Ret {
    handle_by_pci(bus_id, device)
}

// ---------------------------------------------------------------------------------------------
// Device identity.

/// The GPU's index; for a MIG handle, the MIG device's index on its parent.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetIndex(device: nvmlDevice_t, index: *mut c_uint) -> Ret {
    with_device(device, CallClass::Info, |d| unsafe {
        put(index, d.mig.unwrap_or(d.gpu) as c_uint)
    })
}

#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetMinorNumber(device: nvmlDevice_t, minor: *mut c_uint) -> Ret {
    with_device(device, CallClass::Info, |d| {
        d.physical()?;
        unsafe { put(minor, d.gpu as c_uint) }
    })
}

#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetName(
    device: nvmlDevice_t,
    name: *mut c_char,
    length: c_uint,
) -> Ret {
    with_device(device, CallClass::Info, |d| unsafe {
        put_str(name, length, d.name())
    })
}

#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetUUID(
    device: nvmlDevice_t,
    uuid: *mut c_char,
    length: c_uint,
) -> Ret {
    with_device(device, CallClass::Info, |d| unsafe {
        put_str(uuid, length, d.uuid())
    })
}

fn pci_info(device: nvmlDevice_t, pci: *mut nvmlPciInfo_t) -> Ret {
    with_device(device, CallClass::Info, |d| {
        let dev = d.device();
        let info = nvmlPciInfo_t {
            busIdLegacy: fixed(&dev.pci.bus_id_legacy()),
            domain: dev.pci.domain,
            bus: dev.pci.bus,
            device: dev.pci.device,
            pciDeviceId: dev.pci_device_id,
            pciSubSystemId: dev.pci_subsystem_id,
            busId: fixed(&dev.pci.bus_id()),
        };
        unsafe { put(pci, info) }
    })
}

/// PCI info of the GPU (a MIG handle reports its parent's).
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetPciInfo_v3(
    device: nvmlDevice_t,
    pci: *mut nvmlPciInfo_t,
) -> Ret {
    pci_info(device, pci)
}

#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetPciInfo_v2(
    device: nvmlDevice_t,
    pci: *mut nvmlPciInfo_t,
) -> Ret {
    pci_info(device, pci)
}

// ---------------------------------------------------------------------------------------------
// Memory.

/// v1: `used` includes reserved memory.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetMemoryInfo(
    device: nvmlDevice_t,
    memory: *mut nvmlMemory_t,
) -> Ret {
    with_device(device, CallClass::Memory, |d| {
        let m = d.memory();
        let v1 = nvmlMemory_t {
            total: m.total,
            free: m.free,
            used: m.used + m.reserved,
        };
        unsafe { put(memory, v1) }
    })
}

/// v2: the caller sets `version` to `nvmlMemory_v2`; anything else is a version mismatch.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetMemoryInfo_v2(
    device: nvmlDevice_t,
    memory: *mut nvmlMemory_v2_t,
) -> Ret {
    with_device(device, CallClass::Memory, |d| {
        if memory.is_null() {
            return Err(INVALID_ARGUMENT);
        }
        // SAFETY: non-null; the caller passes an nvmlMemory_v2_t.
        let version = unsafe { std::ptr::addr_of!((*memory).version).read_unaligned() };
        if version != NVML_MEMORY_V2 {
            return Err(ARGUMENT_VERSION_MISMATCH);
        }
        let m = d.memory();
        let v2 = nvmlMemory_v2_t {
            version,
            total: m.total,
            reserved: m.reserved,
            free: m.free,
            used: m.used,
        };
        unsafe { put(memory, v2) }
    })
}

// ---------------------------------------------------------------------------------------------
// Processes.

#[derive(Clone, Copy)]
enum Which {
    Compute,
    Graphics,
    Mps,
}

trait ProcEntry {
    fn from_sample(s: &ProcSample) -> Self;
}

impl ProcEntry for nvmlProcessInfo_v1_t {
    fn from_sample(s: &ProcSample) -> Self {
        nvmlProcessInfo_v1_t {
            pid: s.pid,
            usedGpuMemory: s.bytes,
        }
    }
}

impl ProcEntry for nvmlProcessInfo_t {
    fn from_sample(s: &ProcSample) -> Self {
        nvmlProcessInfo_t {
            pid: s.pid,
            usedGpuMemory: s.bytes,
            gpuInstanceId: s.gpu_instance_id,
            computeInstanceId: s.compute_instance_id,
        }
    }
}

/// The NVML count-then-fill protocol. `*count` is the caller's capacity on entry and the number
/// of processes on return; a null `infos` (or too small a capacity) with processes present gives
/// INSUFFICIENT_SIZE. A `process_churn` fault adds transient processes to fill calls only.
fn process_list<T: ProcEntry>(
    device: nvmlDevice_t,
    count: *mut c_uint,
    infos: *mut T,
    which: Which,
) -> Ret {
    with_device(device, CallClass::Processes, |d| {
        if count.is_null() {
            return Err(INVALID_ARGUMENT);
        }
        if d.sim.scenario.processes_unsupported(d.gpu, d.t) {
            return Err(NOT_SUPPORTED);
        }
        // SAFETY: non-null; the caller passes a c_uint.
        let capacity = unsafe { count.read_unaligned() } as usize;
        let mut list: Vec<ProcSample> = d
            .sample()
            .processes
            .into_iter()
            .filter(|p| match which {
                Which::Compute => p.compute,
                Which::Graphics => p.graphics,
                Which::Mps => p.mps,
            })
            .collect();
        let is_fill = !infos.is_null() && capacity > 0;
        if is_fill {
            let (gi, ci) = match d.mig {
                Some(m) => {
                    let mig = &d.device().migs[m];
                    (mig.gpu_instance_id, mig.compute_instance_id)
                }
                None => (u32::MAX, u32::MAX),
            };
            for k in 0..d.sim.scenario.churn(d.gpu, d.t) {
                list.push(ProcSample {
                    pid: CHURN_PID_BASE + k,
                    bytes: 0,
                    compute: true,
                    graphics: true,
                    mps: false,
                    gpu_instance_id: gi,
                    compute_instance_id: ci,
                });
            }
        }
        let n = list.len();
        unsafe { put(count, n as c_uint) }?;
        if n == 0 {
            return Ok(());
        }
        if infos.is_null() || capacity < n {
            return Err(INSUFFICIENT_SIZE);
        }
        for (i, p) in list.iter().enumerate() {
            // SAFETY: `infos` has room for `capacity >= n` entries by the caller's contract.
            unsafe { infos.add(i).write_unaligned(T::from_sample(p)) };
        }
        Ok(())
    })
}

macro_rules! process_queries {
    ($($name:ident => $entry:ty, $which:expr;)*) => {$(
        #[no_mangle]
        pub unsafe extern "C" fn $name(
            device: nvmlDevice_t,
            count: *mut c_uint,
            infos: *mut $entry,
        ) -> Ret {
            process_list(device, count, infos, $which)
        }
    )*};
}

process_queries! {
    nvmlDeviceGetComputeRunningProcesses_v3 => nvmlProcessInfo_t, Which::Compute;
    nvmlDeviceGetComputeRunningProcesses_v2 => nvmlProcessInfo_t, Which::Compute;
    nvmlDeviceGetComputeRunningProcesses => nvmlProcessInfo_v1_t, Which::Compute;
    nvmlDeviceGetGraphicsRunningProcesses_v3 => nvmlProcessInfo_t, Which::Graphics;
    nvmlDeviceGetGraphicsRunningProcesses_v2 => nvmlProcessInfo_t, Which::Graphics;
    nvmlDeviceGetGraphicsRunningProcesses => nvmlProcessInfo_v1_t, Which::Graphics;
    nvmlDeviceGetMPSComputeRunningProcesses_v3 => nvmlProcessInfo_t, Which::Mps;
    nvmlDeviceGetMPSComputeRunningProcesses_v2 => nvmlProcessInfo_t, Which::Mps;
    nvmlDeviceGetMPSComputeRunningProcesses => nvmlProcessInfo_v1_t, Which::Mps;
}

// ---------------------------------------------------------------------------------------------
// Utilization and temperature.

#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetUtilizationRates(
    device: nvmlDevice_t,
    utilization: *mut nvmlUtilization_t,
) -> Ret {
    with_device(device, CallClass::Telemetry, |d| {
        let dev = d.physical()?;
        let u = nvmlUtilization_t {
            gpu: dev.gpu_utilization,
            memory: dev.memory_utilization,
        };
        unsafe { put(utilization, u) }
    })
}

/// Sensor 0 (`NVML_TEMPERATURE_GPU`) only.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetTemperature(
    device: nvmlDevice_t,
    sensor: c_uint,
    temp: *mut c_uint,
) -> Ret {
    with_device(device, CallClass::Telemetry, |d| {
        let dev = d.physical()?;
        if sensor != 0 {
            return Err(INVALID_ARGUMENT);
        }
        unsafe { put(temp, dev.temperature) }
    })
}

#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetTemperatureV(
    device: nvmlDevice_t,
    temperature: *mut nvmlTemperature_v1_t,
) -> Ret {
    with_device(device, CallClass::Telemetry, |d| {
        if temperature.is_null() {
            return Err(INVALID_ARGUMENT);
        }
        // SAFETY: non-null; the caller passes an nvmlTemperature_v1_t.
        let mut t = unsafe { temperature.read_unaligned() };
        if t.version != NVML_TEMPERATURE_V1 {
            return Err(ARGUMENT_VERSION_MISMATCH);
        }
        let dev = d.physical()?;
        if t.sensorType != 0 {
            return Err(INVALID_ARGUMENT);
        }
        t.temperature = dev.temperature as c_int;
        unsafe { put(temperature, t) }
    })
}

// ---------------------------------------------------------------------------------------------
// MIG.

/// Current and pending mode (1 = enabled when the GPU has MIG devices); NOT_SUPPORTED on GPUs
/// that are not `mig_capable` and on MIG handles.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetMigMode(
    device: nvmlDevice_t,
    current: *mut c_uint,
    pending: *mut c_uint,
) -> Ret {
    with_device(device, CallClass::Info, |d| {
        let dev = d.physical()?;
        if !dev.mig_capable {
            return Err(NOT_SUPPORTED);
        }
        if current.is_null() || pending.is_null() {
            return Err(INVALID_ARGUMENT);
        }
        let mode = c_uint::from(!dev.migs.is_empty());
        unsafe {
            put(current, mode)?;
            put(pending, mode)
        }
    })
}

/// 7 on MIG-capable GPUs, 0 otherwise.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetMaxMigDeviceCount(
    device: nvmlDevice_t,
    count: *mut c_uint,
) -> Ret {
    with_device(device, CallClass::Info, |d| {
        let dev = d.physical()?;
        let max = if dev.mig_capable {
            crate::scenario::MAX_MIG_DEVICES as c_uint
        } else {
            0
        };
        unsafe { put(count, max) }
    })
}

#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetMigDeviceHandleByIndex(
    device: nvmlDevice_t,
    index: c_uint,
    mig_device: *mut nvmlDevice_t,
) -> Ret {
    with_device(device, CallClass::Info, |d| {
        let dev = d.physical().map_err(|_| INVALID_ARGUMENT)?;
        if !dev.mig_capable {
            return Err(NOT_SUPPORTED);
        }
        let i = index as usize;
        if i >= crate::scenario::MAX_MIG_DEVICES {
            return Err(INVALID_ARGUMENT);
        }
        if i >= dev.migs.len() {
            return Err(NOT_FOUND);
        }
        unsafe { put(mig_device, encode(d.gpu, Some(i))) }
    })
}

#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceIsMigDeviceHandle(
    device: nvmlDevice_t,
    is_mig: *mut c_uint,
) -> Ret {
    with_device(device, CallClass::Info, |d| unsafe {
        put(is_mig, c_uint::from(d.mig.is_some()))
    })
}

#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetDeviceHandleFromMigDeviceHandle(
    mig_device: nvmlDevice_t,
    device: *mut nvmlDevice_t,
) -> Ret {
    with_device(mig_device, CallClass::Info, |d| {
        if d.mig.is_none() {
            return Err(INVALID_ARGUMENT);
        }
        unsafe { put(device, encode(d.gpu, None)) }
    })
}

fn instance_id(device: nvmlDevice_t, id: *mut c_uint, compute: bool) -> Ret {
    with_device(device, CallClass::Info, |d| {
        let m = d.mig.ok_or(NOT_SUPPORTED)?;
        let mig = &d.device().migs[m];
        let v = if compute {
            mig.compute_instance_id
        } else {
            mig.gpu_instance_id
        };
        unsafe { put(id, v) }
    })
}

#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetGpuInstanceId(device: nvmlDevice_t, id: *mut c_uint) -> Ret {
    instance_id(device, id, false)
}

#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetComputeInstanceId(
    device: nvmlDevice_t,
    id: *mut c_uint,
) -> Ret {
    instance_id(device, id, true)
}

// ---------------------------------------------------------------------------------------------
// Telemetry the simulator does not model: present so clients do not fail on missing symbols,
// answering NOT_SUPPORTED (after the usual init / handle / lost-device checks).

macro_rules! not_supported {
    ($($name:ident($($arg:ident: $ty:ty),*);)*) => {$(
        #[no_mangle]
        pub unsafe extern "C" fn $name(device: nvmlDevice_t, $($arg: $ty),*) -> Ret {
            $(let _ = $arg;)*
            with_device(device, CallClass::Telemetry, |_| Err(NOT_SUPPORTED))
        }
    )*};
}

not_supported! {
    nvmlDeviceGetClockInfo(clock_type: c_uint, clock: *mut c_uint);
    nvmlDeviceGetMaxClockInfo(clock_type: c_uint, clock: *mut c_uint);
    nvmlDeviceGetPowerUsage(power: *mut c_uint);
    nvmlDeviceGetPowerManagementLimit(limit: *mut c_uint);
    nvmlDeviceGetEnforcedPowerLimit(limit: *mut c_uint);
    nvmlDeviceGetTotalEnergyConsumption(energy: *mut u64);
    nvmlDeviceGetFanSpeed(speed: *mut c_uint);
    nvmlDeviceGetFanSpeed_v2(fan: c_uint, speed: *mut c_uint);
    nvmlDeviceGetPcieThroughput(counter: c_uint, value: *mut c_uint);
    nvmlDeviceGetEncoderUtilization(utilization: *mut c_uint, period_us: *mut c_uint);
    nvmlDeviceGetDecoderUtilization(utilization: *mut c_uint, period_us: *mut c_uint);
    nvmlDeviceGetProcessUtilization(samples: *mut c_void, count: *mut c_uint, last_seen: u64);
    nvmlDeviceGetFieldValues(values_count: c_int, values: *mut c_void);
    nvmlDeviceGetPerformanceState(state: *mut c_uint);
    nvmlDeviceGetPersistenceMode(mode: *mut c_uint);
    nvmlDeviceGetDisplayActive(active: *mut c_uint);
    nvmlDeviceGetDisplayMode(mode: *mut c_uint);
    nvmlDeviceGetComputeMode(mode: *mut c_uint);
    nvmlDeviceGetBAR1MemoryInfo(bar1: *mut c_void);
    nvmlDeviceGetCudaComputeCapability(major: *mut c_int, minor: *mut c_int);
    nvmlDeviceGetBrand(brand: *mut c_uint);
    nvmlDeviceGetArchitecture(arch: *mut c_uint);
    nvmlDeviceGetSerial(serial: *mut c_char, length: c_uint);
    nvmlDeviceGetTotalEccErrors(error_type: c_uint, counter_type: c_uint, count: *mut u64);
    nvmlDeviceGetCurrentDriverModel(model: *mut c_uint);
    nvmlDeviceGetDriverModel(current: *mut c_uint, pending: *mut c_uint);
    nvmlDeviceGetDriverModel_v2(current: *mut c_uint, pending: *mut c_uint);
}
