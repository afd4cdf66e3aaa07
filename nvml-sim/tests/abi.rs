//! ABI checks: struct layouts and version tags against nvml-wrapper-sys, argument validation,
//! init reference counting, error strings, exported symbols, SONAME.

use std::mem::size_of;

use nvml_wrapper_sys::bindings as b;
use vram_testkit::sim::{Sim, GIB};

const ONE: &str = "[[device]]\ntotal = \"8GiB\"\nreserved = \"1GiB\"\n";

#[test]
fn struct_sizes_match_nvml_headers() {
    assert_eq!(size_of::<b::nvmlMemory_t>(), 24);
    assert_eq!(size_of::<b::nvmlMemory_v2_t>(), 40);
    assert_eq!(size_of::<b::nvmlProcessInfo_v1_t>(), 16);
    assert_eq!(size_of::<b::nvmlProcessInfo_t>(), 24);
    assert_eq!(size_of::<b::nvmlPciInfo_t>(), 68);
    assert_eq!(size_of::<b::nvmlUtilization_t>(), 8);
    // Our own definitions agree with the bindings nvml-wrapper uses.
    assert_eq!(
        size_of::<nvml_sim::abi::nvmlMemory_v2_t>(),
        size_of::<b::nvmlMemory_v2_t>()
    );
    assert_eq!(
        size_of::<nvml_sim::abi::nvmlProcessInfo_t>(),
        size_of::<b::nvmlProcessInfo_t>()
    );
    assert_eq!(
        size_of::<nvml_sim::abi::nvmlProcessInfo_v1_t>(),
        size_of::<b::nvmlProcessInfo_v1_t>()
    );
    assert_eq!(
        size_of::<nvml_sim::abi::nvmlPciInfo_t>(),
        size_of::<b::nvmlPciInfo_t>()
    );
    assert_eq!(
        size_of::<nvml_sim::abi::nvmlTemperature_v1_t>(),
        size_of::<b::nvmlTemperature_v1_t>()
    );
    assert_eq!(nvml_sim::abi::NVML_MEMORY_V2, 0x0200_0028);
}

#[test]
fn memory_v2_version_is_checked() {
    let sim = Sim::new(ONE);
    let raw = sim.raw();
    assert_eq!(sim.raw_init(&raw), 0);
    let (_, h) = raw.handle(0);
    let (r, m) = raw.memory_v2(h, 0x0200_0028);
    assert_eq!(r, 0);
    assert_eq!(
        (m.version, m.total, m.reserved, m.free),
        (0x0200_0028, 8 * GIB, GIB, 7 * GIB)
    );
    assert_eq!(raw.memory_v2(h, 0x0100_0028).0, 25);
    assert_eq!(raw.memory_v2(h, 0).0, 25);
    assert_eq!(raw.shutdown(), 0);
}

#[test]
fn temperature_v_version_is_checked() {
    let sim = Sim::new("[[device]]\ntotal = 1024\ntemperature = 61\n");
    let raw = sim.raw();
    assert_eq!(sim.raw_init(&raw), 0);
    let (_, h) = raw.handle(0);
    let f: unsafe extern "C" fn(b::nvmlDevice_t, *mut b::nvmlTemperature_v1_t) -> u32 =
        raw.sym("nvmlDeviceGetTemperatureV");
    let mut t = b::nvmlTemperature_v1_t {
        version: 0x0100_000C,
        sensorType: 0,
        temperature: 0,
    };
    assert_eq!(unsafe { f(h, &mut t) }, 0);
    assert_eq!(t.temperature, 61);
    t.version = 12;
    assert_eq!(unsafe { f(h, &mut t) }, 25);
    assert_eq!(raw.shutdown(), 0);
}

#[test]
fn uninitialized_and_bad_arguments() {
    let sim = Sim::new(ONE);
    let raw = sim.raw();
    let count: unsafe extern "C" fn(*mut u32) -> u32 = raw.sym("nvmlDeviceGetCount_v2");
    let mut n = 0;
    assert_eq!(unsafe { count(&mut n) }, 1, "UNINITIALIZED before init");
    assert_eq!(raw.shutdown(), 1, "shutdown without init");
    assert_eq!(sim.raw_init(&raw), 0);
    assert_eq!(
        unsafe { count(std::ptr::null_mut()) },
        2,
        "null out-pointer"
    );
    assert_eq!(unsafe { count(&mut n) }, 0);
    assert_eq!(n, 1);
    let (r, h) = raw.handle(0);
    assert_eq!(r, 0);
    let (r, m) = raw.memory_v1(std::ptr::null_mut());
    assert_eq!((r, m.total), (2, 0), "null handle");
    assert_eq!(
        raw.memory_v1(0x1234 as b::nvmlDevice_t).0,
        2,
        "foreign handle"
    );
    let mem: unsafe extern "C" fn(b::nvmlDevice_t, *mut b::nvmlMemory_t) -> u32 =
        raw.sym("nvmlDeviceGetMemoryInfo");
    assert_eq!(unsafe { mem(h, std::ptr::null_mut()) }, 2);
    // String buffers: too short gives INSUFFICIENT_SIZE, null gives INVALID_ARGUMENT.
    let name: unsafe extern "C" fn(b::nvmlDevice_t, *mut std::ffi::c_char, u32) -> u32 =
        raw.sym("nvmlDeviceGetName");
    let mut buf = [0 as std::ffi::c_char; 4];
    assert_eq!(unsafe { name(h, buf.as_mut_ptr(), 4) }, 7);
    assert_eq!(unsafe { name(h, std::ptr::null_mut(), 64) }, 2);
    let by_uuid: unsafe extern "C" fn(*const std::ffi::c_char, *mut b::nvmlDevice_t) -> u32 =
        raw.sym("nvmlDeviceGetHandleByUUID");
    let mut h2: b::nvmlDevice_t = std::ptr::null_mut();
    assert_eq!(unsafe { by_uuid(std::ptr::null(), &mut h2) }, 2);
    assert_eq!(raw.shutdown(), 0);
    assert_eq!(raw.memory_v1(h).0, 1, "UNINITIALIZED after shutdown");
}

