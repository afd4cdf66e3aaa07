//! Devices, memory (v1 and v2), processes and MIG as nvml-wrapper and raw C callers see them,
//! under deterministic scenario time.

use nvml_wrapper::enum_wrappers::device::TemperatureSensor;
use nvml_wrapper::enums::device::UsedGpuMemory;
use nvml_wrapper::error::NvmlError;
use vram_testkit::sim::{check_memory, Sim, GIB, MIB};

const TWO_GPUS: &str = r#"
driver_version = "535.104.05"
nvml_version = "12.535.104.05"
cuda_driver_version = 12020

[[device]]
name = "NVIDIA A100-SXM4-80GB"
uuid = "GPU-00000000-1111-2222-3333-444444444444"
pci_bus_id = "00000000:3B:00.0"
total = "80GiB"
reserved = "512MiB"
overhead = "256MiB"
gpu_utilization = 42
memory_utilization = 17
temperature = 55

[[device.process]]
pid = 5000001
name = "python leak.py"
memory = { linear = { start = "1GiB", rate = "1GiB/s", cap = "10GiB" } }

[[device.process]]
pid = 5000002
name = "python train.py"
memory = { sawtooth = { low = "2GiB", high = "6GiB", period = "40s" } }

[[device.process]]
pid = 5000003
name = "viewer"
type = "graphics"
memory = "512MiB"

[[device.process]]
pid = 5000004
name = "short job"
memory = { points = [[0, "1GiB"], ["10s", "3GiB"]] }
start = "20s"
stop = "40s"

[[device.process]]
pid = 5000004
name = "reused pid"
memory = 1048576
start = "50s"

[[device]]
name = "NVIDIA L4"
total = "24GiB"
"#;

fn used(p: &nvml_wrapper::struct_wrappers::device::ProcessInfo) -> u64 {
    match p.used_gpu_memory {
        UsedGpuMemory::Used(b) => b,
        UsedGpuMemory::Unavailable => panic!("memory unavailable for pid {}", p.pid),
    }
}

#[test]
fn devices_identity_and_versions() {
    let sim = Sim::new(TWO_GPUS);
    let nvml = sim.init().expect("init");
    assert_eq!(nvml.device_count().unwrap(), 2);
    assert_eq!(nvml.sys_driver_version().unwrap(), "535.104.05");
    assert_eq!(nvml.sys_nvml_version().unwrap(), "12.535.104.05");
    assert_eq!(nvml.sys_cuda_driver_version().unwrap(), 12020);

    let d0 = nvml.device_by_index(0).unwrap();
    assert_eq!(d0.name().unwrap(), "NVIDIA A100-SXM4-80GB");
    assert_eq!(
        d0.uuid().unwrap(),
        "GPU-00000000-1111-2222-3333-444444444444"
    );
    assert_eq!(d0.index().unwrap(), 0);
    let pci = d0.pci_info().unwrap();
    assert_eq!(pci.bus_id, "00000000:3B:00.0");
    assert_eq!((pci.domain, pci.bus, pci.device), (0, 0x3B, 0));
    let u = d0.utilization_rates().unwrap();
    assert_eq!((u.gpu, u.memory), (42, 17));
    assert_eq!(d0.temperature(TemperatureSensor::Gpu).unwrap(), 55);

    let d1 = nvml.device_by_index(1).unwrap();
    assert_eq!(d1.name().unwrap(), "NVIDIA L4");
    let uuid1 = d1.uuid().unwrap();
    assert!(uuid1.starts_with("GPU-"), "{uuid1}");
    assert_eq!(
        d1.pci_info().unwrap().bus,
        0x11,
        "default bus ids are 0x10 + index"
    );

    let by_uuid = nvml.device_by_uuid(uuid1.as_str()).unwrap();
    assert_eq!(by_uuid.index().unwrap(), 1);
    let by_pci = nvml.device_by_pci_bus_id("0000:3b:00.0").unwrap();
    assert_eq!(by_pci.index().unwrap(), 0);
    assert!(matches!(
        nvml.device_by_uuid("GPU-nope"),
        Err(NvmlError::NotFound)
    ));
    assert!(matches!(
        nvml.device_by_index(2),
        Err(NvmlError::InvalidArg)
    ));
    // Not MIG capable: mode is not supported, the max MIG count is 0.
    assert!(matches!(d0.mig_mode(), Err(NvmlError::NotSupported)));
    assert_eq!(d0.mig_device_count().unwrap(), 0);
    assert!(!d0.mig_is_mig_device_handle().unwrap());
}

