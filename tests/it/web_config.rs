//! The `--web.config.file` keys: every documented one accepted, invalid files refused with exit 2
//! naming the key, by `--check-config` and at start-up. The PKI is `tls.rs`'s.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::tls::{hash, write_atomic, Pki, TLS_ONLY};

/// (what, web config file or None for a missing file, words the message must contain)
type Case<'a> = (&'a str, Option<String>, &'a [&'a str]);

#[test]
fn invalid_web_configurations_exit_2_naming_the_key() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    pki.write(dir.path());
    write_atomic(&dir.path().join("junk.pem"), "not a certificate\n");
    write_atomic(&dir.path().join("other.key"), &pki.client.key);
    let tls = |extra: &str| Some(format!("{TLS_ONLY}{extra}"));
    let cases: Vec<Case> = vec![
        ("missing file", None, &["web.config_file"]),
        ("unknown top-level key", Some("basic_auth:\n  a: b\n".into()), &["basic_auth"]),
        (
            "unknown TLS key",
            Some("tls_server_config:\n  cert_fil: server.pem\n".into()),
            &["tls_server_config", "cert_fil"],
        ),
        (
            "unreadable certificate",
            Some("tls_server_config:\n  cert_file: nowhere.pem\n  key_file: server.key\n".into()),
            &["tls_server_config.cert_file", "nowhere.pem"],
        ),
        (
            "certificate not PEM",
            Some("tls_server_config:\n  cert_file: junk.pem\n  key_file: server.key\n".into()),
            &["tls_server_config.cert_file", "junk.pem"],
        ),
        (
            "key of another certificate",
            Some("tls_server_config:\n  cert_file: server.pem\n  key_file: other.key\n".into()),
            &["tls_server_config.key_file"],
        ),
        (
            "no key",
            Some("tls_server_config:\n  cert_file: server.pem\n".into()),
            &["tls_server_config.key_file"],
        ),
        (
            "file and inline certificate",
            tls("  cert: inline\n"),
            &["tls_server_config.cert_file", "not both"],
        ),
        (
            "non-bcrypt hash",
            Some("basic_auth_users:\n  alice: plaintext\n".into()),
            &["basic_auth_users.alice", "bcrypt"],
        ),
        ("TLS 1.0", tls("  min_version: TLS10\n"), &["tls_server_config.min_version", "TLS10"]),
        ("TLS 1.1 max", tls("  max_version: TLS11\n"), &["tls_server_config.max_version", "TLS11"]),
        ("unknown version", tls("  min_version: SSL3\n"), &["tls_server_config.min_version"]),
        (
            "unknown client auth type",
            tls("  client_auth_type: Sometimes\n"),
            &["tls_server_config.client_auth_type", "Sometimes"],
        ),
        (
            "verification without a CA",
            tls("  client_auth_type: RequireAndVerifyClientCert\n"),
            &["tls_server_config.client_ca_file"],
        ),
        (
            "a CA without client auth",
            tls("  client_ca_file: ca.pem\n"),
            &["tls_server_config.client_auth_type"],
        ),
        (
            "allowed SANs with optional certificates",
            tls("  client_auth_type: VerifyClientCertIfGiven\n  client_ca_file: ca.pem\n  client_allowed_sans: [a]\n"),
            &["tls_server_config.client_allowed_sans"],
        ),
        (
            "CBC cipher suite",
            tls("  cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA]\n"),
            &["tls_server_config.cipher_suites", "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA"],
        ),
        (
            "P-521",
            tls("  curve_preferences: [CurveP521]\n"),
            &["tls_server_config.curve_preferences", "CurveP521"],
        ),
        (
            "forbidden header",
            Some("http_server_config:\n  headers:\n    Authorization: x\n".into()),
            &["http_server_config.headers.Authorization"],
        ),
        (
            "bad header value",
            Some("http_server_config:\n  headers:\n    X-Frame-Options: allow\n".into()),
            &["http_server_config.headers.X-Frame-Options", "allow"],
        ),
        (
            "rate limit without burst",
            Some("rate_limit:\n  interval: 1s\n".into()),
            &["rate_limit.burst"],
        ),
        (
            "unknown extension key",
            Some("vram_exporter:\n  open_health: true\n".into()),
            &["vram_exporter", "open_health"],
        ),
    ];
    let mut failures = Vec::new();
    for (i, (what, file, words)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("case{i}.yml"));
        if let Some(text) = file {
            std::fs::write(&path, text).unwrap();
        }
        let out = check_config(&path);
        failures.extend(crate::harness::refusal_problem(what, &out, words));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_documented_key_is_accepted() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    pki.write(dir.path());
    let path = dir.path().join("web.yml");
    std::fs::write(
        &path,
        format!(
            "tls_server_config:
  cert_file: server.pem
  key_file: server.key
  client_auth_type: RequireAndVerifyClientCert
  client_ca_file: ca.pem
  client_allowed_sans: [scraper.example]
  min_version: TLS12
  max_version: TLS13
  cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, TLS_AES_128_GCM_SHA256]
  prefer_server_cipher_suites: false
  curve_preferences: [X25519, CurveP256, CurveP384]
http_server_config:
  http2: false
  headers:
    Content-Security-Policy: default-src 'self'
    X-Frame-Options: sameorigin
    X-Content-Type-Options: nosniff
    X-XSS-Protection: '1; mode=block'
    Strict-Transport-Security: max-age=300
basic_auth_users:
  alice: '{}'
rate_limit:
  interval: 100ms
  burst: 10
vram_exporter:
  unauthenticated_health: false
",
            hash("x")
        ),
    )
    .unwrap();
    let out = check_config(&path);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The inline forms of certificate, key and CA.
    let inline = PathBuf::from(dir.path()).join("inline.yml");
    let indent = |pem: &str| {
        pem.lines()
            .map(|l| format!("    {l}\n"))
            .collect::<String>()
    };
    std::fs::write(
        &inline,
        format!(
            "tls_server_config:\n  cert: |\n{}  key: |\n{}  client_ca: |\n{}  client_auth_type: RequireAnyClientCert\n",
            indent(&pki.server.cert),
            indent(&pki.server.key),
            indent(&pki.ca.pem()),
        ),
    )
    .unwrap();
    let out = check_config(&inline);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn check_config(web_config: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_vram-exporter"))
        .arg("--web.config.file")
        .arg(web_config)
        .arg("--check-config")
        .output()
        .unwrap()
}
