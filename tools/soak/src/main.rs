//! `vram-soak`: the load-and-soak program of issue 8.
//!
//! It starts an already built `vram-exporter` on nvml-sim (8 simulated GPUs with processes coming
//! and going, polled every 100 ms), runs many concurrent keep-alive scrapers against `/metrics`
//! and `/api/v1/gpus` on loopback for a duration or a request count, and reports requests,
//! errors, p50/p99 latency and the exporter's resident memory after the first 1,000 scrapes and
//! at the end. It exits non-zero on any error, on a panic in the exporter's log, if the exporter
//! dies, or — once at least 100,000 scrapes were done — if resident memory grew by more than
//! 1 MiB between the 1,000-scrape mark and the end. `--short` (CI) runs 30 s and only reports
//! memory.
//!
//! ```text
//! vram-soak [--exporter PATH] [--library PATH | --simulate] [--scenario FILE]
//!           [--duration 10m | --requests N] [--concurrency 64] [--short]
//! ```
//!
//! Defaults: the exporter and `libnvml_sim.so` next to this program (same `target/<profile>`),
//! the scenario `soak/scenarios/churn-8gpu.toml`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

const MIB: f64 = (1u64 << 20) as f64;
/// Requests after which the baseline resident memory is taken.
const BASELINE_AT: u64 = 1_000;
/// Requests needed before the memory-growth target is enforced.
const ENFORCE_AT: u64 = 100_000;
/// The memory-growth target between the baseline and the end.
const MAX_GROWTH: f64 = MIB;
const PATHS: [&str; 2] = ["/metrics", "/api/v1/gpus"];

struct Args {
    exporter: PathBuf,
    library: Option<PathBuf>,
    simulate: bool,
    scenario: PathBuf,
    duration: Option<Duration>,
    requests: Option<u64>,
    concurrency: usize,
    short: bool,
}

fn usage() -> ! {
    eprintln!(
        "usage: vram-soak [--exporter PATH] [--library PATH | --simulate] [--scenario FILE]\n\
         \x20                [--duration 10m | --requests N] [--concurrency 64] [--short]"
    );
    std::process::exit(2)
}

fn parse_duration(s: &str) -> Option<Duration> {
    let (number, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit())?);
    let n: u64 = number.parse().ok()?;
    Some(match unit {
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        _ => return None,
    })
}

fn parse_args() -> Args {
    let here = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_default();
    let mut args = Args {
        exporter: here.join("vram-exporter"),
        library: None,
        simulate: false,
        scenario: default_scenario(),
        duration: None,
        requests: None,
        concurrency: 64,
        short: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| usage());
        match a.as_str() {
            "--exporter" => args.exporter = value().into(),
            "--library" => args.library = Some(value().into()),
            "--simulate" => args.simulate = true,
            "--scenario" => args.scenario = value().into(),
            "--duration" => {
                args.duration = Some(parse_duration(&value()).unwrap_or_else(|| usage()))
            }
            "--requests" => args.requests = Some(value().parse().unwrap_or_else(|_| usage())),
            "--concurrency" => args.concurrency = value().parse().unwrap_or_else(|_| usage()),
            "--short" => args.short = true,
            "-h" | "--help" => usage(),
            _ => usage(),
        }
    }
    if args.library.is_none() && !args.simulate {
        args.library = Some(here.join("libnvml_sim.so"));
    }
    if args.short && args.duration.is_none() && args.requests.is_none() {
        args.duration = Some(Duration::from_secs(30));
    }
    if args.duration.is_none() && args.requests.is_none() {
        args.duration = Some(Duration::from_secs(60));
    }
    args.concurrency = args.concurrency.clamp(1, 1024);
    args
}

