//! TLS for the web configuration: turns `tls_server_config` into a rustls `ServerConfig`, and a
//! listener that terminates TLS for `axum::serve` using whichever config is current.
//!
//! How exporter-toolkit's keys map onto rustls, and where they cannot:
//! - `min_version`/`max_version`: TLS12 and TLS13. rustls has no TLS 1.0 or 1.1, so TLS10/TLS11
//!   are refused at startup rather than quietly raised to 1.2.
//! - `cipher_suites`: Go names. As in Go, the list orders and restricts the TLS 1.2 suites only;
//!   TLS 1.3 suites are always on (naming one is accepted and changes nothing). The CBC and static
//!   RSA suites Go still knows are refused: rustls does not implement them, and dropping a listed
//!   suite silently could leave a file that looks stricter or looser than what is served.
//! - `prefer_server_cipher_suites` maps exactly onto rustls' `ignore_client_order`.
//! - `curve_preferences`: CurveP256, CurveP384 and X25519 in the given order. CurveP521 is refused:
//!   the ring provider has no P-521 key exchange.
//! - `client_auth_type`: RequestClientCert and RequireAnyClientCert take any certificate without
//!   chain checks (the handshake signature is still verified), as Go does; VerifyClientCertIfGiven
//!   and RequireAndVerifyClientCert use rustls' WebPKI verifier with the `client_ca_file` roots,
//!   which they require (Go would fall back to the system roots; trusting every public CA to
//!   identify scrapers is never what a file means).
//! - `client_allowed_sans`: an exact match against the DNS, e-mail, IP and URI SANs of the client
//!   certificate, checked after the chain, as in exporter-toolkit.
//!
//! HTTP/2 is not offered (ALPN advertises http/1.1 only): Prometheus scrapes over HTTP/1.1, and
//! serving one protocol keeps the request limits simple. `http_server_config.http2` is accepted
//! and the startup log says HTTP/2 is off.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{CryptoProvider, SupportedKxGroup, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme,
    SupportedCipherSuite, SupportedProtocolVersion,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_rustls::server::TlsStream;

use super::RawTls;
use crate::input::ConfigError;

/// A built TLS configuration and the files it was read from.
pub struct Built {
    pub config: Arc<ServerConfig>,
    pub files: Vec<PathBuf>,
}

/// Go's names of the suites rustls (ring) implements.
const SUITES: &[(&str, SupportedCipherSuite)] = {
    use rustls::crypto::ring::cipher_suite::*;
    &[
        ("TLS_AES_128_GCM_SHA256", TLS13_AES_128_GCM_SHA256),
        ("TLS_AES_256_GCM_SHA384", TLS13_AES_256_GCM_SHA384),
        (
            "TLS_CHACHA20_POLY1305_SHA256",
            TLS13_CHACHA20_POLY1305_SHA256,
        ),
        (
            "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
            TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        ),
        (
            "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
            TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        ),
        (
            "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
            TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        ),
        (
            "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305",
            TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        ),
        (
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
            TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        ),
        (
            "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
            TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        ),
        (
            "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
            TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        ),
        (
            "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",
            TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        ),
    ]
};

/// Suites Go accepts that rustls does not implement.
const UNSUPPORTED_SUITES: &[&str] = &[
    "TLS_RSA_WITH_AES_128_CBC_SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
];

/// Go's `tls.ClientAuthType` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientAuth {
    None,
    Request,
    RequireAny,
    VerifyIfGiven,
    RequireAndVerify,
}

