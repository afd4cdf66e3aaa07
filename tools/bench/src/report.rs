//! The Markdown report: comparison tables with ratios and targets, the memory breakdown, the
//! scaling tables, the machine and the method. Every number in it comes from the run.

use std::fmt::Write as _;
use std::time::Duration;

use crate::machine::Machine;
use crate::measure::{Comparison, Latency, Measured};
use crate::plan::Plan;
use crate::scaling::ScalingRow;

pub struct Report {
    pub date: String,
    pub machine: Machine,
    pub load_before: String,
    pub load_after: String,
    pub short: bool,
    pub plan: Plan,
    pub versions: Vec<(String, String)>,
    pub comparisons: Vec<Comparison>,
    pub scaling: Vec<ScalingRow>,
    pub criterion: Option<String>,
    pub elapsed: Duration,
}

/// The targets on the 8-GPU node: steady RSS ≤ 10 MiB; against nvitop-exporter ≥ 10× less RSS,
/// ≥ 50× lower p50 scrape latency and ≥ 10× less CPU per minute of polling.
const RSS_MAX_MIB: f64 = 10.0;
const RSS_RATIO: f64 = 10.0;
const P50_RATIO: f64 = 50.0;
const CPU_RATIO: f64 = 10.0;

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn us(v: f64) -> String {
    if v >= 10_000.0 {
        format!("{:.1} ms", v / 1000.0)
    } else if v >= 1000.0 {
        format!("{:.2} ms", v / 1000.0)
    } else {
        format!("{v:.0} µs")
    }
}

fn cpu(v: f64) -> String {
    format!("{v:.3} s")
}

fn bytes(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    format!("{out} B")
}

/// nvitop / vram, "n/a" when the denominator is zero.
/// A ratio as printed, and its value when there is one.
type Ratio = (String, Option<f64>);

/// Writes one table row: figure, vram-exporter, nvitop-exporter, ratio, target.
type RowFn<'a> = dyn FnMut(&str, String, String, Ratio, String) + 'a;

fn ratio(nvitop: f64, vram: f64) -> Ratio {
    if vram > 0.0 && nvitop.is_finite() {
        let r = nvitop / vram;
        let text = if r >= 100.0 {
            format!("{r:.0}×")
        } else {
            format!("{r:.1}×")
        };
        (text, Some(r))
    } else {
        ("n/a".into(), None)
    }
}

fn verdict(r: Option<f64>, want: f64) -> String {
    match r {
        Some(r) if r >= want => format!("≥ {want:.0}×: met"),
        Some(_) => format!("≥ {want:.0}×: **missed**"),
        None => format!("≥ {want:.0}×: not measurable"),
    }
}