/// `soak/scenarios/churn-8gpu.toml` from the working directory, or from this crate's sources.
fn default_scenario() -> PathBuf {
    let relative = Path::new("soak/scenarios/churn-8gpu.toml");
    if relative.is_file() {
        return relative.to_path_buf();
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/churn-8gpu.toml")
}

struct Exporter {
    child: Child,
    addr: String,
    panics: Arc<AtomicU64>,
    log_tail: Arc<Mutex<Vec<String>>>,
    _dir: TempDir,
}

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

fn start_exporter(args: &Args) -> Result<Exporter, String> {
    let dir = TempDir::new().map_err(|e| format!("temporary directory: {e}"))?;
    let config = dir.0.join("soak.toml");
    std::fs::write(
        &config,
        "[poll]\ninterval = \"100ms\"\n[web]\nmax_concurrent_requests = 256\n",
    )
    .map_err(|e| format!("write config: {e}"))?;
    let scenario = std::fs::canonicalize(&args.scenario)
        .map_err(|e| format!("scenario {}: {e}", args.scenario.display()))?;
    let mut cmd = Command::new(&args.exporter);
    cmd.arg("--config")
        .arg(&config)
        .args(["--listen", "127.0.0.1:0", "--log-format", "json"])
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if args.simulate {
        cmd.arg("--simulate").arg(&scenario);
    } else if let Some(lib) = &args.library {
        cmd.arg("--nvml-library")
            .arg(lib)
            .env("NVML_SIM_SCENARIO", &scenario);
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("start {}: {e}", args.exporter.display()))?;
    let stderr = child.stderr.take().expect("piped stderr");
    let (tx, rx) = mpsc::channel::<String>();
    let panics = Arc::new(AtomicU64::new(0));
    let log_tail = Arc::new(Mutex::new(Vec::new()));
    {
        let (panics, log_tail) = (panics.clone(), log_tail.clone());
        std::thread::spawn(move || {
            let mut first = Some(tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("panicked") {
                    panics.fetch_add(1, Ordering::Relaxed);
                }
                if let Some(tx) = &first {
                    if line.contains("\"listening\"") {
                        let _ = tx.send(line.clone());
                        first = None;
                    }
                }
                let mut tail = log_tail.lock().unwrap();
                tail.push(line);
                if tail.len() > 50 {
                    tail.remove(0);
                }
            }
        });
    }
    let line = rx.recv_timeout(Duration::from_secs(30)).map_err(|_| {
        let _ = child.kill();
        format!(
            "the exporter did not start; its log:\n{}",
            log_tail.lock().unwrap().join("\n")
        )
    })?;
    let addr = line
        .split("\"address\":\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .ok_or_else(|| format!("no address in {line}"))?
        .to_string();
    Ok(Exporter {
        child,
        addr,
        panics,
        log_tail,
        _dir: dir,
    })
}

/// Resident memory of `pid` in bytes, from /proc.
fn rss(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: f64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kib * 1024.0)
}

/// A keep-alive HTTP/1.1 client on one connection; reconnects after an error.
struct Client {
    addr: String,
    stream: Option<BufReader<TcpStream>>,
}

impl Client {
    fn get(&mut self, path: &str, body: &mut Vec<u8>) -> Result<(), String> {
        if self.stream.is_none() {
            let s = TcpStream::connect(&self.addr).map_err(|e| format!("connect: {e}"))?;
            s.set_nodelay(true).ok();
            s.set_read_timeout(Some(Duration::from_secs(10))).ok();
            self.stream = Some(BufReader::new(s));
        }
        let result = self.exchange(path, body);
        if result.is_err() {
            self.stream = None;
        }
        result
    }

    fn exchange(&mut self, path: &str, body: &mut Vec<u8>) -> Result<(), String> {
        let stream = self.stream.as_mut().expect("connected");
        let request = format!("GET {path} HTTP/1.1\r\nHost: soak\r\n\r\n");
        stream
            .get_mut()
            .write_all(request.as_bytes())
            .map_err(|e| format!("write: {e}"))?;
        let mut line = String::new();
        stream
            .read_line(&mut line)
            .map_err(|e| format!("read status: {e}"))?;
        let status = line.split_whitespace().nth(1).unwrap_or("").to_string();
        let mut length: Option<usize> = None;
        let mut chunked = false;
        let mut close = false;
        loop {
            line.clear();
            let n = stream
                .read_line(&mut line)
                .map_err(|e| format!("read header: {e}"))?;
            if n == 0 {
                return Err("connection closed in headers".into());
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let lower = l.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                length = v.trim().parse().ok();
            } else if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
                chunked = true;
            } else if lower.starts_with("connection:") && lower.contains("close") {
                close = true;
            }
        }
        body.clear();
        if chunked {
            loop {
                line.clear();
                stream
                    .read_line(&mut line)
                    .map_err(|e| format!("read chunk: {e}"))?;
                let size = usize::from_str_radix(line.trim(), 16)
                    .map_err(|_| format!("bad chunk size {line:?}"))?;
                let start = body.len();
                body.resize(start + size + 2, 0);
                stream
                    .read_exact(&mut body[start..])
                    .map_err(|e| format!("read chunk body: {e}"))?;
                body.truncate(start + size);
                if size == 0 {
                    break;
                }
            }
        } else {
            let n = length.ok_or("no content-length")?;
            body.resize(n, 0);
            stream
                .read_exact(body)
                .map_err(|e| format!("read body: {e}"))?;
        }
        if close {
            self.stream = None;
        }
        if status != "200" {
            return Err(format!("status {status} for {path}"));
        }
        if body.is_empty() {
            return Err(format!("empty body for {path}"));
        }
        Ok(())
    }
}

