//! Trace replay (`memory = { trace = ... }`) through the real C ABI: the shipped H200 trace comes
//! back value for value, speed / offset / loop / linear interpolation follow the simulated clock,
//! malformed trace files are one-line scenario errors naming file, line and problem, and the
//! `record-trace` example records a simulated GPU into a file that replays the same values.

use std::path::{Path, PathBuf};
use std::process::Command;

use nvml_wrapper::enums::device::UsedGpuMemory;
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::Nvml;
use vram_testkit::sim::{Sim, GIB};

/// `(t_seconds text, columns...)` rows of a trace file in the recorder's format.
struct Row {
    t: String,
    total: u64,
    used: u64,
    reserved: u64,
    process: u64,
}

fn read_rows(path: &Path) -> Vec<Row> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("t_seconds,gpu_total_bytes,gpu_used_bytes,gpu_reserved_bytes,process_used_bytes")
    );
    lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            assert_eq!(f.len(), 5, "{l}");
            Row {
                t: f[0].to_string(),
                total: f[1].parse().unwrap(),
                used: f[2].parse().unwrap(),
                reserved: f[3].parse().unwrap(),
                process: f[4].parse().unwrap(),
            }
        })
        .collect()
}

/// Used bytes of `pid` on GPU 0, `None` when it is not listed.
fn process_used(nvml: &Nvml, pid: u32) -> Option<u64> {
    let procs = nvml
        .device_by_index(0)
        .unwrap()
        .running_compute_processes()
        .unwrap();
    procs
        .iter()
        .find(|p| p.pid == pid)
        .map(|p| match p.used_gpu_memory {
            UsedGpuMemory::Used(b) => b,
            UsedGpuMemory::Unavailable => panic!("no used bytes for {pid}"),
        })
}

fn shipped_trace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/traces/h200-pytorch-phases.csv")
}

#[test]
fn h200_scenario_replays_the_trace_through_the_c_abi() {
    let rows = read_rows(&shipped_trace());
    let sim = Sim::shipped("h200-trace.toml");
    let nvml = sim.init().unwrap();
    assert_eq!(nvml.sys_driver_version().unwrap(), "580.159.04");
    let device = nvml.device_by_index(0).unwrap();
    let mut compared = 0;
    for row in &rows {
        let t: f64 = row.t.parse().unwrap();
        if !(0.0..43.2).contains(&t) {
            continue;
        }
        // The row's own time, and just before the next sample (step: the value holds).
        for at in [row.t.clone(), format!("{}", t + 0.15)] {
            std::fs::write(&sim.time_file, &at).unwrap();
            assert_eq!(
                process_used(&nvml, 5_000_001),
                Some(row.process),
                "process at t={at}"
            );
            let m = device.memory_info().unwrap();
            assert_eq!(
                (m.total, m.used, m.reserved),
                (row.total, row.used, row.reserved),
                "device at t={at}"
            );
        }
        compared += 1;
    }
    assert!(compared > 200, "compared {compared} rows");
    // The job's phases as a person reads them: 24.6 GiB at 8 s, 12.6 GiB at 20 s, +8 GiB leak.
    sim.set_time(8.0);
    let at8 = process_used(&nvml, 5_000_001).unwrap();
    assert!(at8 > 24 * GIB && at8 < 25 * GIB, "{at8}");
    sim.set_time(20.0);
    let at20 = process_used(&nvml, 5_000_001).unwrap();
    sim.set_time(38.0);
    let at38 = process_used(&nvml, 5_000_001).unwrap();
    assert_eq!(at38 - at20, 8 * GIB, "the leak adds 8 GiB");
    // After the process exits it is not listed.
    sim.set_time(50.0);
    assert_eq!(process_used(&nvml, 5_000_001), None);
}

fn trace_scenario(trace: &str) -> String {
    format!(
        "[[device]]\ntotal = \"200GiB\"\n[[device.process]]\npid = 5000001\nname = \"replay\"\n\
         memory = {{ trace = {{ {trace} }} }}\n"
    )
}

