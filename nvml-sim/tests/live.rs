//! Live processes: real child processes put on a simulated GPU, followed through /proc, with
//! memory read from a file the process rewrites.

use std::process::{Command, Stdio};
use std::time::Duration;

use nvml_wrapper::enums::device::UsedGpuMemory;
use vram_testkit::sim::{Sim, GIB, MIB};

fn pids(nvml: &nvml_wrapper::Nvml) -> Vec<(u32, u64)> {
    nvml.device_by_index(0)
        .unwrap()
        .running_compute_processes()
        .unwrap()
        .into_iter()
        .map(|p| match p.used_gpu_memory {
            UsedGpuMemory::Used(b) => (p.pid, b),
            UsedGpuMemory::Unavailable => (p.pid, u64::MAX),
        })
        .collect()
}

fn sleeper() -> std::process::Child {
    Command::new("sleep")
        .arg("60")
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn sleep")
}

#[test]
fn live_pid_disappears_when_process_becomes_zombie_or_exits() {
    let mut child = sleeper();
    let pid = child.id();
    let sim = Sim::new(&format!(
        r#"
[[device]]
total = "16GiB"
[[device.process]]
pid = {pid}
live = true
name = "sleep"
memory = "1GiB"
[[device.process]]
pid = 5000001
name = "simulated"
memory = "2GiB"
"#
    ));
    let nvml = sim.init().expect("init");
    assert_eq!(pids(&nvml), vec![(pid, GIB), (5000001, 2 * GIB)]);
    assert_eq!(nvml.sys_process_name(pid, 64).unwrap(), "sleep");
    assert_eq!(
        nvml.device_by_index(0).unwrap().memory_info().unwrap().used,
        3 * GIB
    );

    // Killed but not yet reaped: a zombie, which no longer holds GPU memory.
    child.kill().unwrap();
    let mut gone = false;
    for _ in 0..100 {
        if pids(&nvml).len() == 1 {
            gone = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(gone, "zombie still listed");
    assert_eq!(
        nvml.device_by_index(0).unwrap().memory_info().unwrap().used,
        2 * GIB
    );
    // Reaped: /proc/<pid> is gone.
    child.wait().unwrap();
    assert_eq!(pids(&nvml), vec![(5000001, 2 * GIB)]);
}

#[test]
fn pid_from_environment_and_memory_file() {
    let mut child = sleeper();
    let pid = child.id();
    let sim = Sim::new(
        r#"
[[device]]
total = "16GiB"
[[device.process]]
pid_env = "NVML_SIM_TEST_LIVE_PID"
name = "my job"
memory_file = "job-memory"
[[device.process]]
pid_env = "NVML_SIM_TEST_UNSET_PID"
name = "skipped"
memory = "1GiB"
"#,
    );
    let mem = sim.dir.path().join("job-memory");
    let nvml = sim
        .init_with_env(&[("NVML_SIM_TEST_LIVE_PID", &pid.to_string())])
        .expect("init");
    // No file yet: 0 bytes.
    assert_eq!(pids(&nvml), vec![(pid, 0)]);
    std::fs::write(&mem, "3GiB\n").unwrap();
    assert_eq!(pids(&nvml), vec![(pid, 3 * GIB)]);
    // The process frees its cache and rewrites the file with plain bytes.
    std::fs::write(&mem, format!("{}", 512 * MIB)).unwrap();
    assert_eq!(pids(&nvml), vec![(pid, 512 * MIB)]);
    assert_eq!(
        nvml.device_by_index(0).unwrap().memory_info().unwrap().used,
        512 * MIB
    );
    // Unparsable or vanished file: the last good value stays.
    std::fs::write(&mem, "half a gig").unwrap();
    assert_eq!(pids(&nvml), vec![(pid, 512 * MIB)]);
    std::fs::remove_file(&mem).unwrap();
    assert_eq!(pids(&nvml), vec![(pid, 512 * MIB)]);
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(pids(&nvml).is_empty());
}

#[test]
fn memory_file_from_environment() {
    let sim = Sim::new(
        r#"
[[device]]
total = "16GiB"
[[device.process]]
pid = 5000001
name = "sim with file"
memory_file_env = "NVML_SIM_TEST_MEM_FILE"
"#,
    );
    let mem = sim.dir.path().join("elsewhere");
    std::fs::write(&mem, "2048").unwrap();
    let nvml = sim
        .init_with_env(&[("NVML_SIM_TEST_MEM_FILE", mem.to_str().unwrap())])
        .expect("init");
    assert_eq!(pids(&nvml), vec![(5000001, 2048)]);
}
