//! The exporter-toolkit web configuration (`--web.config.file`): TLS, basic auth, response headers
//! and rate limiting, in the YAML format every Prometheus exporter accepts, so existing files work.
//!
//! Same two stages as `config/mod.rs`: [`RawWebFile`] mirrors the YAML (strict: an unknown key is an
//! error), and [`WebSettings::load`] checks everything — reads the certificate, key and CA files,
//! parses every bcrypt hash, builds the rustls `ServerConfig` — and names the key of the first
//! problem in a [`ConfigError`], so a bad file stops the exporter at startup with exit status 2.
//! At run time [`reload`] re-runs the same load when a file changes; [`auth`] holds the live
//! settings the HTTP middleware and the TLS accept loop (`serve`) read, and [`tls`] maps the
//! TLS keys onto rustls.
//!
//! Relative paths in the file are resolved against the file's own directory, as exporter-toolkit
//! does. Keys rustls cannot honour are refused rather than silently weakened; [`tls`] says which.

pub mod auth;
pub mod reload;
pub mod section;
pub mod tls;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderName, HeaderValue};
use serde::Deserialize;

use crate::base::input::ConfigError;

/// The web configuration file as written, before validation.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWebFile {
    #[serde(default)]
    pub tls_server_config: Option<RawTls>,
    #[serde(default)]
    pub http_server_config: Option<RawHttp>,
    #[serde(default)]
    pub basic_auth_users: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub rate_limit: Option<RawRateLimit>,
    /// Keys that only vram-exporter understands, kept under one top-level key so that every other
    /// key stays exactly exporter-toolkit's.
    #[serde(default)]
    pub vram_exporter: Option<RawExtension>,
}

/// `tls_server_config`: every key exporter-toolkit documents.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub cert: Option<String>,
    pub key: Option<String>,
    pub client_ca: Option<String>,
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
    pub client_auth_type: Option<String>,
    pub client_ca_file: Option<String>,
    pub client_allowed_sans: Option<Vec<String>>,
    pub min_version: Option<String>,
    pub max_version: Option<String>,
    pub cipher_suites: Option<Vec<String>>,
    pub prefer_server_cipher_suites: Option<bool>,
    pub curve_preferences: Option<Vec<String>>,
}

impl RawTls {
    /// Whether the section turns TLS on: exporter-toolkit's rule — any certificate, key, client CA
    /// or client auth setting does; versions, suites or curves alone do not.
    fn enabled(&self) -> bool {
        [
            &self.cert,
            &self.key,
            &self.client_ca,
            &self.cert_file,
            &self.key_file,
            &self.client_auth_type,
            &self.client_ca_file,
        ]
        .iter()
        .any(|v| v.as_deref().is_some_and(|s| !s.is_empty()))
    }
}

/// `http_server_config`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    pub http2: Option<bool>,
    pub headers: Option<BTreeMap<String, String>>,
}

/// `rate_limit`: a token bucket shared by every request.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRateLimit {
    /// Time between two requests, a Go-style duration ("100ms", "1s"); "0" or absent disables.
    pub interval: Option<String>,
    pub burst: Option<u32>,
}

/// `vram_exporter`: extensions of this exporter (not part of exporter-toolkit's format).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExtension {
    /// When true, `/-/healthy` and `/-/ready` answer without basic auth (TLS still applies), so
    /// orchestrator probes need no password. Default false: health follows the same auth.
    pub unauthenticated_health: Option<bool>,
}

/// The headers exporter-toolkit lets a file add, and the values it accepts where they are an
/// enumeration (an empty list accepts any value).
const ALLOWED_HEADERS: &[(&str, &[&str])] = &[
    ("Strict-Transport-Security", &[]),
    ("X-Content-Type-Options", &["nosniff"]),
    ("X-Frame-Options", &["deny", "sameorigin"]),
    ("X-XSS-Protection", &[]),
    ("Content-Security-Policy", &[]),
];

/// The largest web configuration file read.
pub const WEB_FILE_LIMIT: u64 = 1 << 20;
/// The largest certificate, key or CA file read.
pub const PEM_FILE_LIMIT: u64 = 1 << 20;

