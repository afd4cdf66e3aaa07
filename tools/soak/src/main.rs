//! `vram-soak`: the load-and-soak program: the exporter under many concurrent scrapers for a long
//! run, with no error, no panic and no memory growth.
//!
//! It starts an already built `vram-exporter` on nvml-sim (8 simulated GPUs with processes coming
//! and going, polled every 100 ms), runs many concurrent keep-alive scrapers against `/metrics`
//! and `/api/v1/gpus` on loopback for a duration or a request count, and reports requests,
//! errors, p50/p99 latency and the exporter's resident memory after the first 1,000 scrapes and
//! at the end. It exits non-zero on any error, on a panic in the exporter's log, if the exporter
//! dies, or — once at least 100,000 scrapes were done — if resident memory grew by more than
//! 1 MiB between the 1,000-scrape mark and the end. `--short` (CI) runs 30 s and only reports
//! memory growth.
//!
//! Unless `--no-hostile`, the exporter runs with basic auth (the scrapers log in; their
//! credentials are checked once and remembered) and a hostile mix runs beside the scrapers
//! (`hostile.rs`: wrong-password floods, silent sockets, slowloris, endless request heads, junk,
//! never-reading pipelined scrapers);
//! then it also fails if the exporter's resident memory ever exceeds the shipped 64 MiB limit.
//! Good scrapes must still all succeed.
//!
//! ```text
//! vram-soak [--exporter PATH] [--library PATH | --simulate] [--scenario FILE]
//!           [--duration 10m | --requests N] [--concurrency 64] [--short] [--no-hostile]
//! ```
//!
//! Defaults: the exporter and `libnvml_sim.so` next to this program (same `target/<profile>`),
//! the scenario `tools/soak/scenarios/churn-8gpu.toml`.
//!
//! Phases, one function each: start, warm-up (NVML up, 8 GPUs published), load (the scrapers),
//! measure (memory and liveness while they run), report (figures and verdict), stop (SIGTERM).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

mod args;
mod history;
mod hostile;

use args::{parse_args, Args};
use vram_testkit::exporter::{Exporter, Launch};
use vram_testkit::http::Client;
use vram_testkit::process::Spawn;
use vram_testkit::procfs;
use vram_testkit::stats::percentile;

const MIB: f64 = (1u64 << 20) as f64;
/// Requests after which the baseline resident memory is taken.
const BASELINE_AT: u64 = 1_000;
/// Requests needed before the memory-growth target is enforced.
const ENFORCE_AT: u64 = 100_000;
/// The memory-growth target between the baseline and the end.
const MAX_GROWTH: f64 = MIB;
const PATHS: [&str; 2] = ["/metrics", "/api/v1/gpus"];
/// The shipped memory limit (systemd MemoryMax=64M, the DaemonSet's 64Mi).
const SHIPPED_LIMIT: f64 = 64.0 * MIB;
/// The scrapers' user and password when the hostile mix runs.
const USER: &str = "soak";
const PASSWORD: &str = "soak-password";

