//! `--web.config.file` end to end: TLS, client certificates, basic auth, headers, reload without a
//! restart, and refusal of invalid files — against the real binary, with certificates made here.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    SerialNumber,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use crate::harness::{Exporter, Options};

const ONE_GPU: &str = r#"
driver_version = "550.54.15"

[[device]]
name = "NVIDIA H100 80GB HBM3"
uuid = "GPU-00000000-0000-0000-0000-000000000000"
pci_bus_id = "00000000:01:00.0"
total = "80GiB"
"#;

/// A certificate and its key, PEM.
struct Leaf {
    cert: String,
    key: String,
    der: Vec<u8>,
}

/// A test CA with a server certificate for 127.0.0.1/localhost and two client certificates: one
/// it signed and one self-signed.
struct Pki {
    ca: CertifiedIssuer<'static, KeyPair>,
    server: Leaf,
    client: Leaf,
    stranger: Leaf,
}

impl Pki {
    fn new() -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "vram-exporter test CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let server = Self::leaf(&ca, &["localhost", "127.0.0.1"], 1, false);
        let client = Self::leaf(&ca, &["scraper.example"], 2, true);
        let mut params = CertificateParams::new(vec!["scraper.example".to_string()]).unwrap();
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let stranger = Leaf {
            cert: cert.pem(),
            key: key.serialize_pem(),
            der: cert.der().to_vec(),
        };
        Pki {
            ca,
            server,
            client,
            stranger,
        }
    }

    fn leaf(
        ca: &CertifiedIssuer<'static, KeyPair>,
        names: &[&str],
        serial: u64,
        client: bool,
    ) -> Leaf {
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.serial_number = Some(SerialNumber::from(serial));
        params.extended_key_usages = vec![if client {
            ExtendedKeyUsagePurpose::ClientAuth
        } else {
            ExtendedKeyUsagePurpose::ServerAuth
        }];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, ca).unwrap();
        Leaf {
            cert: cert.pem(),
            key: key.serialize_pem(),
            der: cert.der().to_vec(),
        }
    }

    /// Writes ca.pem, server.pem and server.key into `dir`.
    fn write(&self, dir: &Path) {
        write_atomic(&dir.join("ca.pem"), &self.ca.pem());
        write_atomic(&dir.join("server.pem"), &self.server.cert);
        write_atomic(&dir.join("server.key"), &self.server.key);
    }

    /// A client trusting this CA, presenting `identity` if given.
    fn client_config(&self, identity: Option<&Leaf>) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca.der().clone()).unwrap();
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
        let config = match identity {
            None => builder.with_no_client_auth(),
            Some(leaf) => {
                let chain: Vec<CertificateDer<'static>> =
                    CertificateDer::pem_slice_iter(leaf.cert.as_bytes())
                        .collect::<Result<_, _>>()
                        .unwrap();
                let key = PrivateKeyDer::from_pem_slice(leaf.key.as_bytes()).unwrap();
                builder.with_client_auth_cert(chain, key).unwrap()
            }
        };
        Arc::new(config)
    }
}

fn write_atomic(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// One HTTP/1.1 exchange over TLS.
struct Reply {
    status: u16,
    head: String,
    body: String,
    /// The DER of the certificate the server presented.
    server_cert: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// GET `path` over TLS with `config`; Err when the connection or handshake fails.
fn https(
    addr: &str,
    path: &str,
    config: &Arc<rustls::ClientConfig>,
    auth: Option<(&str, &str)>,
) -> Result<Reply, String> {
    let tcp = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    tcp.set_write_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let name = ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into());
    let conn = rustls::ClientConnection::new(config.clone(), name).map_err(|e| e.to_string())?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some((user, password)) = auth {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        request.push_str(&format!("Authorization: Basic {token}\r\n"));
    }
    request.push_str("\r\n");
    tls.write_all(request.as_bytes())
        .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match tls.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            // A peer that closes without close_notify after a complete answer.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => break,
            Err(e) => return Err(e.to_string()),
        }
    }
    let server_cert = tls
        .conn
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.to_vec())
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no HTTP answer: {text:?}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line: {head:?}"))?;
    Ok(Reply {
        status,
        head: head.to_string(),
        body: body.to_string(),
        server_cert,
    })
}

/// A bcrypt hash at cost 4: real, and fast enough for tests.
fn hash(password: &str) -> String {
    bcrypt::hash(password, 4).unwrap()
}

/// Writes `yaml` as web.yml in `dir` and starts the exporter with it.
fn start(dir: &Path, yaml: &str) -> Exporter {
    let path = dir.join("web.yml");
    write_atomic(&path, yaml);
    Exporter::start(Options {
        scenario: ONE_GPU,
        args: vec!["--web.config.file".into(), path.display().to_string()],
        ..Default::default()
    })
}

