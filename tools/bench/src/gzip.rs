//! `gzip-bench`: what gzip costs and saves on `/metrics` of the 8-GPU × 32-process node
//! (`large-node`): bytes, scrape latency (median, p99) and the exporter's CPU per 1,000 scrapes,
//! with and without `Accept-Encoding: gzip`, on the real release binary over keep-alive
//! connections; and the one-time cost of compressing that exposition (what the exporter does at
//! most once per poll). Prints a Markdown section; `--benchmarks FILE` also writes it into FILE
//! between `<!-- gzip:begin … -->` and `<!-- gzip:end -->`. Asserts no timing: it fails only when a
//! measurement could not be taken.
//!
//! Build first: `cargo build --release -p vram-exporter -p nvml-sim && cargo build --release -p vram-bench --bin gzip-bench`,
//! then `target/release/gzip-bench [--rounds 5] [--requests 2000] [--benchmarks BENCHMARKS.md]`.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use vram_testkit::exporter::Launch;
use vram_testkit::http::Client;
use vram_testkit::procfs::cpu_seconds_precise;
use vram_testkit::stats::percentile;

const BEGIN: &str =
    "<!-- gzip:begin (tools/bench/src/gzip.rs: gzip-bench --benchmarks BENCHMARKS.md) -->";
const END: &str = "<!-- gzip:end -->";

struct Mode {
    name: &'static str,
    encoding: Option<&'static str>,
    latencies_us: Vec<f64>,
    bytes: Vec<usize>,
    cpu_s: f64,
    /// One scrape per poll: each gzip one is the first after its poll and compresses the exposition.
    sparse_us: Vec<f64>,
}

/// Scrapes per mode in the one-scrape-per-poll series (one poll a second: this many seconds).
const SPARSE: usize = 12;

