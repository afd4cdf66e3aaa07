//! "Never blind, never stuck" (issue 23) through the real binary: a stderr whose reader went
//! away, a stderr pipe nobody reads, stderr on a full disk, `--version`/`--help`/`--check-config`
//! on a full stdout, and SIGHUP. Each was seen to kill a component, block the server or end the
//! process; here the exporter must keep polling and answering, count the lost log lines, and
//! exit promptly on SIGTERM.
//!
//! These tests launch the binary with `std::process::Command` themselves (as `conventions.rs`
//! does) because the test kit's launcher reads the listening address from stderr, which here is
//! closed, unread or `/dev/full`.

use std::io::{BufRead as _, BufReader};
use std::os::fd::AsRawFd as _;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use vram_testkit::wait::{Poll, Wait};

use crate::harness::{get, sim_library, Exporter, Metrics, Options};

const BIN: &str = env!("CARGO_BIN_EXE_vram-exporter");
/// How long anything may take before the test calls it stuck (a hang check, not a timing).
const STUCK: Duration = Duration::from_secs(30);

/// Two GPUs whose driver is reset one second after every init: the poller then logs twice
/// ("NVML stopped answering", "NVML initialised") every second or so, from its own thread.
const RESETTING: &str = r#"
[[device]]
uuid = "GPU-b0000000-0000-0000-0000-000000000000"
total = "80GiB"

[[device.process]]
pid = 5002301
name = "trainer"
memory = "20GiB"

[[device]]
uuid = "GPU-b1111111-1111-1111-1111-111111111111"
total = "80GiB"

[[fault]]
kind = "driver_reset"
from = "1s"
"#;

/// The exporter on `scenario` polling every 100 ms with JSON logs, nothing inherited.
fn command(dir: &Path, scenario: &str, listen: &str) -> Command {
    command_with(dir, scenario, listen, "")
}

/// As [`command`], with more configuration.
fn command_with(dir: &Path, scenario: &str, listen: &str, config: &str) -> Command {
    let path = dir.join("scenario.toml");
    std::fs::write(&path, scenario).unwrap();
    let file = dir.join("config.toml");
    std::fs::write(&file, format!("[poll]\ninterval = \"100ms\"\n{config}")).unwrap();
    let config = file;
    let mut cmd = Command::new(BIN);
    cmd.arg("--nvml-library")
        .arg(sim_library())
        .arg("--config")
        .arg(&config)
        .args(["--web.listen-address", listen, "--log.format", "json"])
        .env("NVML_SIM_SCENARIO", &path)
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy().into_owned();
        if k.starts_with("VRAM_EXPORTER_") || ["RUST_LOG", "JOURNAL_STREAM"].contains(&k.as_str()) {
            cmd.env_remove(k);
        }
    }
    cmd
}

/// A child killed when dropped.
struct Owned(Child);

impl Drop for Owned {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Owned {
    fn signal(&self, sig: i32) {
        vram_testkit::procfs::signal(self.0.id(), sig);
    }

    /// SIGTERM, then the exit status (a panic if it takes longer than [`STUCK`]).
    fn terminate(&mut self) -> ExitStatus {
        self.signal(libc::SIGTERM);
        Wait::new("SIGTERM to end the exporter", STUCK)
            .every(Duration::from_millis(20))
            .must(|| self.0.try_wait().unwrap().into())
    }