const TLS_ONLY: &str = "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n";

/// Retries `f` until it returns Some, for changes picked up by the once-a-second reload.
fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn https_scrape_succeeds_and_plain_http_to_it_fails() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    pki.write(dir.path());
    let e = start(dir.path(), TLS_ONLY);
    assert!(e
        .wait_log(|l| l.contains("TLS is enabled"), Duration::from_secs(5))
        .is_some());

    let reply = https(&e.addr, "/metrics", &pki.client_config(None), None).unwrap();
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(reply.body.contains("vram_exporter_"), "{}", reply.body);
    assert_eq!(reply.server_cert, pki.server.der);

    // A plain HTTP request reaches the TLS listener as a bad handshake: no HTTP answer comes back.
    let mut tcp = TcpStream::connect(&e.addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    tcp.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    let _ = tcp.read_to_end(&mut answer);
    assert!(
        !answer.starts_with(b"HTTP/"),
        "plain HTTP got an HTTP answer: {:?}",
        String::from_utf8_lossy(&answer)
    );

    // The TLS listener still serves after the bad client, and shuts down cleanly.
    assert_eq!(
        https(&e.addr, "/-/healthy", &pki.client_config(None), None)
            .unwrap()
            .status,
        200
    );
    assert!(e.terminate().success());
}

#[test]
fn client_certificates_are_required_and_verified() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    pki.write(dir.path());
    let e = start(
        dir.path(),
        &format!(
            "{TLS_ONLY}  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n"
        ),
    );
    let anonymous = https(&e.addr, "/metrics", &pki.client_config(None), None);
    assert!(anonymous.is_err(), "no client certificate was accepted");
    let stranger = https(
        &e.addr,
        "/metrics",
        &pki.client_config(Some(&pki.stranger)),
        None,
    );
    assert!(
        stranger.is_err(),
        "a certificate not from the CA was accepted"
    );
    let signed = https(
        &e.addr,
        "/metrics",
        &pki.client_config(Some(&pki.client)),
        None,
    )
    .unwrap();
    assert_eq!(signed.status, 200, "{}", signed.body);
    drop(e);

    // client_allowed_sans: a CA-signed certificate whose SANs are not listed is refused too.
    let e = start(
        dir.path(),
        &format!(
            "{TLS_ONLY}  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n  client_allowed_sans: [other.example]\n"
        ),
    );
    let unlisted = https(
        &e.addr,
        "/metrics",
        &pki.client_config(Some(&pki.client)),
        None,
    );
    assert!(
        unlisted.is_err(),
        "a SAN outside client_allowed_sans was accepted"
    );
}

#[test]
fn basic_auth_and_headers_over_tls() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    pki.write(dir.path());
    let e = start(
        dir.path(),
        &format!(
            "{TLS_ONLY}http_server_config:\n  headers:\n    X-Frame-Options: deny\n    Strict-Transport-Security: max-age=31536000\nbasic_auth_users:\n  alice: '{}'\n",
            hash("wonderland")
        ),
    );
    let tls = pki.client_config(None);
    let get = |path: &str, auth: Option<(&str, &str)>| https(&e.addr, path, &tls, auth).unwrap();

    for (what, auth) in [
        ("no credentials", None),
        ("wrong password", Some(("alice", "looking-glass"))),
        ("unknown user", Some(("mallory", "wonderland"))),
        ("empty password", Some(("alice", ""))),
    ] {
        let r = get("/metrics", auth);
        assert_eq!(r.status, 401, "{what}");
        assert_eq!(r.header("www-authenticate"), Some("Basic"), "{what}");
        assert_eq!(
            r.header("x-frame-options"),
            Some("deny"),
            "{what}: headers on a 401"
        );
    }
    let ok = get("/metrics", Some(("alice", "wonderland")));
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert!(ok.body.contains("vram_exporter_"));
    assert_eq!(ok.header("x-frame-options"), Some("deny"));
    assert_eq!(
        ok.header("strict-transport-security"),
        Some("max-age=31536000")
    );
    // Served from the verification cache the second time; same answer.
    assert_eq!(get("/metrics", Some(("alice", "wonderland"))).status, 200);
    // Health follows the same auth unless the file opens it.
    assert_eq!(get("/-/healthy", None).status, 401);
    assert_eq!(get("/-/healthy", Some(("alice", "wonderland"))).status, 200);
    assert_eq!(get("/no-such-page", None).status, 401);
}

