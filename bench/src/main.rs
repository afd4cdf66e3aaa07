//! `bench/compare`: issue 7's side-by-side benchmark of vram-exporter and nvitop-exporter on the
//! same nvml-sim node, plus the exporter alone on generated nodes of growing size.
//!
//! Run it through the `bench/compare` script, which builds the release binaries and prepares the
//! venv first. Every figure printed comes from this run: medians of repeated rounds for latency,
//! /proc readings for memory and CPU. Nothing here asserts a timing; the process fails only when a
//! measurement could not be taken (an exporter did not start, a scrape failed, metrics missing).

mod http;
mod procfs;
mod report;
mod scenarios;

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use scenarios::Shape;

/// How long each figure is measured.
#[derive(Debug, Clone)]
pub struct Plan {
    pub short: bool,
    pub warmup: Duration,
    pub idle: Duration,
    pub latency_rounds: usize,
    pub latency_round: Duration,
    pub latency_round_max: u64,
    /// Scrapes (in all) after which "RSS after scrapes" is read.
    pub soak_scrapes: u64,
    /// Scrapers that send the scrapes still missing after the latency rounds.
    pub soak_concurrency: usize,
    pub soak_max_time: Duration,
    pub scaling: Vec<Shape>,
    pub scaling_warmup: Duration,
    pub scaling_idle: Duration,
    pub scaling_latency: Duration,
}

impl Plan {
    fn new(short: bool) -> Self {
        let grid: Vec<Shape> = [1u32, 8, 16]
            .iter()
            .flat_map(|&g| [16u32, 64, 256].map(|p| Shape::plain(g, p)))
            .collect();
        let mig = Shape {
            gpus: 8,
            processes: 0,
            mig_per_gpu: 7,
            processes_per_mig: 4,
        };
        if short {
            Plan {
                short,
                warmup: Duration::from_secs(3),
                idle: Duration::from_secs(5),
                latency_rounds: 1,
                latency_round: Duration::from_secs(1),
                latency_round_max: 2_000,
                soak_scrapes: 1_000,
                soak_concurrency: 4,
                soak_max_time: Duration::from_secs(8),
                scaling: vec![Shape::plain(1, 16), Shape::plain(16, 256), mig],
                scaling_warmup: Duration::from_secs(2),
                scaling_idle: Duration::from_secs(3),
                scaling_latency: Duration::from_millis(500),
            }
        } else {
            let mut scaling = grid;
            scaling.push(mig);
            Plan {
                short,
                warmup: Duration::from_secs(10),
                idle: Duration::from_secs(60),
                latency_rounds: 3,
                latency_round: Duration::from_secs(3),
                latency_round_max: 20_000,
                soak_scrapes: 10_000,
                soak_concurrency: 4,
                soak_max_time: Duration::from_secs(300),
                scaling,
                scaling_warmup: Duration::from_secs(4),
                scaling_idle: Duration::from_secs(10),
                scaling_latency: Duration::from_secs(2),
            }
        }
    }
}

struct Opts {
    short: bool,
    venv: PathBuf,
    skip_compare: bool,
    skip_scaling: bool,
    skip_criterion: bool,
    only: Vec<String>,
}

const USAGE: &str = "usage: compare --probe ADDR PATH   (p50 / p99 of 2,000 requests to a running server)
       compare [--short] --venv DIR [--skip-compare] [--skip-scaling] [--skip-criterion] [--scenario NAME]...
  Run through bench/compare, which builds the binaries and prepares DIR (a venv with nvitop-exporter).
  Without --short and with nothing skipped, the report is written to BENCHMARKS.md; otherwise to
  bench/out/BENCHMARKS.short.md (--short) or bench/out/BENCHMARKS.partial.md.
  --scenario NAME: compare only on this shipped scenario (large-node, single-gpu; repeatable).";

