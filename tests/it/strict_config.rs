//! Integers are integers (issue 23): a float, NaN, infinity or out-of-range value for any integer
//! key — from the file or the environment — is refused with one line naming the key, the value
//! and why, exit 2, by `--check-config` and at start-up alike (once they were rounded: a
//! `prefer_uids = [-0.9]` preferred root's processes for a kill).

use std::process::{Command, Stdio};

use crate::harness::{refusal_problem, sim_library};

const BIN: &str = env!("CARGO_BIN_EXE_vram-exporter");

/// (what, configuration file, environment, words the one-line error must contain)
type Case = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
    &'static [&'static str],
);

const KILL: &str =
    "[cleanup]\nenabled = true\nallow_kill = true\n[[cleanup.actions]]\ntype = \"kill\"\n";

const CASES: &[Case] = &[
    (
        "a fractional UID to prefer",
        "PREFIX\nprefer_uids = [-0.9]\n",
        &[],
        &["cleanup.actions[0].prefer_uids[0]", "-0.9", "whole number"],
    ),
    (
        "a fractional UID to avoid",
        "PREFIX\navoid_uids = [1000.7]\n",
        &[],
        &["cleanup.actions[0].avoid_uids[0]", "1000.7", "whole number"],
    ),
    (
        "a negative UID",
        "PREFIX\nprefer_uids = [-1]\n",
        &[],
        &["cleanup.actions[0].prefer_uids[0]", "-1", "u32"],
    ),
    (
        "a UID past u32",
        "PREFIX\navoid_uids = [4294967296]\n",
        &[],
        &["cleanup.actions[0].avoid_uids[0]", "4294967296", "u32"],
    ),
    (
        "NaN processes per GPU",
        "[processes]\nmax_per_gpu = nan\n",
        &[],
        &["processes.max_per_gpu", "NaN", "whole number"],
    ),
    (
        "infinite processes per GPU",
        "[processes]\nmax_per_gpu = inf\n",
        &[],
        &["processes.max_per_gpu", "inf"],
    ),
    (
        "a fractional request limit",
        "[web]\nmax_concurrent_requests = 1.5\n",
        &[],
        &["web.max_concurrent_requests", "1.5", "whole number"],
    ),
    (
        "a whole number written as a float",
        "[web]\nmax_concurrent_requests = 64.0\n",
        &[],
        &["web.max_concurrent_requests", "64.0", "whole number"],
    ),
    (
        "a fractional number of bytes",
        "[limits]\nhard = 1000.7\n",
        &[],
        &["limits.hard", "1000.7", "whole number"],
    ),
    (
        "a fractional number of bytes as text",
        "[limits]\nsoft = \"1000.7\"\n",
        &[],
        &["limits.soft", "1000.7", "whole number"],
    ),
    (
        "a fractional count from the environment",
        "",
        &[("VRAM_EXPORTER__PROCESSES__MAX_PER_GPU", "2.5")],
        &["processes.max_per_gpu", "2.5", "whole number"],
    ),
    (
        "NaN from the environment",
        "",
        &[("VRAM_EXPORTER__PROCESSES__MAX_PER_GPU", "NaN")],
        &["processes.max_per_gpu", "NaN"],
    ),
];

fn command(dir: &std::path::Path, config: &str, env: &[(&str, &str)]) -> Command {
    let file = dir.join("config.toml");
    std::fs::write(&file, config.replace("PREFIX", KILL)).unwrap();
    let mut cmd = Command::new(BIN);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("VRAM_EXPORTER_") {
            cmd.env_remove(k);
        }
    }
    cmd.arg("--config")
        .arg(&file)
        .arg("--nvml-library")
        .arg(sim_library())
        .args(["--web.listen-address", "127.0.0.1:0"])
        .envs(env.iter().copied())
        .stdin(Stdio::null());
    cmd
}

#[test]
fn non_integer_values_for_integer_keys_exit_2_at_check_and_at_start_alike() {
    let dir = tempfile::tempdir().unwrap();
    let mut problems = Vec::new();
    for (what, config, env, words) in CASES {
        let checked = command(dir.path(), config, env)
            .arg("--check-config")
            .output()
            .unwrap();
        problems.extend(refusal_problem(
            &format!("{what} (--check-config)"),
            &checked,
            words,
        ));
        // Start-up refuses it the same way, before listening (the output ends with the exit).
        let started = command(dir.path(), config, env).output().unwrap();
        problems.extend(refusal_problem(
            &format!("{what} (start-up)"),
            &started,
            words,
        ));
        if checked.stderr != started.stderr {
            problems.push(format!(
                "{what}: --check-config and start-up disagree: {:?} vs {:?}",
                String::from_utf8_lossy(&checked.stderr),
                String::from_utf8_lossy(&started.stderr)
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn integers_from_the_file_and_the_environment_still_apply() {
    let dir = tempfile::tempdir().unwrap();
    let out = command(
        dir.path(),
        "PREFIX\nprefer_uids = [1001]\navoid_uids = [0]\n",
        &[("VRAM_EXPORTER__PROCESSES__MAX_PER_GPU", "7")],
    )
    .arg("--check-config")
    .output()
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for expected in [
        "max_per_gpu = 7",
        "prefer_uids = [1001]",
        "avoid_uids = [0]",
    ] {
        assert!(stdout.contains(expected), "{expected} missing:\n{stdout}");
    }
}
