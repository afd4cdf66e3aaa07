//! Operator conventions through the real binary, the logs: lines on a pipe, a terminal and the
//! journal, flat JSON logs, escaped NVML strings and the log level. Flags, the telemetry path,
//! `--version` and gzip are in `conventions_flags.rs`, which shares the launcher here.

use std::io::Read as _;
use std::os::fd::{FromRawFd as _, OwnedFd};
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use vram_testkit::wait::{Poll, Wait};

use crate::harness::{sim_library, Exporter, Options};

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_vram-exporter");
pub(crate) const WAIT: Duration = Duration::from_secs(20);

pub(crate) const SCENARIO: &str = include_str!("../fixtures/scenarios/h100-python3.toml");

/// The exporter on `scenario` (written into `dir`) on a free loopback port, NVML from `library`
/// (nvml-sim unless given), with no inherited logging or configuration variables.
fn exporter(dir: &Path, scenario: &str, library: Option<&Path>) -> Command {
    let path = dir.join("scenario.toml");
    std::fs::write(&path, scenario).unwrap();
    let mut cmd = Command::new(BIN);
    cmd.arg("--nvml-library")
        .arg(library.map(Path::to_path_buf).unwrap_or_else(sim_library))
        .args(["--web.listen-address", "127.0.0.1:0"])
        .env("NVML_SIM_SCENARIO", &path)
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy().into_owned();
        if k.starts_with("VRAM_EXPORTER_")
            || ["RUST_LOG", "NO_COLOR", "JOURNAL_STREAM"].contains(&k.as_str())
        {
            cmd.env_remove(k);
        }
    }
    cmd
}

/// A child killed when dropped, with what it wrote to stderr collected by a thread.
pub(crate) struct Logged {
    pub(crate) child: Child,
    pub(crate) out: Arc<Mutex<Vec<u8>>>,
}

impl Logged {
    pub(crate) fn spawn(
        mut cmd: Command,
        stderr: Stdio,
        reader: Option<Box<dyn std::io::Read + Send>>,
    ) -> Logged {
        let mut child = cmd.stderr(stderr).spawn().expect("spawn the exporter");
        let out = Arc::new(Mutex::new(Vec::new()));
        let mut reader = reader.or_else(|| {
            child
                .stderr
                .take()
                .map(|e| Box::new(e) as Box<dyn std::io::Read + Send>)
        });
        if let Some(mut r) = reader.take() {
            let sink = out.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = r.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    sink.lock().unwrap().extend_from_slice(&buf[..n]);
                }
            });
        }
        Logged { child, out }
    }

    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.out.lock().unwrap()).into_owned()
    }

    /// Waits until the collected output holds a line containing `needle`; returns all of it.
    pub(crate) fn wait_for(&mut self, needle: &str) -> String {
        Wait::new(format!("a line with {needle:?}"), WAIT).must(|| {
            let text = self.text();
            if text.contains(needle) {
                // The rest of that line.
                std::thread::sleep(Duration::from_millis(50));
                return Poll::Ready(self.text());
            }
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    Poll::Failed(format!("the exporter exited ({status}):\n{text}"))
                }
                _ => Poll::Pending(text),
            }
        })
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `address=IP:PORT` of a text "listening" line.
pub(crate) fn text_address(log: &str) -> String {
    let line = log
        .lines()
        .find(|l| l.contains("listening"))
        .expect("listening line");
    line.split("address=")
        .nth(1)
        .and_then(|a| a.split_whitespace().next())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_string()
}

pub(crate) const TIMESTAMP: &str = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z ";

