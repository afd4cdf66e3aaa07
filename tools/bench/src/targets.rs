//! The exporters under measurement: vram-exporter (through the test kit's launcher) and
//! nvitop-exporter (from the venv, on the same nvml-sim library), each on a loopback port, with its
//! output in `tools/bench/out/logs/`; stopped (SIGTERM, then SIGKILL) when dropped.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use vram_testkit::exporter::{wait_for, Launch};
use vram_testkit::process::{Running, Spawn};

/// Where the built binaries, the shipped scenarios and the output folder are.
pub struct Paths {
    pub exporter: PathBuf,
    /// The NVML-client baseline (`nvml-baseline`): the exporter's poll, nothing else.
    pub baseline: PathBuf,
    pub sim_library: PathBuf,
    pub nvitop: PathBuf,
    pub out: PathBuf,
    pub scenarios: PathBuf,
}

/// A running exporter under measurement.
pub struct Target {
    pub name: &'static str,
    pub addr: SocketAddr,
    pub process: Running,
}

impl Target {
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    pub fn log_tail(&self) -> String {
        self.process.log_tail(15)
    }
}

/// Both exporters die with this run, even if it is killed, and log to `out/logs/NAME-TAG.log`.
fn keep(paths: &Paths, name: &str, tag: &str) -> Spawn {
    Spawn {
        log_file: Some(paths.out.join(format!("logs/{name}-{tag}.log"))),
        keep_lines: Some(200),
        die_with_parent: true,
        stop_gently: true,
    }
}

const READY_WITHIN: Duration = Duration::from_secs(60);

/// vram-exporter on `scenario`, polling every second, ready once `/-/ready` answers 200.
pub fn start_vram(paths: &Paths, scenario: &Path, tag: &str) -> Result<Target, String> {
    let e = Launch::new(&paths.exporter)
        .simulate(scenario)
        .clean_env()
        .env("VRAM_EXPORTER__POLL__INTERVAL", "1s")
        .spawn(keep(paths, "vram-exporter", tag))
        .start_timeout(READY_WITHIN)
        .start()?;
    let (mut process, addr) = (e.process, e.addr);
    wait_for(&mut process, addr, "/-/ready", READY_WITHIN, |_| true)?;
    Ok(Target {
        name: "vram-exporter",
        addr,
        process,
    })
}

/// The NVML-client baseline on the same scenario and interval; it serves nothing (`addr` unused),
/// ready once it says it is polling.
pub fn start_baseline(paths: &Paths, scenario: &Path, tag: &str) -> Result<Target, String> {
    let mut cmd = Command::new(&paths.baseline);
    cmd.args(["--interval", "1s", "--nvml-library"])
        .arg(&paths.sim_library)
        .env("NVML_SIM_SCENARIO", scenario);
    let process = Running::spawn("nvml-baseline", cmd, &keep(paths, "nvml-baseline", tag))?;
    if process
        .wait_log(|l| l.contains("polling"), READY_WITHIN)
        .is_none()
    {
        return Err(format!(
            "nvml-baseline did not start:\n{}",
            process.log_tail(15)
        ));
    }
    Ok(Target {
        name: "nvml-baseline",
        addr: ([127, 0, 0, 1], 0).into(),
        process,
    })
}

fn free_port() -> Result<u16, String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("no free loopback port: {e}"))?;
    Ok(l.local_addr().map_err(|e| e.to_string())?.port())
}

/// nvitop-exporter on `scenario`, collecting every second, ready once its first collection
/// published GPU memory.
pub fn start_nvitop(paths: &Paths, scenario: &Path, tag: &str) -> Result<Target, String> {
    // nvidia-ml-py dlopens the bare name libnvidia-ml.so.1: give it a directory holding that name.
    let lib_dir = paths.out.join("nvml");
    std::fs::create_dir_all(&lib_dir).map_err(|e| e.to_string())?;
    let link = lib_dir.join("libnvidia-ml.so.1");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&paths.sim_library, &link)
        .map_err(|e| format!("{}: {e}", link.display()))?;
    let port = free_port()?;
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut cmd = Command::new(&paths.nvitop);
    cmd.args([
        "--hostname",
        "bench",
        "--bind-address",
        "127.0.0.1",
        "--interval",
        "1",
        "--port",
    ])
    .arg(port.to_string())
    .env("LD_LIBRARY_PATH", &lib_dir)
    .env("NVML_SIM_SCENARIO", scenario)
    .env("PYTHONUNBUFFERED", "1");
    let mut process = Running::spawn("nvitop-exporter", cmd, &keep(paths, "nvitop-exporter", tag))?;
    wait_for(&mut process, addr, "/metrics", READY_WITHIN, |body| {
        body.contains("gpu_memory_used_MiB{")
    })?;
    Ok(Target {
        name: "nvitop-exporter",
        addr,
        process,
    })
}