#[test]
fn basic_auth_without_tls_and_the_health_extension() {
    let dir = tempfile::tempdir().unwrap();
    let e = start(
        dir.path(),
        &format!(
            "basic_auth_users:\n  alice: '{}'\nvram_exporter:\n  unauthenticated_health: true\n",
            hash("wonderland")
        ),
    );
    assert!(e
        .wait_log(|l| l.contains("TLS is disabled"), Duration::from_secs(5))
        .is_some());
    assert_eq!(
        e.get("/-/healthy").0,
        200,
        "health is open by the extension"
    );
    assert_eq!(e.get("/metrics").0, 401);
    assert_eq!(e.get("/api/v1/gpus").0, 401);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let token = base64::engine::general_purpose::STANDARD.encode("alice:wonderland");
    let resp = agent
        .get(e.url("/metrics"))
        .header("Authorization", format!("Basic {token}"))
        .call()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
}

#[test]
fn a_certificate_swapped_on_disk_is_served_without_restart() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    pki.write(dir.path());
    let e = start(dir.path(), TLS_ONLY);
    let tls = pki.client_config(None);
    let before = https(&e.addr, "/-/healthy", &tls, None).unwrap();
    assert_eq!(before.server_cert, pki.server.der);

    let renewed = Pki::leaf(&pki.ca, &["localhost", "127.0.0.1"], 99, false);
    // Key first, then certificate: a reload may see the new key with the old certificate, which
    // fails the check and keeps the old pair until the certificate lands.
    write_atomic(&dir.path().join("server.key"), &renewed.key);
    write_atomic(&dir.path().join("server.pem"), &renewed.cert);
    let served = eventually("the renewed certificate", || {
        let r = https(&e.addr, "/-/healthy", &tls, None).ok()?;
        (r.server_cert != pki.server.der).then_some(r)
    });
    assert_eq!(served.server_cert, renewed.der);
    assert_eq!(served.status, 200);
    assert!(e
        .wait_log(
            |l| l.contains("web configuration reloaded"),
            Duration::from_secs(5)
        )
        .is_some());
}

#[test]
fn users_changed_in_the_file_take_effect_and_a_bad_edit_keeps_the_last_good_one() {
    let dir = tempfile::tempdir().unwrap();
    let web = dir.path().join("web.yml");
    let e = start(
        dir.path(),
        &format!("basic_auth_users:\n  alice: '{}'\n", hash("one")),
    );
    let status = |user: &str, password: &str, e: &Exporter| {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        agent
            .get(e.url("/metrics"))
            .header("Authorization", format!("Basic {token}"))
            .call()
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(status("alice", "one", &e), 200);

    write_atomic(&web, "basic_auth_users:\n  alice: not-a-bcrypt-hash\n");
    let line = e
        .wait_log(
            |l| l.contains("keeping the last good one"),
            Duration::from_secs(20),
        )
        .expect("the bad edit is logged");
    assert!(line.contains("basic_auth_users.alice"), "{line}");
    assert_eq!(status("alice", "one", &e), 200, "the last good users stay");

    write_atomic(
        &web,
        &format!("basic_auth_users:\n  bob: '{}'\n", hash("two")),
    );
    eventually("bob to be let in", || {
        (status("bob", "two", &e) == 200).then_some(())
    });
    assert_eq!(status("alice", "one", &e), 401, "alice was removed");
}

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

#[test]
fn a_thousand_silent_sockets_do_not_delay_an_https_scrape() {
    // This process opens ~1,000 sockets.
    crate::harness::raise_own_fd_limit();
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    pki.write(dir.path());
    let e = start(dir.path(), TLS_ONLY);
    let tls = pki.client_config(None);
    assert_eq!(
        https(&e.addr, "/-/healthy", &tls, None).unwrap().status,
        200
    );
    // Connections that never send a ClientHello, as a port scanner or a stuck client leaves them:
    // 300 (within the listen backlog, so all are connected at once), then 1,000.
    let mut silent: Vec<TcpStream> = Vec::new();
    for (batch, scrapes) in [(300, 3), (700, 3)] {
        silent.extend((0..batch).map(|_| TcpStream::connect(&e.addr).unwrap()));
        std::thread::sleep(Duration::from_millis(200));
        // Each scrape on a new connection, as Prometheus does once keep-alive lapses.
        for _ in 0..scrapes {
            let t = Instant::now();
            let reply = https(&e.addr, "/metrics", &tls, None);
            eprintln!(
                "HTTPS scrape behind {} silent sockets: {:?}",
                silent.len(),
                t.elapsed()
            );
            assert_eq!(reply.map(|r| r.status), Ok(200));
            // Generous: before, each scrape waited for a 10 s handshake slot (or timed out).
            assert!(
                t.elapsed() < Duration::from_secs(5),
                "an HTTPS scrape took {:?} behind {} silent sockets",
                t.elapsed(),
                silent.len()
            );
        }
    }
    drop(silent);
}

#[test]
fn a_reload_that_lowers_security_is_refused_until_a_restart() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    pki.write(dir.path());
    let web = dir.path().join("web.yml");
    let strict = format!(
        "{TLS_ONLY}  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\nbasic_auth_users:\n  alice: '{}'\n",
        hash("wonderland")
    );
    let e = start(dir.path(), &strict);
    let client = pki.client_config(Some(&pki.client));
    let anonymous = pki.client_config(None);
    let status = |auth| https(&e.addr, "/metrics", &client, auth).map(|r| r.status);
    assert_eq!(status(Some(("alice", "wonderland"))), Ok(200));

    let weaker = [
        ("empty", String::new()),
        ("comment-only", "# being rewritten\n".to_string()),
        ("no users", format!("{TLS_ONLY}  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n")),
        ("no client certificates", format!("{TLS_ONLY}basic_auth_users:\n  alice: '{}'\n", hash("wonderland"))),
        ("TLS off", format!("basic_auth_users:\n  alice: '{}'\n", hash("wonderland"))),
    ];
    for (i, (what, text)) in weaker.iter().enumerate() {
        write_atomic(&web, text);
        let seen = e.log().len();
        // The refusal is logged at WARN (or ERROR for TLS), and nothing changes.
        eventually(what, || {
            e.log()[seen..]
                .iter()
                .any(|l| {
                    l.contains("keeping the last good one")
                        || l.contains("keeping the running configuration")
                })
                .then_some(())
        });
        assert_eq!(
            status(None),
            Ok(401),
            "{what}: a password is still required"
        );
        assert!(
            https(
                &e.addr,
                "/metrics",
                &anonymous,
                Some(("alice", "wonderland"))
            )
            .is_err(),
            "{what}: a client certificate is still required"
        );
        assert_eq!(
            status(Some(("alice", "wonderland"))),
            Ok(200),
            "{what} ({i})"
        );
    }
    let warned = e
        .log()
        .into_iter()
        .filter(|l| {
            l.contains("\"level\":\"warn\"") && l.contains("restart the exporter to apply it")
        })
        .count();
    assert!(
        warned >= 4,
        "each refusal is a WARN line; {warned}:\n{}",
        e.log().join("\n")
    );
    assert!(
        e.log()
            .iter()
            .all(|l| !l.contains("web configuration reloaded")),
        "nothing weaker was applied"
    );
    drop(e);
    // Restarted with the weaker file, the exporter applies it.
    let e = start(dir.path(), &weaker[3].1);
    let r = https(
        &e.addr,
        "/metrics",
        &anonymous,
        Some(("alice", "wonderland")),
    )
    .unwrap();
    assert_eq!(r.status, 200);
}

