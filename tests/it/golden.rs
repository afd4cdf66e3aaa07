//! The whole exposition for a fixed scenario against a golden file, and `promtool check metrics`.
//!
//! Regenerate the golden file with `UPDATE_GOLDEN=1 cargo test --test it golden`. Lines that vary
//! between runs (timestamps, durations, the process collector) are dropped before comparing.

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::harness::{repo, Exporter, Options};

const SCENARIO: &str = include_str!("../fixtures/scenarios/golden.toml");

fn deterministic(text: &str) -> String {
    text.lines()
        .filter(|l| {
            !(l.contains("process_") && !l.contains("vram_process_")
                || l.contains("vram_exporter_last_poll_timestamp_seconds ")
                || l.starts_with("vram_exporter_poll_duration_seconds"))
        })
        .map(|l| format!("{}\n", without_revision(l)))
        .collect()
}

/// `vram_exporter_build_info`'s `revision` depends on the commit built: compared as `REVISION`.
fn without_revision(line: &str) -> String {
    let revision = format!("revision=\"{}\"", vram_exporter::base::build_info::REVISION);
    line.replacen(&revision, "revision=\"REVISION\"", 1)
}

#[test]
fn golden_exposition() {
    let e = Exporter::start(Options {
        scenario: SCENARIO,
        ..Default::default()
    });
    let m = e.wait_metrics("first poll", Duration::from_secs(10), |m| {
        m.count("vram_total_bytes") == 2
    });
    let got = deterministic(&m.text);
    let golden = repo().join("tests/golden/exposition.txt");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&golden, &got).unwrap();
    }
    let want =
        std::fs::read_to_string(&golden).expect("golden file; regenerate with UPDATE_GOLDEN=1");
    assert_eq!(got, want, "exposition differs from {}", golden.display());
    promtool_check(&m.text);
}

/// Pipes an exposition through `promtool check metrics`; a missing promtool fails under CI.
pub fn promtool_check(text: &str) {
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            assert!(
                std::env::var_os("VRAM_REQUIRE_TOOLS").is_none(),
                "promtool is required (VRAM_REQUIRE_TOOLS is set) but cannot run: {e}"
            );
            eprintln!("!!! promtool not installed: `promtool check metrics` SKIPPED ({e}); install Debian's prometheus package");
            return;
        }
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && report.trim().is_empty(),
        "promtool check metrics:\n{report}"
    );
}