#[test]
fn text_logs_on_a_pipe_are_plain_and_escape_nvml_strings() {
    let dir = tempfile::tempdir().unwrap();
    // A driver version that tries to end its log line and forge another (and clear the screen).
    let forged = SCENARIO.replace(
        "driver_version = \"550.54.15\"",
        "driver_version = \"550.1\\n2026-01-01T00:00:00.000Z ERROR vram_exporter: forged\\u001b[2J\"",
    );
    let mut cmd = exporter(dir.path(), &forged, None);
    cmd.args(["--log.format", "text"]);
    let mut e = Logged::spawn(cmd, Stdio::piped(), None);
    e.wait_for("NVML initialised");
    let log = e.wait_for("listening");
    assert!(!log.contains('\x1b'), "escape bytes on a pipe: {log:?}");
    let stamp = regex::Regex::new(TIMESTAMP).unwrap();
    for line in log.lines() {
        assert!(
            stamp.is_match(line),
            "a line without its timestamp: {line:?}\n{log}"
        );
        assert!(
            !line.contains("forged") || line.contains("NVML initialised"),
            "forged line: {line:?}"
        );
    }
    let init = log
        .lines()
        .find(|l| l.contains("NVML initialised"))
        .unwrap();
    assert!(
        init.contains(
            r"driver_version=550.1\n2026-01-01T00:00:00.000Z ERROR vram_exporter: forged\u{1b}[2J"
        ),
        "{init:?}"
    );
    let listening = log.lines().find(|l| l.contains("listening")).unwrap();
    assert!(
        regex::Regex::new(&format!(
            "{TIMESTAMP} INFO vram_exporter: listening address=127.0.0.1:\\d+ "
        ))
        .unwrap()
        .is_match(listening),
        "{listening:?}"
    );
    // The exposition escapes the same string in its label.
    let addr = text_address(&log);
    let (status, body) = crate::harness::get(&format!("http://{addr}/metrics"));
    assert_eq!(status, 200);
    assert!(
        body.contains(
            r#"driver_version="550.1\n2026-01-01T00:00:00.000Z ERROR vram_exporter: forged"#
        ),
        "{body}"
    );
}

/// A pseudo-terminal: (the side we read, the terminal the exporter writes to).
fn pty() -> (std::fs::File, std::fs::File) {
    // SAFETY: plain libc calls on a descriptor this function owns; each result is checked.
    unsafe {
        let master = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY);
        assert!(
            master >= 0,
            "posix_openpt: {}",
            std::io::Error::last_os_error()
        );
        let master = OwnedFd::from_raw_fd(master);
        use std::os::fd::AsRawFd as _;
        assert_eq!(libc::grantpt(master.as_raw_fd()), 0);
        assert_eq!(libc::unlockpt(master.as_raw_fd()), 0);
        let mut name = [0 as libc::c_char; 128];
        assert_eq!(
            libc::ptsname_r(master.as_raw_fd(), name.as_mut_ptr(), name.len()),
            0
        );
        let path = std::ffi::CStr::from_ptr(name.as_ptr())
            .to_str()
            .unwrap()
            .to_string();
        let slave = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("open {path}: {e}"));
        (std::fs::File::from(master), slave)
    }
}

#[test]
fn colour_only_on_a_terminal_and_never_with_no_color() {
    let dir = tempfile::tempdir().unwrap();
    for no_color in [false, true] {
        let (master, slave) = pty();
        let mut cmd = exporter(dir.path(), SCENARIO, None);
        if no_color {
            cmd.env("NO_COLOR", "1");
        }
        let mut e = Logged::spawn(cmd, Stdio::from(slave), Some(Box::new(master)));
        let log = e.wait_for("listening");
        if no_color {
            assert!(!log.contains('\x1b'), "NO_COLOR=1 on a terminal: {log:?}");
        } else {
            assert!(
                log.contains("\x1b[32m INFO\x1b[0m"),
                "no colour on a terminal: {log:?}"
            );
        }
    }
}