/// The side-by-side table of one scenario.
pub fn comparison_table(c: &Comparison) -> String {
    let (v, n) = (&c.vram, &c.nvitop);
    let mut t = String::new();
    let _ = writeln!(
        t,
        "| {} | vram-exporter | nvitop-exporter | nvitop / vram | target |",
        c.scenario
    );
    t.push_str("|---|---:|---:|---:|---|\n");
    let mut row = |name: &str, a: String, b: String, r: Ratio, target: String| {
        let _ = writeln!(t, "| {name} | {a} | {b} | {} | {target} |", r.0);
    };
    let lat_rows = |row: &mut RowFn, lv: &Latency, ln: &Latency| {
        let who = if lv.concurrency == 1 {
            "1 scraper".to_string()
        } else {
            format!("{} scrapers", lv.concurrency)
        };
        let r50 = ratio(ln.p50_us, lv.p50_us);
        let target = if lv.concurrency == 1 {
            verdict(r50.1, P50_RATIO)
        } else {
            String::new()
        };
        row(
            &format!("`/metrics` p50, {who}"),
            us(lv.p50_us),
            us(ln.p50_us),
            r50,
            target,
        );
        row(
            &format!("`/metrics` p99, {who}"),
            us(lv.p99_us),
            us(ln.p99_us),
            ratio(ln.p99_us, lv.p99_us),
            String::new(),
        );
        row(
            &format!("scrapes per second, {who}"),
            format!("{:.0}", lv.per_second),
            format!("{:.0}", ln.per_second),
            ratio(lv.per_second, ln.per_second),
            "(vram / nvitop)".into(),
        );
    };
    lat_rows(&mut row, &v.lat1, &n.lat1);
    if let Some(f) = &v.floor {
        row(
            "`/-/healthy` p50 / p99, 1 scraper (vram-exporter's HTTP floor: no body)",
            format!("{} / {}", us(f.p50_us), us(f.p99_us)),
            "—".into(),
            ("".into(), None),
            String::new(),
        );
    }
    lat_rows(&mut row, &v.lat32, &n.lat32);
    let rss_cap = if c.scenario == "large-node" {
        let ok = v.mem_warm.rss_kib as f64 / 1024.0 <= RSS_MAX_MIB
            && v.mem_after.rss_kib as f64 / 1024.0 <= RSS_MAX_MIB;
        format!(
            "; ≤ {RSS_MAX_MIB:.0} MiB: {}",
            if ok { "met" } else { "**missed**" }
        )
    } else {
        String::new()
    };
    let r = ratio(n.mem_warm.rss_kib as f64, v.mem_warm.rss_kib as f64);
    let target = format!("{}{rss_cap}", verdict(r.1, RSS_RATIO));
    row(
        "RSS (VmRSS) after warm-up",
        mib(v.mem_warm.rss_kib),
        mib(n.mem_warm.rss_kib),
        r,
        target,
    );
    let r = ratio(n.mem_after.rss_kib as f64, v.mem_after.rss_kib as f64);
    let target = format!("{}{rss_cap}", verdict(r.1, RSS_RATIO));
    row(
        &format!("RSS (VmRSS) after {} / {} scrapes", v.scrapes, n.scrapes),
        mib(v.mem_after.rss_kib),
        mib(n.mem_after.rss_kib),
        r,
        target,
    );
    let above = |a: u64, b: u64| format!("{:+.1} MiB", (a as f64 - b as f64) / 1024.0);
    row(
        "VmRSS above the NVML-client baseline (nvml-baseline, same poll): ours, after the scrapes",
        above(v.mem_after.rss_kib, c.baseline.rss_kib),
        "—".into(),
        ("".into(), None),
        format!("baseline {}", mib(c.baseline.rss_kib)),
    );
    row(
        "RssAnon above the NVML-client baseline: ours, after the scrapes",
        above(v.mem_after.anon_kib, c.baseline.anon_kib),
        "—".into(),
        ("".into(), None),
        format!("baseline {}", mib(c.baseline.anon_kib)),
    );
    row(
        "private memory (RssAnon) after warm-up",
        mib(v.mem_warm.anon_kib),
        mib(n.mem_warm.anon_kib),
        ratio(n.mem_warm.anon_kib as f64, v.mem_warm.anon_kib as f64),
        String::new(),
    );
    row(
        "private memory (RssAnon) after the scrapes",
        mib(v.mem_after.anon_kib),
        mib(n.mem_after.anon_kib),
        ratio(n.mem_after.anon_kib as f64, v.mem_after.anon_kib as f64),
        String::new(),
    );
    let r = ratio(n.cpu_per_min, v.cpu_per_min);
    let target = verdict(r.1, CPU_RATIO);
    row(
        &format!(
            "CPU per minute of polling, no scrapes: utime + stime ({} s window)",
            c.idle.as_secs()
        ),
        cpu(v.cpu_per_min),
        cpu(n.cpu_per_min),
        r,
        target,
    );
    let r = ratio(n.cpu_per_min_precise, v.cpu_per_min_precise);
    let target = verdict(r.1, CPU_RATIO);
    row(
        "CPU per minute of polling, no scrapes: schedstat (ns resolution, same window)",
        cpu(v.cpu_per_min_precise),
        cpu(n.cpu_per_min_precise),
        r,
        target,
    );
    row(
        "exposition size",
        bytes(v.bytes),
        bytes(n.bytes),
        ratio(n.bytes as f64, v.bytes as f64),
        String::new(),
    );
    row(
        "series (samples) in the exposition",
        v.series.to_string(),
        n.series.to_string(),
        ratio(n.series as f64, v.series as f64),
        String::new(),
    );
    let errors = |m: &Measured| m.lat1.errors + m.lat32.errors;
    let _ = writeln!(
        t,
        "| failed scrapes (latency rounds) | {} | {} | | |",
        errors(v),
        errors(n)
    );
    t
}

fn breakdown_table(c: &Comparison) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "| resident pages ({}, after the scrapes) | vram-exporter | nvitop-exporter |",
        c.scenario
    );
    t.push_str("|---|---:|---:|\n");
    for ((name, a), (_, b)) in c.vram.breakdown.iter().zip(&c.nvitop.breakdown) {
        let _ = writeln!(t, "| {name} | {} | {} |", mib(*a), mib(*b));
    }
    let total = |m: &Measured| m.breakdown.iter().map(|(_, k)| k).sum::<u64>();
    let _ = writeln!(
        t,
        "| total | {} | {} |",
        mib(total(&c.vram)),
        mib(total(&c.nvitop))
    );
    t
}