#[test]
fn memory_v1_and_v2_follow_processes_over_time() {
    let sim = Sim::new(TWO_GPUS);
    let nvml = sim.init().expect("init");
    let raw = sim.raw();
    let d0 = nvml.device_by_index(0).unwrap();
    let h = unsafe { d0.handle() };

    // t = 0: leak 1 GiB + sawtooth 2 GiB + graphics 512 MiB + overhead 256 MiB.
    let m = d0.memory_info().unwrap();
    check_memory(&m);
    assert_eq!(m.total, 80 * GIB);
    assert_eq!(m.reserved, 512 * MIB);
    assert_eq!(m.used, GIB + 2 * GIB + 512 * MIB + 256 * MIB);
    let (r, v1) = raw.memory_v1(h);
    assert_eq!(r, 0);
    assert_eq!(v1.total, m.total);
    assert_eq!(v1.free, m.free);
    assert_eq!(v1.used, m.used + m.reserved, "v1 used includes reserved");

    // t = 30: leak 10 GiB (capped), sawtooth 5 GiB, graphics, short job at age 10 = 3 GiB.
    sim.set_time(30.0);
    let m = d0.memory_info().unwrap();
    check_memory(&m);
    assert_eq!(m.used, 10 * GIB + 5 * GIB + 512 * MIB + 3 * GIB + 256 * MIB);

    // Idle device: nothing used, everything free.
    let m1 = nvml.device_by_index(1).unwrap().memory_info().unwrap();
    check_memory(&m1);
    assert_eq!((m1.used, m1.reserved, m1.free), (0, 0, 24 * GIB));
}

#[test]
fn memory_clamps_at_capacity() {
    let sim = Sim::new(
        r#"
[[device]]
total = "10GiB"
reserved = "1GiB"
overhead = "1GiB"
[[device.process]]
pid = 5000001
name = "hog"
memory = { linear = { start = 0, rate = "1GiB" } }
"#,
    );
    let nvml = sim.init().expect("init");
    let d = nvml.device_by_index(0).unwrap();
    sim.set_time(4.0);
    let m = d.memory_info().unwrap();
    assert_eq!((m.used, m.free), (5 * GIB, 4 * GIB));
    sim.set_time(100.0);
    let m = d.memory_info().unwrap();
    check_memory(&m);
    assert_eq!((m.used, m.free), (9 * GIB, 0));
    // The process itself still reports what it asked for.
    let p = d.running_compute_processes().unwrap();
    assert_eq!(used(&p[0]), 100 * GIB);
}

