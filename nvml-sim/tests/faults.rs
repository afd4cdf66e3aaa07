//! Each scheduled fault kind, observed through nvml-wrapper and raw calls.

use std::time::{Duration, Instant};

use nvml_wrapper::error::NvmlError;
use vram_testkit::sim::Sim;

const BASE: &str = r#"
[[device]]
total = "16GiB"
[[device.process]]
pid = 5000001
name = "a"
memory = "1GiB"
[[device.process]]
pid = 5000002
name = "b"
memory = "1GiB"
[[device]]
total = "16GiB"
[[device.process]]
pid = 5000011
name = "c"
memory = "1GiB"
"#;

#[test]
fn device_lost_window() {
    let sim = Sim::new(&format!(
        "{BASE}\n[[fault]]\nkind = \"device_lost\"\ndevice = 1\nfrom = \"10s\"\nuntil = \"20s\"\n"
    ));
    let nvml = sim.init().expect("init");
    let d1 = nvml.device_by_index(1).unwrap();
    assert!(d1.memory_info().is_ok());
    sim.set_time(10.0);
    assert!(matches!(d1.memory_info(), Err(NvmlError::GpuLost)));
    assert!(matches!(
        d1.running_compute_processes(),
        Err(NvmlError::GpuLost)
    ));
    assert!(matches!(d1.name(), Err(NvmlError::GpuLost)));
    assert!(matches!(d1.uuid(), Err(NvmlError::GpuLost)));
    assert!(matches!(d1.pci_info(), Err(NvmlError::GpuLost)));
    assert!(matches!(d1.power_usage(), Err(NvmlError::GpuLost)));
    // Enumeration still works, and the other device is unaffected.
    assert_eq!(nvml.device_count().unwrap(), 2);
    assert!(nvml.device_by_index(1).is_ok());
    assert!(nvml.device_by_index(0).unwrap().memory_info().is_ok());
    sim.set_time(20.0);
    assert_eq!(d1.running_compute_processes().unwrap().len(), 1);
}

#[test]
fn processes_not_supported_for_one_or_all_devices() {
    let sim = Sim::new(&format!(
        "{BASE}\n[[fault]]\nkind = \"processes_not_supported\"\ndevice = 0\n\
         [[fault]]\nkind = \"processes_not_supported\"\nfrom = 100\n"
    ));
    let nvml = sim.init().expect("init");
    let d0 = nvml.device_by_index(0).unwrap();
    let d1 = nvml.device_by_index(1).unwrap();
    assert!(matches!(
        d0.running_compute_processes(),
        Err(NvmlError::NotSupported)
    ));
    assert!(matches!(
        d0.running_graphics_processes(),
        Err(NvmlError::NotSupported)
    ));
    assert!(d0.memory_info().is_ok());
    assert_eq!(d1.running_compute_processes().unwrap().len(), 1);
    sim.set_time(100.0);
    assert!(matches!(
        d1.running_compute_processes(),
        Err(NvmlError::NotSupported)
    ));
}

#[test]
fn init_fails_for_first_attempts() {
    let sim = Sim::new(&format!(
        "{BASE}\n[[fault]]\nkind = \"init_failure\"\nattempts = 2\n"
    ));
    assert!(matches!(sim.init(), Err(NvmlError::DriverNotLoaded)));
    assert!(matches!(sim.init(), Err(NvmlError::DriverNotLoaded)));
    let nvml = sim.init().expect("third attempt succeeds");
    assert_eq!(nvml.device_count().unwrap(), 2);
}

#[test]
fn init_fails_until_time_after_load() {
    let sim = Sim::new(&format!(
        "{BASE}\n[[fault]]\nkind = \"init_failure\"\nfor = \"300ms\"\n"
    ));
    // nvml-wrapper unloads the library after a failed init; the library is linked `-z nodelete`
    // so the time since the first load keeps counting across reloads.
    assert!(matches!(sim.init(), Err(NvmlError::DriverNotLoaded)));
    assert!(matches!(sim.init(), Err(NvmlError::DriverNotLoaded)));
    std::thread::sleep(Duration::from_millis(350));
    assert!(sim.init().is_ok());
}

#[test]
fn latency_on_chosen_calls() {
    let sim = Sim::new(&format!(
        "{BASE}\n[[fault]]\nkind = \"latency\"\ncalls = [\"memory\"]\ndelay = \"200ms\"\ndevice = 0\n"
    ));
    let nvml = sim.init().expect("init");
    let d0 = nvml.device_by_index(0).unwrap();
    let d1 = nvml.device_by_index(1).unwrap();
    let t = Instant::now();
    d0.memory_info().unwrap();
    assert!(t.elapsed() >= Duration::from_millis(200));
    let t = Instant::now();
    d0.name().unwrap();
    d1.memory_info().unwrap();
    assert!(
        t.elapsed() < Duration::from_millis(150),
        "other calls are not delayed"
    );
}

#[test]
fn churn_within_headroom_and_beyond() {
    let sim = Sim::new(&format!(
        "{BASE}\n[[fault]]\nkind = \"process_churn\"\ndevice = 0\nextra = 3\n\
         [[fault]]\nkind = \"process_churn\"\ndevice = 1\nextra = 6\n"
    ));
    let nvml = sim.init().expect("init");
    // nvml-wrapper pads the fill call by 5: 3 extra fit, 6 do not.
    let p0 = nvml
        .device_by_index(0)
        .unwrap()
        .running_compute_processes()
        .unwrap();
    assert_eq!(p0.len(), 2 + 3);
    assert!(p0[2..].iter().all(|p| p.pid > 4_194_304));
    let d1 = nvml.device_by_index(1).unwrap();
    assert!(matches!(
        d1.running_compute_processes(),
        Err(NvmlError::InsufficientSize(_))
    ));
    let raw = sim.raw();
    let (r, first, list) = raw.processes(
        "nvmlDeviceGetComputeRunningProcesses_v3",
        unsafe { d1.handle() },
        10,
    );
    assert_eq!((r, first, list.len()), (0, 1, 7));
}

#[test]
fn internal_error_is_caught_and_reported_as_unknown() {
    let sim = Sim::new(&format!(
        "{BASE}\n[[fault]]\nkind = \"internal_error\"\ncalls = [\"memory\"]\nuntil = 5\n"
    ));
    let nvml = sim.init().expect("init");
    let d0 = nvml.device_by_index(0).unwrap();
    // The library panics internally; the caller only sees NVML_ERROR_UNKNOWN.
    assert!(matches!(d0.memory_info(), Err(NvmlError::Unknown)));
    assert!(d0.name().is_ok());
    sim.set_time(5.0);
    assert!(
        d0.memory_info().is_ok(),
        "the library keeps working after a caught panic"
    );
}

#[test]
fn driver_reset_invalidates_the_session_until_it_inits_again() {
    let sim = Sim::new(&format!(
        "{BASE}\n[[fault]]\nkind = \"driver_reset\"\nfrom = \"10s\"\n"
    ));
    let nvml = sim.init().expect("init");
    assert_eq!(nvml.device_count().unwrap(), 2);
    sim.set_time(10.0);
    assert!(matches!(nvml.device_count(), Err(NvmlError::Uninitialized)));
    assert!(matches!(
        nvml.device_by_index(0),
        Err(NvmlError::Uninitialized)
    ));
    // A client that shuts down and initialises again after the reset is served normally.
    drop(nvml);
    let again = sim.init().expect("init after the reset");
    assert_eq!(again.device_count().unwrap(), 2);
    assert!(again.device_by_index(0).unwrap().memory_info().is_ok());
}
