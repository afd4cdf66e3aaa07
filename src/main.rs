//! The `vram-exporter` binary: flags → configuration → logging → server. Errors end here.
//!
//! Nothing here can panic on its output: `--version`, `--help`, `--check-config` and error
//! messages are written with their errors handled (a closed or full stdout/stderr gives exit 1,
//! or 2 for invalid input, never a panic), and once the server runs every line goes through the
//! non-blocking log sink, flushed for at most [`LOG_FLUSH`] at exit.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser as _;
use vram_exporter::base::input::ConfigError;
use vram_exporter::base::logging::sink;
use vram_exporter::config::cli::Cli;
use vram_exporter::config::{self, FlagOverrides};

/// Exit status for invalid input (configuration, flags), as promised in the README.
const EXIT_BAD_INPUT: u8 = 2;

/// The longest the exit waits for queued log lines (a stuck stderr must not hold the exit).
const LOG_FLUSH: Duration = Duration::from_millis(500);

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // --help, --version, or a flag error: clap's text, and a defined status when it cannot
        // be written (a full or closed stdout fails --version instead of claiming success).
        Err(e) => {
            let printed = e.print().and_then(|()| {
                use std::io::Write as _;
                std::io::stdout().flush()
            });
            return match (e.exit_code(), printed) {
                (0, Err(_)) => ExitCode::FAILURE,
                (code, _) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
            };
        }
    };
    let status = match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let mut message = format!("error: {err}");
            for cause in err.chain().skip(1) {
                message.push_str(&format!(": {cause}"));
            }
            message.push('\n');
            // Once the server ran, stderr may be a pipe nobody reads: never block on it.
            if !sink::emit(&message) {
                let _ = sink::write_direct(std::io::stderr(), &message);
            }
            if err.chain().any(|c| c.is::<ConfigError>()) {
                ExitCode::from(EXIT_BAD_INPUT)
            } else {
                ExitCode::FAILURE
            }
        }
    };
    sink::flush(LOG_FLUSH);
    status
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let mut flags = FlagOverrides {
        listen: cli.listen.clone(),
        nvml_library: cli.nvml_library.clone(),
        web_config_file: cli.web_config_file.clone(),
        telemetry_path: cli.telemetry_path.clone(),
        log_level: cli.log_level.clone(),
        log_format: cli.log_format,
    };
    let mut preset = None;
    if let Some(scenario) = &cli.simulate {
        preset = vram_exporter::config::simulate::preset(scenario);
        let exe = std::env::current_exe().context("cannot find the executable's path")?;
        let sim =
            vram_exporter::config::simulate::locate(scenario, &exe).map_err(ConfigError::Load)?;
        // Set before any thread exists: nvml-sim reads it when NVML is initialised.
        std::env::set_var(vram_exporter::config::simulate::SCENARIO_ENV, &sim.scenario);
        flags.nvml_library = Some(sim.library);
    }
    let raw = config::load_with_preset(preset, cli.config.as_deref(), None, &flags)?;
    let config = raw.validate()?;
    let logger = vram_exporter::base::logging::Logger::new(config.log)?;
    if cli.check_config {
        sink::write_direct(std::io::stdout(), &raw.to_toml())
            .context("cannot write the configuration to stdout")?;
        let _ = sink::write_direct(std::io::stderr(), "configuration OK\n");
        return Ok(());
    }
    logger.install()?;
    if preset.is_some() {
        tracing::info!(
            "demo: GPU 0 leaks (detected within a minute), GPU 2 crosses its soft limit at about 45 s \
             and its hard limit at about 70 s (a dry-run cleanup runs), both over by about 105 s; \
             every 10 minutes again. Watch it on the status page"
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("vram-http")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(vram_exporter::run(config))?;
    Ok(())
}