/// Builds the rustls server configuration from `tls_server_config`.
pub fn build(raw: &RawTls, base: &Path) -> Result<Built, ConfigError> {
    const K: &str = "tls_server_config";
    let mut files = Vec::new();

    // The keys that need no file first, so their errors are not hidden behind a missing one.
    let versions = versions(raw)?;
    let suites = cipher_suites(raw.cipher_suites.as_deref().unwrap_or_default())?;
    let groups = curves(raw.curve_preferences.as_deref().unwrap_or_default())?;

    let cert_pem = material(
        &raw.cert_file,
        &raw.cert,
        "cert_file",
        "cert",
        base,
        &mut files,
    )?
    .ok_or_else(|| {
        ConfigError::invalid(
            format!("{K}.cert_file"),
            "",
            "missing: set cert_file or cert",
        )
    })?;
    let key_pem = material(&raw.key_file, &raw.key, "key_file", "key", base, &mut files)?
        .ok_or_else(|| {
            ConfigError::invalid(format!("{K}.key_file"), "", "missing: set key_file or key")
        })?;
    let cert_key = cert_pem.key_name(raw.cert_file.is_some(), "cert_file", "cert");
    let chain = cert_pem.certificates(&cert_key)?;
    let key_key = key_pem.key_name(raw.key_file.is_some(), "key_file", "key");
    let key = PrivateKeyDer::from_pem_slice(&key_pem.bytes).map_err(|e| {
        ConfigError::invalid(
            &key_key,
            &key_pem.shown,
            format!("contains no usable PEM private key: {e}"),
        )
    })?;

    let auth = match raw.client_auth_type.as_deref().unwrap_or("") {
        "" | "NoClientCert" => ClientAuth::None,
        "RequestClientCert" => ClientAuth::Request,
        // "RequireClientCert" is exporter-toolkit's older spelling, still accepted there.
        "RequireAnyClientCert" | "RequireClientCert" => ClientAuth::RequireAny,
        "VerifyClientCertIfGiven" => ClientAuth::VerifyIfGiven,
        "RequireAndVerifyClientCert" => ClientAuth::RequireAndVerify,
        other => {
            return Err(ConfigError::invalid(
                format!("{K}.client_auth_type"),
                other,
                "must be one of NoClientCert, RequestClientCert, RequireAnyClientCert, \
                 VerifyClientCertIfGiven, RequireAndVerifyClientCert",
            ))
        }
    };
    let ca_pem = material(
        &raw.client_ca_file,
        &raw.client_ca,
        "client_ca_file",
        "client_ca",
        base,
        &mut files,
    )?;
    if ca_pem.is_some() && auth == ClientAuth::None {
        return Err(ConfigError::invalid(
            format!("{K}.client_auth_type"),
            raw.client_auth_type.as_deref().unwrap_or("NoClientCert"),
            "a client CA is configured but no client certificate is asked for; \
             set client_auth_type to RequireAndVerifyClientCert",
        ));
    }

    let base_provider = rustls::crypto::ring::default_provider();
    let provider = Arc::new(CryptoProvider {
        cipher_suites: suites.unwrap_or(base_provider.cipher_suites.clone()),
        kx_groups: groups.unwrap_or(base_provider.kx_groups.clone()),
        ..base_provider
    });

    let verifier: Option<Arc<dyn ClientCertVerifier>> = match auth {
        ClientAuth::None => None,
        ClientAuth::Request | ClientAuth::RequireAny => Some(Arc::new(AnyClientCert {
            mandatory: auth == ClientAuth::RequireAny,
            algorithms: provider.signature_verification_algorithms,
        })),
        ClientAuth::VerifyIfGiven | ClientAuth::RequireAndVerify => {
            let Some(ca) = &ca_pem else {
                return Err(ConfigError::invalid(
                    format!("{K}.client_ca_file"),
                    "",
                    format!(
                        "is required with client_auth_type {}",
                        raw.client_auth_type.as_deref().unwrap_or_default()
                    ),
                ));
            };
            let ca_key = ca.key_name(raw.client_ca_file.is_some(), "client_ca_file", "client_ca");
            let mut roots = RootCertStore::empty();
            for cert in ca.certificates(&ca_key)? {
                roots.add(cert).map_err(|e| {
                    ConfigError::invalid(&ca_key, &ca.shown, format!("bad CA certificate: {e}"))
                })?;
            }
            let mut builder =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
            if auth == ClientAuth::VerifyIfGiven {
                builder = builder.allow_unauthenticated();
            }
            Some(builder.build().map_err(|e| {
                ConfigError::invalid(ca_key, &ca.shown, format!("cannot be used: {e}"))
            })?)
        }
    };
    let verifier = match (&raw.client_allowed_sans, verifier) {
        (None, v) => v,
        (Some(sans), Some(inner))
            if matches!(auth, ClientAuth::RequireAny | ClientAuth::RequireAndVerify) =>
        {
            let checked: Arc<dyn ClientCertVerifier> = Arc::new(AllowedSans {
                inner,
                allowed: sans.clone(),
            });
            Some(checked)
        }
        (Some(sans), _) => {
            return Err(ConfigError::invalid(
                format!("{K}.client_allowed_sans"),
                sans.join(","),
                "requires client_auth_type RequireAnyClientCert or RequireAndVerifyClientCert",
            ))
        }
    };

    let builder = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&versions)
        .map_err(|e| {
            ConfigError::invalid(
                format!("{K}.cipher_suites"),
                raw.cipher_suites.as_deref().unwrap_or_default().join(","),
                format!("leaves no usable suite for the TLS versions allowed: {e}"),
            )
        })?;
    let builder = match verifier {
        Some(v) => builder.with_client_cert_verifier(v),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(chain, key).map_err(|e| {
        ConfigError::invalid(
            key_key,
            &key_pem.shown,
            format!("does not fit the certificate in {cert_key}: {e}"),
        )
    })?;
    config.ignore_client_order = raw.prefer_server_cipher_suites.unwrap_or(true);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Built {
        config: Arc::new(config),
        files,
    })
}

