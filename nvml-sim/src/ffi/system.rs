//! Init, shutdown, error strings, the simulator's time controls, system queries and device
//! enumeration (by index, UUID and PCI bus id). Safety and lints: as in `ffi.rs`.

use super::*;

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