    fn alive(&mut self) {
        if let Some(status) = self.0.try_wait().unwrap() {
            panic!("the exporter exited: {status}");
        }
    }
}

/// Reads stderr lines until the "listening" one; returns the address.
fn listening(stderr: &mut BufReader<std::process::ChildStderr>) -> String {
    let mut line = String::new();
    loop {
        line.clear();
        let n = stderr.read_line(&mut line).unwrap();
        assert!(n > 0, "stderr ended before the listening line");
        if line.contains("\"listening\"") {
            return line
                .split("\"address\":\"")
                .nth(1)
                .and_then(|a| a.split('"').next())
                .expect("address")
                .to_string();
        }
    }
}

fn metrics(addr: &str) -> Metrics {
    let (status, body) = get(&format!("http://{addr}/metrics"));
    assert_eq!(status, 200, "{body}");
    Metrics::parse(&body)
}

fn dropped(m: &Metrics) -> f64 {
    m.value("vram_exporter_log_lines_dropped_total", &[])
        .expect("vram_exporter_log_lines_dropped_total")
}

/// Polls /metrics until `pred` holds (a panic after [`STUCK`]).
fn wait_metrics(addr: &str, what: &str, pred: impl Fn(&Metrics) -> bool) -> Metrics {
    Wait::new(what, STUCK).must(|| {
        let m = metrics(addr);
        if pred(&m) {
            Poll::Ready(m)
        } else {
            Poll::Pending(format!("/metrics:\n{}", m.text))
        }
    })
}

/// Two polls newer than now are published: the poller is alive.
fn still_polling(addr: &str) {
    let last = |m: &Metrics| {
        m.value("vram_exporter_last_poll_timestamp_seconds", &[])
            .unwrap_or(0.0)
    };
    let before = last(&metrics(addr));
    let first = wait_metrics(addr, "a new poll", |m| last(m) > before);
    let t1 = last(&first);
    wait_metrics(addr, "a second new poll", |m| last(m) > t1);
}

fn healthy(addr: &str) {
    let (status, body) = get(&format!("http://{addr}/-/healthy"));
    assert_eq!(status, 200, "{body}");
}

#[test]
fn a_stderr_whose_reader_went_away_never_stops_the_poller() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = command(dir.path(), RESETTING, "127.0.0.1:0");
    let mut child = Owned(cmd.stderr(Stdio::piped()).spawn().unwrap());
    let mut stderr = BufReader::new(child.0.stderr.take().unwrap());
    let addr = listening(&mut stderr);
    // The log shipper goes away: every later write gets EPIPE.
    drop(stderr);
    // The poller logs each driver reset; those lines are lost and counted...
    wait_metrics(&addr, "dropped log lines", |m| dropped(m) >= 2.0);
    // ...and the poller that wrote them still polls, and health says so truthfully.
    still_polling(&addr);
    healthy(&addr);
    child.alive();
    assert!(child.terminate().success());
}

/// One GPU far above a 50% hard limit, for as long as the test runs.
const BREACH: &str = r#"
[[device]]
uuid = "GPU-b2222222-2222-2222-2222-222222222222"
total = "80GiB"

[[device.process]]
pid = 5002311
name = "hog"
memory = "70GiB"
"#;

#[test]
fn a_stderr_whose_reader_went_away_never_stops_cleanup() {
    let dir = tempfile::tempdir().unwrap();
    // Every run writes an audit line; in dry-run nothing is signalled.
    let cleanup = "[limits]\nsoft = \"40%\"\nhard = \"50%\"\n\
                   [cleanup]\nenabled = true\ndry_run = true\ncooldown = \"1s\"\n\
                   [[cleanup.actions]]\ntype = \"signal\"\ntarget = \"all\"\n";
    let mut cmd = command_with(dir.path(), BREACH, "127.0.0.1:0", cleanup);
    let mut child = Owned(cmd.stderr(Stdio::piped()).spawn().unwrap());
    let mut stderr = BufReader::new(child.0.stderr.take().unwrap());
    let addr = listening(&mut stderr);
    drop(stderr);
    let runs = |m: &Metrics| -> f64 {
        m.samples
            .iter()
            .filter(|(n, _, _)| n == "vram_cleanups_total")
            .map(|(_, _, v)| v)
            .sum()
    };
    // The breach lasts: a run each cooldown, each logged to the closed pipe.
    let m = wait_metrics(&addr, "three cleanup runs", |m| {
        runs(m) >= 3.0 && dropped(m) >= 3.0
    });
    assert_eq!(
        m.value(
            "vram_exporter_component_restarts_total",
            &[("component", "cleanup")]
        ),
        Some(0.0),
        "the dispatcher never died"
    );
    healthy(&addr);
    assert!(child.terminate().success());
}