/// PEM read from a file or given inline.
struct Material {
    bytes: Vec<u8>,
    /// What an error message may show: the path, or "(inline)" — never the secret itself.
    shown: String,
}

impl Material {
    fn key_name(&self, from_file: bool, file_key: &str, inline_key: &str) -> String {
        format!(
            "tls_server_config.{}",
            if from_file { file_key } else { inline_key }
        )
    }

    /// The PEM certificates in this material; at least one, else an error naming `key`.
    fn certificates(&self, key: &str) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&self.bytes)
            .collect::<Result<_, _>>()
            .map_err(|e| ConfigError::invalid(key, &self.shown, format!("is not PEM: {e}")))?;
        if certs.is_empty() {
            return Err(ConfigError::invalid(
                key,
                &self.shown,
                "contains no PEM certificate",
            ));
        }
        Ok(certs)
    }
}

fn material(
    file: &Option<String>,
    inline: &Option<String>,
    file_key: &str,
    inline_key: &str,
    base: &Path,
    files: &mut Vec<PathBuf>,
) -> Result<Option<Material>, ConfigError> {
    let file = file.as_deref().filter(|s| !s.is_empty());
    let inline = inline.as_deref().filter(|s| !s.is_empty());
    match (file, inline) {
        (Some(_), Some(_)) => Err(ConfigError::invalid(
            format!("tls_server_config.{file_key}"),
            "(set)",
            format!("set either {file_key} or {inline_key}, not both"),
        )),
        (Some(f), None) => {
            let path = base.join(f);
            let bytes = std::fs::read(&path).map_err(|e| {
                ConfigError::invalid(
                    format!("tls_server_config.{file_key}"),
                    path.display(),
                    format!("cannot be read: {e}"),
                )
            })?;
            files.push(path.clone());
            Ok(Some(Material {
                bytes,
                shown: path.display().to_string(),
            }))
        }
        (None, Some(text)) => Ok(Some(Material {
            bytes: text.as_bytes().to_vec(),
            shown: "(inline)".into(),
        })),
        (None, None) => Ok(None),
    }
}

fn version(key: &str, value: &str) -> Result<u8, ConfigError> {
    match value {
        "TLS12" => Ok(12),
        "TLS13" => Ok(13),
        "TLS10" | "TLS11" => Err(ConfigError::invalid(
            key,
            value,
            "TLS 1.0 and 1.1 are not supported (rustls implements TLS 1.2 and 1.3 only); use TLS12 or TLS13",
        )),
        _ => Err(ConfigError::invalid(key, value, "must be TLS12 or TLS13")),
    }
}

fn versions(raw: &RawTls) -> Result<Vec<&'static SupportedProtocolVersion>, ConfigError> {
    let min = version(
        "tls_server_config.min_version",
        raw.min_version.as_deref().unwrap_or("TLS12"),
    )?;
    let max = version(
        "tls_server_config.max_version",
        raw.max_version.as_deref().unwrap_or("TLS13"),
    )?;
    if min > max {
        return Err(ConfigError::invalid(
            "tls_server_config.min_version",
            raw.min_version.as_deref().unwrap_or_default(),
            "is above max_version",
        ));
    }
    let mut out = Vec::new();
    if max >= 13 {
        out.push(&rustls::version::TLS13);
    }
    if min <= 12 {
        out.push(&rustls::version::TLS12);
    }
    Ok(out)
}