fn main() {
    if let Err(e) = run() {
        eprintln!("gzip-bench: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let mut rounds = 5usize;
    let mut requests = 2000usize;
    let mut benchmarks: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--rounds" => rounds = value()?.parse().map_err(|e| format!("--rounds: {e}"))?,
            "--requests" => requests = value()?.parse().map_err(|e| format!("--requests: {e}"))?,
            "--benchmarks" => benchmarks = Some(value()?.into()),
            _ => {
                return Err(format!(
                    "unknown argument {a}; see the comment at the top of tools/bench/src/gzip.rs"
                ))
            }
        }
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let bin_dir = std::env::current_exe()
        .map_err(|e| e.to_string())?
        .parent()
        .map(Path::to_path_buf)
        .ok_or("no directory for the executable")?;
    let scenario = repo.join("nvml-sim/scenarios/large-node.toml");
    let mut exporter = Launch::new(bin_dir.join("vram-exporter"))
        .sim_library(&bin_dir.join("libnvml_sim.so"), &scenario)
        .clean_env()
        .start()?;
    exporter.wait_for("/-/ready", Duration::from_secs(30), |_| true)?;
    let pid = exporter.process.pid();
    let addr = exporter.addr;

    let mut modes = [
        Mode {
            name: "identity",
            encoding: None,
            latencies_us: Vec::new(),
            bytes: Vec::new(),
            cpu_s: 0.0,
            sparse_us: Vec::new(),
        },
        Mode {
            name: "gzip",
            encoding: Some("gzip"),
            latencies_us: Vec::new(),
            bytes: Vec::new(),
            cpu_s: 0.0,
            sparse_us: Vec::new(),
        },
    ];
    let mut body = Vec::new();
    for round in 0..=rounds {
        for mode in modes.iter_mut() {
            let mut client = Client::new(addr);
            if let Some(e) = mode.encoding {
                client = client.accept_encoding(e);
            }
            let cpu_before =
                cpu_seconds_precise(pid).ok_or("cannot read the exporter's CPU time")?;
            for _ in 0..requests {
                let t = Instant::now();
                let status = client
                    .get_into("/metrics", &mut body)
                    .map_err(|e| e.to_string())?;
                let took = t.elapsed();
                if status != 200 {
                    return Err(format!("/metrics answered {status}"));
                }
                // Round 0 warms up both modes.
                if round > 0 {
                    mode.latencies_us.push(took.as_secs_f64() * 1e6);
                    mode.bytes.push(body.len());
                }
            }
            let cpu_after =
                cpu_seconds_precise(pid).ok_or("cannot read the exporter's CPU time")?;
            if round > 0 {
                mode.cpu_s += cpu_after - cpu_before;
            }
        }
    }
    // As Prometheus does with the default 1 s poll and a 15 s scrape interval: every scrape comes
    // after a new poll. Alternate the modes, one scrape a poll, waiting for each new poll.
    let mut last_poll = String::new();
    let mut probe = Client::new(addr);
    for i in 0..2 * SPARSE {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            probe
                .get_into("/metrics", &mut body)
                .map_err(|e| e.to_string())?;
            let text = String::from_utf8_lossy(&body);
            let stamp = text
                .lines()
                .find(|l| l.starts_with("vram_exporter_last_poll_timestamp_seconds "))
                .unwrap_or_default()
                .to_string();
            if stamp != last_poll {
                last_poll = stamp;
                break;
            }
            if Instant::now() > deadline {
                return Err("no new poll within 5 s".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let mode = &mut modes[i % 2];
        let mut client = Client::new(addr);
        if let Some(e) = mode.encoding {
            client = client.accept_encoding(e);
        }
        let t = Instant::now();
        client
            .get_into("/metrics", &mut body)
            .map_err(|e| e.to_string())?;
        mode.sparse_us.push(t.elapsed().as_secs_f64() * 1e6);
    }
    // The plain exposition as served, to time its compression alone.
    let mut plain_client = Client::new(addr);
    plain_client
        .get_into("/metrics", &mut body)
        .map_err(|e| e.to_string())?;
    let exposition = body.clone();
    drop(exporter);

    let levels: Vec<(u32, f64, usize)> = [1u32, 6, 9]
        .iter()
        .map(|&level| {
            let mut times = Vec::new();
            let mut size = 0;
            for _ in 0..50 {
                let t = Instant::now();
                let mut enc =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level));
                enc.write_all(&exposition).expect("in memory");
                size = enc.finish().expect("in memory").len();
                times.push(t.elapsed().as_secs_f64() * 1e6);
            }
            times.sort_by(f64::total_cmp);
            (level, percentile(&times, 0.5), size)
        })
        .collect();

    let section = report(&mut modes, &levels, exposition.len(), rounds, requests);
    print!("{section}");
    if let Some(path) = benchmarks {
        write_section(&path, &section)?;
        eprintln!("gzip-bench: wrote the gzip section of {}", path.display());
    }
    Ok(())
}

fn report(
    modes: &mut [Mode],
    levels: &[(u32, f64, usize)],
    plain_len: usize,
    rounds: usize,
    requests: usize,
) -> String {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into());
    let sparse: Vec<f64> = modes
        .iter_mut()
        .map(|m| {
            m.sparse_us.sort_by(f64::total_cmp);
            percentile(&m.sparse_us, 0.5)
        })
        .collect();
    let stats: Vec<(f64, f64, usize, f64)> = modes
        .iter_mut()
        .map(|m| {
            m.latencies_us.sort_by(f64::total_cmp);
            m.bytes.sort_unstable();
            let n = m.latencies_us.len().max(1) as f64;
            (
                percentile(&m.latencies_us, 0.5),
                percentile(&m.latencies_us, 0.99),
                percentile(&m.bytes, 0.5),
                m.cpu_s * 1000.0 / n * 1000.0,
            )
        })
        .collect();
    let (id, gz) = (stats[0], stats[1]);
    let mut t = String::new();
    t.push_str(BEGIN);
    t.push_str("\n## gzip\n\n");
    t.push_str(&format!(
        "`/metrics` of the 8-GPU × 32-process node (`large-node`), release build, polled every 1 s; \
         {rounds} rounds of {requests} sequential keep-alive scrapes per mode, modes interleaved, after a \
         warm-up round; {cpus} CPUs, load average {load} at the end. Latency is the client's, loopback.\n\n"
    ));
    t.push_str(&format!(
        "| | {} | {} | ratio |\n|---|---|---|---|\n",
        modes[0].name, modes[1].name
    ));
    t.push_str(&format!(
        "| bytes per scrape | {} | {} | {:.1}× smaller |\n",
        id.2,
        gz.2,
        id.2 as f64 / gz.2.max(1) as f64
    ));
    // "| what | identity | gzip | gzip / identity× |", values with `digits` decimals and `unit`.
    let row = |what: &str, a: f64, b: f64, digits: usize, unit: &str| {
        format!(
            "| {what} | {a:.digits$} {unit} | {b:.digits$} {unit} | {:.2}× |\n",
            b / a
        )
    };
    t.push_str(&row("latency p50", id.0, gz.0, 0, "µs"));
    t.push_str(&row("latency p99", id.1, gz.1, 0, "µs"));
    t.push_str(&row("exporter CPU per 1,000 scrapes", id.3, gz.3, 1, "ms"));
    t.push_str(&row(
        &format!("latency p50, one scrape per poll ({SPARSE} each, fresh connections)"),
        sparse[0],
        sparse[1],
        0,
        "µs",
    ));
    t.push('\n');
    t.push_str(&format!(
        "The exposition is compressed at most once per poll (by the first gzip scrape after it, then shared); \
         each gzip scrape compresses only the self-metrics (a few KiB) and appends them. Compressing the whole \
         {plain_len}-byte scrape in one go, median of 50:"
    ));
    for (level, us, size) in levels {
        t.push_str(&format!(" level {level} {us:.0} µs → {size} bytes;"));
    }
    t.pop();
    t.push_str(
        ". The exporter uses level 1. Back-to-back scrapes share one compression per poll; with one \
         scraper every 15 s and a poll every second (the last row), each gzip scrape is the first after \
         its poll and pays for compressing the exposition, which is why speed beats ratio here.\n",
    );
    t.push_str(END);
    t.push('\n');
    t
}

/// Replaces the gzip section of `path`, or inserts it before the fleet section (or at the end).
fn write_section(path: &Path, section: &str) -> Result<(), String> {
    let old = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let new = match (old.find("<!-- gzip:begin"), old.find(END)) {
        (Some(b), Some(e)) if b < e => {
            let after = e + END.len();
            let after = if old[after..].starts_with('\n') {
                after + 1
            } else {
                after
            };
            format!("{}{section}{}", &old[..b], &old[after..])
        }
        _ => match old.find("<!-- fleet:begin") {
            Some(f) => format!("{}{section}\n{}", &old[..f], &old[f..]),
            None => format!("{old}\n{section}"),
        },
    };
    std::fs::write(path, new).map_err(|e| format!("{}: {e}", path.display()))
}