#[test]
fn init_is_reference_counted() {
    let sim = Sim::new(ONE);
    let raw = sim.raw();
    assert_eq!(sim.raw_init(&raw), 0);
    assert_eq!(sim.raw_init(&raw), 0);
    let (_, h) = raw.handle(0);
    assert_eq!(raw.shutdown(), 0);
    assert_eq!(
        raw.memory_v1(h).0,
        0,
        "still initialised after one of two shutdowns"
    );
    assert_eq!(raw.shutdown(), 0);
    assert_eq!(raw.memory_v1(h).0, 1);
    assert_eq!(raw.shutdown(), 1);
    // nvmlInitWithFlags is an init too (pynvml uses it).
    let with_flags: unsafe extern "C" fn(u32) -> u32 = raw.sym("nvmlInitWithFlags");
    assert_eq!(sim.with_env(&[], || unsafe { with_flags(0) }), 0);
    assert_eq!(raw.memory_v1(h).0, 0);
    assert_eq!(raw.shutdown(), 0);
}

#[test]
fn error_strings_are_static_and_meaningful() {
    let sim = Sim::new(ONE);
    let raw = sim.raw();
    assert_eq!(raw.error_string(0), "Success");
    assert_eq!(raw.error_string(7), "Insufficient Size");
    assert_eq!(raw.error_string(15), "GPU is lost");
    assert_eq!(raw.error_string(25), "Argument version mismatch");
    assert_eq!(raw.error_string(12345), "Unknown Error");
}

#[test]
fn telemetry_stubs_exist_and_answer_not_supported() {
    let sim = Sim::new(ONE);
    let nvml = sim.init().expect("init");
    let d = nvml.device_by_index(0).unwrap();
    use nvml_wrapper::enum_wrappers::device::{Clock, PcieUtilCounter};
    use nvml_wrapper::error::NvmlError::NotSupported;
    assert!(matches!(d.clock_info(Clock::Graphics), Err(NotSupported)));
    assert!(matches!(d.power_usage(), Err(NotSupported)));
    assert!(matches!(d.power_management_limit(), Err(NotSupported)));
    assert!(matches!(d.fan_speed(0), Err(NotSupported)));
    assert!(matches!(
        d.pcie_throughput(PcieUtilCounter::Send),
        Err(NotSupported)
    ));
    assert!(matches!(d.encoder_utilization(), Err(NotSupported)));
    assert!(matches!(d.decoder_utilization(), Err(NotSupported)));
    let raw = sim.raw();
    for name in [
        "nvmlDeviceGetFieldValues",
        "nvmlDeviceGetProcessUtilization",
        "nvmlDeviceGetMaxClockInfo",
        "nvmlDeviceGetEnforcedPowerLimit",
        "nvmlDeviceGetPerformanceState",
        "nvmlDeviceGetPciInfo_v2",
        "nvmlDeviceGetMPSComputeRunningProcesses_v3",
        "nvmlDeviceGetGraphicsRunningProcesses_v2",
        "nvmlSystemGetCudaDriverVersion_v2",
        "nvmlInit",
        "nvmlSimSetTime",
        "nvmlSimClearTime",
    ] {
        assert!(raw.has(name), "missing symbol {name}");
    }
    // Exporting either would switch nvitop to a 32-byte process struct.
    assert!(!raw.has("nvmlDeviceGetConfComputeMemSizeInfo"));
    assert!(!raw.has("nvmlDeviceGetRunningProcessDetailList"));
}

#[test]
fn soname_is_libnvidia_ml_so_1() {
    let out = std::process::Command::new("readelf")
        .arg("-d")
        .arg(vram_testkit::sim::built_library())
        .output();
    let out = match out {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // Fall back to reading the dynamic string table ourselves is overkill; the SONAME
            // string must at least be embedded in the file.
            let bytes = std::fs::read(vram_testkit::sim::built_library()).unwrap();
            assert!(bytes.windows(17).any(|w| w == b"libnvidia-ml.so.1"));
            return;
        }
        Err(e) => panic!("readelf: {e}"),
    };
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines()
            .any(|l| l.contains("(SONAME)") && l.contains("[libnvidia-ml.so.1]")),
        "{text}"
    );
}
