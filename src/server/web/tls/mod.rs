//! TLS for the web configuration: maps `tls_server_config` onto a rustls `ServerConfig`.
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
//! - `cert`/`cert_file`, `key`/`key_file`, `client_ca`/`client_ca_file`: PEM inline or in a file
//!   ([`pem`]).
//! - `client_auth_type`, `client_ca_file` and `client_allowed_sans`: see [`client_auth`].
//!
//! HTTP/2 is not offered (ALPN advertises http/1.1 only): Prometheus scrapes over HTTP/1.1, and
//! serving one protocol keeps the request limits simple. `http_server_config.http2` is accepted
//! and the startup log says HTTP/2 is off. Connections are accepted and handshaken in `serve`.

mod client_auth;
mod pem;

use std::path::Path;
use std::sync::Arc;

use rustls::crypto::{CryptoProvider, SupportedKxGroup};
use rustls::{ServerConfig, SupportedCipherSuite, SupportedProtocolVersion};

use super::RawTls;
use crate::base::input::ConfigError;
use client_auth::ClientAuth;
use pem::Material;

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

/// Builds the rustls server configuration from `tls_server_config`; relative paths are read
/// from `base`.
pub fn build(raw: &RawTls, base: &Path) -> Result<Arc<ServerConfig>, ConfigError> {
    const K: &str = "tls_server_config";

    // The keys that need no file first, so their errors are not hidden behind a missing one.
    let versions = versions(raw)?;
    let suites = cipher_suites(raw.cipher_suites.as_deref().unwrap_or_default())?;
    let groups = curves(raw.curve_preferences.as_deref().unwrap_or_default())?;

    let cert_pem = Material::load(&raw.cert_file, &raw.cert, "cert_file", "cert", base)?
        .ok_or_else(|| {
            ConfigError::invalid(
                format!("{K}.cert_file"),
                "",
                "missing: set cert_file or cert",
            )
        })?;
    let key_pem =
        Material::load(&raw.key_file, &raw.key, "key_file", "key", base)?.ok_or_else(|| {
            ConfigError::invalid(format!("{K}.key_file"), "", "missing: set key_file or key")
        })?;
    let chain = cert_pem.certificates()?;
    let key = key_pem.private_key()?;

    let auth = ClientAuth::parse(raw.client_auth_type.as_deref())?;
    let ca_pem = Material::load(
        &raw.client_ca_file,
        &raw.client_ca,
        "client_ca_file",
        "client_ca",
        base,
    )?;

    let base_provider = rustls::crypto::ring::default_provider();
    let provider = Arc::new(CryptoProvider {
        cipher_suites: suites.unwrap_or(base_provider.cipher_suites.clone()),
        kx_groups: groups.unwrap_or(base_provider.kx_groups.clone()),
        ..base_provider
    });
    let verifier = client_auth::verifier(
        auth,
        raw.client_auth_type.as_deref(),
        ca_pem.as_ref(),
        raw.client_allowed_sans.as_deref(),
        &provider,
    )?;

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
            &key_pem.key,
            &key_pem.shown,
            format!("does not fit the certificate in {}: {e}", cert_pem.key),
        )
    })?;
    config.ignore_client_order = raw.prefer_server_cipher_suites.unwrap_or(true);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// What a valid `tls_server_config` asks of clients: (a certificate is required, a certificate
/// is verified against the CA, its SANs are restricted). Read after [`build`] accepted it.
pub fn client_demands(raw: &RawTls) -> (bool, bool, bool) {
    let auth = ClientAuth::parse(raw.client_auth_type.as_deref()).unwrap_or(ClientAuth::None);
    let required = matches!(auth, ClientAuth::RequireAny | ClientAuth::RequireAndVerify);
    let verified = matches!(
        auth,
        ClientAuth::VerifyIfGiven | ClientAuth::RequireAndVerify
    );
    let sans = raw
        .client_allowed_sans
        .as_ref()
        .is_some_and(|s| !s.is_empty());
    (required, verified, sans)
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
}
