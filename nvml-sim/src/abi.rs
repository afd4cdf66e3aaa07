//! The C ABI vocabulary: return codes, handle type and struct layouts of NVML (x86-64).
//!
//! Layouts follow NVIDIA's `nvml.h` as mirrored by nvml-wrapper-sys; compile-time asserts pin the
//! sizes, and the integration tests compare them with nvml-wrapper-sys's own definitions.

#![allow(non_camel_case_types, non_snake_case)]

use std::ffi::{c_char, c_int, c_uint, c_ulonglong, c_void};

/// `nvmlReturn_t`.
pub type nvmlReturn_t = c_uint;
/// `nvmlDevice_t`: opaque to clients; the simulator encodes device coordinates in it.
pub type nvmlDevice_t = *mut c_void;

/// NVML return codes used by the simulator.
pub mod code {
    use super::nvmlReturn_t;
    /// Success.
    pub const SUCCESS: nvmlReturn_t = 0;
    /// Library not initialised.
    pub const UNINITIALIZED: nvmlReturn_t = 1;
    /// Bad argument (null pointer, unknown handle, index out of range).
    pub const INVALID_ARGUMENT: nvmlReturn_t = 2;
    /// Not supported by this (simulated) device.
    pub const NOT_SUPPORTED: nvmlReturn_t = 3;
    /// Lookup found nothing.
    pub const NOT_FOUND: nvmlReturn_t = 6;
    /// The caller's buffer is too small.
    pub const INSUFFICIENT_SIZE: nvmlReturn_t = 7;
    /// No driver (scenario unset or an init_failure fault).
    pub const DRIVER_NOT_LOADED: nvmlReturn_t = 9;
    /// The GPU fell off the bus (device_lost fault).
    pub const GPU_IS_LOST: nvmlReturn_t = 15;
    /// Versioned struct with the wrong version tag.
    pub const ARGUMENT_VERSION_MISMATCH: nvmlReturn_t = 25;
    /// Internal error (invalid scenario, caught panic).
    pub const UNKNOWN: nvmlReturn_t = 999;
}

/// `nvmlMemory_t` (v1): `used` includes reserved memory.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct nvmlMemory_t {
    /// Total bytes.
    pub total: c_ulonglong,
    /// Free bytes.
    pub free: c_ulonglong,
    /// Used bytes, reserved included.
    pub used: c_ulonglong,
}

/// `nvmlMemory_v2_t`: `used` excludes reserved memory.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct nvmlMemory_v2_t {
    /// Must be [`NVML_MEMORY_V2`].
    pub version: c_uint,
    /// Total bytes.
    pub total: c_ulonglong,
    /// Reserved bytes.
    pub reserved: c_ulonglong,
    /// Free bytes.
    pub free: c_ulonglong,
    /// Used bytes, reserved excluded.
    pub used: c_ulonglong,
}

/// Version tag of [`nvmlMemory_v2_t`]: `sizeof | 2 << 24`.
pub const NVML_MEMORY_V2: c_uint = std::mem::size_of::<nvmlMemory_v2_t>() as c_uint | (2 << 24);

/// `nvmlProcessInfo_v1_t`, used by the unversioned process queries.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct nvmlProcessInfo_v1_t {
    /// pid.
    pub pid: c_uint,
    /// Bytes used.
    pub usedGpuMemory: c_ulonglong,
}

/// `nvmlProcessInfo_v2_t` / `nvmlProcessInfo_t`, used by the `_v2` and `_v3` process queries.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct nvmlProcessInfo_t {
    /// pid.
    pub pid: c_uint,
    /// Bytes used.
    pub usedGpuMemory: c_ulonglong,
    /// GPU instance id, `0xFFFFFFFF` when not on MIG.
    pub gpuInstanceId: c_uint,
    /// Compute instance id, `0xFFFFFFFF` when not on MIG.
    pub computeInstanceId: c_uint,
}

/// `nvmlPciInfo_t` as filled by `nvmlDeviceGetPciInfo_v2/_v3`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct nvmlPciInfo_t {
    /// `DDDD:BB:DD.F`.
    pub busIdLegacy: [c_char; 16],
    /// Domain.
    pub domain: c_uint,
    /// Bus.
    pub bus: c_uint,
    /// Device.
    pub device: c_uint,
    /// Device and vendor id.
    pub pciDeviceId: c_uint,
    /// Subsystem id.
    pub pciSubSystemId: c_uint,
    /// `DDDDDDDD:BB:DD.F`.
    pub busId: [c_char; 32],
}

/// `nvmlUtilization_t`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct nvmlUtilization_t {
    /// GPU busy percent.
    pub gpu: c_uint,
    /// Memory controller busy percent.
    pub memory: c_uint,
}

/// `nvmlTemperature_v1_t`, used by `nvmlDeviceGetTemperatureV`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct nvmlTemperature_v1_t {
    /// Must be [`NVML_TEMPERATURE_V1`].
    pub version: c_uint,
    /// Sensor (0 = GPU die).
    pub sensorType: c_uint,
    /// Degrees C.
    pub temperature: c_int,
}

/// Version tag of [`nvmlTemperature_v1_t`].
pub const NVML_TEMPERATURE_V1: c_uint =
    std::mem::size_of::<nvmlTemperature_v1_t>() as c_uint | (1 << 24);

const _: () = {
    assert!(std::mem::size_of::<nvmlMemory_t>() == 24);
    assert!(std::mem::size_of::<nvmlMemory_v2_t>() == 40);
    assert!(NVML_MEMORY_V2 == 0x0200_0028);
    assert!(std::mem::size_of::<nvmlProcessInfo_v1_t>() == 16);
    assert!(std::mem::size_of::<nvmlProcessInfo_t>() == 24);
    assert!(std::mem::size_of::<nvmlPciInfo_t>() == 68);
    assert!(std::mem::size_of::<nvmlUtilization_t>() == 8);
    assert!(NVML_TEMPERATURE_V1 == 0x0100_000C);
};

/// Text for `nvmlErrorString`.
pub fn error_string(code: nvmlReturn_t) -> &'static std::ffi::CStr {
    match code {
        0 => c"Success",
        1 => c"Uninitialized",
        2 => c"Invalid Argument",
        3 => c"Not Supported",
        4 => c"Insufficient Permissions",
        5 => c"Already Initialized",
        6 => c"Not Found",
        7 => c"Insufficient Size",
        8 => c"Insufficient External Power",
        9 => c"Driver Not Loaded",
        10 => c"Timeout",
        11 => c"Interrupt request issue",
        12 => c"NVML Shared Library Not Found",
        13 => c"Function Not Found",
        14 => c"Corrupted infoROM",
        15 => c"GPU is lost",
        16 => c"GPU requires restart",
        17 => c"GPU access blocked by the operating system",
        18 => c"RM has detected an NVML/RM version mismatch",
        19 => c"In use by another client",
        20 => c"Insufficient Memory",
        21 => c"No data",
        22 => {
            c"The requested vgpu operation is not available on target device because ECC is enabled"
        }
        23 => c"Insufficient resources for request",
        24 => c"Frequency not supported",
        25 => c"Argument version mismatch",
        26 => c"Deprecated",
        27 => c"Not ready",
        28 => c"GPU not found",
        29 => c"Invalid state",
        30 => c"Reset type not supported",
        _ => c"Unknown Error",
    }
}
