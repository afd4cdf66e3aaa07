//! Integers are integers (issue 23): a float, NaN, infinity or out-of-range value for any integer
//! key — from the file or the environment — is refused with one line naming the key, the value
//! and why, exit 2, by `--check-config` and at start-up alike (once they were rounded: a
//! `prefer_uids = [-0.9]` preferred root's processes for a kill). The file's cases are fixtures
//! (`tests/fixtures/config/*.bad.toml`, run by `config_fixtures.rs`); the environment's are here.

use std::process::Command;

use crate::config_fixtures::exporter_on;
use crate::harness::refusal_problem;

const KILL: &str =
    "[cleanup]\nenabled = true\nallow_kill = true\n[[cleanup.actions]]\ntype = \"kill\"\n";

/// (what, environment, words the one-line error must contain), on an empty configuration file
type Case = (
    &'static str,
    &'static [(&'static str, &'static str)],
    &'static [&'static str],
);

const CASES: &[Case] = &[
    (
        "a fractional count from the environment",
        &[("VRAM_EXPORTER__PROCESSES__MAX_PER_GPU", "2.5")],
        &["processes.max_per_gpu", "2.5", "whole number"],
    ),
    (
        "NaN from the environment",
        &[("VRAM_EXPORTER__PROCESSES__MAX_PER_GPU", "NaN")],
        &["processes.max_per_gpu", "NaN"],
    ),
];

fn command(dir: &std::path::Path, config: &str, env: &[(&str, &str)]) -> Command {
    let file = dir.join("config.toml");
    std::fs::write(&file, config.replace("PREFIX", KILL)).unwrap();
    let mut cmd = exporter_on(&file);
    cmd.args(["--web.listen-address", "127.0.0.1:0"])
        .envs(env.iter().copied());
    cmd
}

#[test]
fn non_integer_values_for_integer_keys_exit_2_at_check_and_at_start_alike() {
    let dir = tempfile::tempdir().unwrap();
    let mut problems = Vec::new();
    for (what, env, words) in CASES {
        let checked = command(dir.path(), "", env)
            .arg("--check-config")
            .output()
            .unwrap();
        problems.extend(refusal_problem(
            &format!("{what} (--check-config)"),
            &checked,
            words,
        ));
        // Start-up refuses it the same way, before listening (the output ends with the exit).
        let started = command(dir.path(), "", env).output().unwrap();
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
