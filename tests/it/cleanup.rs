//! OOM prevention end to end: real child processes placed on simulated GPUs, real signals, a real
//! HTTP server for webhooks and real commands, against the real exporter binary.
//!
//! Children are `sh` scripts (present everywhere) whose pids reach nvml-sim through `pid_env` and
//! whose GPU memory is a file they rewrite (`memory_file_env`). A child renames itself
//! (`/proc/self/comm`) and signals readiness before the exporter starts, so the exporter sees its
//! final name. Every child is killed and reaped by a Drop guard, also when a test fails.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use vram_testkit::wait::Wait;

use crate::harness::{Exporter, Metrics, Options, GIB};

pub(crate) const GIB_U: u64 = 1 << 30;
pub(crate) const UUID0: &str = "GPU-c1ea0000-0000-4000-8000-000000000000";
pub(crate) const UUID1: &str = "GPU-c1ea0000-0000-4000-8000-000000000001";
pub(crate) const WAIT: Duration = Duration::from_secs(30);

/// A child process standing in for a GPU application.
pub(crate) struct Kid {
    pub(crate) child: std::process::Child,
    pub(crate) name: String,
    pub(crate) dir: PathBuf,
    pub(crate) status: Option<ExitStatus>,
}

pub(crate) struct KidSpec<'a> {
    pub(crate) name: &'a str,
    pub(crate) bytes: u64,
    /// On SIGUSR1, rewrite the memory file to this many bytes (None: only record the signal).
    pub(crate) release_to: Option<u64>,
    /// Ignore SIGTERM (so only SIGKILL ends it).
    pub(crate) ignore_term: bool,
}

impl Kid {
    pub(crate) fn spawn(root: &Path, spec: KidSpec<'_>) -> Kid {
        Kid::spawn_as(root, spec, None)
    }

    /// Spawns a child that names itself `comm`, a printf format (octal escapes give any byte).
    pub(crate) fn spawn_as(root: &Path, spec: KidSpec<'_>, comm: Option<&str>) -> Kid {
        let release = spec
            .release_to
            .map(|b| format!("echo {b} > \"$D/mem\"; "))
            .unwrap_or_default();
        let term = if spec.ignore_term {
            "trap '' TERM\n"
        } else {
            ""
        };
        // Each received SIGUSR1 appends the uptime, so tests can see when signals arrived.
        let script = format!(
            "printf \"$C\" > /proc/self/comm\n\
             echo {bytes} > \"$D/mem\"\n\
             trap '{release}read up _ < /proc/uptime; echo $up >> \"$D/signals\"' USR1\n\
             {term}\
             touch \"$D/ready\"\n\
             while :; do sleep 0.05; done\n",
            bytes = spec.bytes,
        );
        Kid::from_script(root, spec.name, comm, &script)
    }

