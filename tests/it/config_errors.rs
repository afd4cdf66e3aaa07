//! Invalid configurations that are not a file alone: values from the environment and flags, secrets
//! kept out of messages, oversized files and FIFOs. Each exits 2 with one line naming the key and
//! the value. Bad configuration files are fixtures (`tests/fixtures/config`, run by
//! `config_fixtures.rs`).

use std::process::Command;

use crate::config_fixtures::{exporter_on, run_bounded};

/// (what, extra env, extra args, words the message must contain), on an empty configuration file
type Case<'a> = (
    &'a str,
    &'a [(&'a str, &'a str)],
    &'a [&'a str],
    &'a [&'a str],
);

const CASES: &[Case] = &[
    (
        "bad listen flag",
        &[],
        &["--listen", "999.1.1.1:80"],
        &["web.listen", "999.1.1.1:80"],
    ),
    (
        "bad env override",
        &[("VRAM_EXPORTER__LIMITS__SOFT", "lots")],
        &[],
        &["limits.soft", "lots"],
    ),
    (
        "unknown env key",
        &[("VRAM_EXPORTER__POLL__SPEED", "2")],
        &[],
        &["speed"],
    ),
    (
        "bad env number",
        &[("VRAM_EXPORTER__PROCESSES__MAX_PER_GPU", "many")],
        &[],
        &["max_per_gpu", "many"],
    ),
    (
        "hysteresis past u64 through the environment",
        &[("VRAM_EXPORTER__LIMITS__HYSTERESIS", "20000PiB")],
        &[],
        &["limits.hysteresis", "20000PiB"],
    ),
];

#[test]
fn invalid_values_from_the_environment_and_flags_exit_2_naming_key_and_value() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.toml");
    std::fs::write(&path, "").unwrap();
    let mut failures = Vec::new();
    for (what, env, args, words) in CASES {
        let out = Command::new(env!("CARGO_BIN_EXE_vram-exporter"))
            .arg("--config")
            .arg(&path)
            .arg("--check-config")
            .args(*args)
            .envs(env.iter().copied())
            .output()
            .unwrap();
        failures.extend(crate::harness::refusal_problem(what, &out, words));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn webhook_credentials_are_not_echoed_in_errors() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "url = \"http://ops:hunter2@hooks.example/x?token=t0ken\"",
            "must name a host",
        ),
        (
            "url = \"http://hooks.example/x y?token=t0ken\"",
            "not a valid URL",
        ),
        (
            "url = \"gopher://ops:hunter2@h/?token=t0ken\"",
            "http:// or https://",
        ),
        // A webhook key on another action type is echoed too.
        (
            "url = \"https://ops:hunter2@h/?token=t0ken\"\ntype = \"signal\"\ntarget = \"all\"",
            "signal",
        ),
    ];
    let mut failures = Vec::new();
    for (i, (action, why)) in cases.iter().enumerate() {
        let body = if action.contains("type =") {
            action.to_string()
        } else {
            format!("type = \"webhook\"\n{action}")
        };
        let path = dir.path().join(format!("url{i}.toml"));
        std::fs::write(&path, format!("[cleanup]\n[[cleanup.actions]]\n{body}\n")).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_vram-exporter"))
            .arg("--config")
            .arg(&path)
            .arg("--check-config")
            .output()
            .unwrap();
        failures.extend(crate::harness::refusal_problem(
            action,
            &out,
            &["cleanup.actions[0].", "REDACTED", why],
        ));
        let stderr = String::from_utf8_lossy(&out.stderr);
        if stderr.contains("hunter2") || stderr.contains("t0ken") {
            failures.push(format!("{action}: a secret was echoed: {stderr}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn check_config_prints_the_effective_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.yaml");
    std::fs::write(&path, "poll:\n  interval: 500ms\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_vram-exporter"))
        .arg("--config")
        .arg(&path)
        .arg("--check-config")
        .env("VRAM_EXPORTER__LIMITS__HARD", "97%")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("interval = \"500ms\""), "{stdout}");
    assert!(stdout.contains("hard = \"97%\""), "{stdout}");
    assert!(stdout.contains("max_per_gpu = 16"), "{stdout}");
}

#[test]
fn the_annotated_example_is_valid() {
    for example in ["examples/vram-exporter.toml", "examples/vram-exporter.yaml"] {
        let out = Command::new(env!("CARGO_BIN_EXE_vram-exporter"))
            .arg("--config")
            .arg(crate::harness::repo().join(example))
            .arg("--check-config")
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{example}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn the_largest_accepted_values_start_and_serve() {
    // Every duration and size at (or next to) its upper bound: the exporter starts, polls and
    // serves, and reserves no memory in proportion to them.
    let e = crate::harness::Exporter::start(crate::harness::Options {
        scenario: "[[device]]\nname = \"Sim\"\nuuid = \"GPU-b0000000-0000-4000-8000-000000000000\"\n\
                   total = \"10GiB\"\n[[device.process]]\npid = 4000001\nname = \"p\"\nmemory = \"1GiB\"\n",
        config: "[poll]\ninterval = \"100ms\"\n\
                 [leak]\nwindow = \"7d\"\nfloor_window = \"2363s\"\n\
                 [limits]\nsoft = \"1023TiB\"\nhard = \"1PiB\"\nhysteresis = \"1TiB\"\n\
                 [web]\nrequest_timeout = \"10m\"\n\
                 [cleanup]\nenabled = true\ncooldown = \"24h\"\nallow_kill = true\n\
                 [[cleanup.actions]]\ntype = \"kill\"\ngrace = \"10m\"\nafter = \"24h\"\n",
        ..Default::default()
    });
    for _ in 0..5 {
        let m = e.next_poll();
        assert_eq!(m.gpu("vram_device_up", "0"), Some(1.0), "{}", m.text);
    }
    let m = e.metrics();
    let virt = m.value("process_virtual_memory_bytes", &[]).unwrap();
    // Before the bounds, a 1y window in 1s floors reserved 16 GB of address space per start.
    assert!(virt < 4.0 * crate::harness::GIB, "virtual memory {virt}");
    assert!(!e.log().iter().any(|l| l.contains("panicked")));
}

/// `--check-config` on `path` under the fixtures' memory and time bounds.
fn check_bounded(path: &std::path::Path) -> Result<std::process::Output, String> {
    let mut cmd = exporter_on(path);
    cmd.arg("--check-config");
    run_bounded(cmd).map_err(|e| format!("--check-config on {}: {e}", path.display()))
}

#[test]
fn oversized_files_and_fifos_exit_2_at_once_on_one_line() {
    // Alias bombs, deep nesting and syntax errors are fixtures; these two cannot be files there.
    let dir = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    let oversized = dir.path().join("oversized.toml");
    std::fs::write(&oversized, "# padding\n".repeat(30_000)).unwrap();
    match check_bounded(&oversized) {
        Ok(out) => failures.extend(crate::harness::refusal_problem(
            "oversized file",
            &out,
            &["--config", "262144-byte limit"],
        )),
        Err(e) => failures.push(format!("oversized file: {e}")),
    }
    // A FIFO in place of the file is refused without waiting for a writer.
    let fifo = dir.path().join("fifo.toml");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    match check_bounded(&fifo) {
        Ok(out) => failures.extend(crate::harness::refusal_problem(
            "fifo",
            &out,
            &["--config", "FIFO, not a regular file"],
        )),
        Err(e) => failures.push(format!("fifo: {e}")),
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
