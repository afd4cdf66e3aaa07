//! Invalid configurations: each one exits 2 with a message naming the key and the value.

use std::process::Command;

/// (what, config file, extra env, extra args, words the message must contain)
type Case<'a> = (
    &'a str,
    &'a str,
    &'a [(&'a str, &'a str)],
    &'a [&'a str],
    &'a [&'a str],
);

const CASES: &[Case] = &[
    (
        "bad size",
        "[limits]\nhard = \"70 GiBB\"\n",
        &[],
        &[],
        &["limits.hard", "70 GiBB"],
    ),
    (
        "soft >= hard",
        "[limits]\nsoft = \"95%\"\nhard = \"90%\"\n",
        &[],
        &[],
        &["limits.soft", "95%", "lower than"],
    ),
    (
        "soft >= hard bytes",
        "[limits]\nsoft = \"70GiB\"\nhard = \"60GiB\"\n",
        &[],
        &[],
        &["limits.soft", "70GiB"],
    ),
    (
        "percent over 100",
        "[limits]\nhard = \"120%\"\n",
        &[],
        &[],
        &["limits.hard", "120%"],
    ),
    (
        "unknown key",
        "[poll]\nintervall = \"1s\"\n",
        &[],
        &[],
        &["intervall", "poll"],
    ),
    (
        "unknown section",
        "[polling]\ninterval = \"1s\"\n",
        &[],
        &[],
        &["polling"],
    ),
    (
        "bad duration",
        "[poll]\ninterval = \"fast\"\n",
        &[],
        &[],
        &["poll.interval", "fast"],
    ),
    (
        "interval too short",
        "[poll]\ninterval = \"10ms\"\n",
        &[],
        &[],
        &["poll.interval", "10ms", "100ms"],
    ),
    (
        "bad listen address",
        "[web]\nlisten = \"localhost\"\n",
        &[],
        &[],
        &["web.listen", "localhost"],
    ),
    (
        "bad listen flag",
        "",
        &[],
        &["--listen", "999.1.1.1:80"],
        &["web.listen", "999.1.1.1:80"],
    ),
    (
        "bad env override",
        "",
        &[("VRAM_EXPORTER__LIMITS__SOFT", "lots")],
        &[],
        &["limits.soft", "lots"],
    ),
    (
        "unknown env key",
        "",
        &[("VRAM_EXPORTER__POLL__SPEED", "2")],
        &[],
        &["speed"],
    ),
    (
        "bad env number",
        "",
        &[("VRAM_EXPORTER__PROCESSES__MAX_PER_GPU", "many")],
        &[],
        &["max_per_gpu", "many"],
    ),
    (
        "too many processes",
        "[processes]\nmax_per_gpu = 100000\n",
        &[],
        &[],
        &["processes.max_per_gpu", "100000"],
    ),
    (
        "override without matcher",
        "[[limits.overrides]]\nsoft = \"50%\"\n",
        &[],
        &[],
        &["limits.overrides[0]"],
    ),
    (
        "override two matchers",
        "[[limits.overrides]]\nindex = 1\nmodel = \"X\"\n",
        &[],
        &[],
        &["limits.overrides[0]", "exactly one"],
    ),
    (
        "floor window too long",
        "[leak]\nwindow = \"1m\"\nfloor_window = \"2m\"\n",
        &[],
        &[],
        &["leak.floor_window", "2m"],
    ),
    (
        "wrong type",
        "[poll]\ninterval = [1]\n",
        &[],
        &[],
        &["poll.interval"],
    ),
    (
        "hysteresis too large",
        "[limits]\nhysteresis = \"60%\"\n",
        &[],
        &[],
        &["limits.hysteresis", "60%"],
    ),
    (
        "zero concurrency",
        "[web]\nmax_concurrent_requests = 0\n",
        &[],
        &[],
        &["web.max_concurrent_requests", "0"],
    ),
    (
        "kill without allow_kill",
        "[cleanup]\n[[cleanup.actions]]\ntype = \"kill\"\n",
        &[],
        &[],
        &["cleanup.actions[0].type", "kill", "allow_kill"],
    ),
    (
        "SIGKILL in a signal action",
        "[cleanup]\n[[cleanup.actions]]\ntype = \"signal\"\nsignal = \"SIGKILL\"\ntarget = \"all\"\n",
        &[],
        &[],
        &["cleanup.actions[0].signal", "SIGKILL"],
    ),
    (
        "SIGSTOP in a signal action",
        "[cleanup]\n[[cleanup.actions]]\ntype = \"signal\"\nsignal = \"SIGSTOP\"\ntarget = \"all\"\n",
        &[],
        &[],
        &["cleanup.actions[0].signal", "SIGSTOP"],
    ),
    (
        "unknown signal name",
        "[cleanup]\n[[cleanup.actions]]\ntype = \"signal\"\nsignal = \"SIGFOO\"\ntarget = \"all\"\n",
        &[],
        &[],
        &["cleanup.actions[0].signal", "SIGFOO"],
    ),
    (
        "empty exec argv",
        "[cleanup]\n[[cleanup.actions]]\ntype = \"exec\"\nargv = []\n",
        &[],
        &[],
        &["cleanup.actions[0].argv", "[]"],
    ),
    (
        "non-http webhook url",
        "[cleanup]\n[[cleanup.actions]]\ntype = \"webhook\"\nurl = \"ftp://hooks.example/x\"\n",
        &[],
        &[],
        &["cleanup.actions[0].url", "ftp://hooks.example/x", "http"],
    ),
    (
        "bad regex",
        "[cleanup]\nallow_kill = true\n[[cleanup.actions]]\ntype = \"kill\"\navoid = \"(sshd\"\n",
        &[],
        &[],
        &["cleanup.actions[0].avoid", "(sshd", "regex"],
    ),
    (
        "zero timeout",
        "[cleanup]\n[[cleanup.actions]]\ntype = \"exec\"\nargv = [\"true\"]\ntimeout = \"0s\"\n",
        &[],
        &[],
        &["cleanup.actions[0].timeout", "0s"],
    ),
    (
        "huge timeout",
        "[cleanup]\n[[cleanup.actions]]\ntype = \"webhook\"\nurl = \"https://h/x\"\ntimeout = \"3h\"\n",
        &[],
        &[],
        &["cleanup.actions[0].timeout", "3h"],
    ),
    (
        "enabled without actions",
        "[cleanup]\nenabled = true\n",
        &[],
        &[],
        &["cleanup.actions", "no action"],
    ),
    (
        "unknown action type",
        "[cleanup]\n[[cleanup.actions]]\ntype = \"reboot\"\n",
        &[],
        &[],
        &["cleanup.actions[0].type", "reboot"],
    ),
    (
        "key of another action type",
        "[cleanup]\n[[cleanup.actions]]\ntype = \"signal\"\ntarget = \"all\"\nargv = [\"x\"]\n",
        &[],
        &[],
        &["cleanup.actions[0].argv", "signal"],
    ),
    (
        "bad cooldown",
        "[cleanup]\ncooldown = \"soon\"\n",
        &[],
        &[],
        &["cleanup.cooldown", "soon"],
    ),
    (
        "unknown cleanup key",
        "[cleanup]\nenable = true\n",
        &[],
        &[],
        &["enable"],
    ),
    // Upper bounds: values `--check-config` once accepted and the running exporter then could
    // not survive (a panic per connection, an abort on allocation, gigabytes reserved).
    (
        "request timeout of 300 billion years",
        "[web]\nrequest_timeout = \"300000000000y\"\n",
        &[],
        &[],
        &["web.request_timeout", "300000000000y", "between 10ms and 10m"],
    ),
    (
        "leak window of 10,000 years",
        "[leak]\nwindow = \"10000y\"\n",
        &[],
        &[],
        &["leak.window", "10000y", "between 1s and 7days"],
    ),
    (
        "leak window of a year in 1s floors",
        "[leak]\nwindow = \"1y\"\nfloor_window = \"1s\"\n",
        &[],
        &[],
        &["leak.window", "1y", "7days"],
    ),
    (
        "floor window under 1/256 of the window",
        "[leak]\nwindow = \"7d\"\nfloor_window = \"1s\"\n",
        &[],
        &[],
        &["leak.floor_window", "1s", "1/256 of leak.window"],
    ),
    (
        "floor window of 10,000 years",
        "[leak]\nfloor_window = \"10000y\"\n",
        &[],
        &[],
        &["leak.floor_window", "10000y", "7days"],
    ),
    (
        "poll interval of two hours",
        "[poll]\ninterval = \"2h\"\n",
        &[],
        &[],
        &["poll.interval", "2h", "1h"],
    ),
    (
        "hard limit of 2 PiB",
        "[limits]\nhard = \"2PiB\"\n",
        &[],
        &[],
        &["limits.hard", "2PiB", "at most 1PiB"],
    ),
    (
        "hysteresis past u64 through the environment",
        "",
        &[("VRAM_EXPORTER__LIMITS__HYSTERESIS", "20000PiB")],
        &[],
        &["limits.hysteresis", "20000PiB"],
    ),
    (
        "override soft limit of 5 EiB",
        "[[limits.overrides]]\nindex = 0\nsoft = \"5EiB\"\n",
        &[],
        &[],
        &["limits.overrides[0].soft", "5EiB", "1PiB"],
    ),
    (
        "kill after of a year",
        "[cleanup]\nallow_kill = true\n[[cleanup.actions]]\ntype = \"kill\"\nafter = \"1y\"\n",
        &[],
        &[],
        &["cleanup.actions[0].after", "1y", "1day"],
    ),
    (
        "cooldown of a year",
        "[cleanup]\ncooldown = \"1y\"\n",
        &[],
        &[],
        &["cleanup.cooldown", "1y", "1day"],
    ),
    (
        "kill grace of a day",
        "[cleanup]\nallow_kill = true\n[[cleanup.actions]]\ntype = \"kill\"\ngrace = \"1d\"\n",
        &[],
        &[],
        &["cleanup.actions[0].grace", "1d", "10m"],
    ),
];

