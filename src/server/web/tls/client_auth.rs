//! Client certificates: what each `client_auth_type` asks of a client, and the verifiers rustls
//! does not ship — any certificate without a chain check (Go's RequestClientCert and
//! RequireAnyClientCert) and the exact SAN match of `client_allowed_sans`.
//!
//! VerifyClientCertIfGiven and RequireAndVerifyClientCert use rustls' WebPKI verifier with the
//! `client_ca_file` roots, which they require (Go would fall back to the system roots; trusting
//! every public CA to identify scrapers is never what a file means).

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};

use super::pem::Material;
use crate::base::input::ConfigError;

/// Go's `tls.ClientAuthType` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ClientAuth {
    None,
    Request,
    RequireAny,
    VerifyIfGiven,
    RequireAndVerify,
}

impl ClientAuth {
    /// Reads `client_auth_type` as written; absent or empty is NoClientCert.
    pub(super) fn parse(written: Option<&str>) -> Result<ClientAuth, ConfigError> {
        Ok(match written.unwrap_or("") {
            "" | "NoClientCert" => ClientAuth::None,
            "RequestClientCert" => ClientAuth::Request,
            // "RequireClientCert" is exporter-toolkit's older spelling, still accepted there.
            "RequireAnyClientCert" | "RequireClientCert" => ClientAuth::RequireAny,
            "VerifyClientCertIfGiven" => ClientAuth::VerifyIfGiven,
            "RequireAndVerifyClientCert" => ClientAuth::RequireAndVerify,
            other => {
                return Err(ConfigError::invalid(
                    "tls_server_config.client_auth_type",
                    other,
                    "must be one of NoClientCert, RequestClientCert, RequireAnyClientCert, \
                     VerifyClientCertIfGiven, RequireAndVerifyClientCert",
                ))
            }
        })
    }
}

/// The verifier for `auth` (`None`: no client certificate is asked for), checking the chain
/// against `ca` where the type verifies, and the SANs where `allowed_sans` is set.
/// `written` is `client_auth_type` as written, for error messages.
pub(super) fn verifier(
    auth: ClientAuth,
    written: Option<&str>,
    ca: Option<&Material>,
    allowed_sans: Option<&[String]>,
    provider: &Arc<CryptoProvider>,
) -> Result<Option<Arc<dyn ClientCertVerifier>>, ConfigError> {
    const K: &str = "tls_server_config";
    if ca.is_some() && auth == ClientAuth::None {
        return Err(ConfigError::invalid(
            format!("{K}.client_auth_type"),
            written.unwrap_or("NoClientCert"),
            "a client CA is configured but no client certificate is asked for; \
             set client_auth_type to RequireAndVerifyClientCert",
        ));
    }
    let verifier: Option<Arc<dyn ClientCertVerifier>> = match auth {
        ClientAuth::None => None,
        ClientAuth::Request | ClientAuth::RequireAny => Some(Arc::new(AnyClientCert {
            mandatory: auth == ClientAuth::RequireAny,
            algorithms: provider.signature_verification_algorithms,
        })),
        ClientAuth::VerifyIfGiven | ClientAuth::RequireAndVerify => {
            let Some(ca) = ca else {
                return Err(ConfigError::invalid(
                    format!("{K}.client_ca_file"),
                    "",
                    format!(
                        "is required with client_auth_type {}",
                        written.unwrap_or_default()
                    ),
                ));
            };
            let mut roots = RootCertStore::empty();
            for cert in ca.certificates()? {
                roots.add(cert).map_err(|e| {
                    ConfigError::invalid(&ca.key, &ca.shown, format!("bad CA certificate: {e}"))
                })?;
            }
            let mut builder =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
            if auth == ClientAuth::VerifyIfGiven {
                builder = builder.allow_unauthenticated();
            }
            Some(builder.build().map_err(|e| {
                ConfigError::invalid(&ca.key, &ca.shown, format!("cannot be used: {e}"))
            })?)
        }
    };
    match (allowed_sans, verifier) {
        (None, v) => Ok(v),
        (Some(sans), Some(inner))
            if matches!(auth, ClientAuth::RequireAny | ClientAuth::RequireAndVerify) =>
        {
            Ok(Some(Arc::new(AllowedSans {
                inner,
                allowed: sans.to_vec(),
            })))
        }
        (Some(sans), _) => Err(ConfigError::invalid(
            format!("{K}.client_allowed_sans"),
            sans.join(","),
            "requires client_auth_type RequireAnyClientCert or RequireAndVerifyClientCert",
        )),
    }
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

/// `client_allowed_sans`: the inner verifier's checks, then an exact match against the DNS,
/// e-mail, IP and URI SANs of the client certificate, as in exporter-toolkit.
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

#[cfg(test)]
mod tests {
    use super::*;

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
