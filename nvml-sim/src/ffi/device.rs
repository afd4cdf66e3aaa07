//! A device's identity, memory, utilization and temperature. Safety and lints: as in `ffi.rs`.

use super::*;

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
