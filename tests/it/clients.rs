//! Allocator reports end to end: live child processes run the real `vram_client` (Python, from
//! `clients/python`) over a stand-in `torch` whose "GPU memory" is the file nvml-sim reads for
//! that pid, so `empty_cache()` frees memory NVML sees; the real exporter listens on a real unix
//! socket. Covers the join by pid, stale reports, a process reporting for another pid, a flood of
//! clients, a killed client, the exporter restarting, and cleanup ordered by reclaimable memory
//! with predicted versus measured reclaim. Every child is killed and reaped by a Drop guard.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use vram_testkit::wait::{Poll, Wait};

use crate::harness::{chromium, redrawn_page, repo, Exporter, Metrics, Options, GIB};

const UUID0: &str = "GPU-c1ea0000-0000-4000-8000-000000000000";
const MIB: u64 = 1 << 20;
const GIB_U: u64 = 1 << 30;
/// What the stand-in's CUDA context costs (its default).
const CONTEXT: u64 = 300 * MIB;
const WAIT: Duration = Duration::from_secs(30);
pub(crate) const REFUSED: &str = "vram_exporter_client_messages_refused_total";

/// Whether python3 runs; without it the test is skipped, unless VRAM_REQUIRE_TOOLS is set.
fn have_python() -> bool {
    if Command::new("python3").arg("--version").output().is_ok() {
        return true;
    }
    assert!(
        std::env::var_os("VRAM_REQUIRE_TOOLS").is_none(),
        "python3 is required (VRAM_REQUIRE_TOOLS is set) but cannot run"
    );
    eprintln!("!!! python3 not installed: the client test is SKIPPED");
    false
}

/// A Python child: the stand-in job (`clients/python/tests/stand_in/job.py`) or a script.
struct Py {
    child: Child,
    dir: PathBuf,
}

impl Py {
    /// Starts the stand-in job holding `alloc` bytes in tensors and `cache` bytes cached.
    fn job(root: &Path, name: &str, socket: &Path, alloc: u64, cache: u64) -> Py {
        Py::job_with(root, name, socket, alloc, cache, &[])
    }

    fn job_with(
        root: &Path,
        name: &str,
        socket: &Path,
        alloc: u64,
        cache: u64,
        env: &[(&str, &str)],
    ) -> Py {
        let script = repo().join("clients/python/tests/stand_in/job.py");
        let mut cmd = Command::new("python3");
        cmd.arg(script)
            .env("JOB_ALLOC", alloc.to_string())
            .env("JOB_CACHE", cache.to_string())
            .env("VRAM_EXPORTER_CLIENT_SOCKET", socket)
            .env("STAND_IN_TORCH_UUIDS", UUID0.trim_start_matches("GPU-"));
        for (k, v) in env {
            cmd.env(k, v);
        }
        Py::start(root, name, cmd)
    }

    /// Runs Python `code` with the socket path as its first argument.
    fn script(root: &Path, name: &str, socket: &Path, code: &str) -> Py {
        let mut cmd = Command::new("python3");
        cmd.arg("-c").arg(code).arg(socket);
        Py::start(root, name, cmd)
    }