#[test]
fn process_lists_all_versions() {
    let sim = Sim::new(TWO_GPUS);
    let nvml = sim.init().expect("init");
    let raw = sim.raw();
    let d0 = nvml.device_by_index(0).unwrap();
    let h = unsafe { d0.handle() };
    sim.set_time(30.0);

    let compute = d0.running_compute_processes().unwrap();
    let pids: Vec<u32> = compute.iter().map(|p| p.pid).collect();
    assert_eq!(pids, vec![5000001, 5000002, 5000004]);
    assert_eq!(used(&compute[0]), 10 * GIB);
    assert_eq!(used(&compute[2]), 3 * GIB);
    assert!(compute
        .iter()
        .all(|p| p.gpu_instance_id.is_none() && p.compute_instance_id.is_none()));
    let graphics = d0.running_graphics_processes().unwrap();
    assert_eq!(graphics.len(), 1);
    assert_eq!((graphics[0].pid, used(&graphics[0])), (5000003, 512 * MIB));
    assert_eq!(d0.running_compute_processes_count().unwrap(), 3);

    // _v2 (24-byte entries) and v1 (16-byte entries) through raw FFI.
    let (r, _, v2) = raw.processes("nvmlDeviceGetComputeRunningProcesses_v2", h, 5);
    assert_eq!(r, 0);
    assert_eq!(v2.iter().map(|p| p.pid).collect::<Vec<_>>(), pids);
    assert_eq!(v2[0].gpuInstanceId, u32::MAX);
    let (r, v1) = raw.processes_v1("nvmlDeviceGetComputeRunningProcesses", h);
    assert_eq!(r, 0);
    assert_eq!(v1.iter().map(|p| p.pid).collect::<Vec<_>>(), pids);
    assert_eq!(v1[1].usedGpuMemory, 5 * GIB);
    let (r, g1) = raw.processes_v1("nvmlDeviceGetGraphicsRunningProcesses", h);
    assert_eq!((r, g1.len(), g1[0].pid), (0, 1, 5000003));

    // Names by pid, including a pid reused by a different program later.
    assert_eq!(nvml.sys_process_name(5000004, 64).unwrap(), "short job");
    sim.set_time(45.0);
    assert!(matches!(
        nvml.sys_process_name(5000004, 64),
        Err(NvmlError::NotFound)
    ));
    assert_eq!(d0.running_compute_processes().unwrap().len(), 2);
    sim.set_time(60.0);
    assert_eq!(nvml.sys_process_name(5000004, 64).unwrap(), "reused pid");
    assert!(matches!(
        nvml.sys_process_name(1234, 64),
        Err(NvmlError::NotFound)
    ));

    // An idle device answers the count call with SUCCESS and zero.
    let d1 = nvml.device_by_index(1).unwrap();
    assert!(d1.running_compute_processes().unwrap().is_empty());
}

#[test]
fn insufficient_size_protocol() {
    let sim = Sim::new(TWO_GPUS);
    let _nvml = sim.init().expect("init");
    let raw = sim.raw();
    let (_, h) = raw.handle(0);
    let f: vram_testkit::sim::ProcFn = raw.sym("nvmlDeviceGetComputeRunningProcesses_v3");
    let zero = nvml_wrapper_sys::bindings::nvmlProcessInfo_t {
        pid: 0,
        usedGpuMemory: 0,
        gpuInstanceId: 0,
        computeInstanceId: 0,
    };
    // Count call: INSUFFICIENT_SIZE with the real count.
    let mut count = 0u32;
    assert_eq!(unsafe { f(h, &mut count, std::ptr::null_mut()) }, 7);
    assert_eq!(count, 2);
    // Too small a buffer: INSUFFICIENT_SIZE again, count says how many are needed.
    let mut buf = vec![zero; 1];
    let mut count = 1u32;
    assert_eq!(unsafe { f(h, &mut count, buf.as_mut_ptr()) }, 7);
    assert_eq!(count, 2);
    // Exactly enough: SUCCESS.
    let mut buf = vec![zero; 2];
    let mut count = 2u32;
    assert_eq!(unsafe { f(h, &mut count, buf.as_mut_ptr()) }, 0);
    assert_eq!((count, buf[0].pid, buf[1].pid), (2, 5000001, 5000002));
    assert_eq!(buf[0].gpuInstanceId, u32::MAX);
    // Null count pointer: INVALID_ARGUMENT.
    assert_eq!(unsafe { f(h, std::ptr::null_mut(), buf.as_mut_ptr()) }, 2);
}