fn parse_args() -> Result<Opts, String> {
    let mut opts = Opts {
        short: false,
        venv: PathBuf::new(),
        skip_compare: false,
        skip_scaling: false,
        skip_criterion: false,
        only: Vec::new(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--short" => opts.short = true,
            "--venv" => opts.venv = PathBuf::from(args.next().ok_or("--venv needs a directory")?),
            "--skip-compare" => opts.skip_compare = true,
            "--skip-scaling" => opts.skip_scaling = true,
            "--skip-criterion" => opts.skip_criterion = true,
            "--scenario" => opts
                .only
                .push(args.next().ok_or("--scenario needs a name")?),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    if !opts.skip_compare && opts.venv.as_os_str().is_empty() {
        return Err(format!("--venv is required\n{USAGE}"));
    }
    Ok(opts)
}

/// Where the built binaries and the output folder are.
pub struct Paths {
    pub exporter: PathBuf,
    /// The NVML-client baseline (examples/nvml-baseline.rs): the exporter's poll, nothing else.
    pub baseline: PathBuf,
    pub sim_library: PathBuf,
    pub nvitop: PathBuf,
    pub out: PathBuf,
    pub scenarios: PathBuf,
}

fn main() {
    // `compare --probe ADDR PATH`: p50 / p99 of 2,000 sequential requests to a running server.
    let args: Vec<String> = std::env::args().collect();
    if args.len() == 4 && args[1] == "--probe" {
        let addr: SocketAddr = args[2].parse().unwrap_or_else(|e| {
            eprintln!("--probe: bad address {:?}: {e}", args[2]);
            std::process::exit(2);
        });
        let mut r = http::load(addr, &args[3], 1, 2_000, Duration::from_secs(30));
        r.latencies_us.sort_unstable();
        println!(
            "{} {}: p50 {} µs, p99 {} µs, {} ok, {} failed",
            addr,
            args[3],
            percentile(&r.latencies_us, 0.5),
            percentile(&r.latencies_us, 0.99),
            r.latencies_us.len(),
            r.errors
        );
        return;
    }
    let opts = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(&opts) {
        eprintln!("bench/compare: {e}");
        std::process::exit(1);
    }
}

fn run(opts: &Opts) -> Result<(), String> {
    let started = Instant::now();
    let exe = std::env::current_exe().map_err(|e| format!("cannot find own executable: {e}"))?;
    let bin_dir = exe
        .parent()
        .ok_or("executable has no directory")?
        .to_path_buf();
    let out = PathBuf::from("bench/out");
    std::fs::create_dir_all(out.join("logs"))
        .map_err(|e| format!("cannot create bench/out: {e}"))?;
    let paths = Paths {
        exporter: abs(&bin_dir.join("vram-exporter"))?,
        baseline: abs(&bin_dir.join("examples/nvml-baseline"))?,
        sim_library: abs(&bin_dir.join("libnvml_sim.so"))?,
        nvitop: opts.venv.join("bin/nvitop-exporter"),
        out: abs(&out)?,
        scenarios: abs(Path::new("nvml-sim/scenarios"))?,
    };
    let plan = Plan::new(opts.short);
    let machine = procfs::machine();
    let mut rep = report::Report {
        date: procfs::utc_date(),
        machine,
        load_before: procfs::load_average(),
        load_after: String::new(),
        short: opts.short,
        plan: plan.clone(),
        versions: versions(&paths, opts),
        comparisons: Vec::new(),
        scaling: Vec::new(),
        criterion: None,
        elapsed: Duration::ZERO,
    };

    if !opts.skip_compare {
        if !paths.nvitop.is_file() {
            return Err(format!(
                "{} not found; run through bench/compare, which installs nvitop-exporter into the venv",
                paths.nvitop.display()
            ));
        }
        for name in ["large-node", "single-gpu"] {
            if !opts.only.is_empty() && !opts.only.iter().any(|o| o == name) {
                continue;
            }
            let scenario = paths.scenarios.join(format!("{name}.toml"));
            eprintln!("== {name}: vram-exporter and nvitop-exporter side by side");
            let c = compare(&paths, &plan, name, &scenario)?;
            eprintln!("{}", report::comparison_table(&c));
            rep.comparisons.push(c);
        }
    }
    if !opts.skip_scaling {
        let dir = paths.out.join("scenarios");
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        for shape in &plan.scaling {
            let file = dir.join(format!("{}.toml", shape.label()));
            std::fs::write(&file, shape.toml()).map_err(|e| e.to_string())?;
            eprintln!("== scaling: {}", shape.label());
            let row = scaling_row(&paths, &plan, *shape, &file)?;
            rep.scaling.push(row);
        }
    }
    if !opts.skip_criterion && !opts.short {
        rep.criterion = Some(run_criterion(&paths)?);
    }
    rep.load_after = procfs::load_average();
    rep.elapsed = started.elapsed();

    let text = rep.markdown();
    println!("{text}");
    let complete = !opts.short
        && !opts.skip_compare
        && !opts.skip_scaling
        && !opts.skip_criterion
        && opts.only.is_empty();
    let target = if complete {
        PathBuf::from("BENCHMARKS.md")
    } else if opts.short {
        out.join("BENCHMARKS.short.md")
    } else {
        out.join("BENCHMARKS.partial.md")
    };
    std::fs::write(&target, text).map_err(|e| format!("cannot write {}: {e}", target.display()))?;
    eprintln!(
        "wrote {} in {:.0} s",
        target.display(),
        rep.elapsed.as_secs_f64()
    );
    Ok(())
}

fn abs(p: &Path) -> Result<PathBuf, String> {
    std::fs::canonicalize(p).map_err(|e| format!("{}: {e}", p.display()))
}

fn versions(paths: &Paths, opts: &Opts) -> Vec<(String, String)> {
    let first_line = |cmd: &mut Command| -> String {
        cmd.output()
            .ok()
            .map(|o| {
                let text = if o.stdout.is_empty() {
                    o.stderr
                } else {
                    o.stdout
                };
                String::from_utf8_lossy(&text)
                    .lines()
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_string()
            })
            .unwrap_or_else(|| "?".into())
    };
    let mut v = vec![(
        "vram-exporter".to_string(),
        first_line(Command::new(&paths.exporter).arg("--version")),
    )];
    if !opts.skip_compare {
        v.push((
            "nvitop-exporter".into(),
            first_line(Command::new(&paths.nvitop).arg("--version")),
        ));
        v.push((
            "python".into(),
            first_line(Command::new(opts.venv.join("bin/python")).arg("--version")),
        ));
    }
    v.push((
        "rustc".into(),
        first_line(Command::new("rustc").arg("--version")),
    ));
    v
}

/// A process this run started; stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Target {
    pub name: &'static str,
    pub addr: SocketAddr,
    pub child: Child,
    log: PathBuf,
}

impl Target {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            procfs::signal(self.pid(), libc::SIGCONT);
            procfs::signal(self.pid(), libc::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

fn free_port() -> Result<u16, String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("no free loopback port: {e}"))?;
    Ok(l.local_addr().map_err(|e| e.to_string())?.port())
}

fn spawn(
    name: &'static str,
    mut cmd: Command,
    addr: SocketAddr,
    log: PathBuf,
) -> Result<Target, String> {
    let file = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
    let err = file.try_clone().map_err(|e| e.to_string())?;
    cmd.stdin(Stdio::null()).stdout(file).stderr(err);
    // The exporters must not outlive this run, even if it is killed.
    unsafe {
        use std::os::unix::process::CommandExt as _;
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
    let child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {name}: {e}"))?;
    Ok(Target {
        name,
        addr,
        child,
        log,
    })
}

fn start_vram(paths: &Paths, scenario: &Path, tag: &str) -> Result<Target, String> {
    let port = free_port()?;
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut cmd = Command::new(&paths.exporter);
    cmd.arg("--simulate")
        .arg(scenario)
        .arg("--listen")
        .arg(addr.to_string())
        .env("VRAM_EXPORTER__POLL__INTERVAL", "1s");
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy().to_string();
        if k.starts_with("VRAM_EXPORTER_") && k != "VRAM_EXPORTER__POLL__INTERVAL" {
            cmd.env_remove(&k);
        }
    }
    let t = spawn(
        "vram-exporter",
        cmd,
        addr,
        paths.out.join(format!("logs/vram-exporter-{tag}.log")),
    )?;
    wait_ready(t, "/-/ready", "")
}

fn start_nvitop(paths: &Paths, scenario: &Path, tag: &str) -> Result<Target, String> {
    // nvidia-ml-py dlopens the bare name libnvidia-ml.so.1: give it a directory holding that name.
    let lib_dir = paths.out.join("nvml");
    std::fs::create_dir_all(&lib_dir).map_err(|e| e.to_string())?;
    let link = lib_dir.join("libnvidia-ml.so.1");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&paths.sim_library, &link)
        .map_err(|e| format!("{}: {e}", link.display()))?;
    let port = free_port()?;
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut cmd = Command::new(&paths.nvitop);
    cmd.args([
        "--hostname",
        "bench",
        "--bind-address",
        "127.0.0.1",
        "--interval",
        "1",
        "--port",
    ])
    .arg(port.to_string())
    .env("LD_LIBRARY_PATH", &lib_dir)
    .env("NVML_SIM_SCENARIO", scenario)
    .env("PYTHONUNBUFFERED", "1");
    let t = spawn(
        "nvitop-exporter",
        cmd,
        addr,
        paths.out.join(format!("logs/nvitop-exporter-{tag}.log")),
    )?;
    // Ready once the first collection published GPU memory.
    wait_ready(t, "/metrics", "gpu_memory_used_MiB{")
}