#[test]
fn an_unread_stderr_pipe_never_blocks_scrapes_health_or_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = command(dir.path(), RESETTING, "127.0.0.1:0");
    let mut child = Owned(cmd.stderr(Stdio::piped()).spawn().unwrap());
    let mut stderr = BufReader::new(child.0.stderr.take().unwrap());
    let addr = listening(&mut stderr);
    // A one-page pipe that nobody reads from now on: a few lines fill it.
    // SAFETY: fcntl on a pipe descriptor this test owns; the result is only a size hint.
    unsafe {
        libc::fcntl(stderr.get_ref().as_raw_fd(), libc::F_SETPIPE_SZ, 4096);
    }
    // Log lines from the async runtime too (each SIGHUP is logged by a runtime task) until the
    // pipe and the log queue behind it are full and lines are dropped.
    let deadline = Instant::now() + STUCK;
    while dropped(&metrics(&addr)) < 10.0 {
        assert!(Instant::now() < deadline, "no log line was ever dropped");
        for _ in 0..100 {
            child.signal(libc::SIGHUP);
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    for _ in 0..20 {
        healthy(&addr);
        metrics(&addr);
    }
    still_polling(&addr);
    child.alive();
    assert!(child.terminate().success(), "the exit status");
    drop(stderr);
}

#[test]
fn stderr_on_a_full_disk_is_counted_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let mut cmd = command(dir.path(), RESETTING, &addr);
    let mut child = Owned(cmd.stderr(full).spawn().unwrap());
    let deadline = Instant::now() + STUCK;
    loop {
        child.alive();
        if vram_testkit::http::get_url(&format!("http://{addr}/-/healthy"), STUCK)
            .is_ok_and(|(status, _)| status == 200)
        {
            break;
        }
        assert!(Instant::now() < deadline, "never answered on {addr}");
        std::thread::sleep(Duration::from_millis(50));
    }
    // "listening" and every line since were written to a full disk.
    let m = wait_metrics(&addr, "dropped log lines", |m| dropped(m) >= 2.0);
    assert!(m.value("vram_exporter_component_up", &[("component", "poller")]) == Some(1.0));
    still_polling(&addr);
    child.signal(libc::SIGHUP);
    healthy(&addr);
    child.alive();
    assert!(child.terminate().success());
}

/// Runs the binary with stdout (or stderr) on `/dev/full`.
fn on_full(args: &[&str], full_stdout: bool) -> std::process::Output {
    let full = || {
        std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap()
    };
    let mut cmd = Command::new(BIN);
    cmd.args(args).env_remove("RUST_LOG").stdin(Stdio::null());
    if full_stdout {
        cmd.stdout(full()).stderr(Stdio::piped());
    } else {
        cmd.stdout(Stdio::piped()).stderr(full());
    }
    cmd.output().unwrap()
}

#[test]
fn version_help_and_check_config_on_a_full_stdout_fail_cleanly() {
    for args in [&["--version"][..], &["--help"], &["--check-config"]] {
        let out = on_full(args, true);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
    let out = on_full(&["--check-config"], true);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("cannot write the configuration to stdout"),
        "{stderr}"
    );
    // A full stderr loses the "configuration OK" line, not the result.
    let out = on_full(&["--check-config"], false);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("[poll]"));
    // And an invalid configuration still exits 2 when its message cannot be written.
    let out = on_full(&["--check-config", "--log.level", "loud"], false);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn sighup_is_logged_and_never_ends_the_process() {
    let e = Exporter::start(Options {
        scenario: RESETTING,
        ..Default::default()
    });
    vram_testkit::procfs::signal(e.pid(), libc::SIGHUP);
    assert!(e
        .wait_log(|l| l.contains("SIGHUP received"), STUCK)
        .is_some());
    assert_eq!(e.get("/-/healthy").0, 200);
    assert!(e.terminate().success());

    // With a web configuration, SIGHUP re-reads it at once.
    let web = tempfile::tempdir().unwrap();
    let file = web.path().join("web.yml");
    std::fs::write(
        &file,
        "http_server_config:\n  headers:\n    X-Frame-Options: deny\n",
    )
    .unwrap();
    let e = Exporter::start(Options {
        scenario: RESETTING,
        args: vec!["--web.config.file".into(), file.display().to_string()],
        ..Default::default()
    });
    vram_testkit::procfs::signal(e.pid(), libc::SIGHUP);
    assert!(e
        .wait_log(
            |l| l.contains("SIGHUP: checking the web configuration now"),
            STUCK
        )
        .is_some());
    assert_eq!(e.get("/-/healthy").0, 200);
    assert!(e.terminate().success());
}