/// What a configuration protects, to refuse a reload that would protect less.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Posture {
    pub users: bool,
    pub tls: bool,
    pub client_cert_required: bool,
    pub client_cert_verified: bool,
    pub client_sans: bool,
    pub health_open: bool,
}

impl Posture {
    /// Why `self` protects less than `before`, if it does.
    pub fn lowered_from(&self, before: &Posture) -> Option<&'static str> {
        if before.tls && !self.tls {
            Some("it turns TLS off")
        } else if before.users && !self.users {
            Some("it removes every basic_auth_users entry")
        } else if before.client_cert_required && !self.client_cert_required {
            Some("it no longer requires client certificates")
        } else if before.client_cert_verified && !self.client_cert_verified {
            Some("it no longer verifies client certificates")
        } else if before.client_sans && !self.client_sans {
            Some("it removes client_allowed_sans")
        } else if !before.health_open && self.health_open {
            Some("it opens the health endpoints without authentication")
        } else {
            None
        }
    }
}

/// A validated web configuration, ready to serve with.
#[derive(Clone)]
pub struct WebSettings {
    /// The web configuration file itself.
    pub path: PathBuf,
    /// `None`: plain HTTP.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub access: Arc<auth::Access>,
    /// `http_server_config.http2` (default true); HTTP/2 is not offered either way, see [`tls`].
    pub http2: bool,
    /// What it protects (a reload may not lower it).
    pub posture: Posture,
    /// The file had no setting at all (empty, or only comments).
    pub empty: bool,
}

impl fmt::Debug for WebSettings {
    // Hand-written so that hashes and inline keys never reach a log line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebSettings")
            .field("path", &self.path)
            .field("tls", &self.tls.is_some())
            .field("users", &self.access.user_count())
            .field("http2", &self.http2)
            .finish()
    }
}

impl WebSettings {
    /// Reads and checks the web configuration file and every file it names.
    pub fn load(path: &Path) -> Result<WebSettings, ConfigError> {
        let text = crate::base::files::read_regular_text(path, WEB_FILE_LIMIT).map_err(|e| {
            ConfigError::invalid(
                "web.config_file",
                path.display(),
                format!("cannot be read: {e}"),
            )
        })?;
        let raw = parse(&text)?;
        let empty = raw.is_empty();
        let base = path.parent().unwrap_or_else(|| Path::new("."));

        let (required, verified, sans) = match &raw.tls_server_config {
            Some(t) if t.enabled() => tls::client_demands(t),
            _ => (false, false, false),
        };
        let tls = match &raw.tls_server_config {
            Some(t) if t.enabled() => Some(tls::build(t, base)?),
            Some(t) => {
                // Versions, suites or curves without a certificate: exporter-toolkit serves plain
                // HTTP here; say so rather than let the file look like it enabled TLS.
                if t.min_version.is_some() || t.cipher_suites.is_some() {
                    tracing::warn!(
                        "tls_server_config has no certificate, key or client CA: serving plain HTTP"
                    );
                }
                None
            }
            None => None,
        };

        let http = raw.http_server_config.unwrap_or_default();
        let headers = headers(http.headers.unwrap_or_default())?;
        let rate = rate_limit(raw.rate_limit.unwrap_or_default())?;
        let users = raw.basic_auth_users.unwrap_or_default();
        let extension = raw.vram_exporter.unwrap_or_default();
        let access = auth::Access::new(
            users,
            headers,
            rate,
            extension.unauthenticated_health.unwrap_or(false),
        )?;
        let posture = Posture {
            users: access.user_count() > 0,
            tls: tls.is_some(),
            client_cert_required: required,
            client_cert_verified: verified,
            client_sans: sans,
            health_open: access.health_open(),
        };
        Ok(WebSettings {
            path: path.to_path_buf(),
            tls,
            access: Arc::new(access),
            http2: http.http2.unwrap_or(true),
            posture,
            empty,
        })
    }

    /// Loads `path` when one is configured.
    pub fn load_optional(path: Option<&Path>) -> Result<Option<WebSettings>, ConfigError> {
        path.map(WebSettings::load).transpose()
    }
}