#[test]
fn a_fifo_swapped_in_for_a_certificate_neither_hangs_reload_nor_shutdown() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    pki.write(dir.path());
    let e = start(dir.path(), TLS_ONLY);
    // Made beside it and renamed over it, so no reload sees the certificate missing.
    let fifo = dir.path().join("fifo.tmp");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    std::fs::rename(&fifo, dir.path().join("server.pem")).unwrap();
    let line = e.wait_log(
        |l| l.contains("keeping the last good one") && l.contains("FIFO"),
        Duration::from_secs(20),
    );
    assert!(
        line.is_some(),
        "the FIFO is refused:\n{}",
        e.log().join("\n")
    );
    let tls = pki.client_config(None);
    assert_eq!(
        https(&e.addr, "/-/healthy", &tls, None).unwrap().status,
        200
    );
    let t = Instant::now();
    assert!(e.terminate().success());
    assert!(
        t.elapsed() < Duration::from_secs(8),
        "shutdown took {:?}",
        t.elapsed()
    );
}

#[test]
fn a_secret_file_swapped_in_for_web_yml_is_not_logged() {
    let dir = tempfile::tempdir().unwrap();
    let web = dir.path().join("web.yml");
    let e = start(
        dir.path(),
        &format!("basic_auth_users:\n  alice: '{}'\n", hash("one")),
    );
    write_atomic(
        &web,
        "root:$6$s4ltS4lt$H4shOfTheRootPassw0rd:19700:0:99999:7:::\n",
    );
    e.wait_log(
        |l| l.contains("keeping the last good one"),
        Duration::from_secs(20),
    )
    .expect("the swapped file is refused");
    let pasted = "tls_server_config:\n  cert_file: server.pem\n  key_file: \"-----BEGIN PRIVATE KEY-----\\nMIIEvQIBADANBgkqhkiG9w0BSECRET\\n-----END PRIVATE KEY-----\"\n";
    write_atomic(&web, pasted);
    eventually("the pasted key to be refused", || {
        (e.log()
            .iter()
            .filter(|l| l.contains("keeping the last good one"))
            .count()
            >= 2)
            .then_some(())
    });
    for l in e.log() {
        assert!(
            !l.contains("H4sh") && !l.contains("s4lt") && !l.contains("MIIEvQ"),
            "{l}"
        );
    }
}