/// The NVML-client baseline on the same scenario and interval; it serves nothing (addr unused).
fn start_baseline(paths: &Paths, scenario: &Path, tag: &str) -> Result<Target, String> {
    let mut cmd = Command::new(&paths.baseline);
    cmd.args(["--interval", "1s", "--nvml-library"])
        .arg(&paths.sim_library)
        .env("NVML_SIM_SCENARIO", scenario);
    let log = paths.out.join(format!("logs/nvml-baseline-{tag}.log"));
    let t = spawn("nvml-baseline", cmd, ([127, 0, 0, 1], 0).into(), log)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(&t.log)
        .unwrap_or_default()
        .contains("polling")
    {
        if Instant::now() > deadline {
            return Err(format!("nvml-baseline did not start:\n{}", t.log_tail()));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(t)
}

fn wait_ready(mut t: Target, path: &str, must_contain: &str) -> Result<Target, String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut client = http::Client::new(t.addr, path);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = t.child.try_wait() {
            return Err(format!(
                "{} exited ({status}) before it was ready:\n{}",
                t.name,
                t.log_tail()
            ));
        }
        if let Ok(r) = client.get() {
            if r.status == 200 && String::from_utf8_lossy(&r.body).contains(must_contain) {
                return Ok(t);
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!(
        "{} was not ready within 60 s:\n{}",
        t.name,
        t.log_tail()
    ))
}

/// Latency figures: medians over rounds of each round's percentiles.
#[derive(Debug, Clone, Default)]
pub struct Latency {
    pub concurrency: usize,
    pub p50_us: f64,
    pub p99_us: f64,
    pub per_second: f64,
    pub requests: u64,
    pub errors: u64,
}

/// The nearest-rank percentile of a sorted slice.
fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn latency(
    addr: SocketAddr,
    concurrency: usize,
    rounds: usize,
    round: Duration,
    max: u64,
) -> Latency {
    let (mut p50, mut p99, mut rate) = (Vec::new(), Vec::new(), Vec::new());
    let mut out = Latency {
        concurrency,
        ..Latency::default()
    };
    for _ in 0..rounds {
        let mut r = http::load(addr, "/metrics", concurrency, max, round);
        r.latencies_us.sort_unstable();
        p50.push(percentile(&r.latencies_us, 0.50) as f64);
        p99.push(percentile(&r.latencies_us, 0.99) as f64);
        rate.push(r.latencies_us.len() as f64 / r.elapsed.as_secs_f64().max(1e-9));
        out.requests += r.requests();
        out.errors += r.errors;
    }
    out.p50_us = median(&mut p50);
    out.p99_us = median(&mut p99);
    out.per_second = median(&mut rate);
    out
}

/// One exporter's figures on one scenario.
#[derive(Debug, Clone, Default)]
pub struct Measured {
    pub mem_warm: procfs::Memory,
    pub mem_after: procfs::Memory,
    pub scrapes: u64,
    pub cpu_per_min: f64,
    /// The same from schedstat (ns resolution).
    pub cpu_per_min_precise: f64,
    /// vram-exporter only: `/-/healthy` with 1 scraper, the HTTP round trip without a body.
    pub floor: Option<Latency>,
    pub lat1: Latency,
    pub lat32: Latency,
    pub bytes: usize,
    pub series: usize,
    pub breakdown: Vec<(String, u64)>,
}

/// One scenario, both exporters.
#[derive(Debug, Clone)]
pub struct Comparison {
    pub scenario: String,
    pub vram: Measured,
    pub nvitop: Measured,
    pub idle: Duration,
    pub soak_target: u64,
    /// The NVML-client baseline's memory on the same scenario, after the warm-up.
    pub baseline: procfs::Memory,
}

/// Counts samples (series) in a text exposition: every non-empty line that is not a comment.
fn count_series(body: &[u8]) -> usize {
    String::from_utf8_lossy(body)
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .count()
}

fn compare(paths: &Paths, plan: &Plan, name: &str, scenario: &Path) -> Result<Comparison, String> {
    let vram = start_vram(paths, scenario, name)?;
    let nvitop = start_nvitop(paths, scenario, name)?;
    let baseline = start_baseline(paths, scenario, name)?;
    eprintln!("   both ready; warming up {} s", plan.warmup.as_secs());
    std::thread::sleep(plan.warmup);

    let gone = |t: &Target| format!("{} (pid {}) vanished:\n{}", t.name, t.pid(), t.log_tail());
    let mut m = [Measured::default(), Measured::default()];
    for (i, t) in [&vram, &nvitop].iter().enumerate() {
        m[i].mem_warm =
            procfs::steady_memory(t.pid(), 5, Duration::from_millis(200)).ok_or_else(|| gone(t))?;
    }

    // CPU of polling alone: both idle (no scrapes) over the same window; each process's own time.
    eprintln!("   CPU with no scrapes for {} s", plan.idle.as_secs());
    let read = |t: &Target| -> Result<(f64, f64), String> {
        Ok((
            procfs::cpu_seconds(t.pid()).ok_or_else(|| gone(t))?,
            procfs::cpu_seconds_precise(t.pid()).ok_or_else(|| gone(t))?,
        ))
    };
    let before = [read(&vram)?, read(&nvitop)?];
    let t0 = Instant::now();
    std::thread::sleep(plan.idle);
    let window = t0.elapsed().as_secs_f64();
    for (i, t) in [&vram, &nvitop].iter().enumerate() {
        let after = read(t)?;
        m[i].cpu_per_min = (after.0 - before[i].0) / window * 60.0;
        m[i].cpu_per_min_precise = (after.1 - before[i].1) / window * 60.0;
    }

    // Scrape load, one exporter at a time: the other is paused (SIGSTOP) so it does not compete.
    for (i, (t, other)) in [(&vram, &nvitop), (&nvitop, &vram)].into_iter().enumerate() {
        procfs::signal(other.pid(), libc::SIGSTOP);
        let result = load_phase(plan, t, &mut m[i]);
        procfs::signal(other.pid(), libc::SIGCONT);
        result?;
        m[i].breakdown = procfs::breakdown(t.pid(), &paths.sim_library);
    }
    let base = procfs::steady_memory(baseline.pid(), 5, Duration::from_millis(200))
        .ok_or_else(|| gone(&baseline))?;
    let [vm, nm] = m;
    if vm.lat1.errors + vm.lat32.errors > 0 {
        return Err(format!(
            "vram-exporter answered {} scrapes with an error on {name}:\n{}",
            vm.lat1.errors + vm.lat32.errors,
            vram.log_tail()
        ));
    }
    Ok(Comparison {
        scenario: name.to_string(),
        vram: vm,
        nvitop: nm,
        idle: plan.idle,
        soak_target: plan.soak_scrapes,
        baseline: base,
    })
}

fn load_phase(plan: &Plan, t: &Target, m: &mut Measured) -> Result<(), String> {
    eprintln!("   {}: exposition, latency with 1 and 32 scrapers", t.name);
    let r = http::Client::new(t.addr, "/metrics")
        .get()
        .map_err(|e| format!("{}: scrape failed: {e}", t.name))?;
    if r.status != 200 {
        return Err(format!("{}: /metrics answered {}", t.name, r.status));
    }
    let must = if t.name == "vram-exporter" {
        "vram_allocated_bytes{"
    } else {
        "gpu_memory_used_MiB{"
    };
    if !String::from_utf8_lossy(&r.body).contains(must) {
        return Err(format!("{}: /metrics lacks {must}", t.name));
    }
    m.bytes = r.body.len();
    m.series = count_series(&r.body);
    if t.name == "vram-exporter" {
        // The HTTP round trip alone (no body, no self-metrics): what no scrape can go below.
        let mut client = http::Client::new(t.addr, "/-/healthy");
        let mut body = Vec::new();
        let mut samples: Vec<u64> = (0..plan.latency_round_max.min(2_000))
            .filter_map(|_| {
                let t0 = Instant::now();
                matches!(client.get_into(&mut body), Ok(200))
                    .then(|| t0.elapsed().as_micros() as u64)
            })
            .collect();
        samples.sort_unstable();
        m.floor = Some(Latency {
            concurrency: 1,
            p50_us: percentile(&samples, 0.50) as f64,
            p99_us: percentile(&samples, 0.99) as f64,
            requests: samples.len() as u64,
            ..Latency::default()
        });
    }
    m.lat1 = latency(
        t.addr,
        1,
        plan.latency_rounds,
        plan.latency_round,
        plan.latency_round_max,
    );
    m.lat32 = latency(
        t.addr,
        32,
        plan.latency_rounds,
        plan.latency_round,
        plan.latency_round_max,
    );
    m.scrapes = 1 + m.lat1.requests + m.lat32.requests;
    if m.scrapes < plan.soak_scrapes {
        eprintln!(
            "   {}: {} more scrapes ({} scrapers)",
            t.name,
            plan.soak_scrapes - m.scrapes,
            plan.soak_concurrency
        );
        let r = http::load(
            t.addr,
            "/metrics",
            plan.soak_concurrency,
            plan.soak_scrapes - m.scrapes,
            plan.soak_max_time,
        );
        m.scrapes += r.requests();
    }
    // Let a poll or two pass, then read the steady value.
    std::thread::sleep(Duration::from_secs(2));
    m.mem_after = procfs::steady_memory(t.pid(), 5, Duration::from_millis(200))
        .ok_or_else(|| format!("{} vanished", t.name))?;
    Ok(())
}

/// The exporter alone on one generated node.
#[derive(Debug, Clone)]
pub struct ScalingRow {
    pub shape: Shape,
    pub series: usize,
    pub bytes: usize,
    pub poll_ms: f64,
    pub polls: f64,
    pub cpu_per_min: f64,
    pub scrape_p50_us: f64,
    pub rss_kib: u64,
    pub anon_kib: u64,
    pub gpus_published: usize,
}

/// `vram_exporter_poll_duration_seconds` (sum, count) from an exposition.
fn poll_histogram(body: &[u8]) -> Option<(f64, f64)> {
    let text = String::from_utf8_lossy(body);
    let value = |name: &str| -> Option<f64> {
        text.lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    };
    Some((
        value("vram_exporter_poll_duration_seconds_sum")?,
        value("vram_exporter_poll_duration_seconds_count")?,
    ))
}

fn scaling_row(
    paths: &Paths,
    plan: &Plan,
    shape: Shape,
    scenario: &Path,
) -> Result<ScalingRow, String> {
    let t = start_vram(paths, scenario, &shape.label())?;
    std::thread::sleep(plan.scaling_warmup);
    let mut client = http::Client::new(t.addr, "/metrics");
    let scrape = |c: &mut http::Client| -> Result<Vec<u8>, String> {
        let r = c.get().map_err(|e| format!("scrape failed: {e}"))?;
        if r.status != 200 {
            return Err(format!("/metrics answered {}", r.status));
        }
        Ok(r.body)
    };
    let first = scrape(&mut client)?;
    let (sum0, count0) = poll_histogram(&first).ok_or("no poll histogram in /metrics")?;
    let cpu0 = procfs::cpu_seconds_precise(t.pid()).ok_or("exporter vanished")?;
    let t0 = Instant::now();
    std::thread::sleep(plan.scaling_idle);
    let cpu1 = procfs::cpu_seconds_precise(t.pid()).ok_or("exporter vanished")?;
    let window = t0.elapsed().as_secs_f64();
    let body = scrape(&mut client)?;
    let (sum1, count1) = poll_histogram(&body).ok_or("no poll histogram in /metrics")?;
    let polls = count1 - count0;
    let gpus_published = String::from_utf8_lossy(&body)
        .lines()
        .filter(|l| l.starts_with("vram_total_bytes{"))
        .count();
    if gpus_published != shape.gpus as usize {
        return Err(format!(
            "{}: /metrics shows {gpus_published} GPUs, the scenario has {}",
            shape.label(),
            shape.gpus
        ));
    }
    let lat = latency(t.addr, 1, 1, plan.scaling_latency, 100_000);
    if lat.errors > 0 {
        return Err(format!("{}: {} scrapes failed", shape.label(), lat.errors));
    }
    let mem =
        procfs::steady_memory(t.pid(), 3, Duration::from_millis(200)).ok_or("exporter vanished")?;
    Ok(ScalingRow {
        shape,
        series: count_series(&body),
        bytes: body.len(),
        poll_ms: if polls > 0.0 {
            (sum1 - sum0) / polls * 1000.0
        } else {
            f64::NAN
        },
        polls,
        cpu_per_min: (cpu1 - cpu0) / window * 60.0,
        scrape_p50_us: lat.p50_us,
        rss_kib: mem.rss_kib,
        anon_kib: mem.anon_kib,
        gpus_published,
    })
}

/// Runs the criterion scaling bench (`cargo bench --bench scaling`) and returns the table it wrote.
fn run_criterion(paths: &Paths) -> Result<String, String> {
    let table = paths.out.join("scaling-criterion.md");
    let _ = std::fs::remove_file(&table);
    eprintln!("== criterion: cargo bench --bench scaling");
    let status = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args([
            "bench",
            "--quiet",
            "-p",
            "vram-exporter",
            "--bench",
            "scaling",
        ])
        .env("VRAM_SCALING_TABLE", &table)
        // Criterion's progress goes to stderr; stdout carries only the report.
        .stdout(std::io::stderr())
        .status()
        .map_err(|e| format!("cannot run cargo bench: {e}"))?;
    if !status.success() {
        return Err(format!("cargo bench --bench scaling failed: {status}"));
    }
    std::fs::read_to_string(&table).map_err(|e| format!("{}: {e}", table.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 0.50), 50);
        assert_eq!(percentile(&v, 0.99), 99);
        assert_eq!(percentile(&[7], 0.99), 7);
        assert_eq!(percentile(&[], 0.5), 0);
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
    }

    #[test]
    fn series_and_poll_histogram_are_read_from_an_exposition() {
        let text = b"# HELP a x\n# TYPE a gauge\na{gpu=\"0\"} 1\na{gpu=\"1\"} 2\n\
            vram_exporter_poll_duration_seconds_sum 0.25\nvram_exporter_poll_duration_seconds_count 10\n";
        assert_eq!(count_series(text), 4);
        assert_eq!(poll_histogram(text), Some((0.25, 10.0)));
        assert_eq!(poll_histogram(b"a 1\n"), None);
    }

    #[test]
    fn generated_scenarios_are_valid_nvml_sim_scenarios() {
        let plan = Plan::new(false);
        assert_eq!(plan.scaling.len(), 10);
        for shape in &plan.scaling {
            let mut notes = Vec::new();
            let s = nvml_sim::scenario::load_str(
                &shape.toml(),
                Path::new("generated.toml"),
                &|_| None,
                &mut notes,
            )
            .unwrap_or_else(|e| panic!("{}: {e:?}", shape.label()));
            assert!(notes.is_empty(), "{notes:?}");
            assert_eq!(s.devices.len(), shape.gpus as usize);
            let migs: usize = s.devices.iter().map(|d| d.migs.len()).sum();
            assert_eq!(migs, (shape.gpus * shape.mig_per_gpu) as usize);
        }
    }

    #[test]
    fn dates_are_civil() {
        let d = procfs::utc_date();
        assert_eq!(d.len(), 10);
        assert!(d.starts_with("20"));
    }
}