    fn start(root: &Path, name: &str, mut cmd: Command) -> Py {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let stand_in = repo().join("clients/python/tests/stand_in");
        let client = repo().join("clients/python");
        let child = cmd
            .env(
                "PYTHONPATH",
                format!("{}:{}", client.display(), stand_in.display()),
            )
            .env("JOB_DIR", &dir)
            .env("STAND_IN_TORCH_MEM_FILE", dir.join("mem"))
            .env("JOB_INTERVAL", "0.2")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("stderr")).unwrap())
            .spawn()
            .expect("spawn python3");
        let py = Py { child, dir };
        Wait::new(format!("{name} to become ready"), WAIT)
            .every(Duration::from_millis(20))
            .must(|| {
                if py.dir.join("ready").exists() {
                    Poll::Ready(())
                } else {
                    Poll::Pending(format!("its stderr: {}", py.stderr()))
                }
            });
        py
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.join("stderr")).unwrap_or_default()
    }

    /// The environment nvml-sim reads for a live entry named `var`.
    fn env(&self, var: &str) -> Vec<(String, String)> {
        vec![
            (var.to_string(), self.pid().to_string()),
            (
                format!("{var}_MEM"),
                self.dir.join("mem").display().to_string(),
            ),
        ]
    }

    fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill(2) on our own child, which is not yet reaped.
        assert_eq!(unsafe { libc::kill(self.pid() as i32, sig) }, 0);
    }

    /// Reserved bytes the job's chained SIGUSR1 handler saw after each release.
    fn releases(&self) -> Vec<u64> {
        std::fs::read_to_string(self.dir.join("released"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }
}

impl Drop for Py {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One 10 GiB GPU with a live entry per variable.
pub(crate) fn scenario(vars: &[&str]) -> String {
    let mut s = format!(
        "[[device]]\nname = \"Sim GPU 10G\"\nuuid = \"{UUID0}\"\ntotal = \"10GiB\"\nreserved = \"0\"\noverhead = \"256MiB\"\n"
    );
    for v in vars {
        s.push_str(&format!(
            "[[device.process]]\npid_env = \"{v}\"\nname = \"{v}\"\nmemory_file_env = \"{v}_MEM\"\n"
        ));
    }
    s
}

/// Starts the exporter polling every 200ms with the clients socket at `socket`.
fn exporter(scenario: &str, socket: &Path, extra: &str, env: Vec<(String, String)>) -> Exporter {
    let config = format!(
        "[poll]\ninterval = \"200ms\"\n[leak]\nwindow = \"1m\"\nfloor_window = \"1s\"\n\
         [clients]\nenabled = true\nsocket = \"{}\"\n{extra}",
        socket.display()
    );
    Exporter::start(Options {
        scenario,
        config: &config,
        env,
        ..Options::default()
    })
}

fn reserved(m: &Metrics, pid: u32) -> Option<f64> {
    m.value(
        "vram_process_allocator_reserved_bytes",
        &[("pid", &pid.to_string())],
    )
}

fn refused(m: &Metrics, reason: &str) -> f64 {
    m.value(REFUSED, &[("reason", reason)]).unwrap_or(0.0)
}

fn api_process(e: &Exporter, pid: u32) -> serde_json::Value {
    let (status, body) = e.get("/api/v1/gpus");
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["gpus"][0]["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["pid"] == pid)
        .cloned()
        .unwrap_or_else(|| panic!("pid {pid} not in {body}"))
}

#[test]
fn reports_join_by_pid_with_events_and_go_when_stale() {
    if !have_python() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let socket = tmp.path().join("clients.sock");
    let job = Py::job_with(
        tmp.path(),
        "job",
        &socket,
        2 * GIB_U,
        GIB_U,
        &[
            ("JOB_RETRIES", "2"),
            ("JOB_OOMS", "1"),
            ("JOB_SPLIT", "268435456"),
        ],
    );
    let e = exporter(&scenario(&["JOB"]), &socket, "", job.env("JOB"));
    let pid = job.pid().to_string();
    let m = e.wait_metrics("the job's report", WAIT, |m| {
        reserved(m, job.pid()).is_some()
    });
    let p = [("pid", pid.as_str())];
    assert_eq!(reserved(&m, job.pid()), Some(3.0 * GIB));
    let v = |name| m.value(name, &p);
    assert_eq!(v("vram_process_allocator_allocated_bytes"), Some(2.0 * GIB));
    // Reclaimable: the cache less its split blocks (256 MiB), which empty_cache() cannot free.
    let reclaimable = GIB_U - 256 * MIB;
    assert_eq!(
        v("vram_process_allocator_reclaimable_bytes"),
        Some(reclaimable as f64)
    );
    assert_eq!(v("vram_process_allocator_alloc_retries_total"), Some(2.0));
    assert_eq!(v("vram_process_allocator_ooms_total"), Some(1.0));
    crate::golden::promtool_check(&m.text);
    assert_eq!(
        v("vram_process_allocated_bytes"),
        Some((3 * GIB_U + CONTEXT) as f64)
    );
    assert_eq!(
        m.gpu("vram_allocator_reclaimable_bytes", "0"),
        Some(reclaimable as f64)
    );
    assert_eq!(m.value("vram_exporter_clients_connected", &[]), Some(1.0));
    assert_eq!(refused(&m, "identity"), 0.0);

    // The JSON API: non-allocator memory (the context) and the annotated event, never a label.
    let a = &api_process(&e, job.pid())["allocator"];
    assert_eq!(a["non_allocator_bytes"], CONTEXT);
    assert_eq!(a["reclaimable_bytes"], reclaimable);
    assert_eq!(a["inactive_split_bytes"], 256 * MIB);
    assert_eq!(a["events"][0]["event"], "phase");
    assert_eq!(a["events"][0]["fields"]["name"], "train");
    assert!(!m.text.contains("train"), "an event reached the exposition");
    let (_, page) = e.get("/");
    let note = "reclaimable 768 MiB, outside the allocator 300 MiB · last events: phase name=train";
    assert!(page.contains(note), "{page}");
    // The page's script redraws the cards from the JSON API every 5 s: the note must survive it.
    if let Some(browser) = chromium("allocator note's redraw check") {
        let dom = redrawn_page(browser, &e.url("/"));
        assert!(
            dom.contains("data-updated="),
            "the script did not redraw: {dom}"
        );
        let main = &dom[dom.find("<main").unwrap()..dom.find("</main>").unwrap()];
        assert!(
            main.contains(note),
            "the redrawn card lost the note: {main}"
        );
    }

    // A stopped job stops reporting: after three intervals its allocator series go, while NVML
    // still lists the process; resumed, it reports again.
    job.signal(libc::SIGSTOP);
    let m = e.wait_metrics("the stale report to go", WAIT, |m| {
        reserved(m, job.pid()).is_none()
    });
    assert!(m.value("vram_process_allocated_bytes", &p).is_some());
    assert_eq!(m.count("vram_allocator_reclaimable_bytes"), 0);
    assert!(api_process(&e, job.pid()).get("allocator").is_none());
    job.signal(libc::SIGCONT);
    e.wait_metrics("the resumed job's report", WAIT, |m| {
        reserved(m, job.pid()) == Some(3.0 * GIB)
    });
}

#[test]
fn a_process_reporting_for_another_pid_is_refused_and_counted() {
    if !have_python() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let socket = tmp.path().join("clients.sock");
    let job = Py::job(tmp.path(), "job", &socket, GIB_U, GIB_U);
    let e = exporter(&scenario(&["JOB"]), &socket, "", job.env("JOB"));
    e.wait_metrics("the job's report", WAIT, |m| {
        reserved(m, job.pid()) == Some(2.0 * GIB)
    });
    // The impostor claims the job's pid and start time (a new connection each time: the exporter
    // closes one it cannot identify), and reports for itself on a GPU where NVML does not list it
    // (one connection), every 50 ms.
    let code = format!(
        "import json, os, socket, sys, time\n\
         sys.path.insert(0, os.environ['PYTHONPATH'].split(':')[0])\n\
         from vram_client import _protocol as p\n\
         def conn():\n    s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); return s\n\
         b = conn()\n\
         dev = [{{'uuid': '{UUID0}', 'allocated_bytes': 1, 'reserved_bytes': 50 << 30}}]\n\
         lie = dict(p.header('report', {victim}, p.start_time({victim})), devices=dev)\n\
         own = dict(p.header('report', os.getpid(), p.start_time()), devices=dev)\n\
         open(os.path.join(os.environ['JOB_DIR'], 'ready'), 'w').close()\n\
         while True:\n    a = conn(); a.sendall(p.encode(lie)); b.sendall(p.encode(own)); time.sleep(0.05); a.close()\n",
        victim = job.pid()
    );
    let _impostor = Py::script(tmp.path(), "impostor", &socket, &code);
    let m = e.wait_metrics("both refusals", WAIT, |m| {
        refused(m, "identity") >= 2.0 && refused(m, "not_on_gpu") >= 2.0
    });
    assert_eq!(reserved(&m, job.pid()), Some(2.0 * GIB));
    let m = e.next_poll();
    assert_eq!(
        reserved(&m, job.pid()),
        Some(2.0 * GIB),
        "the lie was taken"
    );
    assert_eq!(m.count("vram_process_allocator_reserved_bytes"), 1);
}

#[test]
fn a_flood_of_clients_is_bounded_and_the_reporting_job_stays() {
    if !have_python() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let socket = tmp.path().join("clients.sock");
    let job = Py::job(tmp.path(), "job", &socket, GIB_U, 512 * MIB);
    let e = exporter(&scenario(&["JOB"]), &socket, "", job.env("JOB"));
    e.wait_metrics("the job's report", WAIT, |m| {
        reserved(m, job.pid()).is_some()
    });
    let rss_before = e.rss();
    // One connection sending valid lines as fast as it can, one an oversized line, 100 idle ones
    // (closed after five seconds without a first line).
    let code = "import os, socket, sys, time\n\
         big = socket.socket(socket.AF_UNIX); big.connect(sys.argv[1])\n\
         fast = socket.socket(socket.AF_UNIX); fast.connect(sys.argv[1])\n\
         conns = []\n\
         for _ in range(100):\n    s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); conns.append(s)\n\
         open(os.path.join(os.environ['JOB_DIR'], 'ready'), 'w').close()\n\
         try:\n    big.sendall(b'{' + b' ' * 20000 + b'}\\n')\nexcept OSError:\n    pass\n\
         fast.setblocking(False)\n\
         sys.path.insert(0, os.environ['PYTHONPATH'].split(':')[0])\n\
         from vram_client import _protocol as p\n\
         own = p.encode(dict(p.header('report', os.getpid(), p.start_time()), devices=[]))\n\
         while True:\n    try:\n        fast.send(own * 100)\n    except OSError:\n        time.sleep(0.01)\n";
    let flood = Py::script(tmp.path(), "flood", &socket, code);
    let m = e.wait_metrics("the flood refused", WAIT, |m| {
        refused(m, "too_many_clients") >= 1.0
            && refused(m, "rate") >= 1.0
            && refused(m, "too_large") >= 1.0
    });
    let connected = m.value("vram_exporter_clients_connected", &[]).unwrap();
    assert!(connected <= 64.0, "{connected} clients held");
    // What the flood costs in memory is bounded by the caps (64 connections, 16 KiB lines), not
    // by what the flood sends: measured, not timed.
    let grown = (e.rss() - rss_before) / (1024.0 * 1024.0);
    eprintln!("resident memory under the flood: +{grown:.2} MiB");
    assert!(
        grown < 16.0,
        "the flood grew resident memory by {grown:.2} MiB"
    );
    // Polls and scrapes go on and the job's reports are still taken.
    let m = e.next_poll();
    assert!(reserved(&m, job.pid()).is_some());
    drop(flood);
    let m = e.wait_metrics("the flood's connections closed", WAIT, |m| {
        m.value("vram_exporter_clients_connected", &[]) == Some(1.0)
    });
    assert!(refused(&m, "too_many_clients") >= 100.0 - 62.0);
    e.wait_metrics("the job still reporting", WAIT, |m| {
        reserved(m, job.pid()).is_some()
    });
}

#[test]
fn a_killed_client_goes_and_a_restarted_exporter_is_found_again() {
    if !have_python() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let socket = tmp.path().join("clients.sock");
    let a = Py::job(tmp.path(), "a", &socket, GIB_U, GIB_U);
    let mut b = Py::job(tmp.path(), "b", &socket, GIB_U, 2 * GIB_U);
    let scenario = scenario(&["A", "B"]);
    let env = [a.env("A"), b.env("B")].concat();
    let e = exporter(&scenario, &socket, "", env.clone());
    e.wait_metrics("both reports", WAIT, |m| {
        reserved(m, a.pid()).is_some() && reserved(m, b.pid()).is_some()
    });
    let b_pid = b.pid();
    b.child.kill().unwrap();
    b.child.wait().unwrap();
    let m = e.wait_metrics("the killed client gone", WAIT, |m| {
        reserved(m, b_pid).is_none() && m.value("vram_exporter_clients_connected", &[]) == Some(1.0)
    });
    assert_eq!(m.gpu("vram_allocator_reclaimable_bytes", "0"), Some(GIB));
    // Killed, the exporter leaves its socket behind; a new one replaces it, and the running job
    // finds the new exporter without a restart.
    // SAFETY: kill(2) on the exporter child this test started.
    assert_eq!(unsafe { libc::kill(e.pid() as i32, libc::SIGKILL) }, 0);
    drop(e);
    assert!(socket.exists());
    let e = exporter(&scenario, &socket, "", env);
    e.wait_metrics("the job back on the new exporter", WAIT, |m| {
        reserved(m, a.pid()) == Some(2.0 * GIB)
    });
    assert_eq!(
        a.stderr().matches("no vram-exporter").count(),
        1,
        "one warning, then quiet: {}",
        a.stderr()
    );
}

#[test]
fn cleanup_signals_the_most_reclaimable_first_and_measures_what_it_predicted() {
    if !have_python() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let socket = tmp.path().join("clients.sock");
    // `big` holds the most memory but can give back only 512 MiB; `cached` holds less and has
    // 2 GiB cached: with the contexts and overhead 8.36 GiB, under the 8.5 GiB soft limit. A
    // ballast process without a client takes 1 GiB more once both reports are in: 9.36 GiB,
    // over the 9 GiB hard limit.
    let big = Py::job(tmp.path(), "big", &socket, 4 * GIB_U, 512 * MIB);
    let cached = Py::job(tmp.path(), "cached", &socket, GIB_U, 2 * GIB_U);
    let cleanup = "[limits]\nsoft = \"8704MiB\"\nhard = \"9GiB\"\n\
        [cleanup]\nenabled = true\ncooldown = \"1h\"\n\
        [[cleanup.actions]]\ntype = \"signal\"\ntarget = \"top\"\ntop = 1\n\
        [[cleanup.actions]]\ntype = \"signal\"\ntarget = \"all\"\nmin_reclaimable = \"1GiB\"\n";
    let ballast = "[[device.process]]\npid = 5000001\nname = \"ballast\"\n\
        memory = { points = [[0, \"0\"], [10, \"0\"], [11, \"1GiB\"]] }\n";
    let e = exporter(
        &format!("{}{ballast}", scenario(&["BIG", "CACHED"])),
        &socket,
        cleanup,
        [big.env("BIG"), cached.env("CACHED")].concat(),
    );
    e.wait_metrics("both reports", WAIT, |m| {
        reserved(m, big.pid()).is_some() && reserved(m, cached.pid()).is_some()
    });
    e.set_time(20.0);
    let m = e.wait_metrics("the cache released", WAIT, |m| {
        m.gpu("vram_pressure_level", "0") == Some(0.0)
            && m.gpu("vram_cleanup_reclaimed_bytes", "0").unwrap_or(0.0) > 0.0
    });
    assert_eq!(m.gpu("vram_cleanup_reclaimed_bytes", "0"), Some(2.0 * GIB));
    assert!(
        big.releases().is_empty(),
        "the largest process was signalled"
    );
    // The second action may run on the snapshot the first one saw: a second release frees
    // nothing more.
    let releases = cached.releases();
    assert!(
        !releases.is_empty() && releases.iter().all(|r| *r == GIB_U),
        "{releases:?}"
    );
    // Both signal actions reached `cached` only (the ballast has no report and is not a process
    // here: it is listed but never signalled), each with its prediction in the audit line.
    let audits: Vec<serde_json::Value> = e
        .log()
        .iter()
        .filter(|l| l.contains("cleanup action") && l.contains("\"action\":\"signal\""))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(audits.len(), 2, "{audits:?}");
    let expect = format!("{}:{}", cached.pid(), 2 * GIB_U);
    assert_eq!(audits[0]["pids"], cached.pid().to_string());
    assert_eq!(audits[0]["predicted_reclaim"], expect);
    assert_eq!(audits[1]["pids"], cached.pid().to_string());
    // When the window closes: the per-process line and the JSON API, predicted against measured.
    let line = e
        .wait_log(|l| l.contains("cleanup reclaim measured"), WAIT)
        .expect("reclaim measured line");
    let measured: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(
        measured["per_process"],
        format!("{}:{}:{}", cached.pid(), 2 * GIB_U, 2 * GIB_U)
    );
    let (_, body) = e.get("/api/v1/gpus");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let r = &v["gpus"][0]["cleanup_reclaim"];
    assert_eq!(r[0]["pid"], cached.pid(), "{body}");
    assert_eq!(r[0]["predicted_bytes"], 2 * GIB_U);
    assert_eq!(r[0]["measured_bytes"], 2 * GIB_U);
    assert_eq!(r[0]["measuring"], false);
}

#[test]
fn claimed_identities_are_matched_in_the_proc_root_and_unknown_claims_refused() {
    if !have_python() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let socket = tmp.path().join("clients.sock");
    let job = Py::job(tmp.path(), "job", &socket, GIB_U, GIB_U);
    // Claimed: the job's own pid and start time, looked up by NSpid in the proc root (/proc).
    let e = exporter(
        &scenario(&["JOB"]),
        &socket,
        "identity = \"claimed\"\n",
        job.env("JOB"),
    );
    e.wait_metrics("the job's report", WAIT, |m| {
        reserved(m, job.pid()) == Some(2.0 * GIB)
    });
    // A claim no process matches (a pid above pid_max) is refused and its connection closed.
    let code = "import os, socket, sys, time\n\
         sys.path.insert(0, os.environ['PYTHONPATH'].split(':')[0])\n\
         from vram_client import _protocol as p\n\
         open(os.path.join(os.environ['JOB_DIR'], 'ready'), 'w').close()\n\
         while True:\n    s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])\n    \
         s.sendall(p.encode(dict(p.header('report', 4999999, 12345), devices=[])))\n    \
         time.sleep(0.05); s.close()\n";
    let _stranger = Py::script(tmp.path(), "stranger", &socket, code);
    let m = e.wait_metrics("the unknown claim refused", WAIT, |m| {
        refused(m, "identity") >= 2.0
    });
    assert_eq!(reserved(&m, job.pid()), Some(2.0 * GIB));
    let m = e.next_poll();
    assert_eq!(reserved(&m, job.pid()), Some(2.0 * GIB));
    // A clean shutdown removes the socket.
    assert!(e.terminate().success());
    assert!(!socket.exists(), "the socket outlived the exporter");
}

#[test]
fn one_process_holds_two_connections_and_a_silent_one_is_closed() {
    if !have_python() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let socket = tmp.path().join("clients.sock");
    let job = Py::job(tmp.path(), "job", &socket, GIB_U, 0);
    let e = exporter(&scenario(&["JOB"]), &socket, "", job.env("JOB"));
    e.wait_metrics("the job's report", WAIT, |m| {
        reserved(m, job.pid()).is_some()
    });
    // Three identified connections of one process, and one that never says anything.
    let code = "import os, socket, sys, time\n\
         sys.path.insert(0, os.environ['PYTHONPATH'].split(':')[0])\n\
         from vram_client import _protocol as p\n\
         own = p.encode(dict(p.header('report', os.getpid(), p.start_time()), devices=[]))\n\
         conns = [socket.socket(socket.AF_UNIX) for _ in range(4)]\n\
         for c in conns:\n    c.connect(sys.argv[1])\n\
         for c in conns[:3]:\n    c.sendall(own); time.sleep(0.2)\n\
         open(os.path.join(os.environ['JOB_DIR'], 'ready'), 'w').close()\n\
         while True:\n    time.sleep(1)\n";
    let _holder = Py::script(tmp.path(), "holder", &socket, code);
    let m = e.wait_metrics(
        "the third connection refused, the silent one closed",
        WAIT,
        |m| {
            refused(m, "too_many_clients") == 1.0
                && m.value("vram_exporter_clients_connected", &[]) == Some(3.0)
        },
    );
    assert_eq!(refused(&m, "identity"), 0.0);
    assert!(reserved(&m, job.pid()).is_some());
}

#[test]
fn a_job_on_a_mig_slice_joins_its_parent_gpu() {
    if !have_python() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let socket = tmp.path().join("clients.sock");
    // CUDA gives the slice's bare UUID; the client cannot tell it from a GPU's.
    let slice = "c1ea0000-0000-4000-8000-0000000000a0";
    let job = Py::job_with(
        tmp.path(),
        "job",
        &socket,
        GIB_U,
        GIB_U,
        &[("STAND_IN_TORCH_UUIDS", slice)],
    );
    let scenario = format!(
        "[[device]]\nname = \"Sim A100\"\nuuid = \"{UUID0}\"\ntotal = \"40GiB\"\nreserved = \"0\"\n\
         [[device.mig]]\nuuid = \"MIG-{slice}\"\ntotal = \"20GiB\"\n\
         [[device.mig.process]]\npid_env = \"JOB\"\nname = \"JOB\"\nmemory_file_env = \"JOB_MEM\"\n"
    );
    let e = exporter(&scenario, &socket, "", job.env("JOB"));
    let m = e.wait_metrics("the slice's report on the parent GPU", WAIT, |m| {
        reserved(m, job.pid()).is_some()
    });
    let pid = job.pid().to_string();
    let labels = [("pid", pid.as_str()), ("gpu", "0"), ("uuid", UUID0)];
    assert_eq!(
        m.value("vram_process_allocator_reserved_bytes", &labels),
        Some(2.0 * GIB)
    );
    assert_eq!(refused(&m, "not_on_gpu"), 0.0);
}
