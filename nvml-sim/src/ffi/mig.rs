//! MIG: mode, device handles, instance ids and parents; and the telemetry the simulator does
//! not model (NOT_SUPPORTED). Safety and lints: as in `ffi.rs`.

use super::*;

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