/// `None`: the provider's defaults. Otherwise every TLS 1.3 suite, then the listed TLS 1.2 ones.
fn cipher_suites(names: &[String]) -> Result<Option<Vec<SupportedCipherSuite>>, ConfigError> {
    if names.is_empty() {
        return Ok(None);
    }
    let mut tls12 = Vec::new();
    for name in names {
        let key = "tls_server_config.cipher_suites";
        if UNSUPPORTED_SUITES.contains(&name.as_str()) {
            return Err(ConfigError::invalid(
                key,
                name,
                "is not implemented by rustls (no CBC or static-RSA suites); use an ECDHE GCM or CHACHA20 suite",
            ));
        }
        let Some((_, suite)) = SUITES.iter().find(|(n, _)| n == name) else {
            let known: Vec<&str> = SUITES.iter().map(|(n, _)| *n).collect();
            return Err(ConfigError::invalid(
                key,
                name,
                format!("unknown cipher suite; known: {}", known.join(", ")),
            ));
        };
        if suite.tls13().is_none() && !tls12.contains(suite) {
            tls12.push(*suite);
        }
    }
    let mut out: Vec<SupportedCipherSuite> = rustls::crypto::ring::ALL_CIPHER_SUITES
        .iter()
        .filter(|s| s.tls13().is_some())
        .copied()
        .collect();
    out.extend(tls12);
    Ok(Some(out))
}

fn curves(names: &[String]) -> Result<Option<Vec<&'static dyn SupportedKxGroup>>, ConfigError> {
    use rustls::crypto::ring::kx_group;
    if names.is_empty() {
        return Ok(None);
    }
    let mut out: Vec<&'static dyn SupportedKxGroup> = Vec::new();
    for name in names {
        let key = "tls_server_config.curve_preferences";
        let group: &'static dyn SupportedKxGroup = match name.as_str() {
            "CurveP256" => kx_group::SECP256R1,
            "CurveP384" => kx_group::SECP384R1,
            "X25519" => kx_group::X25519,
            "CurveP521" => {
                return Err(ConfigError::invalid(
                    key,
                    name,
                    "P-521 key exchange is not available in this build (rustls with ring); use CurveP256, CurveP384 or X25519",
                ))
            }
            _ => {
                return Err(ConfigError::invalid(
                    key,
                    name,
                    "unknown curve; use CurveP256, CurveP384 or X25519",
                ))
            }
        };
        if !out.iter().any(|g| g.name() == group.name()) {
            out.push(group);
        }
    }
    Ok(Some(out))
}

