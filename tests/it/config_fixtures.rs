//! Bad configurations as files: every `tests/fixtures/config/<name>.bad.toml` (or `.bad.yml`) is
//! refused by the real binary, by `--check-config` and at start-up alike, with exit 2 and exactly
//! the one line in `<name>.bad.<ext>.err` beside it (`{config}` stands for the file's path).
//! Each configuration opens with a comment saying what is wrong with it. Adding a case is adding
//! two files.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::harness::{repo, sim_library};

/// The fixtures folder, relative to the repository.
const FIXTURES: &str = "tests/fixtures/config";

/// Every bad configuration with its expected line, sorted by name; an `.err` without its
/// configuration (or the reverse) is a failure of its own.
fn fixtures() -> (Vec<(PathBuf, String)>, Vec<String>) {
    let dir = repo().join(FIXTURES);
    let mut cases = Vec::new();
    let mut problems = Vec::new();
    let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    names.sort();
    for path in names {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if let Some(config) = name.strip_suffix(".err") {
            if !dir.join(config).is_file() {
                problems.push(format!("{name}: no configuration {config} beside it"));
            }
        } else if name.ends_with(".bad.toml") || name.ends_with(".bad.yml") {
            match std::fs::read_to_string(dir.join(format!("{name}.err"))) {
                Ok(line) => cases.push((path, line)),
                Err(e) => problems.push(format!("{name}: no {name}.err beside it: {e}")),
            }
        } else {
            problems.push(format!("{name}: neither *.bad.toml, *.bad.yml nor *.err"));
        }
    }
    (cases, problems)
}

/// The exporter on `config`, with no `VRAM_EXPORTER_*` variable of this process, on nvml-sim.
pub(crate) fn exporter_on(config: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vram-exporter"));
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("VRAM_EXPORTER_") {
            cmd.env_remove(k);
        }
    }
    cmd.arg("--config")
        .arg(config)
        .arg("--nvml-library")
        .arg(sim_library())
        .stdin(Stdio::null());
    cmd
}

/// Runs `cmd` under a 1 GiB address-space limit and a 30 s bound, so a parser that expands
/// without limit (or a configuration that is wrongly accepted and starts serving) fails the test
/// instead of exhausting the machine or hanging it.
pub(crate) fn run_bounded(mut cmd: Command) -> Result<Output, String> {
    use std::os::unix::process::CommandExt as _;
    // SAFETY: setrlimit is async-signal-safe; the closure touches nothing else.
    unsafe {
        cmd.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 1 << 30,
                rlim_max: 1 << 30,
            };
            libc::setrlimit(libc::RLIMIT_AS, &limit);
            Ok(())
        });
    }
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(out) => Ok(out.unwrap()),
        Err(_) => {
            // SAFETY: our own child, still unreaped (the waiting thread holds it).
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            Err("ran for 30s".into())
        }
    }
}

/// What is wrong with `out` for a refusal that should read exactly `want`, if anything.
fn problem(what: &str, out: Result<Output, String>, want: &str) -> Option<String> {
    let out = match out {
        Ok(out) => out,
        Err(e) => return Some(format!("{what}: {e}")),
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.code() != Some(2) {
        return Some(format!(
            "{what}: exit {:?}, stderr: {stderr}",
            out.status.code()
        ));
    }
    (stderr != want).then(|| format!("{what}:\n  expected {want:?}\n  got      {stderr:?}"))
}

#[test]
fn every_bad_configuration_fixture_exits_2_with_its_line_at_check_and_at_start() {
    let (cases, mut problems) = fixtures();
    assert!(!cases.is_empty(), "no fixtures in {FIXTURES}");
    for (path, line) in &cases {
        let name = path.file_name().unwrap().to_string_lossy();
        let want = line.replace("{config}", &path.to_string_lossy());
        let mut check = exporter_on(path);
        check.arg("--check-config");
        problems.extend(problem(
            &format!("{name} (--check-config)"),
            run_bounded(check),
            &want,
        ));
        // Start-up refuses it the same way, before listening or touching NVML.
        let start = exporter_on(path);
        problems.extend(problem(
            &format!("{name} (start-up)"),
            run_bounded(start),
            &want,
        ));
    }
    assert!(
        problems.is_empty(),
        "{} of {} fixtures:\n{}",
        problems.len(),
        cases.len(),
        problems.join("\n")
    );
}
