//! `--web.config.file` end to end: TLS, client certificates, basic auth and headers against the
//! real binary, with certificates made here (the test PKI and HTTPS client that `tls_reload.rs`
//! and `web_config.rs` share). Reload without a restart is in `tls_reload.rs`; refusal and
//! acceptance of the file's keys in `web_config.rs`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    SerialNumber,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use vram_testkit::wait::Wait;

use crate::harness::{Exporter, Options};

pub(crate) const ONE_GPU: &str = include_str!("../fixtures/scenarios/h100.toml");

/// A certificate and its key, PEM.
pub(crate) struct Leaf {
    pub(crate) cert: String,
    pub(crate) key: String,
    pub(crate) der: Vec<u8>,
}

/// A test CA with a server certificate for 127.0.0.1/localhost and two client certificates: one
/// it signed and one self-signed.
pub(crate) struct Pki {
    pub(crate) ca: CertifiedIssuer<'static, KeyPair>,
    pub(crate) server: Leaf,
    pub(crate) client: Leaf,
    pub(crate) stranger: Leaf,
}

impl Pki {
    pub(crate) fn new() -> Pki {
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

    pub(crate) fn leaf(
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
    pub(crate) fn write(&self, dir: &Path) {
        write_atomic(&dir.join("ca.pem"), &self.ca.pem());
        write_atomic(&dir.join("server.pem"), &self.server.cert);
        write_atomic(&dir.join("server.key"), &self.server.key);
    }

    /// A client trusting this CA, presenting `identity` if given.
    pub(crate) fn client_config(&self, identity: Option<&Leaf>) -> Arc<rustls::ClientConfig> {
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

pub(crate) fn write_atomic(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// One HTTP/1.1 exchange over TLS.
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) head: String,
    pub(crate) body: String,
    /// The DER of the certificate the server presented.
    pub(crate) server_cert: Vec<u8>,
}

impl Reply {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// GET `path` over TLS with `config`; Err when the connection or handshake fails.
pub(crate) fn https(
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
pub(crate) fn hash(password: &str) -> String {
    bcrypt::hash(password, 4).unwrap()
}

/// Writes `yaml` as web.yml in `dir` and starts the exporter with it.
pub(crate) fn start(dir: &Path, yaml: &str) -> Exporter {
    let path = dir.join("web.yml");
    write_atomic(&path, yaml);
    Exporter::start(Options {
        scenario: ONE_GPU,
        args: vec!["--web.config.file".into(), path.display().to_string()],
        ..Default::default()
    })
}

pub(crate) const TLS_ONLY: &str =
    "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n";

/// Retries `f` until it returns Some, for changes picked up by the once-a-second reload.
pub(crate) fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    Wait::new(what, Duration::from_secs(20))
        .every(Duration::from_millis(100))
        .must(|| f().into())
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