/// RequestClientCert / RequireAnyClientCert: any certificate is taken without a chain check, but
/// the client must still prove it holds the key (the handshake signature is verified).
#[derive(Debug)]
struct AnyClientCert {
    mandatory: bool,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for AnyClientCert {
    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// `client_allowed_sans`: the inner verifier's checks, then an exact SAN match.
#[derive(Debug)]
struct AllowedSans {
    inner: Arc<dyn ClientCertVerifier>,
    allowed: Vec<String>,
}

impl ClientCertVerifier for AllowedSans {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        let sans = subject_alt_names(end_entity).map_err(|_| {
            rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding)
        })?;
        if sans.iter().any(|s| self.allowed.contains(s)) {
            Ok(verified)
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The DNS, e-mail, IP and URI SANs of a certificate, written as Go's `x509` prints them.
fn subject_alt_names(der: &[u8]) -> Result<Vec<String>, ()> {
    use x509_parser::extensions::GeneralName;
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|_| ())?;
    let Some(ext) = cert.subject_alternative_name().map_err(|_| ())? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for name in &ext.value.general_names {
        match name {
            GeneralName::DNSName(s) | GeneralName::RFC822Name(s) | GeneralName::URI(s) => {
                out.push((*s).to_string())
            }
            GeneralName::IPAddress(bytes) => {
                let ip = match bytes.len() {
                    4 => std::net::IpAddr::from(<[u8; 4]>::try_from(*bytes).map_err(|_| ())?),
                    16 => {
                        let v6 =
                            std::net::Ipv6Addr::from(<[u8; 16]>::try_from(*bytes).map_err(|_| ())?);
                        // Go prints an IPv4-mapped address in its IPv4 form.
                        v6.to_ipv4_mapped()
                            .map(std::net::IpAddr::from)
                            .unwrap_or(v6.into())
                    }
                    _ => continue,
                };
                out.push(ip.to_string());
            }
            _ => {}
        }
    }
    Ok(out)
}

/// Where the listener gets the TLS configuration for each new connection.
pub trait TlsSource: Send + Sync + 'static {
    fn current(&self) -> Option<Arc<ServerConfig>>;
}

/// Handshakes in flight at once; more connections wait in the kernel's accept queue.
const MAX_HANDSHAKES: usize = 256;
/// A client that has not finished its handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A listener for `axum::serve` that hands over only connections whose TLS handshake succeeded.
///
/// Handshakes run in their own tasks, so one slow client never holds up the next accept; each
/// uses the configuration current when it was accepted, which is how a reloaded certificate is
/// served without a restart.
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    acceptor: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    pub fn new(listener: TcpListener, source: Arc<dyn TlsSource>) -> io::Result<TlsListener> {
        let local = listener.local_addr()?;
        let (tx, ready) = mpsc::channel(64);
        let acceptor = tokio::spawn(accept_loop(listener, source, tx));
        Ok(TlsListener {
            ready,
            local,
            acceptor,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.acceptor.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    source: Arc<dyn TlsSource>,
    ready: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    let permits = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let (tcp, peer) = match listener.accept().await {
            Ok(pair) => pair,
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                // Out of file descriptors and the like: wait instead of spinning.
                tracing::error!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let Some(config) = source.current() else {
            tracing::error!("no TLS configuration; dropping the connection");
            continue;
        };
        let ready = ready.clone();
        tokio::spawn(async move {
            let acceptor = tokio_rustls::TlsAcceptor::from(config);
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => {
                    drop(permit);
                    let _ = ready.send((stream, peer)).await;
                }
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        });
    }
}

fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(pair) => pair,
            // The accept loop only ends when the listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(f: impl FnOnce(&mut RawTls)) -> RawTls {
        let mut r = RawTls::default();
        f(&mut r);
        r
    }

    #[test]
    fn versions_map_and_old_ones_are_refused() {
        assert_eq!(versions(&RawTls::default()).unwrap().len(), 2);
        let only13 = raw(|r| r.min_version = Some("TLS13".into()));
        assert_eq!(versions(&only13).unwrap(), vec![&rustls::version::TLS13]);
        let old = raw(|r| r.min_version = Some("TLS10".into()));
        let msg = versions(&old).unwrap_err().to_string();
        assert!(
            msg.contains("tls_server_config.min_version") && msg.contains("TLS 1.0"),
            "{msg}"
        );
        let inverted = raw(|r| {
            r.min_version = Some("TLS13".into());
            r.max_version = Some("TLS12".into());
        });
        assert!(versions(&inverted).is_err());
    }

    #[test]
    fn cipher_suites_keep_tls13_and_order_tls12() {
        let got = cipher_suites(&[
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256".into(),
            "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384".into(),
        ])
        .unwrap()
        .unwrap();
        let tls12: Vec<_> = got.iter().filter(|s| s.tls13().is_none()).collect();
        assert_eq!(tls12.len(), 2);
        assert_eq!(
            tls12[0].suite(),
            rustls::CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
        );
        assert_eq!(got.iter().filter(|s| s.tls13().is_some()).count(), 3);
        assert!(cipher_suites(&["TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA".into()]).is_err());
        assert!(cipher_suites(&["TLS_MADE_UP".into()]).is_err());
        assert!(cipher_suites(&[]).unwrap().is_none());
    }

    #[test]
    fn curves_map_and_p521_is_refused() {
        let got = curves(&["X25519".into(), "CurveP256".into()])
            .unwrap()
            .unwrap();
        assert_eq!(got[0].name(), rustls::NamedGroup::X25519);
        assert_eq!(got[1].name(), rustls::NamedGroup::secp256r1);
        let msg = curves(&["CurveP521".into()]).unwrap_err().to_string();
        assert!(
            msg.contains("curve_preferences") && msg.contains("CurveP521"),
            "{msg}"
        );
    }

    #[test]
    fn sans_are_read_like_go_prints_them() {
        let mut params = rcgen::CertificateParams::new(vec!["scraper.example".into()]).unwrap();
        params.subject_alt_names.push(rcgen::SanType::IpAddress(
            std::net::Ipv4Addr::new(10, 1, 2, 3).into(),
        ));
        params.subject_alt_names.push(rcgen::SanType::Rfc822Name(
            "ops@example.org".try_into().unwrap(),
        ));
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let sans = subject_alt_names(cert.der()).unwrap();
        assert_eq!(sans, vec!["scraper.example", "10.1.2.3", "ops@example.org"]);
    }
}