    /// Runs `script` in `sh` with `$D` its own directory under `root` (made here) and `$C` its
    /// name (`comm`, or `name`); returns once the script has created `$D/ready`.
    pub(crate) fn from_script(root: &Path, name: &str, comm: Option<&str>, script: &str) -> Kid {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .env("D", &dir)
            .env("C", comm.unwrap_or(name))
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn sh");
        let kid = Kid {
            child,
            name: name.to_string(),
            dir,
            status: None,
        };
        Wait::new(format!("{} to become ready", kid.name), WAIT)
            .every(Duration::from_millis(10))
            .must(|| kid.dir.join("ready").exists().then_some(()).into());
        kid
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn env(&self, var: &str) -> Vec<(String, String)> {
        vec![
            (var.to_string(), self.pid().to_string()),
            (
                format!("{var}_MEM"),
                self.dir.join("mem").display().to_string(),
            ),
        ]
    }

    /// Uptimes (seconds) at which SIGUSR1 arrived.
    pub(crate) fn signals(&self) -> Vec<f64> {
        std::fs::read_to_string(self.dir.join("signals"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    pub(crate) fn alive(&mut self) -> bool {
        if self.status.is_none() {
            self.status = self.child.try_wait().unwrap();
        }
        self.status.is_none()
    }

    pub(crate) fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        Wait::new(format!("{} to exit", self.name), within)
            .every(Duration::from_millis(20))
            .must(|| (!self.alive()).then_some(()).into());
        self.status.unwrap()
    }
}

impl Drop for Kid {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A scenario entry for a live child: its pid and memory come from the environment.
pub(crate) fn live(var: &str) -> String {
    format!(
        "[[device.process]]\npid_env = \"{var}\"\nname = \"{var}\"\nmemory_file_env = \"{var}_MEM\"\n"
    )
}

pub(crate) fn device(uuid: &str) -> String {
    format!("[[device]]\nname = \"Sim GPU 10G\"\nuuid = \"{uuid}\"\ntotal = \"10GiB\"\nreserved = \"0\"\noverhead = \"256MiB\"\n")
}

/// Starts the exporter, polling every 200ms, with `cleanup` appended to its configuration.
pub(crate) fn exporter(scenario: &str, cleanup: &str, env: Vec<(String, String)>) -> Exporter {
    let config = format!(
        "[poll]\ninterval = \"200ms\"\n[leak]\nwindow = \"1m\"\nfloor_window = \"1s\"\n{cleanup}"
    );
    Exporter::start(Options {
        scenario,
        config: &config,
        env,
        ..Options::default()
    })
}

pub(crate) fn cleanups(m: &Metrics, gpu: &str, action: &str, result: &str) -> f64 {
    m.value(
        "vram_cleanups_total",
        &[("gpu", gpu), ("action", action), ("result", result)],
    )
    .unwrap_or(0.0)
}

pub(crate) fn audit_line(e: &mut Exporter, action: &str, result: &str) -> serde_json::Value {
    let (a, r) = (
        format!("\"action\":\"{action}\""),
        format!("\"result\":\"{result}\""),
    );
    let line = e
        .wait_log(
            |l| l.contains("cleanup action") && l.contains(&a) && l.contains(&r),
            WAIT,
        )
        .unwrap_or_else(|| {
            panic!(
                "no {action}/{result} audit line; log:\n{}",
                e.log().join("\n")
            )
        });
    serde_json::from_str(&line).expect("json log line")
}

#[test]
fn signal_reaches_the_top_process_which_frees_memory_and_reclaimed_is_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let trainer = Kid::spawn(
        tmp.path(),
        KidSpec {
            name: "trainer",
            bytes: 7 * GIB_U,
            release_to: Some(GIB_U),
            ignore_term: false,
        },
    );
    let helper = Kid::spawn(
        tmp.path(),
        KidSpec {
            name: "helper",
            bytes: 5 * GIB_U / 2,
            release_to: Some(0),
            ignore_term: false,
        },
    );
    // Same name, bigger, but on a GPU that is not in breach: never signalled.
    let other = Kid::spawn(
        tmp.path(),
        KidSpec {
            name: "trainer2",
            bytes: 8 * GIB_U,
            release_to: Some(0),
            ignore_term: false,
        },
    );
    let scenario = format!(
        "{}{}{}{}{}",
        device(UUID0),
        live("KID_A"),
        live("KID_B"),
        device(UUID1),
        live("KID_C")
    );
    let mut env = trainer.env("KID_A");
    env.extend(helper.env("KID_B"));
    env.extend(other.env("KID_C"));
    let mut e = exporter(
        &scenario,
        "[cleanup]\nenabled = true\n[[cleanup.actions]]\ntype = \"signal\"\ntarget = \"top\"\ntop = 1\n",
        env,
    );
    let m = e.wait_metrics(
        "GPU 0 back below its limits with memory reclaimed",
        WAIT,
        |m| {
            m.gpu("vram_hard_limit_violations_total", "0") == Some(1.0)
                && m.gpu("vram_pressure_level", "0") == Some(0.0)
                && m.gpu("vram_cleanup_reclaimed_bytes", "0").unwrap_or(0.0) > 0.0
        },
    );
    assert_eq!(cleanups(&m, "0", "signal", "ok"), 1.0, "{}", m.text);
    assert_eq!(cleanups(&m, "0", "signal", "failed"), 0.0);
    // 7 GiB → 1 GiB: the whole drop is reclaimed.
    assert_eq!(m.gpu("vram_cleanup_reclaimed_bytes", "0"), Some(6.0 * GIB));
    assert_eq!(cleanups(&m, "1", "signal", "ok"), 0.0);
    assert_eq!(trainer.signals().len(), 1);
    assert!(
        helper.signals().is_empty(),
        "only the top process is signalled"
    );
    assert!(
        other.signals().is_empty(),
        "a process on another GPU is never signalled"
    );
    let line = audit_line(&mut e, "signal", "ok");
    assert_eq!(line["pids"], trainer.pid().to_string());
    assert_eq!(line["gpu"], 0);
    assert_eq!(line["uuid"], UUID0);
}

/// A tiny HTTP server: answers 200 (or never answers), hands each request body to the test.
pub(crate) struct Hook {
    pub(crate) port: u16,
    pub(crate) bodies: mpsc::Receiver<Vec<u8>>,
    pub(crate) connections: mpsc::Receiver<()>,
}

pub(crate) fn hook(answer: bool) -> Hook {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (btx, bodies) = mpsc::channel();
    let (ctx, connections) = mpsc::channel();
    std::thread::spawn(move || {
        let mut held: Vec<TcpStream> = Vec::new();
        for stream in listener.incoming().map_while(Result::ok) {
            let _ = ctx.send(());
            if !answer {
                // Accept and never answer: the exporter's timeout must end it.
                held.push(stream);
                continue;
            }
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                let lower = line.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
                if line == "\r\n" {
                    break;
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let mut s = stream;
            let _ =
                s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            let _ = btx.send(body);
        }
    });
    Hook {
        port,
        bodies,
        connections,
    }
}

/// One GPU over its hard limit with two simulated (not live) processes.
pub(crate) fn breached_gpu() -> String {
    format!(
        "{}[[device.process]]\npid = 4000001\nname = \"python big.py\"\nmemory = \"8GiB\"\n\
         [[device.process]]\npid = 4000002\nname = \"python small.py\"\nmemory = \"1.5GiB\"\n",
        device(UUID0)
    )
}

#[test]
fn webhook_posts_the_breach_as_json() {
    let server = hook(true);
    let mut e = exporter(
        &breached_gpu(),
        &format!(
            "[cleanup]\nenabled = true\n[[cleanup.actions]]\ntype = \"webhook\"\nurl = \"http://127.0.0.1:{}/hook\"\n",
            server.port
        ),
        vec![],
    );
    let body = server
        .bodies
        .recv_timeout(WAIT)
        .expect("the webhook never arrived");
    let v: serde_json::Value = serde_json::from_slice(&body).expect("JSON body");
    assert_eq!(v["gpu"], 0);
    assert_eq!(v["uuid"], UUID0);
    assert_eq!(v["level"], "hard");
    assert_eq!(v["reason"], "entered_hard");
    assert!(!v["host"].as_str().unwrap().is_empty(), "{v}");
    assert_eq!(v["total_bytes"], 10 * GIB_U);
    assert_eq!(
        v["allocated_bytes"],
        8 * GIB_U + 3 * GIB_U / 2 + 256 * (1 << 20)
    );
    assert_eq!(v["hard_limit_bytes"], (10.0 * GIB * 0.95).round() as u64);
    assert_eq!(v["soft_limit_bytes"], (10.0 * GIB * 0.85).round() as u64);
    assert_eq!(v["processes"][0]["pid"], 4000001);
    assert_eq!(v["processes"][0]["name"], "python big.py");
    assert_eq!(v["processes"][0]["bytes"], 8 * GIB_U);
    assert_eq!(v["processes"][1]["pid"], 4000002);
    let m = e.wait_metrics("webhook counted", WAIT, |m| {
        cleanups(m, "0", "webhook", "ok") == 1.0
    });
    assert_eq!(cleanups(&m, "0", "webhook", "failed"), 0.0);
    audit_line(&mut e, "webhook", "ok");
}

#[test]
fn exec_gets_the_breach_in_its_environment_and_on_stdin_and_a_nonzero_exit_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().display().to_string();
    // The test's own command uses sh; the exporter runs argv directly.
    let cleanup = format!(
        "[cleanup]\nenabled = true\n\
         [[cleanup.actions]]\ntype = \"exec\"\nargv = [\"sh\", \"-c\", \"env > \\\"$0/env\\\"; cat > \\\"$0/stdin\\\"\", \"{out}\"]\n\
         [[cleanup.actions]]\ntype = \"exec\"\nargv = [\"sh\", \"-c\", \"echo nope >&2; exit 3\"]\n"
    );
    let mut e = exporter(&breached_gpu(), &cleanup, vec![]);
    let m = e.wait_metrics("both commands counted", WAIT, |m| {
        cleanups(m, "0", "exec", "ok") == 1.0 && cleanups(m, "0", "exec", "failed") == 1.0
    });
    let env = std::fs::read_to_string(tmp.path().join("env")).unwrap();
    let has = |kv: &str| env.lines().any(|l| l == kv);
    assert!(has("VRAM_GPU=0"), "{env}");
    assert!(has(&format!("VRAM_UUID={UUID0}")), "{env}");
    let allocated = m.gpu("vram_allocated_bytes", "0").unwrap() as u64;
    assert!(has(&format!("VRAM_ALLOCATED_BYTES={allocated}")), "{env}");
    assert!(has(&format!("VRAM_TOTAL_BYTES={}", 10 * GIB_U)), "{env}");
    assert!(has("VRAM_LEVEL=hard"), "{env}");
    assert!(has("VRAM_TOP_PIDS=4000001 4000002"), "{env}");
    let stdin: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tmp.path().join("stdin")).unwrap()).unwrap();
    assert_eq!(stdin["uuid"], UUID0);
    assert_eq!(stdin["allocated_bytes"], allocated);
    assert_eq!(stdin["processes"][0]["pid"], 4000001);
    let failed = audit_line(&mut e, "exec", "failed");
    let detail = failed["detail"].as_str().unwrap();
    assert!(
        detail.contains("exit status: 3") && detail.contains("nope"),
        "{detail}"
    );
}

#[test]
fn kill_ends_the_largest_offender_with_sigkill_after_grace_and_spares_avoided_and_other_gpus() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = |name, gib_tenths: u64, ignore_term| KidSpec {
        name,
        bytes: gib_tenths * GIB_U / 10,
        release_to: None,
        ignore_term,
    };
    let mut keeper = Kid::spawn(tmp.path(), spec("keeper", 50, false));
    let mut victim = Kid::spawn(tmp.path(), spec("victim", 45, true));
    let mut small = Kid::spawn(tmp.path(), spec("small", 1, false));
    let mut bystander = Kid::spawn(tmp.path(), spec("bystander", 80, false));
    let scenario = format!(
        "{}{}{}{}{}{}",
        device(UUID0),
        live("KID_K"),
        live("KID_V"),
        live("KID_S"),
        device(UUID1),
        live("KID_B")
    );
    let mut env = keeper.env("KID_K");
    env.extend(victim.env("KID_V"));
    env.extend(small.env("KID_S"));
    env.extend(bystander.env("KID_B"));
    let mut e = exporter(
        &scenario,
        "[cleanup]\nenabled = true\nallow_kill = true\n\
         [[cleanup.actions]]\ntype = \"kill\"\navoid = \"^keeper$\"\ngrace = \"1s\"\n",
        env,
    );
    let status = victim.wait_exit(WAIT);
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "it ignores SIGTERM, so SIGKILL after grace: {status:?}"
    );
    // The reclaimed bytes are measured over a few polls after the kill: wait for them too.
    e.wait_metrics(
        "the kill counted, GPU 0 relieved, 4.5 GiB reclaimed",
        WAIT,
        |m| {
            cleanups(m, "0", "kill", "ok") == 1.0
                && m.gpu("vram_pressure_level", "0") == Some(0.0)
                && m.gpu("vram_cleanup_reclaimed_bytes", "0").unwrap_or(0.0) >= 4.5 * GIB
        },
    );
    let line = audit_line(&mut e, "kill", "ok");
    assert_eq!(line["pids"], victim.pid().to_string());
    assert!(
        line["detail"].as_str().unwrap().contains("SIGKILL"),
        "{line}"
    );
    e.next_poll();
    assert!(keeper.alive(), "avoid-matched process was killed");
    assert!(small.alive(), "more than one process was killed");
    assert!(bystander.alive(), "a process on another GPU was killed");
    assert_eq!(
        cleanups(&e.metrics(), "0", "kill", "ok"),
        1.0,
        "one kill per cooldown"
    );
}