struct Totals {
    requests: AtomicU64,
    errors: AtomicU64,
    stop: AtomicBool,
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

fn main() -> ExitCode {
    let args = parse_args();
    let mut exporter = match start_exporter(&args) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("vram-soak: {e}");
            return ExitCode::FAILURE;
        }
    };
    let pid = exporter.child.id();
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

    // Wait for NVML and the 8 GPUs before loading it.
    let mut probe = Client {
        addr: exporter.addr.clone(),
        stream: None,
    };
    let mut body = Vec::new();
    let ready_deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if probe.get("/metrics", &mut body).is_ok() {
            let text = String::from_utf8_lossy(&body);
            if text.contains("vram_nvml_up 1") && text.matches("vram_total_bytes{").count() >= 8 {
                break;
            }
        }
        if Instant::now() > ready_deadline {
            eprintln!(
                "vram-soak: the exporter never reported 8 GPUs with NVML up; last /metrics:\n{}\nlog:\n{}",
                String::from_utf8_lossy(&body),
                exporter.log_tail.lock().unwrap().join("\n")
            );
            let _ = exporter.child.kill();
            return ExitCode::FAILURE;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(probe);
    let rss_start = rss(pid).unwrap_or(0.0);

    let totals = Arc::new(Totals {
        requests: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        stop: AtomicBool::new(false),
    });
    let first_errors: Arc<Mutex<Vec<String>>> = Arc::default();
    let started = Instant::now();
    let mut workers = Vec::new();
    for w in 0..args.concurrency {
        let totals = totals.clone();
        let first_errors = first_errors.clone();
        let addr = exporter.addr.clone();
        let limit = args.requests;
        workers.push(std::thread::spawn(move || {
            let mut client = Client { addr, stream: None };
            let mut body = Vec::with_capacity(64 << 10);
            let mut latencies: [Vec<u32>; 2] = [Vec::new(), Vec::new()];
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
                let result = client.get(PATHS[which], &mut body);
                let micros = t.elapsed().as_micros().min(u32::MAX as u128) as u32;
                match result {
                    Ok(()) => latencies[which].push(micros),
                    Err(e) => {
                        totals.errors.fetch_add(1, Ordering::Relaxed);
                        let mut first = first_errors.lock().unwrap();
                        if first.len() < 10 {
                            first.push(e);
                        }
                    }
                }
            }
            latencies
        }));
    }

    // The monitor: baseline memory at 1,000 requests, progress, the stop condition.
    let mut rss_baseline = None;
    let mut rss_max = rss_start;
    let mut last_report = Instant::now();
    let mut alive = true;
    loop {
        std::thread::sleep(Duration::from_millis(20));
        let done = totals.requests.load(Ordering::Relaxed);
        let now_rss = rss(pid);
        if let Some(r) = now_rss {
            rss_max = rss_max.max(r);
        }
        if rss_baseline.is_none() && done >= BASELINE_AT {
            rss_baseline = now_rss;
        }
        if let Ok(Some(status)) = exporter.child.try_wait() {
            eprintln!("vram-soak: the exporter exited: {status}");
            alive = false;
            totals.stop.store(true, Ordering::Relaxed);
            break;
        }
        if last_report.elapsed() >= Duration::from_secs(60) {
            last_report = Instant::now();
            println!(
                "  {:>4} s: {done} requests, {} errors, RSS {:.2} MiB",
                started.elapsed().as_secs(),
                totals.errors.load(Ordering::Relaxed),
                now_rss.unwrap_or(0.0) / MIB
            );
        }
        let by_time = args.duration.is_some_and(|d| started.elapsed() >= d);
        let by_count = args.requests.is_some_and(|n| done >= n);
        if by_time || by_count {
            totals.stop.store(true, Ordering::Relaxed);
            break;
        }
    }
    let mut latencies: [Vec<u32>; 2] = [Vec::new(), Vec::new()];
    for w in workers {
        if let Ok(l) = w.join() {
            for (all, part) in latencies.iter_mut().zip(l) {
                all.extend(part);
            }
        }
    }
    let elapsed = started.elapsed();
    // Let allocator caches settle the same way for both readings: the baseline was taken under
    // load, so the end is read right after the load stops.
    let rss_end = rss(pid).unwrap_or(0.0);
    let requests = totals.requests.load(Ordering::Relaxed);
    let errors = totals.errors.load(Ordering::Relaxed);

    println!("vram-soak results");
    println!(
        "  duration        {:.1} s, {} concurrent scrapers",
        elapsed.as_secs_f64(),
        args.concurrency
    );
    println!(
        "  requests        {requests} ({:.0}/s)",
        requests as f64 / elapsed.as_secs_f64()
    );
    println!("  errors          {errors}");
    let mut all: Vec<u32> = Vec::with_capacity(latencies[0].len() + latencies[1].len());
    for (path, l) in PATHS.iter().zip(latencies.iter_mut()) {
        l.sort_unstable();
        all.extend_from_slice(l);
        println!(
            "  {path:<15} {} ok, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            l.len(),
            percentile(l, 0.50),
            percentile(l, 0.99),
            percentile(l, 1.0)
        );
    }
    all.sort_unstable();
    println!(
        "  all             p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        percentile(&all, 0.50),
        percentile(&all, 0.99),
        percentile(&all, 1.0)
    );
    let baseline = rss_baseline.unwrap_or(rss_start);
    let growth = rss_end - baseline;
    println!(
        "  RSS             start {:.2} MiB, after {BASELINE_AT} scrapes {:.2} MiB, end {:.2} MiB, max {:.2} MiB, growth {:+.3} MiB",
        rss_start / MIB,
        baseline / MIB,
        rss_end / MIB,
        rss_max / MIB,
        growth / MIB
    );
    let panics = exporter.panics.load(Ordering::Relaxed);
    println!("  exporter panics {panics}");

    let mut failed = false;
    if errors > 0 {
        failed = true;
        eprintln!("vram-soak: FAIL: {errors} errors; first ones:");
        for e in first_errors.lock().unwrap().iter() {
            eprintln!("  {e}");
        }
    }
    if panics > 0 || !alive {
        failed = true;
        eprintln!(
            "vram-soak: FAIL: the exporter panicked or died; its log ends:\n{}",
            exporter.log_tail.lock().unwrap().join("\n")
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

    // Graceful stop: SIGTERM, then a bounded wait.
    if alive {
        // SAFETY: signalling our own child by pid.
        unsafe {
            libc::kill(pid as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            match exporter.child.try_wait() {
                Ok(Some(status)) => {
                    if !status.success() {
                        failed = true;
                        eprintln!("vram-soak: FAIL: the exporter exited with {status} on SIGTERM");
                    }
                    break;
                }
                _ if Instant::now() > deadline => {
                    failed = true;
                    eprintln!("vram-soak: FAIL: the exporter did not stop on SIGTERM");
                    let _ = exporter.child.kill();
                    let _ = exporter.child.wait();
                    break;
                }
                _ => std::thread::sleep(Duration::from_millis(50)),
            }
        }
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
    fn durations_parse() {
        assert_eq!(parse_duration("10m"), Some(Duration::from_secs(600)));
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_duration("10"), None);
        assert_eq!(parse_duration("m"), None);
    }

    #[test]
    fn percentiles_pick_the_rank() {
        let v: Vec<u32> = (1..=100).map(|x| x * 1000).collect();
        assert_eq!(percentile(&v, 0.5), 51.0);
        assert_eq!(percentile(&v, 0.99), 99.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
    }

    #[test]
    fn the_scenario_ships() {
        assert!(default_scenario().is_file());
    }
}