#[test]
fn speed_offset_loop_and_linear_follow_the_simulated_clock() {
    // Sped up 10×: scenario second 2.2 is trace second 22 (the leak has started).
    let sim = Sim::new(&trace_scenario(&format!(
        "file = {:?}, column = \"process_used_bytes\", speed = 10, offset = 0",
        shipped_trace().display().to_string()
    )));
    let nvml = sim.init().unwrap();
    let rows = read_rows(&shipped_trace());
    for (scenario_t, trace_t) in [(0.5, 5.0), (1.0, 10.0), (2.2, 22.0), (3.8, 38.0)] {
        sim.set_time(scenario_t);
        let fast = process_used(&nvml, 5_000_001).unwrap();
        let expected = rows
            .iter()
            .rfind(|r| r.t.parse::<f64>().unwrap() <= trace_t)
            .unwrap()
            .process;
        assert_eq!(fast, expected, "scenario t={scenario_t}");
    }

    // A small trace with linear interpolation and loop, driven by nvmlSimSetTime.
    let sim = Sim::new(&trace_scenario(
        "file = \"small.csv\", interpolate = \"linear\", loop = true",
    ));
    std::fs::write(
        sim.dir.path().join("small.csv"),
        "t,bytes\n10,1000\n12,3000\n14,0\n",
    )
    .unwrap();
    let nvml = sim.init().unwrap();
    let raw = sim.raw();
    // Default offset: the first row's time, so age 0 reads the first row.
    for (t, bytes) in [
        (0.0, 1000),
        (1.0, 2000),
        (3.0, 1500),
        (4.0, 1000), // the 4 s span wraps
        (5.5, 2500),
    ] {
        assert_eq!(raw.set_time(t), 0);
        assert_eq!(process_used(&nvml, 5_000_001), Some(bytes), "t={t}");
    }
    assert_eq!(raw.clear_time(), 0);
}

/// Loads a scenario whose process replays `csv` (written beside it) and returns the error line.
fn trace_error(csv: Option<&str>, trace: &str) -> (nvml_sim::scenario::ScenarioError, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("s.toml");
    std::fs::write(&scenario, trace_scenario(trace)).unwrap();
    let csv_path = dir.path().join("t.csv");
    if let Some(text) = csv {
        std::fs::write(&csv_path, text).unwrap();
    }
    let e = nvml_sim::scenario::load_file(&scenario, &|_| None, &mut Vec::new()).unwrap_err();
    (e, csv_path)
}

#[test]
fn malformed_trace_files_are_one_line_errors_naming_file_line_and_problem() {
    let file = "file = \"t.csv\", column = \"b\"";
    for (csv, trace, key, needles) in [
        (None, file, "file", vec!["cannot read"]),
        (Some(""), file, "file", vec!["is empty"]),
        (Some("t,b\n"), file, "file", vec!["no rows"]),
        (
            Some("t,b\n0,1\n1,x\n"),
            file,
            "file",
            vec!["line 3", "\"x\"", "not a whole number"],
        ),
        (
            Some("t,b\n0,1\nsoon,2\n"),
            file,
            "file",
            vec!["line 3", "\"soon\"", "not a number"],
        ),
        (
            Some("t,b\n0,1\n2,2\n2,3\n"),
            file,
            "file",
            vec!["line 4", "times must increase"],
        ),
        (
            Some("t,b\n0,1\n1,-5\n"),
            file,
            "file",
            vec!["line 3", "\"-5\""],
        ),
        (
            Some("t,b\n0,1\n1,2,3\n"),
            file,
            "file",
            vec!["line 3", "3 fields", "header has 2"],
        ),
        (
            Some("t,a\n0,1\n"),
            file,
            "column",
            vec!["line 1", "no column \"b\"", "t, a"],
        ),
        (
            Some("t,a,c\n0,1,2\n"),
            "file = \"t.csv\"",
            "column",
            vec!["3 columns", "name the bytes column"],
        ),
        (
            Some("t,b\n0,1\n"),
            "file = \"t.csv\", speed = 0",
            "speed",
            vec!["> 0"],
        ),
    ] {
        let (e, csv_path) = trace_error(csv, trace);
        let line = e.to_string();
        assert_eq!(
            e.key,
            format!("device[0].process[0].memory.trace.{key}"),
            "{line}"
        );
        assert_eq!(line.lines().count(), 1, "{line}");
        if key != "speed" {
            assert!(line.contains(&csv_path.display().to_string()), "{line}");
        }
        for n in needles {
            assert!(line.contains(n), "{n:?} not in {line}");
        }
    }
    // An unknown interpolation is a key error like any other.
    let (e, _) = trace_error(
        Some("t,b\n0,1\n"),
        "file = \"t.csv\", interpolate = \"cubic\"",
    );
    assert_eq!(e.key, "device[0].process[0].memory.trace.interpolate");
    assert!(e.problem.contains("cubic"), "{e}");
}