#[test]
fn dry_run_counts_and_logs_but_touches_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let mut big = Kid::spawn(
        tmp.path(),
        KidSpec {
            name: "big",
            bytes: 9 * GIB_U + GIB_U / 2,
            release_to: Some(0),
            ignore_term: false,
        },
    );
    let scenario = format!("{}{}", device(UUID0), live("KID_A"));
    let mut e = exporter(
        &scenario,
        "[cleanup]\nenabled = true\ndry_run = true\nallow_kill = true\n\
         [[cleanup.actions]]\ntype = \"signal\"\ntarget = \"all\"\n\
         [[cleanup.actions]]\ntype = \"kill\"\ngrace = \"100ms\"\n",
        big.env("KID_A"),
    );
    let m = e.wait_metrics("dry runs counted", WAIT, |m| {
        cleanups(m, "0", "signal", "dry_run") >= 1.0 && cleanups(m, "0", "kill", "dry_run") >= 1.0
    });
    let line = audit_line(&mut e, "kill", "dry_run");
    assert_eq!(line["pids"], big.pid().to_string());
    e.next_poll();
    let m2 = e.metrics();
    for m in [&m, &m2] {
        assert_eq!(cleanups(m, "0", "signal", "ok"), 0.0);
        assert_eq!(cleanups(m, "0", "kill", "ok"), 0.0);
        assert_eq!(m.gpu("vram_pressure_level", "0"), Some(2.0));
        assert_eq!(m.gpu("vram_cleanup_reclaimed_bytes", "0"), Some(0.0));
    }
    assert!(big.alive(), "dry run killed a process");
    assert!(big.signals().is_empty(), "dry run sent a signal");
}