/// File-backed pages both processes map alike: the C runtime and the NVML library.
fn common_floor_kib(m: &Measured) -> u64 {
    m.breakdown
        .iter()
        .filter(|(k, _)| k.contains("NVML library") || k.contains("C runtime"))
        .map(|(_, v)| v)
        .sum()
}

fn scaling_table(rows: &[ScalingRow]) -> String {
    let mut t = String::new();
    t.push_str(
        "| node | GPUs | processes (all) | MIG devices | GPUs published | series | exposition | poll, mean (NVML sim included) | CPU per minute, no scrapes (schedstat) | `/metrics` p50, 1 scraper | RSS | RssAnon |\n",
    );
    t.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for r in rows {
        let s = r.shape;
        let _ = writeln!(
            t,
            "| {} | {} | {} | {} | {} | {} | {} | {:.2} ms ({:.0} polls) | {} | {} | {} | {} |",
            s.label(),
            s.gpus,
            s.total_processes(),
            s.gpus * s.mig_per_gpu,
            r.gpus_published,
            r.series,
            bytes(r.bytes),
            r.poll_ms,
            r.polls,
            cpu(r.cpu_per_min),
            us(r.scrape_p50_us),
            mib(r.rss_kib),
            mib(r.anon_kib),
        );
    }
    t
}

impl Report {
    /// The targets against this run's figures, with the reason where one is missed.
    fn summary(&self) -> String {
        let mut t = String::new();
        if self.comparisons.is_empty() {
            return t;
        }
        t.push_str("## Summary against the targets\n\n");
        for c in &self.comparisons {
            let (v, n) = (&c.vram, &c.nvitop);
            let mark = |ok: bool| if ok { "met" } else { "**missed**" };
            let r = |a: f64, b: f64| ratio(a, b).1.unwrap_or(0.0);
            let _ = writeln!(t, "**{}**", c.scenario);
            let warm = v.mem_warm.rss_kib as f64 / 1024.0;
            let after = v.mem_after.rss_kib as f64 / 1024.0;
            if c.scenario == "large-node" {
                let _ = writeln!(
                    t,
                    "- steady RSS ≤ {RSS_MAX_MIB:.0} MiB: {warm:.1} MiB after warm-up ({}), {after:.1} MiB after {} scrapes ({}).",
                    mark(warm <= RSS_MAX_MIB),
                    v.scrapes,
                    mark(after <= RSS_MAX_MIB)
                );
            }
            let rss = r(n.mem_after.rss_kib as f64, v.mem_after.rss_kib as f64);
            let anon = r(n.mem_after.anon_kib as f64, v.mem_after.anon_kib as f64);
            let floor = common_floor_kib(v);
            let bound = if floor > 0 {
                format!(
                    "; the C runtime and NVML library alone, resident in both, cap this ratio at {:.1}× (see below)",
                    n.mem_after.rss_kib as f64 / floor as f64
                )
            } else {
                String::new()
            };
            let _ = writeln!(
                t,
                "- ≥ {RSS_RATIO:.0}× less RSS: {rss:.1}× ({}){bound}; private memory (RssAnon): {anon:.1}× less.",
                mark(rss >= RSS_RATIO)
            );
            let p1 = r(n.lat1.p50_us, v.lat1.p50_us);
            let p32 = r(n.lat32.p50_us, v.lat32.p50_us);
            let floor_note = v
                .floor
                .as_ref()
                .map(|f| {
                    format!(
                        "; vram-exporter's p50 of {} includes an HTTP round trip whose floor (`/-/healthy`, no body) is {}",
                        us(v.lat1.p50_us),
                        us(f.p50_us)
                    )
                })
                .unwrap_or_default();
            let _ = writeln!(
                t,
                "- ≥ {P50_RATIO:.0}× lower p50 scrape latency: {p1:.0}× with 1 scraper ({}), {p32:.0}× with 32{floor_note}.",
                mark(p1 >= P50_RATIO)
            );
            let cpu1 = ratio(n.cpu_per_min, v.cpu_per_min).1;
            let cpu2 = ratio(n.cpu_per_min_precise, v.cpu_per_min_precise).1;
            let show = |x: Option<f64>| {
                x.map(|x| format!("{x:.1}×"))
                    .unwrap_or_else(|| "not measurable".into())
            };
            let _ = writeln!(
                t,
                "- ≥ {CPU_RATIO:.0}× less CPU per minute of polling: {} by utime + stime ({}), {} by schedstat ({}).\n",
                show(cpu1),
                mark(cpu1.is_some_and(|x| x >= CPU_RATIO)),
                show(cpu2),
                mark(cpu2.is_some_and(|x| x >= CPU_RATIO))
            );
        }
        t.push_str(
            "The targets hold for the 8-GPU node (large-node); single-gpu is shown for comparison. Cost linear in \
             GPUs × processes: see the scaling tables below.\n\n",
        );
        t
    }