#[test]
fn time_file_loop_and_speed() {
    let sim = Sim::new(
        r#"
loop = "100s"
[[device]]
total = "10GiB"
[[device.process]]
pid = 5000001
name = "ramp"
memory = { linear = { start = 0, rate = "10MiB" } }
"#,
    );
    let nvml = sim.init().expect("init");
    let d = nvml.device_by_index(0).unwrap();
    for (t, expect) in [
        (0.0, 0),
        (12.5, 125 * MIB),
        (99.0, 990 * MIB),
        (150.0, 500 * MIB),
    ] {
        sim.set_time(t);
        assert_eq!(d.memory_info().unwrap().used, expect, "t = {t}");
    }
    // Missing or empty time file means t = 0.
    std::fs::write(&sim.time_file, "").unwrap();
    assert_eq!(d.memory_info().unwrap().used, 0);
    std::fs::remove_file(&sim.time_file).unwrap();
    assert_eq!(d.memory_info().unwrap().used, 0);

    // In-process override wins over the file, and clearing it returns to the file.
    std::fs::write(&sim.time_file, "10").unwrap();
    let raw = sim.raw();
    assert_eq!(raw.set_time(20.0), 0);
    assert_eq!(d.memory_info().unwrap().used, 200 * MIB);
    assert_eq!(raw.set_time(f64::NAN), 2);
    assert_eq!(raw.set_time(-1.0), 2);
    assert_eq!(raw.clear_time(), 0);
    assert_eq!(d.memory_info().unwrap().used, 100 * MIB);
}

#[test]
fn wall_clock_time_scales_with_speed() {
    let sim = Sim::new(
        r#"
speed = 1000.0
[[device]]
total = "100GiB"
[[device.process]]
pid = 5000001
name = "ramp"
memory = { linear = { start = 0, rate = "1MiB" } }
"#,
    );
    // No time file: init without NVML_SIM_TIME_FILE.
    std::fs::remove_file(&sim.time_file).unwrap();
    let nvml = {
        let _g = vram_testkit::sim::ENV_LOCK
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        std::env::set_var("NVML_SIM_SCENARIO", &sim.scenario);
        let n = nvml_wrapper::Nvml::builder()
            .lib_path(sim.lib.as_os_str())
            .init();
        std::env::remove_var("NVML_SIM_SCENARIO");
        n.expect("init")
    };
    let d = nvml.device_by_index(0).unwrap();
    let a = d.memory_info().unwrap().used;
    std::thread::sleep(std::time::Duration::from_millis(50));
    let b = d.memory_info().unwrap().used;
    // 50 ms of wall time at speed 1000 is 50 scenario seconds = 50 MiB.
    assert!(b >= a + 45 * MIB, "a = {a}, b = {b}");
}

const MIG: &str = r#"
[[device]]
name = "NVIDIA A100-SXM4-80GB"
total = "80GiB"
reserved = "1GiB"
overhead = "1GiB"

[[device.process]]
pid = 5000001
name = "outside"
memory = "1GiB"

[[device.mig]]
name = "NVIDIA A100-SXM4-80GB MIG 3g.40gb"
uuid = "MIG-aaaaaaaa-0000-4000-8000-000000000001"
total = "40GiB"
reserved = "1GiB"
overhead = "1GiB"
gpu_instance_id = 1
compute_instance_id = 0
[[device.mig.process]]
pid = 5000011
name = "slice one"
memory = "10GiB"

[[device.mig]]
name = "NVIDIA A100-SXM4-80GB MIG 1g.10gb"
total = "10GiB"
gpu_instance_id = 9
compute_instance_id = 2
[[device.mig.process]]
pid = 5000021
name = "slice two"
memory = "2GiB"
"#;