#[test]
fn while_still_hard_actions_repeat_only_after_each_cooldown() {
    let tmp = tempfile::tempdir().unwrap();
    // Records each SIGUSR1 but frees nothing, so the GPU stays in breach.
    let stubborn = Kid::spawn(
        tmp.path(),
        KidSpec {
            name: "stubborn",
            bytes: 9 * GIB_U + GIB_U / 2,
            release_to: None,
            ignore_term: false,
        },
    );
    let scenario = format!("{}{}", device(UUID0), live("KID_A"));
    let e = exporter(
        &scenario,
        "[cleanup]\nenabled = true\ncooldown = \"2s\"\n\
         [[cleanup.actions]]\ntype = \"signal\"\ntarget = \"all\"\n",
        stubborn.env("KID_A"),
    );
    e.wait_metrics("three runs", WAIT, |m| {
        cleanups(m, "0", "signal", "ok") >= 3.0
    });
    // The child notes a signal when its current `sleep 0.05` ends.
    let deadline = Instant::now() + WAIT;
    while stubborn.signals().len() < 3 {
        assert!(Instant::now() < deadline, "{:?}", stubborn.signals());
        std::thread::sleep(Duration::from_millis(20));
    }
    let at = stubborn.signals();
    for pair in at.windows(2) {
        // The child notes a signal within ~50ms of receiving it; 2s minus that slack.
        assert!(
            pair[1] - pair[0] >= 1.8,
            "signals closer than the cooldown: {at:?}"
        );
    }
    assert_eq!(
        e.metrics().gpu("vram_hard_limit_violations_total", "0"),
        Some(1.0),
        "one episode, several runs"
    );
}
