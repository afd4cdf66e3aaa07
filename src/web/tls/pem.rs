//! Certificate and key material: PEM read from a file (`cert_file`, `key_file`, `client_ca_file`)
//! or given inline (`cert`, `key`, `client_ca`), and what it contains. Errors name the key it came
//! from and show the path, never an inline secret.

use std::path::Path;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::input::ConfigError;

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
            (Some(f), None) => {
                let path = base.join(f);
                let bytes = std::fs::read(&path).map_err(|e| {
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
                ConfigError::invalid(&self.key, &self.shown, format!("is not PEM: {e}"))
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
                format!("contains no usable PEM private key: {e}"),
            )
        })
    }
}
