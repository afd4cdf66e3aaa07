//! Operator conventions through the real binary: log lines on a pipe, a terminal and the journal,
//! flat JSON logs, escaped NVML strings, node_exporter-style flags and their aliases, the telemetry
//! path, `--version` and build info, and gzip-compressed scrapes.

use std::io::{Read as _, Write as _};
use std::os::fd::{FromRawFd as _, OwnedFd};
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::harness::{refusal_problem, sim_library, Exporter, Options};

const BIN: &str = env!("CARGO_BIN_EXE_vram-exporter");
const WAIT: Duration = Duration::from_secs(20);

const SCENARIO: &str = r#"
driver_version = "550.54.15"

[[device]]
name = "NVIDIA H100 80GB HBM3"
uuid = "GPU-00000000-0000-0000-0000-000000000000"
total = "80GiB"

[[device.process]]
pid = 5000001
name = "python3"
memory = "10GiB"
"#;

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
struct Logged {
    child: Child,
    out: Arc<Mutex<Vec<u8>>>,
}

impl Logged {
    fn spawn(
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

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.out.lock().unwrap()).into_owned()
    }

    /// Waits until the collected output holds a line containing `needle`; returns all of it.
    fn wait_for(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let text = self.text();
            if text.contains(needle) {
                // The rest of that line.
                std::thread::sleep(Duration::from_millis(50));
                return self.text();
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the exporter exited ({status}) before logging {needle:?}:\n{text}");
            }
            assert!(
                Instant::now() < deadline,
                "no {needle:?} within {WAIT:?}:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `address=IP:PORT` of a text "listening" line.
fn text_address(log: &str) -> String {
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

const TIMESTAMP: &str = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z ";

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
        let deadline = Instant::now() + WAIT;
        loop {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            if needles.iter().all(|n| text.contains(n)) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "no {needles:?} within {WAIT:?}:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
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
    assert_eq!(v["revision"], vram_exporter::config::build_info::REVISION);
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

type Args<'a> = &'a [&'a str];
type Env<'a> = &'a [(&'a str, &'a str)];

/// `--check-config` with `args` and `env`: the effective configuration printed.
fn effective(args: &[&str], env: &[(&str, &str)]) -> String {
    let out = Command::new(BIN)
        .arg("--check-config")
        .args(args)
        .envs(env.iter().copied())
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn flags_aliases_file_and_environment() {
    let dir = tempfile::tempdir().unwrap();
    let defaults = effective(&[], &[]);
    for want in [
        "listen = \"0.0.0.0:18726\"",
        "telemetry_path = \"/metrics\"",
        "level = \"info\"",
        "format = \"text\"",
    ] {
        assert!(defaults.contains(want), "{want}:\n{defaults}");
    }
    let cases: &[(Args, Env, &str)] = &[
        (
            &["--web.listen-address", "127.0.0.1:1"],
            &[],
            "listen = \"127.0.0.1:1\"",
        ),
        (
            &["--listen", "127.0.0.1:2"],
            &[],
            "listen = \"127.0.0.1:2\"",
        ),
        (
            &["--web.telemetry-path", "/x/metrics"],
            &[],
            "telemetry_path = \"/x/metrics\"",
        ),
        (
            &[],
            &[("VRAM_EXPORTER__WEB__TELEMETRY_PATH", "/env")],
            "telemetry_path = \"/env\"",
        ),
        (&["--log.level", "debug"], &[], "level = \"debug\""),
        (
            &[],
            &[("VRAM_EXPORTER__LOG__LEVEL", "warn")],
            "level = \"warn\"",
        ),
        (&["--log.format", "json"], &[], "format = \"json\""),
        (&["--log-format", "json"], &[], "format = \"json\""),
        (
            &[],
            &[("VRAM_EXPORTER__LOG__FORMAT", "json")],
            "format = \"json\"",
        ),
    ];
    for (args, env, want) in cases {
        let got = effective(args, env);
        assert!(got.contains(want), "{args:?} {env:?}: want {want}:\n{got}");
    }
    // The file layer, through the --config.file alias; flags still win over it.
    let file = dir.path().join("c.toml");
    std::fs::write(
        &file,
        "[log]\nlevel = \"error\"\nformat = \"json\"\n[web]\ntelemetry_path = \"/file\"\n",
    )
    .unwrap();
    let f = file.to_str().unwrap();
    let got = effective(&["--config.file", f], &[]);
    for want in [
        "level = \"error\"",
        "format = \"json\"",
        "telemetry_path = \"/file\"",
    ] {
        assert!(got.contains(want), "{want}:\n{got}");
    }
    let got = effective(&["--config", f, "--log.level", "info"], &[]);
    assert!(got.contains("level = \"info\""), "{got}");
}

#[test]
fn bad_telemetry_paths_and_log_settings_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    std::fs::write(&file, "[log]\nformat = \"xml\"\n").unwrap();
    let f = file.to_str().unwrap();
    let cases: &[(&str, Args, Env, &[&str])] = &[
        (
            "relative path",
            &["--web.telemetry-path", "metrics"],
            &[],
            &["web.telemetry_path", "\"metrics\"", "must start with \"/\""],
        ),
        (
            "the status page",
            &["--web.telemetry-path", "/"],
            &[],
            &["web.telemetry_path", "collides with the / endpoint"],
        ),
        (
            "readiness",
            &[],
            &[("VRAM_EXPORTER__WEB__TELEMETRY_PATH", "/-/ready")],
            &["web.telemetry_path", "/-/ready"],
        ),
        (
            "the JSON API",
            &["--web.telemetry-path", "/api/v1/gpus"],
            &[],
            &["web.telemetry_path", "/api/v1/gpus"],
        ),
        (
            "a route parameter",
            &["--web.telemetry-path", "/{x}"],
            &[],
            &["web.telemetry_path", "'{'"],
        ),
        (
            "a wildcard",
            &["--web.telemetry-path", "/*rest"],
            &[],
            &["web.telemetry_path", "'*'"],
        ),
        (
            "a level",
            &["--log.level", "loud"],
            &[],
            &["log.level", "loud", "error, warn, info, debug, trace"],
        ),
        (
            "a format in the file",
            &["--config", f],
            &[],
            &["log.format", "xml"],
        ),
        (
            "RUST_LOG",
            &[],
            &[("RUST_LOG", "vram_exporter=loud")],
            &["RUST_LOG", "vram_exporter=loud"],
        ),
    ];
    let mut failures = Vec::new();
    for (what, args, env, words) in cases {
        let out = Command::new(BIN)
            .arg("--check-config")
            .args(*args)
            .envs(env.iter().copied())
            .output()
            .unwrap();
        failures.extend(refusal_problem(what, &out, words));
    }
    // A value clap knows to be wrong: refused by clap, with the choices on a second line.
    let out = Command::new(BIN)
        .args(["--check-config", "--log.format", "xml"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.code() != Some(2) || !stderr.contains("'xml' for '--log.format") {
        failures.push(format!("a format flag: {:?} {stderr}", out.status.code()));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn version_names_revision_date_rustc_and_target() {
    let out = Command::new(BIN).arg("--version").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        format!("vram-exporter {}", env!("CARGO_PKG_VERSION")),
        "{text}"
    );
    let field = |name: &str| {
        lines
            .iter()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .unwrap_or_else(|| panic!("no {name} in {text}"))
            .to_string()
    };
    let revision = field("revision");
    assert_eq!(revision, vram_exporter::config::build_info::REVISION);
    // Built from this git checkout (and no packager's override): the commit checked out.
    let head = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(crate::harness::repo())
        .output();
    if let (Ok(head), None) = (head, option_env!("VRAM_EXPORTER_REVISION")) {
        if head.status.success() {
            assert_eq!(revision, String::from_utf8_lossy(&head.stdout).trim());
        }
    }
    assert!(
        regex::Regex::new(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
            .unwrap()
            .is_match(&field("build date")),
        "{text}"
    );
    assert!(field("rustc").starts_with("rustc 1."), "{text}");
    assert!(field("target").contains("-linux-"), "{text}");
}

#[test]
fn telemetry_path_moves_the_metrics_and_nothing_else() {
    let e = Exporter::start(Options {
        scenario: SCENARIO,
        args: vec!["--web.telemetry-path".into(), "/prom/metrics".into()],
        ..Default::default()
    });
    let deadline = Instant::now() + WAIT;
    while e.get("/-/ready").0 != 200 {
        assert!(Instant::now() < deadline, "never ready");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (status, body) = e.get("/prom/metrics");
    assert_eq!(status, 200);
    let build_info = format!(
        "vram_exporter_build_info{{version=\"{}\",revision=\"{}\",driver_version=\"550.54.15\"}} 1",
        env!("CARGO_PKG_VERSION"),
        vram_exporter::config::build_info::REVISION
    );
    assert!(body.contains(&build_info), "{body}");
    assert_eq!(e.get("/metrics").0, 404);
    for path in ["/-/healthy", "/-/ready", "/api/v1/gpus"] {
        assert_eq!(e.get(path).0, 200, "{path}");
    }
    let (status, page) = e.get("/");
    assert_eq!(status, 200);
    assert!(
        page.contains("<a href=\"/prom/metrics\">/prom/metrics</a>"),
        "{page}"
    );
    assert!(
        page.contains(&format!(
            "vram-exporter {} ({})",
            env!("CARGO_PKG_VERSION"),
            vram_exporter::config::build_info::REVISION
        )),
        "{page}"
    );
}

/// One HTTP/1.1 GET with `headers`: (the response head, lowercased, and the body bytes).
fn raw_get(addr: &str, path: &str, headers: &[&str]) -> (String, Vec<u8>) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    (head, raw[split + 4..].to_vec())
}

fn families(text: &str) -> Vec<&str> {
    let mut f: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .collect();
    f.sort_unstable();
    f
}

#[test]
fn gzip_when_asked_and_plain_otherwise() {
    let e = Exporter::start(Options {
        scenario: SCENARIO,
        ..Default::default()
    });
    let deadline = Instant::now() + WAIT;
    while e.get("/-/ready").0 != 200 {
        assert!(Instant::now() < deadline, "never ready");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (head, plain) = raw_get(&e.addr, "/metrics", &[]);
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(!head.contains("content-encoding"), "{head}");
    assert!(head.contains("\r\nvary: accept-encoding"), "{head}");
    let plain = String::from_utf8(plain).unwrap();

    // What Prometheus sends.
    for ask in [
        "Accept-Encoding: gzip",
        "Accept-Encoding: br;q=1.0, gzip;q=0.8, *;q=0.1",
    ] {
        let (head, body) = raw_get(&e.addr, "/metrics", &[ask]);
        assert!(head.contains("\r\ncontent-encoding: gzip"), "{ask}: {head}");
        assert!(head.contains("\r\nvary: accept-encoding"), "{head}");
        assert!(
            head.contains("content-type: text/plain; version=0.0.4"),
            "{head}"
        );
        let mut text = String::new();
        flate2::read::GzDecoder::new(&body[..])
            .read_to_string(&mut text)
            .expect("one valid gzip member");
        assert!(
            body.len() * 3 < text.len(),
            "{} compressed of {}",
            body.len(),
            text.len()
        );
        assert!(text.contains("vram_total_bytes{gpu=\"0\""), "{text}");
        assert!(
            text.contains("# TYPE process_resident_memory_bytes gauge"),
            "{text}"
        );
        assert!(text.ends_with('\n'));
        assert_eq!(families(&text), families(&plain));
        crate::golden::promtool_check(&text);
    }
    for refuse in [
        "Accept-Encoding: gzip;q=0",
        "Accept-Encoding: identity",
        "Accept-Encoding: br",
    ] {
        let (head, body) = raw_get(&e.addr, "/metrics", &[refuse]);
        assert!(!head.contains("content-encoding"), "{refuse}: {head}");
        assert!(String::from_utf8(body)
            .unwrap()
            .contains("vram_total_bytes"));
    }
}
