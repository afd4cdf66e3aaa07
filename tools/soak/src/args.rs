//! The soak's command line: flags, their defaults (the exporter and library beside this program,
//! the shipped churn scenario) and the usage text; nothing else reads `std::env::args`.

use std::path::{Path, PathBuf};
use std::time::Duration;

pub(crate) struct Args {
    pub(crate) exporter: PathBuf,
    pub(crate) library: Option<PathBuf>,
    pub(crate) simulate: bool,
    pub(crate) scenario: PathBuf,
    pub(crate) duration: Option<Duration>,
    pub(crate) requests: Option<u64>,
    pub(crate) concurrency: usize,
    pub(crate) short: bool,
    pub(crate) hostile: bool,
}

fn usage() -> ! {
    eprintln!(
        "usage: vram-soak [--exporter PATH] [--library PATH | --simulate] [--scenario FILE]\n\
         \x20                [--duration 10m | --requests N] [--concurrency 64] [--short] [--no-hostile]"
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

pub(crate) fn parse_args() -> Args {
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
        hostile: true,
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
            "--no-hostile" => args.hostile = false,
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

/// `tools/soak/scenarios/churn-8gpu.toml` from the working directory (the repository root), or
/// from this crate's sources.
fn default_scenario() -> PathBuf {
    let relative = Path::new("tools/soak/scenarios/churn-8gpu.toml");
    if relative.is_file() {
        return relative.to_path_buf();
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/churn-8gpu.toml")
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
    fn the_scenario_ships() {
        assert!(default_scenario().is_file());
    }
}
