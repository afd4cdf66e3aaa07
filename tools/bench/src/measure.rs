//! The side-by-side measurement on one scenario: memory when warm, CPU of polling alone, exposition
//! size, scrape latency with 1 and 32 scrapers (the other exporter paused), memory after scrapes.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use vram_testkit::http::{load, Client};
use vram_testkit::procfs;
use vram_testkit::stats::{median, percentile};

use crate::plan::Plan;
use crate::targets::{start_baseline, start_nvitop, start_vram, Paths, Target};

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

/// Scrape latency of `/metrics` with `concurrency` scrapers: `rounds` rounds of up to `round` each.
pub fn latency(
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
        let mut r = load(addr, "/metrics", concurrency, max, round);
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
    /// The NVML-client baseline's memory on the same scenario, after the warm-up.
    pub baseline: procfs::Memory,
}

/// Counts samples (series) in a text exposition: every non-empty line that is not a comment.
pub fn count_series(body: &[u8]) -> usize {
    String::from_utf8_lossy(body)
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .count()
}

pub fn compare(
    paths: &Paths,
    plan: &Plan,
    name: &str,
    scenario: &Path,
) -> Result<Comparison, String> {
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
        baseline: base,
    })
}

fn load_phase(plan: &Plan, t: &Target, m: &mut Measured) -> Result<(), String> {
    eprintln!("   {}: exposition, latency with 1 and 32 scrapers", t.name);
    let r = Client::new(t.addr)
        .get("/metrics")
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
        let mut client = Client::new(t.addr);
        let mut body = Vec::new();
        let mut samples: Vec<u64> = (0..plan.latency_round_max.min(2_000))
            .filter_map(|_| {
                let t0 = Instant::now();
                matches!(client.get_into("/-/healthy", &mut body), Ok(200))
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
        let r = load(
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