#[test]
fn under_the_journal_lines_carry_syslog_priorities() {
    let dir = tempfile::tempdir().unwrap();
    let file_path = dir.path().join("stderr");
    let file = std::fs::File::create(&file_path).unwrap();
    let meta = file.metadata().unwrap();
    let stream = format!("{}:{}", meta.dev(), meta.ino());
    let missing = dir.path().join("no-libnvidia-ml.so.1");
    // NVML cannot load: a warning (priority 4) besides the informational lines (6).
    let run = |journal_stream: &str, out: std::fs::File| {
        let mut cmd = exporter(dir.path(), SCENARIO, Some(&missing));
        cmd.env("JOURNAL_STREAM", journal_stream);
        Logged::spawn(cmd, Stdio::from(out), None)
    };
    let read_until = |path: &Path, needles: &[&str]| -> String {
        Wait::new(format!("{needles:?} in {}", path.display()), WAIT).must(|| {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            if needles.iter().all(|n| text.contains(n)) {
                Poll::Ready(text)
            } else {
                Poll::Pending(text)
            }
        })
    };
    let e = run(&stream, file);
    let log = read_until(&file_path, &["listening", "NVML cannot be initialised"]);
    drop(e);
    let sd_daemon = regex::Regex::new(r"^<[3467]>(ERROR| WARN| INFO|DEBUG) ").unwrap();
    for line in log.lines() {
        assert!(
            sd_daemon.is_match(line),
            "not an sd-daemon line: {line:?}\n{log}"
        );
    }
    assert!(
        log.lines()
            .any(|l| l.starts_with("<6> INFO vram_exporter: listening ")),
        "{log}"
    );
    assert!(
        log.lines()
            .any(|l| l.starts_with("<4> WARN ") && l.contains("NVML cannot be initialised")),
        "{log}"
    );

    // Stderr redirected elsewhere while JOURNAL_STREAM is inherited: plain lines.
    let other_path = dir.path().join("redirected");
    let other = std::fs::File::create(&other_path).unwrap();
    let e = run(&stream, other);
    let log = read_until(&other_path, &["listening"]);
    drop(e);
    let stamp = regex::Regex::new(TIMESTAMP).unwrap();
    assert!(log.lines().all(|l| stamp.is_match(l)), "{log}");
}

#[test]
fn json_lines_are_flat() {
    let e = Exporter::start(Options {
        scenario: SCENARIO,
        ..Default::default()
    });
    let line = e
        .wait_log(|l| l.contains("\"listening\""), WAIT)
        .expect("listening line");
    assert!(line.starts_with("{\"ts\":\""), "{line}");
    assert!(
        line.contains(",\"level\":\"info\",\"msg\":\"listening\",\"address\":\""),
        "{line}"
    );
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["address"], e.addr.as_str());
    assert_eq!(v["tls"], false);
    assert_eq!(v["telemetry_path"], "/metrics");
    assert_eq!(v["revision"], vram_exporter::base::build_info::REVISION);
    assert!(v.get("fields").is_none(), "{line}");
    for l in e.log() {
        let v: serde_json::Value =
            serde_json::from_str(&l).unwrap_or_else(|err| panic!("{err}: {l}"));
        assert!(
            v["ts"].is_string() && v["level"].is_string() && v["msg"].is_string(),
            "{l}"
        );
    }
}

#[test]
fn log_level_flag_and_rust_log_override() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-libnvidia-ml.so.1");
    let start = |args: &[&str], rust_log: Option<&str>| {
        let mut cmd = exporter(dir.path(), SCENARIO, Some(&missing));
        cmd.args(args);
        if let Some(r) = rust_log {
            cmd.env("RUST_LOG", r);
        }
        let mut e = Logged::spawn(cmd, Stdio::piped(), None);
        e.wait_for("NVML cannot be initialised");
        // Long enough for the informational lines logged at start to have been written.
        std::thread::sleep(Duration::from_millis(500));
        e.text()
    };
    let warn_only = start(&["--log.level", "warn"], None);
    assert!(!warn_only.contains(" INFO "), "{warn_only}");
    let overridden = start(&["--log.level", "warn"], Some("info"));
    assert!(
        overridden.contains(" INFO vram_exporter: listening "),
        "{overridden}"
    );
    let from_env = {
        let mut cmd = exporter(dir.path(), SCENARIO, Some(&missing));
        cmd.env("VRAM_EXPORTER__LOG__LEVEL", "warn");
        let mut e = Logged::spawn(cmd, Stdio::piped(), None);
        e.wait_for("NVML cannot be initialised");
        std::thread::sleep(Duration::from_millis(500));
        e.text()
    };
    assert!(!from_env.contains(" INFO "), "{from_env}");
}
