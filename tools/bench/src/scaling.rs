//! The exporter alone on generated nodes of growing size (GPUs × processes, and MIG): series,
//! exposition size, poll time, CPU, scrape latency and memory; and the criterion scaling bench.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use vram_testkit::http::Client;
use vram_testkit::procfs;

use crate::measure::{count_series, latency};
use crate::plan::Plan;
use crate::scenarios::Shape;
use crate::targets::{start_vram, Paths};

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
pub fn poll_histogram(body: &[u8]) -> Option<(f64, f64)> {
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

pub fn scaling_row(
    paths: &Paths,
    plan: &Plan,
    shape: Shape,
    scenario: &Path,
) -> Result<ScalingRow, String> {
    let t = start_vram(paths, scenario, &shape.label())?;
    std::thread::sleep(plan.scaling_warmup);
    let mut client = Client::new(t.addr);
    let scrape = |c: &mut Client| -> Result<Vec<u8>, String> {
        let r = c
            .get("/metrics")
            .map_err(|e| format!("scrape failed: {e}"))?;
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
pub fn run_criterion(paths: &Paths) -> Result<String, String> {
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
    fn series_and_poll_histogram_are_read_from_an_exposition() {
        let text = b"# HELP a x\n# TYPE a gauge\na{gpu=\"0\"} 1\na{gpu=\"1\"} 2\n\
            vram_exporter_poll_duration_seconds_sum 0.25\nvram_exporter_poll_duration_seconds_count 10\n";
        assert_eq!(count_series(text), 4);
        assert_eq!(poll_histogram(text), Some((0.25, 10.0)));
        assert_eq!(poll_histogram(b"a 1\n"), None);
    }
}