impl RawWebFile {
    /// No section at all: an empty or comment-only file.
    pub fn is_empty(&self) -> bool {
        self.tls_server_config.is_none()
            && self.http_server_config.is_none()
            && self.basic_auth_users.is_none()
            && self.rate_limit.is_none()
            && self.vram_exporter.is_none()
    }
}

/// Strict YAML parsing; serde_yaml_ng's message names the key path and the line. Quoted values
/// in the message are hidden: a file swapped by mistake (a shadow or key file) must not have its
/// content echoed into a log.
pub fn parse(text: &str) -> Result<RawWebFile, ConfigError> {
    if text.trim().is_empty() {
        return Ok(RawWebFile::default());
    }
    serde_yaml_ng::from_str::<Option<RawWebFile>>(text)
        .map(Option::unwrap_or_default)
        .map_err(|e| {
            ConfigError::Load(format!(
                "web configuration: {}",
                hide_quoted(&e.to_string())
            ))
        })
}

/// `text` with every double-quoted part replaced by `"(hidden)"`, and every back-quoted part
/// that does not look like a key name (letters, digits, `_`, `-`, `.`, at most 64) by
/// `` `(hidden)` ``: serde quotes values with `"` and names keys with `` ` ``, and a line of a
/// swapped-in file can arrive as either.
fn hide_quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find(['"', '`']) {
        let quote = &rest[open..open + 1];
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let Some(close) = after.find(quote) else {
            // Unbalanced: hide the rest.
            out.push_str(quote);
            out.push_str("(hidden)");
            return out;
        };
        let inner = &after[..close];
        let key_like = quote == "`"
            && inner.len() <= 64
            && inner
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        out.push_str(quote);
        out.push_str(if key_like { inner } else { "(hidden)" });
        out.push_str(quote);
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    out
}

fn headers(raw: BTreeMap<String, String>) -> Result<Vec<(HeaderName, HeaderValue)>, ConfigError> {
    let mut out = Vec::with_capacity(raw.len());
    for (name, value) in raw {
        let key = format!("http_server_config.headers.{name}");
        let Some((_, allowed)) = ALLOWED_HEADERS.iter().find(|(n, _)| *n == name) else {
            let names: Vec<&str> = ALLOWED_HEADERS.iter().map(|(n, _)| *n).collect();
            return Err(ConfigError::invalid(
                key,
                &value,
                format!(
                    "header {name:?} cannot be configured; allowed: {}",
                    names.join(", ")
                ),
            ));
        };
        if value.is_empty() {
            // "Unset if blank", as documented.
            continue;
        }
        if !allowed.is_empty() && !allowed.contains(&value.as_str()) {
            return Err(ConfigError::invalid(
                key,
                &value,
                format!("must be one of: {}", allowed.join(", ")),
            ));
        }
        let header_value = HeaderValue::from_str(&value)
            .map_err(|_| ConfigError::invalid(key, &value, "is not a valid HTTP header value"))?;
        out.push((HeaderName::from_static(static_name(&name)), header_value));
    }
    Ok(out)
}

/// The lower-case static form of an allowed header name (`HeaderName::from_static` needs one).
fn static_name(name: &str) -> &'static str {
    match name {
        "Strict-Transport-Security" => "strict-transport-security",
        "X-Content-Type-Options" => "x-content-type-options",
        "X-Frame-Options" => "x-frame-options",
        "X-XSS-Protection" => "x-xss-protection",
        _ => "content-security-policy",
    }
}