#[test]
fn malformed_trace_fails_init_through_the_c_abi() {
    let sim = Sim::new(&trace_scenario("file = \"t.csv\""));
    std::fs::write(sim.dir.path().join("t.csv"), "t,b\n0,1\n0,2\n").unwrap();
    assert!(matches!(sim.init(), Err(NvmlError::Unknown)));
}

/// The `record-trace` example cargo built next to this test (`cargo test` builds examples).
fn recorder() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.ancestors()
        .skip(1)
        .map(|d| d.join("examples").join("record-trace"))
        .find(|p| p.is_file())
        .expect("record-trace example not built; run `cargo test -p nvml-sim` or `cargo build -p nvml-sim --examples`")
}

#[test]
fn recorder_output_replays_the_recorded_values() {
    // A process that steps from 1 GiB to 3 GiB at 0.7 s, on the wall clock (no time file).
    let source = Sim::new(
        "[[device]]\ntotal = \"80GiB\"\nreserved = \"512MiB\"\noverhead = \"100MiB\"\n\
         [[device.process]]\npid = 5000001\nname = \"job\"\n\
         memory = { points = [[0, \"1GiB\"], [0.7, \"1GiB\"], [0.701, \"3GiB\"]] }\n",
    );
    let recording = source.dir.path().join("recording.csv");
    let status = Command::new(recorder())
        .args([
            "--pid",
            "5000001",
            "--interval-ms",
            "50",
            "--duration",
            "1.2",
        ])
        .arg("--lib")
        .arg(&source.lib)
        .arg("--out")
        .arg(&recording)
        .env("NVML_SIM_SCENARIO", &source.scenario)
        .env_remove("NVML_SIM_TIME_FILE")
        .status()
        .unwrap();
    assert!(status.success());
    let rows = read_rows(&recording);
    assert!(rows.len() >= 10, "{} rows", rows.len());
    let mut previous = 0;
    for r in &rows {
        assert_eq!((r.total, r.reserved), (80 * GIB, 512 << 20));
        assert!((GIB..=3 * GIB).contains(&r.process), "{}", r.process);
        assert!(r.process >= previous, "memory only grows in this scenario");
        previous = r.process;
        if r.t.parse::<f64>().unwrap() > 0.8 {
            assert_eq!((r.process, r.used), (3 * GIB, 3 * GIB + (100 << 20)));
        }
    }
    assert_eq!(rows[0].process, GIB);

    // Replay the recording and read every row back at its own time.
    let replay = Sim::new(&trace_scenario(&format!(
        "file = {:?}, column = \"process_used_bytes\", offset = 0",
        recording.display().to_string()
    )));
    let nvml = replay.init().unwrap();
    for r in &rows {
        std::fs::write(&replay.time_file, &r.t).unwrap();
        assert_eq!(process_used(&nvml, 5_000_001), Some(r.process), "t={}", r.t);
    }
}
