//! `tools/bench/compare`: the side-by-side benchmark of vram-exporter and nvitop-exporter on the
//! same nvml-sim node, plus the exporter alone on generated nodes of growing size.
//!
//! Run it through the `tools/bench/compare` script, which builds the release binaries and prepares
//! the venv first. Every figure printed comes from this run: medians of repeated rounds for
//! latency, /proc readings for memory and CPU. Nothing here asserts a timing; the process fails
//! only when a measurement could not be taken (an exporter did not start, a scrape failed, metrics
//! missing).
//!
//! By job: `targets` starts the exporters, `measure` compares them on one scenario, `scaling` runs
//! the exporter alone on generated nodes (`scenarios`), `report` writes the Markdown; this file
//! reads the flags and wires them.

mod machine;
mod measure;
mod plan;
mod report;
mod scaling;
mod scenarios;
mod targets;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use vram_testkit::http::load;
use vram_testkit::stats::percentile;

use plan::Plan;
use targets::Paths;

/// Logs, generated scenarios and the short or partial reports, relative to the repository root.
const OUT: &str = "tools/bench/out";

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
  Run through tools/bench/compare, which builds the binaries and prepares DIR (a venv with
  nvitop-exporter). Without --short and with nothing skipped, the report is written to BENCHMARKS.md;
  otherwise to tools/bench/out/BENCHMARKS.short.md (--short) or tools/bench/out/BENCHMARKS.partial.md.
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

fn main() {
    // `compare --probe ADDR PATH`: p50 / p99 of 2,000 sequential requests to a running server.
    let args: Vec<String> = std::env::args().collect();
    if args.len() == 4 && args[1] == "--probe" {
        let addr: SocketAddr = args[2].parse().unwrap_or_else(|e| {
            eprintln!("--probe: bad address {:?}: {e}", args[2]);
            std::process::exit(2);
        });
        let mut r = load(addr, &args[3], 1, 2_000, Duration::from_secs(30));
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
        eprintln!("tools/bench/compare: {e}");
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
    let out = PathBuf::from(OUT);
    std::fs::create_dir_all(out.join("logs")).map_err(|e| format!("cannot create {OUT}: {e}"))?;
    let paths = Paths {
        exporter: abs(&bin_dir.join("vram-exporter"))?,
        baseline: abs(&bin_dir.join("nvml-baseline"))?,
        sim_library: abs(&bin_dir.join("libnvml_sim.so"))?,
        nvitop: opts.venv.join("bin/nvitop-exporter"),
        out: abs(&out)?,
        scenarios: abs(Path::new("nvml-sim/scenarios"))?,
    };
    let plan = Plan::new(opts.short);
    let machine = machine::machine();
    let mut rep = report::Report {
        date: machine::utc_date(),
        machine,
        load_before: machine::load_average(),
        load_after: String::new(),
        short: opts.short,
        plan: plan.clone(),
        versions: machine::versions(&paths, (!opts.skip_compare).then_some(opts.venv.as_path())),
        comparisons: Vec::new(),
        scaling: Vec::new(),
        criterion: None,
        elapsed: Duration::ZERO,
    };

    if !opts.skip_compare {
        if !paths.nvitop.is_file() {
            return Err(format!(
                "{} not found; run through tools/bench/compare, which installs nvitop-exporter into the venv",
                paths.nvitop.display()
            ));
        }
        for name in ["large-node", "single-gpu"] {
            if !opts.only.is_empty() && !opts.only.iter().any(|o| o == name) {
                continue;
            }
            let scenario = paths.scenarios.join(format!("{name}.toml"));
            eprintln!("== {name}: vram-exporter and nvitop-exporter side by side");
            let c = measure::compare(&paths, &plan, name, &scenario)?;
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
            let row = scaling::scaling_row(&paths, &plan, *shape, &file)?;
            rep.scaling.push(row);
        }
    }
    if !opts.skip_criterion && !opts.short {
        rep.criterion = Some(scaling::run_criterion(&paths)?);
    }
    rep.load_after = machine::load_average();
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
    // Sections other tools own (`<!-- NAME:begin … -->` … `<!-- NAME:end -->`: the fleet run, the
    // real-hardware figures) are kept from the file being replaced.
    let kept = std::fs::read_to_string(&target)
        .map(|old| kept_sections(&old))
        .unwrap_or_default();
    let text = if kept.is_empty() {
        text
    } else {
        format!("{}\n\n{kept}", text.trim_end())
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

/// The marked sections of `old`, in order, each from its begin marker to its end marker included.
fn kept_sections(old: &str) -> String {
    let mut kept = Vec::new();
    let mut rest = old;
    while let Some(start) = rest.find("<!-- ") {
        let after = &rest[start..];
        let Some(name_end) = after.find(":begin") else {
            break;
        };
        let name = &after[5..name_end];
        let end_marker = format!("<!-- {name}:end -->");
        if name.contains(char::is_whitespace) || name.is_empty() {
            rest = &after[5..];
            continue;
        }
        match after.find(&end_marker) {
            Some(end) => {
                kept.push(after[..end + end_marker.len()].to_string());
                rest = &after[end + end_marker.len()..];
            }
            None => break,
        }
    }
    kept.join("\n\n")
}

#[cfg(test)]
mod tests {
    use super::kept_sections;

    #[test]
    fn marked_sections_are_kept_and_the_rest_is_not() {
        let old = "<!-- generated by tools/bench/compare -->\n# Report\nold figures\n\
                   <!-- fleet:begin (tools/fleet) -->\n## Fleet\nx\n<!-- fleet:end -->\n\
                   between\n<!-- real-hardware:begin -->\n## Real\n<!-- real-hardware:end -->\n";
        let kept = kept_sections(old);
        assert!(kept.starts_with("<!-- fleet:begin (tools/fleet) -->"));
        assert!(kept.contains("## Fleet\nx\n<!-- fleet:end -->"));
        assert!(kept.ends_with("<!-- real-hardware:end -->"));
        assert!(!kept.contains("old figures") && !kept.contains("between"));
        assert_eq!(kept_sections("# no markers\n"), "");
    }
}
