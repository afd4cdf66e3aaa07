//! The `[web]` section: listen address, request limits and the path of the exporter-toolkit web
//! configuration file (loaded by [`super::WebSettings`] after every other key is checked).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::input::{parse_duration_within, parse_listen, ConfigError};

/// `web.request_timeout` bounds: it is also the header-read timeout of every connection.
const MIN_REQUEST_TIMEOUT: Duration = Duration::from_millis(10);
const MAX_REQUEST_TIMEOUT: Duration = Duration::from_secs(600);

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawWeb {
    /// Address to listen on: "0.0.0.0:9862", "[::]:9862" or ":9862".
    pub listen: String,
    /// Requests served at once; more are answered 503 at once rather than queued.
    pub max_concurrent_requests: usize,
    /// A request that takes longer is answered 408.
    pub request_timeout: String,
    /// An exporter-toolkit web configuration file (TLS, basic auth, headers).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config_file: Option<PathBuf>,
}

impl Default for RawWeb {
    fn default() -> Self {
        RawWeb {
            listen: "0.0.0.0:9862".into(),
            max_concurrent_requests: 64,
            request_timeout: "10s".into(),
            config_file: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct WebConfig {
    pub listen: SocketAddr,
    pub max_concurrent_requests: usize,
    pub request_timeout: Duration,
    /// The loaded and checked `config_file`: TLS, basic auth, headers (see `web/`).
    pub security: Option<crate::web::WebSettings>,
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
            security: None,
        })
    }
}