#[test]
fn invalid_configurations_exit_2_naming_key_and_value() {
    let dir = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for (i, (what, file, env, args, words)) in CASES.iter().enumerate() {
        let path = dir.path().join(format!("case{i}.toml"));
        std::fs::write(&path, file).unwrap();
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

/// Runs `--check-config` on a file under a 1 GiB address-space limit and a 30 s bound, so a
/// parser that expands without limit fails this test instead of exhausting the machine.
fn check_bounded(path: &std::path::Path) -> Result<std::process::Output, String> {
    use std::os::unix::process::CommandExt as _;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vram-exporter"));
    cmd.arg("--config").arg(path).arg("--check-config");
    // SAFETY: setrlimit is async-signal-safe; the closure touches nothing else.
    unsafe {
        cmd.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 1 << 30,
                rlim_max: 1 << 30,
            };
            libc::setrlimit(libc::RLIMIT_AS, &limit);
            Ok(())
        });
    }
    let child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(std::time::Duration::from_secs(30)) {
        Ok(out) => Ok(out.unwrap()),
        Err(_) => {
            // SAFETY: our own child, still unreaped (the waiting thread holds it).
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            Err(format!("--check-config on {} ran for 30s", path.display()))
        }
    }
}

#[test]
fn configuration_bombs_and_oversized_files_exit_2_at_once_on_one_line() {
    let dir = tempfile::tempdir().unwrap();
    // The alias bomb: 9 lists of 9 references each, 9^9 = 387 million strings once expanded.
    let mut bomb = String::from(
        "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
    );
    for (prev, name) in "abcdefgh".chars().zip("bcdefghi".chars()) {
        let refs = vec![format!("*{prev}"); 9].join(",");
        bomb.push_str(&format!("{name}: &{name} [{refs}]\n"));
    }
    let deep_block: String = (0..200)
        .map(|i| format!("{}k{i}:\n", "  ".repeat(i)))
        .collect::<String>()
        + &"  ".repeat(200)
        + "v: 1\n";
    let deep_alias = "x: &x [[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]\n\
                      y: &y [[[[[[[[[[[[[[[[*x]]]]]]]]]]]]]]]]\npoll: {interval: 1s}\n"
        .to_string();
    let cases: Vec<(&str, &str, String, Vec<&str>)> = vec![
        (
            "alias bomb",
            "yaml",
            bomb,
            vec!["--config", "100000 YAML nodes", "aliases"],
        ),
        (
            "deep block maps",
            "yaml",
            deep_block,
            vec!["--config", "nested deeper than 32"],
        ),
        (
            "deep through aliases",
            "yaml",
            deep_alias,
            vec!["--config", "nested deeper than 32", "aliases"],
        ),
        (
            "oversized file",
            "toml",
            "# padding\n".repeat(30_000),
            vec!["--config", "262144-byte limit"],
        ),
        (
            "toml syntax error",
            "toml",
            "[poll]\ninterval = \"1s\n[web]\n".into(),
            vec!["--config", "not valid TOML at line 2 column 15"],
        ),
        (
            "deeply nested toml",
            "toml",
            format!("x = {}1{}\n", "[".repeat(5000), "]".repeat(5000)),
            vec!["--config", "not valid TOML"],
        ),
        (
            "yaml syntax error",
            "yaml",
            "poll:\n  interval: [1s\nweb: {\n".into(),
            vec!["--config", "not valid YAML"],
        ),
    ];
    let mut failures = Vec::new();
    for (i, (what, ext, text, words)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("bomb{i}.{ext}"));
        std::fs::write(&path, text).unwrap();
        match check_bounded(&path) {
            Ok(out) => failures.extend(crate::harness::refusal_problem(what, &out, words)),
            Err(e) => failures.push(format!("{what}: {e}")),
        }
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
