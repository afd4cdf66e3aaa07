//! Certificate and key material: PEM read from a file (`cert_file`, `key_file`, `client_ca_file`)
//! or given inline (`cert`, `key`, `client_ca`), and what it contains. Errors name the key it came
//! from and show the path, never an inline secret.

use std::path::Path;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::base::input::ConfigError;

/// PEM read from a file or given inline.
pub(super) struct Material {
    bytes: Vec<u8>,
    /// What an error message may show: the path, or "(inline)" — never the secret itself.
    pub(super) shown: String,
    /// The key it was given under, e.g. `tls_server_config.cert_file`.
    pub(super) key: String,
}

impl Material {
    /// Reads the material given under `file_key` (a path relative to `base`) or `inline_key`;
    /// `None` when neither is set, an error when both are.
    pub(super) fn load(
        file: &Option<String>,
        inline: &Option<String>,
        file_key: &str,
        inline_key: &str,
        base: &Path,
    ) -> Result<Option<Material>, ConfigError> {
        // Errors about the content name the file key whenever it is present, even empty.
        let key = format!(
            "tls_server_config.{}",
            if file.is_some() { file_key } else { inline_key }
        );
        let file = file.as_deref().filter(|s| !s.is_empty());
        let inline = inline.as_deref().filter(|s| !s.is_empty());
        match (file, inline) {
            (Some(_), Some(_)) => Err(ConfigError::invalid(
                format!("tls_server_config.{file_key}"),
                "(set)",
                format!("set either {file_key} or {inline_key}, not both"),
            )),
            (Some(f), None) if looks_like_content(f) => Err(ConfigError::invalid(
                format!("tls_server_config.{file_key}"),
                "(hidden)",
                format!(
                    "holds PEM text or several lines, not a file name; give inline PEM under `{inline_key}` instead"
                ),
            )),
            (Some(f), None) => {
                let path = base.join(f);
                let bytes = crate::base::files::read_regular(&path, super::super::PEM_FILE_LIMIT)
                    .map_err(|e| {
                        ConfigError::invalid(
                            format!("tls_server_config.{file_key}"),
                            path.display(),
                            format!("cannot be read: {e}"),
                        )
                    })?;
                Ok(Some(Material {
                    bytes,
                    shown: path.display().to_string(),
                    key,
                }))
            }
            (None, Some(text)) => Ok(Some(Material {
                bytes: text.as_bytes().to_vec(),
                shown: "(inline)".into(),
                key,
            })),
            (None, None) => Ok(None),
        }
    }

    /// The PEM certificates in this material; at least one.
    pub(super) fn certificates(&self) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&self.bytes)
            .collect::<Result<_, _>>()
            .map_err(|e| {
                ConfigError::invalid(
                    &self.key,
                    &self.shown,
                    format!("is not PEM: {}", describe(&e)),
                )
            })?;
        if certs.is_empty() {
            return Err(ConfigError::invalid(
                &self.key,
                &self.shown,
                "contains no PEM certificate",
            ));
        }
        Ok(certs)
    }

    /// The first PEM private key in this material.
    pub(super) fn private_key(&self) -> Result<PrivateKeyDer<'static>, ConfigError> {
        PrivateKeyDer::from_pem_slice(&self.bytes).map_err(|e| {
            ConfigError::invalid(
                &self.key,
                &self.shown,
                format!("contains no usable PEM private key: {}", describe(&e)),
            )
        })
    }
}

/// Whether a `*_file` value is content pasted in place of a path (never shown in errors).
fn looks_like_content(value: &str) -> bool {
    value.contains("-----BEGIN") || value.contains('\n') || value.len() > 4096
}

/// A PEM error without the bytes some of them carry (a line of the file, which may be a secret).
fn describe(e: &rustls::pki_types::pem::Error) -> &'static str {
    use rustls::pki_types::pem::Error;
    match e {
        Error::MissingSectionEnd { .. } => "a PEM section has no END line",
        Error::IllegalSectionStart { .. } => "a PEM BEGIN line is malformed",
        Error::Base64Decode(_) => "a PEM section is not valid base64",
        Error::NoItemsFound => "no PEM section of the expected kind",
        Error::SectionTooLarge => "a PEM section is too large",
        _ => "unreadable PEM",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pasted_keys_and_bad_pem_are_not_echoed() {
        let pasted = Some(
            "-----BEGIN PRIVATE KEY-----\nMIIsecretsecret\n-----END PRIVATE KEY-----\n".to_string(),
        );
        let err = Material::load(&pasted, &None, "key_file", "key", Path::new("."))
            .err()
            .expect("refused")
            .to_string();
        assert!(err.contains("tls_server_config.key_file"), "{err}");
        assert!(!err.contains("MIIsecret"), "{err}");
        let m = Material {
            bytes: b"-----BEGIN PRIVATE KEY-----junk-secret\nabc\n".to_vec(),
            shown: "k.pem".into(),
            key: "tls_server_config.key_file".into(),
        };
        let err = m.private_key().expect_err("not a key").to_string();
        assert!(!err.contains("junk-secret"), "{err}");
    }
}
