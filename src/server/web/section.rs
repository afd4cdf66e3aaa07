//! The `[web]` section: listen address, request limits and the path of the exporter-toolkit web
//! configuration file (loaded by [`super::WebSettings`] after every other key is checked).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::base::input::{parse_duration_within, parse_listen, ConfigError};

/// `web.request_timeout` bounds: it is also the header-read timeout of every connection.
const MIN_REQUEST_TIMEOUT: Duration = Duration::from_millis(10);
const MAX_REQUEST_TIMEOUT: Duration = Duration::from_secs(600);

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawWeb {
    /// Address to listen on: "0.0.0.0:18726", "[::]:18726" or ":18726".
    pub listen: String,
    /// Requests served at once; more are answered 503 at once rather than queued.
    pub max_concurrent_requests: usize,
    /// A request that takes longer is answered 408.
    pub request_timeout: String,
    /// Where the metrics are served (`--web.telemetry-path`); the other endpoints never move.
    pub telemetry_path: String,
    /// An exporter-toolkit web configuration file (TLS, basic auth, headers).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config_file: Option<PathBuf>,
}

impl Default for RawWeb {
    fn default() -> Self {
        RawWeb {
            listen: "0.0.0.0:18726".into(),
            max_concurrent_requests: 64,
            request_timeout: "10s".into(),
            telemetry_path: DEFAULT_TELEMETRY_PATH.into(),
            config_file: None,
        }
    }
}

/// Where metrics are served unless `web.telemetry_path` says otherwise.
pub const DEFAULT_TELEMETRY_PATH: &str = "/metrics";

/// The endpoints that never move; the telemetry path may not take one of them.
pub const FIXED_ROUTES: [&str; 5] = [
    "/",
    "/-/healthy",
    "/-/ready",
    "/api/v1/gpus",
    "/api/v1/history",
];

#[derive(Debug, Clone)]
pub struct WebConfig {
    pub listen: SocketAddr,
    pub max_concurrent_requests: usize,
    pub request_timeout: Duration,
    /// The path `/metrics` is served at (checked: absolute, plain characters, no fixed route).
    pub telemetry_path: String,
    /// The loaded and checked `config_file`: TLS, basic auth, headers (see `web/`).
    pub security: Option<crate::server::web::WebSettings>,
}

impl RawWeb {
    /// Checks the server settings; the web configuration file is loaded by the caller.
    pub fn validate(&self) -> Result<WebConfig, ConfigError> {
        let listen = parse_listen("web.listen", &self.listen)?;
        if self.max_concurrent_requests == 0 || self.max_concurrent_requests > 65_536 {
            return Err(ConfigError::invalid(
                "web.max_concurrent_requests",
                self.max_concurrent_requests,
                "must be between 1 and 65536",
            ));
        }
        let request_timeout = parse_duration_within(
            "web.request_timeout",
            &self.request_timeout,
            MIN_REQUEST_TIMEOUT,
            MAX_REQUEST_TIMEOUT,
        )?;
        Ok(WebConfig {
            listen,
            max_concurrent_requests: self.max_concurrent_requests,
            request_timeout,
            telemetry_path: validate_telemetry_path(&self.telemetry_path)?,
            security: None,
        })
    }
}

/// A telemetry path the router can take as it is: starts with `/`, only letters, digits and
/// `-._~/` (no route parameters, wildcards, query or encoded bytes), no empty segment, at most 256
/// bytes, and none of the fixed endpoints.
fn validate_telemetry_path(path: &str) -> Result<String, ConfigError> {
    const KEY: &str = "web.telemetry_path";
    if !path.starts_with('/') {
        return Err(ConfigError::invalid(KEY, path, "must start with \"/\""));
    }
    if path.len() > 256 {
        return Err(ConfigError::invalid(KEY, path, "must be at most 256 bytes"));
    }
    if let Some(c) = path
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~' | '/')))
    {
        return Err(ConfigError::invalid(
            KEY,
            path,
            format!("may contain only letters, digits and - . _ ~ /, not {c:?}"),
        ));
    }
    if path.contains("//") || path.split('/').any(|seg| seg == "." || seg == "..") {
        return Err(ConfigError::invalid(
            KEY,
            path,
            "may not contain empty, \".\" or \"..\" segments",
        ));
    }
    if let Some(route) = FIXED_ROUTES
        .iter()
        .find(|r| **r == path || path.trim_end_matches('/') == **r)
    {
        return Err(ConfigError::invalid(
            KEY,
            path,
            format!("collides with the {route} endpoint, which cannot move"),
        ));
    }
    Ok(path.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn telemetry_paths() {
        for ok in ["/metrics", "/prometheus/metrics", "/m-1.x_~", "/metrics/"] {
            assert_eq!(validate_telemetry_path(ok).unwrap(), ok);
        }
        for (bad, why) in [
            ("metrics", "must start with"),
            ("/", "collides with the / endpoint"),
            ("/-/healthy", "collides with the /-/healthy"),
            ("/api/v1/gpus/", "collides with the /api/v1/gpus"),
            ("/{id}", "not '{'"),
            ("/*rest", "not '*'"),
            ("/a b", "not ' '"),
            ("/a?x", "not '?'"),
            ("/a//b", "empty"),
            ("/a/../b", "segments"),
        ] {
            let e = validate_telemetry_path(bad).unwrap_err().to_string();
            assert!(
                e.starts_with(&format!("web.telemetry_path: invalid value {bad:?}")),
                "{e}"
            );
            assert!(e.contains(why), "{bad}: {e}");
        }
    }
}