    pub fn markdown(&self) -> String {
        let mut t = String::new();
        let mode = if self.short {
            "short run (CI: a few seconds per figure; not the published figures)"
        } else {
            "full run"
        };
        let _ = writeln!(
            t,
            "<!-- Benchmark report of vram-exporter against nvitop-exporter, generated by tools/bench/compare; regenerate it, never edit figures by hand. -->"
        );
        t.push_str("# Benchmarks\n\n");
        let _ = writeln!(
            t,
            "vram-exporter against [nvitop-exporter](https://pypi.org/project/nvitop-exporter/) on the same simulated node \
             (nvml-sim loaded as `libnvidia-ml.so.1` by both), and vram-exporter alone on nodes of growing size.\n\n\
             Generated by `tools/bench/compare` ({mode}) on {} in {:.0} s. Rerun: `tools/bench/compare` (full, rewrites this file) or \
             `tools/bench/compare --short` (CI).\n",
            self.date,
            self.elapsed.as_secs_f64()
        );
        t.push_str("## Machine\n\n");
        let m = &self.machine;
        let _ = writeln!(t, "- CPUs (nproc): {}; model: {}", m.cpus, m.cpu_model);
        let _ = writeln!(t, "- memory: {:.1} GiB; kernel {}", m.mem_gib, m.kernel);
        let _ = writeln!(
            t,
            "- 1-minute load average before / after the run: {} / {}",
            self.load_before, self.load_after
        );
        for (k, v) in &self.versions {
            let _ = writeln!(t, "- {k}: `{v}`");
        }
        t.push_str(
            "\n**Caveat.** This is a 2-core machine shared with other work (other sessions compiled while it ran); the \
             load generator runs on the same cores as the exporter it measures. Latencies are medians over rounds; \
             treat small differences as noise and the ratios as the finding. vram-exporter's sub-millisecond latencies also depend on \
             whether the scheduler puts the scraper and the server on the same vCPU or on different ones, which changes from run \
             to run (`target/release/compare --probe ADDR PATH` under `taskset` shows the effect); nvitop-exporter's millisecond latencies are not affected.\n\n",
        );

        t.push_str(&self.summary());
        t.push_str("## Method\n\n");
        let p = &self.plan;
        let _ = writeln!(
            t,
            "- Both exporters poll every 1 s (`VRAM_EXPORTER__POLL__INTERVAL=1s`; `nvitop-exporter --interval 1`) on the same \
             scenario and the same `libnvml_sim.so`. vram-exporter runs with its defaults (top {} processes per GPU published).",
            16
        );
        let _ = writeln!(
            t,
            "- Warm-up {} s, then RSS (`VmRSS`, and `RssAnon`: private pages) from `/proc/<pid>/status`, the median of 5 readings. \
             For nvitop-exporter the pid is the Python process itself.",
            p.warmup.as_secs()
        );
        let _ = writeln!(
            t,
            "- CPU: utime + stime from `/proc/<pid>/stat` over a {} s window with no scrapes (both exporters idle at the same \
             time), scaled to one minute; resolution {:.2} s per window.",
            p.idle.as_secs(),
            vram_testkit::procfs::cpu_resolution()
        );
        let _ = writeln!(
            t,
            "- Latency: a Rust HTTP/1.1 client (tools/testkit/src/http.rs) asks for `text/plain;version=0.0.4`, uncompressed, and keeps \
             connections alive where the server allows (vram-exporter); nvitop-exporter's WSGI server answers HTTP/1.0 and \
             closes, so its latency includes a loopback connect, as it does for Prometheus. {} round(s) of up to {} s (at most {} \
             requests) per figure; the table shows the median over rounds of each round's p50 / p99. While one exporter is \
             measured the other is paused (SIGSTOP), so they never compete.",
            p.latency_rounds,
            p.latency_round.as_secs_f64(),
            p.latency_round_max
        );
        t.push_str(
            "- What is ours: `nvml-baseline` (tools/bench) (nvml-wrapper and the exporter's own poll of every GPU and process, \
             every 1 s, no server, policy or metrics) runs on the same scenario; the rows \"above the NVML-client \
             baseline\" subtract its VmRSS / RssAnon (median of 5 readings after the warm-up) from the exporter's.\n",
        );
        let _ = writeln!(
            t,
            "- vram-exporter's `/-/healthy` (no body, no self-metrics) is timed with 1 scraper as the HTTP round-trip floor \
             under its `/metrics` latency."
        );
        let _ = writeln!(
            t,
            "- Then scrapes continue with {} scrapers until {} scrapes in all (or {} s; the latency rounds count, so the \
             faster exporter usually gets more), and after 2 s RSS is read again.",
            p.soak_concurrency,
            p.soak_scrapes,
            p.soak_max_time.as_secs()
        );
        t.push_str(
            "- Series: non-comment lines of one exposition. The two exporters do not publish the same thing: nvitop-exporter \
             publishes every process with ten metrics each plus clocks, power, PCIe, NVLink and host metrics (most of which \
             nvml-sim answers as not supported); vram-exporter publishes memory, limits, pressure, violation counters and leak \
             drift, with per-process series bounded to the top N per GPU. Size and series show what a scrape costs Prometheus, \
             not equal work.\n\n",
        );

        for c in &self.comparisons {
            let _ = writeln!(t, "## {} (nvml-sim `{}.toml`)\n", c.scenario, c.scenario);
            t.push_str(&comparison_table(c));
            t.push('\n');
        }

        if let Some(large) = self.comparisons.iter().find(|c| c.scenario == "large-node") {
            if !large.vram.breakdown.is_empty() {
                t.push_str("## Where the resident memory is\n\n");
                t.push_str(
                    "From `/proc/<pid>/smaps`: private pages versus pages of mapped files (shared, clean, reclaimable).\n\n",
                );
                t.push_str(&breakdown_table(large));
                let floor = common_floor_kib(&large.vram);
                let nv_rss = large.nvitop.mem_after.rss_kib;
                let _ = writeln!(
                    t,
                    "\nThe C runtime and the NVML library are mapped by both processes alike; in vram-exporter they account for {} of \
                     RSS. Ten times less RSS than nvitop-exporter's {} means at most {} in all, so the RSS ratio is bounded by \
                     {:.1}× for any process that loads the same C runtime and NVML library, before its own code, heap and stacks. \
                     Private memory (RssAnon) is the part an exporter controls; see its ratio above.\n",
                    mib(floor),
                    mib(nv_rss),
                    mib(nv_rss / 10),
                    nv_rss as f64 / floor.max(1) as f64
                );
            }
        }

        if !self.scaling.is_empty() {
            t.push_str("## Scaling: vram-exporter alone on generated nodes\n\n");
            t.push_str(
                "The real binary on generated nvml-sim scenarios (tools/bench/out/scenarios/), polling every 1 s. The poll time is the \
                 exporter's own `vram_exporter_poll_duration_seconds` (sum / count over the window): NVML calls into nvml-sim \
                 included. Per-process series stay bounded by the top 16 per GPU whatever the process count. MIG: the exporter \
                 publishes each physical GPU (whose memory includes its MIG devices, and whose processes include theirs) and \
                 each MIG device's memory in the `vram_mig_*` families, which is what the MIG row measures.\n\n",
            );
            let _ = writeln!(
                t,
                "Window: {} s with no scrapes after {} s of warm-up; scrape p50 over {} s.\n",
                p.scaling_idle.as_secs(),
                p.scaling_warmup.as_secs(),
                p.scaling_latency.as_secs_f64()
            );
            t.push_str(&scaling_table(&self.scaling));
            t.push('\n');
        }
        if let Some(c) = &self.criterion {
            t.push_str(
                "## Scaling: the exporter's own work per poll (criterion, NVML excluded)\n\n",
            );
            t.push_str(
                "`cargo bench --bench scaling` (benches/scaling.rs): `Engine::apply` and the publication (policy, leak \
                 detection for every process, snapshot and exposition render) and `exposition::render` alone, on synthetic samples. The budget: ≤ 20 µs per GPU for the \
                 poll cycle on 8 GPUs × 32 processes; render ≤ 100 µs.\n\n",
            );
            t.push_str(c);
            t.push('\n');
        }
        // Figures from real GPUs, which this tool cannot measure: kept in a file, carried over.
        t.push_str(include_str!("../real-hardware.md"));
        // What the release profile buys (scripts/footprint.sh, which this tool does not run): the same.
        t.push('\n');
        t.push_str(include_str!("../release-profile.md"));
        t
    }
}
