//! The test harness: builds nvml-sim if needed, starts the real exporter binary on a scenario
//! (through the test kit's launcher), and reads its endpoints over real HTTP (the kit's client).
//!
//! Each exporter runs in its own process with its own scenario, time file and port, so parallel
//! tests never share NVML state.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use vram_testkit::exporter::Launch;
use vram_testkit::http;
use vram_testkit::wait::{Poll, Wait};

/// The directory cargo builds into for this profile (target/debug).
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test binary>
    exe.parent()
        .and_then(Path::parent)
        .expect("profile dir")
        .to_path_buf()
}

/// The simulated NVML library, built once per test run if it is missing.
pub fn sim_library() -> PathBuf {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| {
        let lib = profile_dir().join("libnvml_sim.so");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-p", "nvml-sim", "--lib"]);
        if profile_dir().file_name().and_then(|n| n.to_str()) == Some("release") {
            cmd.arg("--release");
        }
        let status = cmd
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("run cargo build -p nvml-sim");
        assert!(status.success(), "cargo build -p nvml-sim failed");
        assert!(lib.is_file(), "{} missing after build", lib.display());
        lib
    })
    .clone()
}

/// The repository root.
pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A running exporter on a scenario (the test kit's launcher), with its scenario, configuration
/// and time file in a private directory.
pub struct Exporter {
    inner: vram_testkit::exporter::Exporter,
    pub addr: String,
    pub dir: tempfile::TempDir,
    pub time_file: PathBuf,
}

pub struct Options<'a> {
    pub scenario: &'a str,
    pub config: &'a str,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Start with NVML_SIM_TIME_FILE at this scenario time; None lets scenario time run.
    pub time: Option<f64>,
    /// Replace the NVML library path (e.g. a missing one).
    pub library: Option<PathBuf>,
    /// Start the exporter with this open-file limit: (soft, hard); `None` for the hard limit
    /// leaves it as inherited.
    pub nofile: Option<(u64, Option<u64>)>,
}

impl Default for Options<'_> {
    fn default() -> Self {
        Options {
            scenario: "",
            config: "",
            args: Vec::new(),
            env: Vec::new(),
            time: Some(0.0),
            library: None,
            nofile: None,
        }
    }
}

impl Exporter {
    pub fn start(opts: Options<'_>) -> Exporter {
        let dir = tempfile::tempdir().expect("tempdir");
        let scenario = dir.path().join("scenario.toml");
        std::fs::write(&scenario, opts.scenario).unwrap();
        let config = dir.path().join("config.toml");
        std::fs::write(&config, opts.config).unwrap();
        let time_file = dir.path().join("time");
        let library = opts.library.unwrap_or_else(sim_library);
        let mut binary = PathBuf::from(env!("CARGO_BIN_EXE_vram-exporter"));
        if let Some((soft, hard)) = opts.nofile {
            // A shell sets the limits, then becomes the exporter (same pid, same arguments).
            let wrapper = dir.path().join("limited-exporter");
            let hard = hard.map_or(String::new(), |h| format!("ulimit -H -n {h}\n"));
            std::fs::write(
                &wrapper,
                format!(
                    "#!/bin/sh\nset -e\nulimit -S -n {soft}\n{hard}exec '{}' \"$@\"\n",
                    binary.display()
                ),
            )
            .unwrap();
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
            binary = wrapper;
        }
        let mut launch = Launch::new(&binary)
            .config(&config)
            .sim_library(&library, &scenario)
            .args(&opts.args)
            .start_timeout(Duration::from_secs(20));
        if let Some(t) = opts.time {
            std::fs::write(&time_file, format!("{t}")).unwrap();
            launch = launch.env("NVML_SIM_TIME_FILE", &time_file);
        }
        for (k, v) in &opts.env {
            launch = launch.env(k, v);
        }
        let inner = launch
            .start()
            .unwrap_or_else(|e| panic!("exporter did not start: {e}"));
        Exporter {
            addr: inner.addr.to_string(),
            inner,
            dir,
            time_file,
        }
    }

    /// Waits for a log line matching `pred` (lines already logged count).
    pub fn wait_log(&self, pred: impl Fn(&str) -> bool, timeout: Duration) -> Option<String> {
        self.inner.wait_log(pred, timeout)
    }

    /// The exporter's process id.
    pub fn pid(&self) -> u32 {
        self.inner.pid()
    }

    /// The exporter's resident memory (VmRSS) in bytes, read from /proc.
    pub fn rss(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let kib: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .expect("VmRSS");
        kib * 1024.0
    }

    /// Every log line so far.
    pub fn log(&self) -> Vec<String> {
        self.inner.log()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// GET a path: (status, body).
    pub fn get(&self, path: &str) -> (u16, String) {
        get(&self.url(path))
    }

    pub fn metrics(&self) -> Metrics {
        let (status, body) = self.get("/metrics");
        assert_eq!(status, 200, "{body}");
        Metrics::parse(&body)
    }

    /// Sets scenario time (seconds) through the time file.
    pub fn set_time(&self, seconds: f64) {
        let tmp = self.dir.path().join("time.tmp");
        std::fs::write(&tmp, format!("{seconds}")).unwrap();
        std::fs::rename(&tmp, &self.time_file).unwrap();
    }

    /// Polls /metrics until `pred` holds, returning the metrics that satisfied it.
    pub fn wait_metrics(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Metrics) -> bool,
    ) -> Metrics {
        Wait::new(what, timeout).must(|| {
            let m = self.metrics();
            if pred(&m) {
                Poll::Ready(m)
            } else {
                Poll::Pending(format!("/metrics:\n{}", m.text))
            }
        })
    }

