//! Operator conventions through the real binary, the interface: node_exporter-style flags and
//! their aliases, the file and the environment, refusals of bad telemetry paths and log settings,
//! `--version` and build info, the telemetry path, and gzip-compressed scrapes.

use std::io::{Read as _, Write as _};
use std::process::Command;
use std::time::Duration;

use vram_testkit::wait::Wait;

use crate::conventions::{BIN, SCENARIO, WAIT};
use crate::harness::{refusal_problem, Exporter, Options};

type Args<'a> = &'a [&'a str];
type Env<'a> = &'a [(&'a str, &'a str)];

/// Waits until `/-/ready` answers 200.
fn wait_ready(e: &Exporter) {
    Wait::new("/-/ready to answer 200", WAIT)
        .must(|| (e.get("/-/ready").0 == 200).then_some(()).into());
}

/// `--check-config` with `args` and `env`: the effective configuration printed.
fn effective(args: &[&str], env: &[(&str, &str)]) -> String {
    let out = Command::new(BIN)
        .arg("--check-config")
        .args(args)
        .envs(env.iter().copied())
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn flags_aliases_file_and_environment() {
    let dir = tempfile::tempdir().unwrap();
    let defaults = effective(&[], &[]);
    for want in [
        "listen = \"0.0.0.0:18726\"",
        "telemetry_path = \"/metrics\"",
        "level = \"info\"",
        "format = \"text\"",
    ] {
        assert!(defaults.contains(want), "{want}:\n{defaults}");
    }
    let cases: &[(Args, Env, &str)] = &[
        (
            &["--web.listen-address", "127.0.0.1:1"],
            &[],
            "listen = \"127.0.0.1:1\"",
        ),
        (
            &["--listen", "127.0.0.1:2"],
            &[],
            "listen = \"127.0.0.1:2\"",
        ),
        (
            &["--web.telemetry-path", "/x/metrics"],
            &[],
            "telemetry_path = \"/x/metrics\"",
        ),
        (
            &[],
            &[("VRAM_EXPORTER__WEB__TELEMETRY_PATH", "/env")],
            "telemetry_path = \"/env\"",
        ),
        (&["--log.level", "debug"], &[], "level = \"debug\""),
        (
            &[],
            &[("VRAM_EXPORTER__LOG__LEVEL", "warn")],
            "level = \"warn\"",
        ),
        (&["--log.format", "json"], &[], "format = \"json\""),
        (&["--log-format", "json"], &[], "format = \"json\""),
        (
            &[],
            &[("VRAM_EXPORTER__LOG__FORMAT", "json")],
            "format = \"json\"",
        ),
    ];
    for (args, env, want) in cases {
        let got = effective(args, env);
        assert!(got.contains(want), "{args:?} {env:?}: want {want}:\n{got}");
    }
    // The file layer, through the --config.file alias; flags still win over it.
    let file = dir.path().join("c.toml");
    std::fs::write(
        &file,
        "[log]\nlevel = \"error\"\nformat = \"json\"\n[web]\ntelemetry_path = \"/file\"\n",
    )
    .unwrap();
    let f = file.to_str().unwrap();
    let got = effective(&["--config.file", f], &[]);
    for want in [
        "level = \"error\"",
        "format = \"json\"",
        "telemetry_path = \"/file\"",
    ] {
        assert!(got.contains(want), "{want}:\n{got}");
    }
    let got = effective(&["--config", f, "--log.level", "info"], &[]);
    assert!(got.contains("level = \"info\""), "{got}");
}

#[test]
fn bad_telemetry_paths_and_log_settings_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    std::fs::write(&file, "[log]\nformat = \"xml\"\n").unwrap();
    let f = file.to_str().unwrap();
    let cases: &[(&str, Args, Env, &[&str])] = &[
        (
            "relative path",
            &["--web.telemetry-path", "metrics"],
            &[],
            &["web.telemetry_path", "\"metrics\"", "must start with \"/\""],
        ),
        (
            "the status page",
            &["--web.telemetry-path", "/"],
            &[],
            &["web.telemetry_path", "collides with the / endpoint"],
        ),
        (
            "readiness",
            &[],
            &[("VRAM_EXPORTER__WEB__TELEMETRY_PATH", "/-/ready")],
            &["web.telemetry_path", "/-/ready"],
        ),
        (
            "the JSON API",
            &["--web.telemetry-path", "/api/v1/gpus"],
            &[],
            &["web.telemetry_path", "/api/v1/gpus"],
        ),
        (
            "a route parameter",
            &["--web.telemetry-path", "/{x}"],
            &[],
            &["web.telemetry_path", "'{'"],
        ),
        (
            "a wildcard",
            &["--web.telemetry-path", "/*rest"],
            &[],
            &["web.telemetry_path", "'*'"],
        ),
        (
            "a level",
            &["--log.level", "loud"],
            &[],
            &["log.level", "loud", "error, warn, info, debug, trace"],
        ),
        (
            "a format in the file",
            &["--config", f],
            &[],
            &["log.format", "xml"],
        ),
        (
            "RUST_LOG",
            &[],
            &[("RUST_LOG", "vram_exporter=loud")],
            &["RUST_LOG", "vram_exporter=loud"],
        ),
    ];
    let mut failures = Vec::new();
    for (what, args, env, words) in cases {
        let out = Command::new(BIN)
            .arg("--check-config")
            .args(*args)
            .envs(env.iter().copied())
            .output()
            .unwrap();
        failures.extend(refusal_problem(what, &out, words));
    }
    // A value clap knows to be wrong: refused by clap, with the choices on a second line.
    let out = Command::new(BIN)
        .args(["--check-config", "--log.format", "xml"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.code() != Some(2) || !stderr.contains("'xml' for '--log.format") {
        failures.push(format!("a format flag: {:?} {stderr}", out.status.code()));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn version_names_revision_date_rustc_and_target() {
    let out = Command::new(BIN).arg("--version").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        format!("vram-exporter {}", env!("CARGO_PKG_VERSION")),
        "{text}"
    );
    let field = |name: &str| {
        lines
            .iter()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .unwrap_or_else(|| panic!("no {name} in {text}"))
            .to_string()
    };
    let revision = field("revision");
    assert_eq!(revision, vram_exporter::base::build_info::REVISION);
    // Built from this git checkout (and no packager's override): the commit checked out.
    let head = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(crate::harness::repo())
        .output();
    if let (Ok(head), None) = (head, option_env!("VRAM_EXPORTER_REVISION")) {
        if head.status.success() {
            assert_eq!(revision, String::from_utf8_lossy(&head.stdout).trim());
        }
    }
    assert!(
        regex::Regex::new(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
            .unwrap()
            .is_match(&field("build date")),
        "{text}"
    );
    assert!(field("rustc").starts_with("rustc 1."), "{text}");
    assert!(field("target").contains("-linux-"), "{text}");
}

#[test]
fn telemetry_path_moves_the_metrics_and_nothing_else() {
    let e = Exporter::start(Options {
        scenario: SCENARIO,
        args: vec!["--web.telemetry-path".into(), "/prom/metrics".into()],
        ..Default::default()
    });
    wait_ready(&e);
    let (status, body) = e.get("/prom/metrics");
    assert_eq!(status, 200);
    let build_info = format!(
        "vram_exporter_build_info{{version=\"{}\",revision=\"{}\",driver_version=\"550.54.15\"}} 1",
        env!("CARGO_PKG_VERSION"),
        vram_exporter::base::build_info::REVISION
    );
    assert!(body.contains(&build_info), "{body}");
    assert_eq!(e.get("/metrics").0, 404);
    for path in ["/-/healthy", "/-/ready", "/api/v1/gpus"] {
        assert_eq!(e.get(path).0, 200, "{path}");
    }
    let (status, page) = e.get("/");
    assert_eq!(status, 200);
    assert!(
        page.contains("<a href=\"/prom/metrics\">/prom/metrics</a>"),
        "{page}"
    );
    assert!(
        page.contains(&format!(
            "vram-exporter {} ({})",
            env!("CARGO_PKG_VERSION"),
            vram_exporter::base::build_info::REVISION
        )),
        "{page}"
    );
}

/// One HTTP/1.1 GET with `headers`: (the response head, lowercased, and the body bytes).
fn raw_get(addr: &str, path: &str, headers: &[&str]) -> (String, Vec<u8>) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    (head, raw[split + 4..].to_vec())
}

fn families(text: &str) -> Vec<&str> {
    let mut f: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .collect();
    f.sort_unstable();
    f
}

#[test]
fn gzip_when_asked_and_plain_otherwise() {
    let e = Exporter::start(Options {
        scenario: SCENARIO,
        ..Default::default()
    });
    wait_ready(&e);
    let (head, plain) = raw_get(&e.addr, "/metrics", &[]);
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(!head.contains("content-encoding"), "{head}");
    assert!(head.contains("\r\nvary: accept-encoding"), "{head}");
    let plain = String::from_utf8(plain).unwrap();

    // What Prometheus sends.
    for ask in [
        "Accept-Encoding: gzip",
        "Accept-Encoding: br;q=1.0, gzip;q=0.8, *;q=0.1",
    ] {
        let (head, body) = raw_get(&e.addr, "/metrics", &[ask]);
        assert!(head.contains("\r\ncontent-encoding: gzip"), "{ask}: {head}");
        assert!(head.contains("\r\nvary: accept-encoding"), "{head}");
        assert!(
            head.contains("content-type: text/plain; version=0.0.4"),
            "{head}"
        );
        let mut text = String::new();
        flate2::read::GzDecoder::new(&body[..])
            .read_to_string(&mut text)
            .expect("one valid gzip member");
        assert!(
            body.len() * 3 < text.len(),
            "{} compressed of {}",
            body.len(),
            text.len()
        );
        assert!(text.contains("vram_total_bytes{gpu=\"0\""), "{text}");
        assert!(
            text.contains("# TYPE process_resident_memory_bytes gauge"),
            "{text}"
        );
        assert!(text.ends_with('\n'));
        assert_eq!(families(&text), families(&plain));
        crate::golden::promtool_check(&text);
    }
    for refuse in [
        "Accept-Encoding: gzip;q=0",
        "Accept-Encoding: identity",
        "Accept-Encoding: br",
    ] {
        let (head, body) = raw_get(&e.addr, "/metrics", &[refuse]);
        assert!(!head.contains("content-encoding"), "{refuse}: {head}");
        assert!(String::from_utf8(body)
            .unwrap()
            .contains("vram_total_bytes"));
    }
}