#[test]
fn mig_devices() {
    let sim = Sim::new(MIG);
    let nvml = sim.init().expect("init");
    let d = nvml.device_by_index(0).unwrap();
    let mode = d.mig_mode().unwrap();
    assert_eq!((mode.current, mode.pending), (1, 1));
    assert_eq!(d.mig_device_count().unwrap(), 7);

    let m0 = d.mig_device_by_index(0).unwrap();
    let m1 = d.mig_device_by_index(1).unwrap();
    assert!(matches!(d.mig_device_by_index(2), Err(NvmlError::NotFound)));
    assert!(matches!(
        d.mig_device_by_index(7),
        Err(NvmlError::InvalidArg)
    ));
    assert!(m0.mig_is_mig_device_handle().unwrap());
    assert_eq!(m0.name().unwrap(), "NVIDIA A100-SXM4-80GB MIG 3g.40gb");
    assert_eq!(
        m0.uuid().unwrap(),
        "MIG-aaaaaaaa-0000-4000-8000-000000000001"
    );
    assert!(m1.uuid().unwrap().starts_with("MIG-"));
    assert_eq!(m1.index().unwrap(), 1);
    assert_eq!(
        m0.mig_parent_device().unwrap().uuid().unwrap(),
        d.uuid().unwrap()
    );
    let by_uuid = nvml
        .device_by_uuid("MIG-aaaaaaaa-0000-4000-8000-000000000001")
        .unwrap();
    assert!(by_uuid.mig_is_mig_device_handle().unwrap());
    assert!(matches!(d.mig_parent_device(), Err(NvmlError::InvalidArg)));

    let mm0 = m0.memory_info().unwrap();
    check_memory(&mm0);
    assert_eq!(
        (mm0.total, mm0.reserved, mm0.used),
        (40 * GIB, GIB, 11 * GIB)
    );
    let mm1 = m1.memory_info().unwrap();
    assert_eq!((mm1.total, mm1.used), (10 * GIB, 2 * GIB));
    // Parent: own overhead + own process + each MIG device's used + reserved.
    let pm = d.memory_info().unwrap();
    check_memory(&pm);
    assert_eq!(pm.used, GIB + GIB + (11 * GIB + GIB) + 2 * GIB);

    let p0 = m0.running_compute_processes().unwrap();
    assert_eq!(p0.len(), 1);
    assert_eq!(
        (p0[0].pid, p0[0].gpu_instance_id, p0[0].compute_instance_id),
        (5000011, Some(1), Some(0))
    );
    let p1 = m1.running_compute_processes().unwrap();
    assert_eq!(
        (p1[0].gpu_instance_id, p1[0].compute_instance_id),
        (Some(9), Some(2))
    );
    let all = d.running_compute_processes().unwrap();
    assert_eq!(
        all.iter().map(|p| p.pid).collect::<Vec<_>>(),
        vec![5000001, 5000011, 5000021]
    );
    assert_eq!(all[0].gpu_instance_id, None);
    assert_eq!(nvml.sys_process_name(5000021, 64).unwrap(), "slice two");

    // Raw instance-id queries.
    let raw = sim.raw();
    let f: unsafe extern "C" fn(nvml_wrapper_sys::bindings::nvmlDevice_t, *mut u32) -> u32 =
        raw.sym("nvmlDeviceGetGpuInstanceId");
    let mut id = 0;
    assert_eq!(unsafe { f(m1.handle(), &mut id) }, 0);
    assert_eq!(id, 9);
    assert_eq!(unsafe { f(d.handle(), &mut id) }, 3);
    // MIG handles do not report utilization.
    assert!(matches!(
        m0.utilization_rates(),
        Err(NvmlError::NotSupported)
    ));
}

#[test]
fn mig_capable_but_disabled() {
    let sim = Sim::new("[[device]]\ntotal = \"80GiB\"\nmig_capable = true\n");
    let nvml = sim.init().expect("init");
    let d = nvml.device_by_index(0).unwrap();
    let mode = d.mig_mode().unwrap();
    assert_eq!(mode.current, 0);
    assert!(matches!(d.mig_device_by_index(0), Err(NvmlError::NotFound)));
}