    /// Waits until a poll that started after now has been published.
    pub fn next_poll(&self) -> Metrics {
        let before = self
            .metrics()
            .value("vram_exporter_last_poll_timestamp_seconds", &[])
            .unwrap_or(0.0);
        // Two newer polls: the first may have begun before the caller's change.
        let first = self.wait_metrics("a new poll", Duration::from_secs(10), |m| {
            m.value("vram_exporter_last_poll_timestamp_seconds", &[])
                .unwrap_or(0.0)
                > before
        });
        let t1 = first
            .value("vram_exporter_last_poll_timestamp_seconds", &[])
            .unwrap();
        self.wait_metrics("a second new poll", Duration::from_secs(10), |m| {
            m.value("vram_exporter_last_poll_timestamp_seconds", &[])
                .unwrap_or(0.0)
                > t1
        })
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        self.inner
            .terminate(Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("{e}"))
    }
}

/// GET a URL: (status, body); non-2xx statuses are returned, not errors.
pub fn get(url: &str) -> (u16, String) {
    http::get_url(url, Duration::from_secs(10)).unwrap_or_else(|e| panic!("GET {url}: {e}"))
}

/// One sample line: (metric name, labels, value).
pub type Sample = (String, Vec<(String, String)>, f64);

/// A parsed exposition: enough of the text format for assertions.
pub struct Metrics {
    pub text: String,
    pub samples: Vec<Sample>,
}

impl Metrics {
    pub fn parse(text: &str) -> Metrics {
        let mut samples = Vec::new();
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let (series, value) = line.rsplit_once(' ').expect("sample line");
            let value: f64 = value.parse().unwrap_or(f64::NAN);
            let (name, labels) = match series.split_once('{') {
                Some((n, rest)) => (n.to_string(), parse_labels(rest.trim_end_matches('}'))),
                None => (series.to_string(), Vec::new()),
            };
            samples.push((name, labels, value));
        }
        Metrics {
            text: text.to_string(),
            samples,
        }
    }

    /// The value of the first sample of `name` whose labels include all of `labels`.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.samples
            .iter()
            .find(|(n, ls, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| ls.iter().any(|(lk, lv)| lk == k && lv == v))
            })
            .map(|(_, _, v)| *v)
    }

    pub fn count(&self, name: &str) -> usize {
        self.samples.iter().filter(|(n, _, _)| n == name).count()
    }

    pub fn gpu(&self, name: &str, gpu: &str) -> Option<f64> {
        self.value(name, &[("gpu", gpu)])
    }
}

fn parse_labels(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some((key, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, n)) = chars.next() {
                        value.push(match n {
                            'n' => '\n',
                            other => other,
                        });
                    }
                }
                '"' => {
                    end = i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        out.push((key.trim_start_matches(',').to_string(), value));
        rest = &after[end..];
    }
    out
}

/// Checks that a `--check-config` run was refused as promised: exit 2 and one line on stderr
/// containing every word. Returns what is wrong, if anything, for a table test to collect.
pub fn refusal_problem(what: &str, out: &std::process::Output, words: &[&str]) -> Option<String> {
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.code() != Some(2) {
        return Some(format!(
            "{what}: exit {:?}, stderr: {stderr}",
            out.status.code()
        ));
    }
    if let Some(w) = words.iter().find(|w| !stderr.contains(*w)) {
        return Some(format!("{what}: message lacks {w:?}: {stderr}"));
    }
    if stderr.lines().count() != 1 {
        return Some(format!("{what}: expected one line, got: {stderr}"));
    }
    None
}

pub const GIB: f64 = (1u64 << 30) as f64;
pub const MIB: f64 = (1u64 << 20) as f64;

/// Raises this test process's own open-file soft limit (it opens ~1,000 sockets).
pub fn raise_own_fd_limit() {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut l);
        l.rlim_cur = l.rlim_max.min(65_536);
        libc::setrlimit(libc::RLIMIT_NOFILE, &l);
    }
}

/// The Chromium binary, or None (said loudly) where it is not installed; with VRAM_REQUIRE_TOOLS
/// set (as `.ci/run` does) a missing browser fails the test named by `what`.
pub fn chromium(what: &str) -> Option<&'static str> {
    for c in ["chromium", "chromium-browser", "google-chrome"] {
        if Command::new(c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return Some(c);
        }
    }
    assert!(
        std::env::var_os("VRAM_REQUIRE_TOOLS").is_none(),
        "chromium is required for the {what} (VRAM_REQUIRE_TOOLS is set) but not installed"
    );
    eprintln!("!!! {what} SKIPPED: chromium not installed (Debian package chromium)");
    None
}

/// The page at `url` as headless Chromium leaves it once its script ran (the DOM after two
/// seconds of virtual time: the load and the first redraw from the JSON API).
pub fn redrawn_page(browser: &str, url: &str) -> String {
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(["--virtual-time-budget=2000", "--dump-dom", url])
        .output()
        .expect("run chromium");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
