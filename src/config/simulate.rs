//! `--simulate`: run the real code path on nvml-sim, the simulated NVML library, from one flag.
//!
//! Finds `libnvml_sim.so` and the scenario file, so that `vram-exporter --simulate demo` works from
//! a cargo build tree, an installed layout or the container image without setting variables.
//! `--simulate demo` also brings its own settings ([`DEMO_PRESET`]) so that the demo shows a
//! leak, a soft and a hard episode and a (dry-run) cleanup within two minutes.

use std::path::{Path, PathBuf};

/// Where the simulated library and a scenario were found.
#[derive(Debug, Clone)]
pub struct Simulation {
    pub library: PathBuf,
    pub scenario: PathBuf,
}

/// The environment variable nvml-sim reads its scenario path from.
pub const SCENARIO_ENV: &str = "NVML_SIM_SCENARIO";
/// Overrides where `--simulate` looks for `libnvml_sim.so`.
pub const LIBRARY_ENV: &str = "VRAM_EXPORTER_SIM_LIBRARY";
/// Overrides where `--simulate` looks for named scenarios.
pub const SCENARIO_DIR_ENV: &str = "VRAM_EXPORTER_SCENARIO_DIR";

const LIBRARY_FILE: &str = "libnvml_sim.so";

/// The settings `--simulate demo` runs with (below `--config`, the environment and flags): a
/// short leak window and a dry-run cleanup, so the demo shows everything within two minutes.
pub const DEMO_PRESET: &str = include_str!("simulate/demo-preset.toml");

/// The configuration preset that comes with a shipped scenario name; only `demo` has one, and
/// a scenario given by path has none.
pub fn preset(scenario: &str) -> Option<&'static str> {
    (scenario == "demo").then_some(DEMO_PRESET)
}

/// Resolves `scenario` (a shipped name or a path) and the library next to `exe`.
pub fn locate(scenario: &str, exe: &Path) -> Result<Simulation, String> {
    let exe_dir = exe.parent().unwrap_or(Path::new("."));
    let library = match std::env::var_os(LIBRARY_ENV) {
        Some(p) => PathBuf::from(p),
        None => {
            let candidates = [
                exe_dir.join(LIBRARY_FILE),
                exe_dir.join("../lib/vram-exporter").join(LIBRARY_FILE),
                PathBuf::from("/usr/local/lib/vram-exporter").join(LIBRARY_FILE),
            ];
            candidates.iter().find(|p| p.is_file()).cloned().ok_or_else(|| {
                format!(
                    "--simulate: {LIBRARY_FILE} was not found next to the executable nor in ../lib/vram-exporter; \
                     build it with `cargo build --release -p nvml-sim` or set {LIBRARY_ENV}"
                )
            })?
        }
    };
    if !library.is_file() {
        return Err(format!("--simulate: {} is not a file", library.display()));
    }

    let as_path = Path::new(scenario);
    let scenario_path = if as_path.is_file() {
        as_path.to_path_buf()
    } else {
        let file = format!("{scenario}.toml");
        let mut dirs: Vec<PathBuf> = Vec::new();
        if let Some(d) = std::env::var_os(SCENARIO_DIR_ENV) {
            dirs.push(PathBuf::from(d));
        }
        // A cargo build tree (target/<profile>/), a release tarball (scenarios/ beside the binary),
        // an installed layout (the .deb), the container image.
        dirs.push(exe_dir.join("../../nvml-sim/scenarios"));
        dirs.push(exe_dir.join("scenarios"));
        dirs.push(exe_dir.join("../share/vram-exporter/scenarios"));
        dirs.push(PathBuf::from("/usr/share/vram-exporter/scenarios"));
        dirs.push(PathBuf::from("nvml-sim/scenarios"));
        dirs.iter()
            .map(|d| d.join(&file))
            .find(|p| p.is_file())
            .ok_or_else(|| {
                format!(
                    "--simulate: invalid value {scenario:?}: neither a scenario file nor a shipped scenario name \
                     (looked for {file} in nvml-sim/scenarios and the installed scenario directories; set {SCENARIO_DIR_ENV} to add one)"
                )
            })?
    };
    Ok(Simulation {
        library,
        scenario: scenario_path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The demo's settings are valid, short enough to show a leak within two minutes, and a
    /// cleanup that touches nothing; no other scenario has any.
    #[test]
    fn the_demo_preset_is_valid_and_only_for_the_demo() {
        let flags = crate::config::FlagOverrides::default();
        let env = Some(Default::default());
        let config = crate::config::load_with_preset(preset("demo"), None, env, &flags)
            .unwrap()
            .validate()
            .unwrap();
        assert!(config.leak.window <= std::time::Duration::from_secs(120));
        assert!(config.cleanup.enabled && config.cleanup.dry_run);
        assert!(preset("hard-breach").is_none() && preset("./demo.toml").is_none());
        let plain = crate::config::load(None, Some(Default::default()), &flags)
            .unwrap()
            .validate()
            .unwrap();
        assert!(!plain.cleanup.enabled, "a real node keeps cleanup off");
        assert_eq!(plain.leak.window, std::time::Duration::from_secs(15 * 60));
    }

    /// The release tarball's layout: the library and `scenarios/` beside the binary, found from any cwd.
    #[test]
    fn finds_library_and_scenarios_beside_the_binary() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(LIBRARY_FILE), b"").unwrap();
        std::fs::create_dir(dir.path().join("scenarios")).unwrap();
        std::fs::write(dir.path().join("scenarios/tarball-only.toml"), b"").unwrap();
        let sim = locate("tarball-only", &dir.path().join("vram-exporter")).unwrap();
        assert_eq!(sim.library, dir.path().join(LIBRARY_FILE));
        assert_eq!(sim.scenario, dir.path().join("scenarios/tarball-only.toml"));
        let err = locate("absent-scenario", &dir.path().join("vram-exporter")).unwrap_err();
        assert!(err.contains("absent-scenario.toml"), "{err}");
    }
}