/// A private directory removed on drop (std only).
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> std::io::Result<TempDir> {
        let dir = std::env::temp_dir().join(format!("vram-soak-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        Ok(TempDir(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Start: the exporter on the scenario, polling every 100 ms, admitting 256 concurrent requests;
/// with the hostile mix, behind basic auth (bcrypt cost 10, as the docs suggest).
fn start(args: &Args, dir: &TempDir) -> Result<Exporter, String> {
    let config = dir.0.join("soak.toml");
    let mut text =
        String::from("[poll]\ninterval = \"100ms\"\n[web]\nmax_concurrent_requests = 256\n");
    if args.hostile {
        let web = dir.0.join("web.yml");
        let hash = bcrypt::hash(PASSWORD, 10).map_err(|e| format!("bcrypt: {e}"))?;
        std::fs::write(&web, format!("basic_auth_users:\n  {USER}: '{hash}'\n"))
            .map_err(|e| format!("write web.yml: {e}"))?;
        text.push_str(&format!("config_file = \"{}\"\n", web.display()));
    }
    std::fs::write(&config, text).map_err(|e| format!("write config: {e}"))?;
    let scenario = std::fs::canonicalize(&args.scenario)
        .map_err(|e| format!("scenario {}: {e}", args.scenario.display()))?;
    let mut launch = Launch::new(&args.exporter).config(&config).spawn(Spawn {
        keep_lines: Some(50),
        ..Spawn::default()
    });
    if args.simulate {
        launch = launch.simulate(&scenario);
    } else if let Some(lib) = &args.library {
        launch = launch.sim_library(lib, &scenario);
    }
    launch.start()
}

/// The scrapers' `Authorization` value (the hostile mix runs behind basic auth).
fn authorization(args: &Args) -> Option<String> {
    use base64::Engine as _;
    args.hostile.then(|| {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
        format!("Basic {token}")
    })
}

/// A scraper's client: keep-alive, strict, logged in when the exporter wants it.
fn client(addr: SocketAddr, auth: &Option<String>) -> Client {
    let c = Client::new(addr).timeout(Duration::from_secs(10)).strict();
    match auth {
        Some(a) => c.authorization(a.clone()),
        None => c,
    }
}

/// Warm-up: NVML up and the 8 GPUs published before any load (the login, if any, checked once
/// and remembered from here on).
fn warm_up(exporter: &mut Exporter, auth: &Option<String>) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut c = client(exporter.addr, auth);
    let mut body = Vec::new();
    loop {
        if let Ok(200) = c.get_into("/metrics", &mut body) {
            let text = String::from_utf8_lossy(&body);
            if text.contains("vram_nvml_up 1") && text.matches("vram_total_bytes{").count() >= 8 {
                return Ok(());
            }
        }
        if exporter.exited().is_some() || Instant::now() > deadline {
            return Err(format!(
                "the exporter never reported 8 GPUs with NVML up; its log:\n{}",
                exporter.log_tail(20)
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One scrape: an error unless the answer is 200 with a body.
fn scrape(client: &mut Client, path: &str, body: &mut Vec<u8>) -> Result<(), String> {
    match client.get_into(path, body) {
        Ok(200) if body.is_empty() => Err(format!("empty body for {path}")),
        Ok(200) => Ok(()),
        Ok(status) => Err(format!("status {status} for {path}")),
        Err(e) => Err(format!("{path}: {e}")),
    }
}

#[derive(Default)]
struct Totals {
    requests: AtomicU64,
    errors: AtomicU64,
    stop: AtomicBool,
    /// The first 10 errors, for the report.
    first_errors: Mutex<Vec<String>>,
}

/// Latencies in µs of successful scrapes, one list per path in `PATHS`.
type Latencies = [Vec<u32>; 2];

/// The running scrapers.
struct Load {
    totals: Arc<Totals>,
    workers: Vec<JoinHandle<Latencies>>,
    started: Instant,
}

/// Load: `concurrency` keep-alive scrapers alternating between the paths, until stopped or until
/// `--requests` were sent.
fn load(args: &Args, addr: SocketAddr, auth: &Option<String>) -> Load {
    let totals = Arc::new(Totals::default());
    let started = Instant::now();
    let workers = (0..args.concurrency)
        .map(|w| {
            let totals = totals.clone();
            let limit = args.requests;
            let mut client = client(addr, auth);
            std::thread::spawn(move || {
                let mut body = Vec::with_capacity(64 << 10);
                let mut latencies: Latencies = [Vec::new(), Vec::new()];
                let mut i = w;
                while !totals.stop.load(Ordering::Relaxed) {
                    if let Some(n) = limit {
                        if totals.requests.fetch_add(1, Ordering::Relaxed) >= n {
                            totals.requests.fetch_sub(1, Ordering::Relaxed);
                            break;
                        }
                    } else {
                        totals.requests.fetch_add(1, Ordering::Relaxed);
                    }
                    let which = i % 2;
                    i += 1;
                    let t = Instant::now();
                    let result = scrape(&mut client, PATHS[which], &mut body);
                    let micros = t.elapsed().as_micros().min(u32::MAX as u128) as u32;
                    match result {
                        Ok(()) => latencies[which].push(micros),
                        Err(e) => {
                            totals.errors.fetch_add(1, Ordering::Relaxed);
                            let mut first = totals.first_errors.lock().unwrap();
                            if first.len() < 10 {
                                first.push(e);
                            }
                        }
                    }
                }
                latencies
            })
        })
        .collect();
    Load {
        totals,
        workers,
        started,
    }
}

/// Resident memory of `pid` in bytes.
fn rss(pid: u32) -> Option<f64> {
    procfs::memory(pid).map(|m| m.rss_kib as f64 * 1024.0)
}

/// What the measure phase saw of the exporter.
struct Memory {
    start: f64,
    /// After `BASELINE_AT` requests (the start if never reached).
    baseline: f64,
    end: f64,
    max: f64,
    alive: bool,
}

/// Measure: resident memory (baseline at `BASELINE_AT` requests, maximum), progress every minute,
/// until the duration or request count is reached or the exporter exits; then stops the load.
fn measure(args: &Args, exporter: &mut Exporter, load: &Load, start: f64) -> Memory {
    let pid = exporter.pid();
    let totals = &load.totals;
    let mut baseline = None;
    let mut max = start;
    let mut last_report = Instant::now();
    let mut alive = true;
    loop {
        std::thread::sleep(Duration::from_millis(20));
        let done = totals.requests.load(Ordering::Relaxed);
        let now_rss = rss(pid);
        if let Some(r) = now_rss {
            max = max.max(r);
        }
        if baseline.is_none() && done >= BASELINE_AT {
            baseline = now_rss;
        }
        if let Some(status) = exporter.exited() {
            eprintln!("vram-soak: the exporter exited: {status}");
            alive = false;
            break;
        }
        if last_report.elapsed() >= Duration::from_secs(60) {
            last_report = Instant::now();
            println!(
                "  {:>4} s: {done} requests, {} errors, RSS {:.2} MiB",
                load.started.elapsed().as_secs(),
                totals.errors.load(Ordering::Relaxed),
                now_rss.unwrap_or(0.0) / MIB
            );
        }
        let by_time = args.duration.is_some_and(|d| load.started.elapsed() >= d);
        let by_count = args.requests.is_some_and(|n| done >= n);
        if by_time || by_count {
            break;
        }
    }
    totals.stop.store(true, Ordering::Relaxed);
    Memory {
        start,
        baseline: baseline.unwrap_or(start),
        end: 0.0,
        max,
        alive,
    }
}

/// What the load did, once its scrapers have stopped.
struct Outcome {
    elapsed: Duration,
    requests: u64,
    errors: u64,
    latencies: Latencies,
    first_errors: Vec<String>,
}

impl Load {
    fn finish(self) -> Outcome {
        let mut latencies: Latencies = [Vec::new(), Vec::new()];
        for w in self.workers {
            if let Ok(l) = w.join() {
                for (all, part) in latencies.iter_mut().zip(l) {
                    all.extend(part);
                }
            }
        }
        Outcome {
            elapsed: self.started.elapsed(),
            requests: self.totals.requests.load(Ordering::Relaxed),
            errors: self.totals.errors.load(Ordering::Relaxed),
            latencies,
            first_errors: self.totals.first_errors.lock().unwrap().clone(),
        }
    }
}

fn ms(sorted: &[u32], p: f64) -> f64 {
    percentile(sorted, p) as f64 / 1000.0
}

/// Report: the figures, then the verdict; true when the soak failed.
fn report(
    args: &Args,
    out: &mut Outcome,
    mem: &Memory,
    exporter: &Exporter,
    hostile: Option<&hostile::Counts>,
) -> bool {
    let (requests, errors) = (out.requests, out.errors);
    println!("vram-soak results");
    println!(
        "  duration        {:.1} s, {} concurrent scrapers",
        out.elapsed.as_secs_f64(),
        args.concurrency
    );
    println!(
        "  requests        {requests} ({:.0}/s)",
        requests as f64 / out.elapsed.as_secs_f64()
    );
    println!("  errors          {errors}");
    let mut all: Vec<u32> = Vec::with_capacity(out.latencies[0].len() + out.latencies[1].len());
    for (path, l) in PATHS.iter().zip(out.latencies.iter_mut()) {
        l.sort_unstable();
        all.extend_from_slice(l);
        println!(
            "  {path:<15} {} ok, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            l.len(),
            ms(l, 0.50),
            ms(l, 0.99),
            ms(l, 1.0)
        );
    }
    all.sort_unstable();
    println!(
        "  all             p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        ms(&all, 0.50),
        ms(&all, 0.99),
        ms(&all, 1.0)
    );
    let growth = mem.end - mem.baseline;
    println!(
        "  RSS             start {:.2} MiB, after {BASELINE_AT} scrapes {:.2} MiB, end {:.2} MiB, max {:.2} MiB, growth {:+.3} MiB",
        mem.start / MIB,
        mem.baseline / MIB,
        mem.end / MIB,
        mem.max / MIB,
        growth / MIB
    );
    let panics = exporter.panics();
    println!("  exporter panics {panics}");
    let mut failed = false;
    if let Some(h) = hostile {
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
        println!(
            "  hostile mix     {} bad-auth clients: {} refused (401), {} shed (429/closed); {} silent, {} slowloris, {} endless-head, {} never-reading (x{} pipelined) connections held, {} closed by the server and reopened; {} junk clients: {} answered",
            hostile::BAD_AUTH_CLIENTS,
            n(&h.denied),
            n(&h.shed),
            hostile::SILENT_SOCKETS,
            hostile::SLOWLORIS,
            hostile::ENDLESS_HEADS,
            hostile::NEVER_READING,
            hostile::PIPELINED,
            n(&h.reopened),
            hostile::JUNK_CLIENTS,
            n(&h.junk_answered),
        );
        if mem.max > SHIPPED_LIMIT {
            failed = true;
            eprintln!(
                "vram-soak: FAIL: resident memory reached {:.2} MiB under the hostile mix (shipped limit 64 MiB)",
                mem.max / MIB
            );
        } else {
            println!(
                "  memory limit    met (max {:.2} MiB ≤ 64 MiB under the hostile mix)",
                mem.max / MIB
            );
        }
    }

    if errors > 0 {
        failed = true;
        eprintln!("vram-soak: FAIL: {errors} errors; first ones:");
        for e in &out.first_errors {
            eprintln!("  {e}");
        }
    }
    if panics > 0 || !mem.alive {
        failed = true;
        eprintln!(
            "vram-soak: FAIL: the exporter panicked or died; its log ends:\n{}",
            exporter.log_tail(50)
        );
    }
    if requests >= ENFORCE_AT && !args.short {
        if growth > MAX_GROWTH {
            failed = true;
            eprintln!(
                "vram-soak: FAIL: resident memory grew {:.3} MiB (> 1 MiB) between scrape {BASELINE_AT} and scrape {requests}",
                growth / MIB
            );
        } else {
            println!("  memory target   met (growth ≤ 1 MiB after ≥ {ENFORCE_AT} scrapes)");
        }
    } else {
        println!(
            "  memory target   not enforced ({}): needs ≥ {ENFORCE_AT} scrapes outside --short",
            if args.short {
                "short mode"
            } else {
                "too few scrapes"
            }
        );
    }
    failed
}

/// Stop: SIGTERM and a bounded wait; true when the exporter did not exit cleanly.
fn stop(exporter: &mut Exporter) -> bool {
    match exporter.terminate(Duration::from_secs(15)) {
        Ok(status) if status.success() => false,
        Ok(status) => {
            eprintln!("vram-soak: FAIL: the exporter exited with {status} on SIGTERM");
            true
        }
        Err(e) => {
            eprintln!("vram-soak: FAIL: {e}");
            true
        }
    }
}

fn main() -> ExitCode {
    let args = parse_args();
    let started = TempDir::new()
        .map_err(|e| format!("temporary directory: {e}"))
        .and_then(|dir| Ok((start(&args, &dir)?, dir)));
    let (mut exporter, _dir) = match started {
        Ok(e) => e,
        Err(e) => {
            eprintln!("vram-soak: {e}");
            return ExitCode::FAILURE;
        }
    };
    let pid = exporter.pid();
    println!(
        "vram-soak: exporter pid {pid} on {}; {} scrapers; {}",
        exporter.addr,
        args.concurrency,
        match (args.requests, args.duration) {
            (Some(n), _) => format!("{n} requests"),
            (None, Some(d)) => format!("{} s", d.as_secs()),
            _ => unreachable!(),
        }
    );
    let auth = authorization(&args);
    if let Err(e) = warm_up(&mut exporter, &auth) {
        eprintln!("vram-soak: {e}");
        return ExitCode::FAILURE;
    }
    let rss_start = rss(pid).unwrap_or(0.0);
    let load = load(&args, exporter.addr, &auth);
    let hostile = args
        .hostile
        .then(|| hostile::Hostile::start(exporter.addr, USER, auth.as_deref().unwrap_or_default()));
    let mut memory = measure(&args, &mut exporter, &load, rss_start);
    let hostile = hostile.map(hostile::Hostile::stop);
    let mut outcome = load.finish();
    // The baseline was taken under load, so the end is read right after the load stops: allocator
    // caches settle the same way for both readings.
    memory.end = rss(pid).unwrap_or(0.0);
    let mut failed = report(&args, &mut outcome, &memory, &exporter, hostile.as_deref());
    println!("  history memory  {}", history::line(exporter.addr, &auth));
    if memory.alive {
        failed |= stop(&mut exporter);
    }
    if failed {
        ExitCode::FAILURE
    } else {
        println!("vram-soak: OK");
        ExitCode::SUCCESS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_reported_in_milliseconds() {
        let v: Vec<u32> = (1..=100).map(|x| x * 1000).collect();
        assert_eq!(ms(&v, 0.5), 50.0);
        assert_eq!(ms(&v, 0.99), 99.0);
        assert_eq!(ms(&v, 1.0), 100.0);
        assert_eq!(ms(&[], 0.5), 0.0);
    }
}