fn rate_limit(raw: RawRateLimit) -> Result<Option<auth::RateLimit>, ConfigError> {
    let interval = match raw.interval.as_deref().map(str::trim) {
        None | Some("") | Some("0") => return Ok(None),
        Some(v) => humantime::parse_duration(v).map_err(|e| {
            ConfigError::invalid(
                "rate_limit.interval",
                v,
                format!("is not a duration like \"100ms\" or \"1s\" ({e})"),
            )
        })?,
    };
    if interval.is_zero() {
        return Ok(None);
    }
    let burst = raw.burst.unwrap_or(0);
    if burst == 0 {
        // exporter-toolkit would accept this and then refuse every request; a file that locks
        // everyone out is more likely a mistake than an intent.
        return Err(ConfigError::invalid(
            "rate_limit.burst",
            burst,
            "must be at least 1 when rate_limit.interval is set (0 would refuse every request)",
        ));
    }
    Ok(Some(auth::RateLimit {
        interval: interval.max(Duration::from_nanos(1)),
        burst,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_plain_http_without_auth() {
        let raw = parse("").unwrap();
        assert!(raw.tls_server_config.is_none());
        let raw = parse("# only a comment\n").unwrap();
        assert!(raw.basic_auth_users.is_none());
    }

    #[test]
    fn a_swapped_in_file_is_not_echoed() {
        let shadow = "root:$6$saltsalt$Secr3tHashValue:19000:0:99999:7:::\n";
        let msg = parse(shadow).unwrap_err().to_string();
        assert!(
            !msg.contains("Secr3t") && !msg.contains("saltsalt"),
            "{msg}"
        );
        assert!(msg.contains("(hidden)"), "{msg}");
        assert_eq!(
            hide_quoted(r#"a "b" c "d""#),
            r#"a "(hidden)" c "(hidden)""#
        );
        assert_eq!(
            hide_quoted("unknown field `cert_fil`, expected `a:b$c`"),
            "unknown field `cert_fil`, expected `(hidden)`"
        );
        let as_key = "root:$6$saltsalt$Secr3tHashValue:19000:0:99999:7::: 1\n";
        let msg = parse(as_key).unwrap_err().to_string();
        assert!(!msg.contains("Secr3t"), "{msg}");
    }

    #[test]
    fn lowering_security_is_named() {
        let full = Posture {
            users: true,
            tls: true,
            client_cert_required: true,
            client_cert_verified: true,
            client_sans: true,
            health_open: false,
        };
        assert_eq!(full.lowered_from(&full), None);
        let no_users = Posture {
            users: false,
            ..full
        };
        assert!(no_users
            .lowered_from(&full)
            .unwrap()
            .contains("basic_auth_users"));
        assert_eq!(full.lowered_from(&no_users), None, "raising is fine");
        let open = Posture {
            health_open: true,
            ..full
        };
        assert!(open.lowered_from(&full).is_some());
    }

    #[test]
    fn unknown_key_names_its_path() {
        let err = parse("tls_server_config:\n  cert_fil: x\n").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("tls_server_config") && msg.contains("cert_fil"),
            "{msg}"
        );
        let err = parse("basic_auth:\n  a: b\n").unwrap_err();
        assert!(err.to_string().contains("basic_auth"), "{err}");
    }

    #[test]
    fn headers_follow_exporter_toolkit() {
        let ok = headers(BTreeMap::from([
            ("X-Frame-Options".to_string(), "deny".to_string()),
            (
                "Content-Security-Policy".to_string(),
                "default-src 'self'".to_string(),
            ),
            ("X-XSS-Protection".to_string(), String::new()),
        ]))
        .unwrap();
        assert_eq!(ok.len(), 2, "a blank value is left unset");
        for (name, value) in [
            ("Authorization", "x"),
            ("Content-Type", "text/plain"),
            ("X-Frame-Options", "allow"),
            ("X-Content-Type-Options", "sniff"),
        ] {
            let err = headers(BTreeMap::from([(name.to_string(), value.to_string())]))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(&format!("http_server_config.headers.{name}")),
                "{err}"
            );
        }
    }

    #[test]
    fn rate_limit_forms() {
        assert!(rate_limit(RawRateLimit::default()).unwrap().is_none());
        let off = RawRateLimit {
            interval: Some("0".into()),
            burst: Some(3),
        };
        assert!(rate_limit(off).unwrap().is_none());
        let on = RawRateLimit {
            interval: Some("1m30s".into()),
            burst: Some(3),
        };
        let r = rate_limit(on).unwrap().unwrap();
        assert_eq!(r.interval, Duration::from_secs(90));
        let no_burst = RawRateLimit {
            interval: Some("1s".into()),
            burst: None,
        };
        assert!(rate_limit(no_burst)
            .unwrap_err()
            .to_string()
            .contains("rate_limit.burst"));
    }
}
