//! HTTP: the axum router — `/metrics` (or `--web.telemetry-path`), the status page, health,
//! readiness and the JSON API.
//!
//! Handlers only read the newest published [`Snapshot`]; none of them calls NVML, so a hung driver
//! never slows a scrape. Load is bounded: past `max_concurrent_requests` a request is answered 503
//! at once (never queued), and a request that outlives `request_timeout` gets 408. Nothing here can
//! trigger a cleanup action. With `--web.config.file`, basic auth, configured headers and the rate
//! limit wrap every route (see `web/`), health endpoints included unless the file opens them.
//! A scraper that accepts gzip gets the exposition compressed once per poll (see `publish`).

use std::sync::Arc;
use std::time::Duration;

use axum::error_handling::HandleErrorLayer;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{BoxError, Json, Router};
use tokio::sync::watch;
use tower::ServiceBuilder;

use crate::api::GpusResponse;
use crate::exposition::CONTENT_TYPE;
use crate::publish::SharedPublished;
use crate::telemetry::Telemetry;
use crate::web::{self, auth::Live};

/// What every handler can read.
#[derive(Clone)]
pub struct AppState {
    pub published: watch::Receiver<SharedPublished>,
    pub telemetry: Telemetry,
    /// Where `/metrics` is served (`web.telemetry_path`, validated).
    pub telemetry_path: Arc<str>,
}

impl AppState {
    fn latest(&self) -> SharedPublished {
        self.published.borrow().clone()
    }
}

/// Load limits applied to every request (not the memory limits of `policy`).
#[derive(Debug, Clone, Copy)]
pub struct RequestLimits {
    pub max_concurrent_requests: usize,
    pub request_timeout: Duration,
}

/// The router, without a socket, so tests can drive it with `oneshot`.
///
/// With a web configuration (`access`), layers from the outside in: rate limit and configured
/// headers (so even a 503 carries them), the load limits, then basic auth (so a flood of
/// password checks is shed like any other load), then the routes.
pub fn app(state: AppState, limits: RequestLimits, access: Option<Arc<Live>>) -> Router {
    let telemetry_path = state.telemetry_path.clone();
    let mut router = Router::new()
        .route("/", get(status_page))
        .route(&telemetry_path, get(metrics))
        .route("/-/healthy", get(healthy))
        .route("/-/ready", get(ready))
        .route("/api/v1/gpus", get(gpus))
        .fallback(not_found)
        .with_state(state);
    if let Some(live) = &access {
        router = router.layer(middleware::from_fn_with_state(
            live.clone(),
            web::auth::basic_auth,
        ));
    }
    router = router.layer(
        ServiceBuilder::new()
            .layer(HandleErrorLayer::new(overload_response))
            .load_shed()
            .concurrency_limit(limits.max_concurrent_requests)
            .timeout(limits.request_timeout),
    );
    if let Some(live) = access {
        router = router.layer(middleware::from_fn_with_state(
            live,
            web::auth::headers_and_rate_limit,
        ));
    }
    router
}

async fn overload_response(err: BoxError) -> Response {
    if err.is::<tower::load_shed::error::Overloaded>() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "too many concurrent requests\n",
        )
            .into_response()
    } else if err.is::<tower::timeout::error::Elapsed>() {
        (StatusCode::REQUEST_TIMEOUT, "request timed out\n").into_response()
    } else {
        tracing::error!(error = %err, "request failed");
        (StatusCode::INTERNAL_SERVER_ERROR, "internal error\n").into_response()
    }
}

async fn metrics(State(state): State<AppState>, request: HeaderMap) -> Response {
    let published = state.latest();
    let vary = (header::VARY, HeaderValue::from_static("accept-encoding"));
    let content_type = (header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    if accepts_gzip(&request) {
        let mut tail = Vec::with_capacity(8192);
        state.telemetry.encode_into(&mut tail);
        if let Some(body) = published.gzip_with(&tail) {
            let encoding = (header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            return ([content_type, encoding, vary], body).into_response();
        }
    }
    let mut body = Vec::with_capacity(published.exposition.len() + 8192);
    body.extend_from_slice(&published.exposition);
    state.telemetry.encode_into(&mut body);
    ([content_type, vary], body).into_response()
}

/// Whether `Accept-Encoding` allows gzip (RFC 9110 §12.5.3): `gzip` or `x-gzip`, or `*` when gzip
/// is not named, with a q-value above 0.
fn accepts_gzip(headers: &HeaderMap) -> bool {
    let mut star = None;
    for value in headers.get_all(header::ACCEPT_ENCODING) {
        let Ok(value) = value.to_str() else { continue };
        for item in value.split(',') {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or("").trim();
            let q = parts
                .filter_map(|p| p.trim().split_once('='))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("q"))
                .map(|(_, v)| v.trim().parse::<f32>().unwrap_or(0.0))
                .unwrap_or(1.0);
            if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
                return q > 0.0;
            }
            if coding == "*" {
                star = Some(q > 0.0);
            }
        }
    }
    star.unwrap_or(false)
}

async fn healthy() -> &'static str {
    "OK\n"
}

async fn ready(State(state): State<AppState>) -> Response {
    if state.latest().snapshot.ready {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: no successful NVML poll yet\n",
        )
            .into_response()
    }
}

async fn gpus(State(state): State<AppState>) -> Response {
    let published = state.latest();
    Json(GpusResponse::new(
        &published.snapshot,
        published.max_processes_per_gpu,
    ))
    .into_response()
}

async fn status_page(State(state): State<AppState>) -> Html<String> {
    Html(crate::status_page::render(
        &state.latest().snapshot,
        &state.telemetry_path,
    ))
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        "not found; see / for the endpoints\n",
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accepts(values: &[&str]) -> bool {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(header::ACCEPT_ENCODING, HeaderValue::from_str(v).unwrap());
        }
        accepts_gzip(&h)
    }

    #[test]
    fn accept_encoding() {
        assert!(accepts(&["gzip"]));
        assert!(accepts(&["br, GZIP;q=0.5"]));
        assert!(accepts(&["identity", "x-gzip"]));
        assert!(accepts(&["*"]));
        assert!(!accepts(&[]));
        assert!(!accepts(&["identity"]));
        assert!(!accepts(&["gzip;q=0"]));
        assert!(!accepts(&["gzip; q=0.000, *"]));
        assert!(!accepts(&["*;q=0"]));
        assert!(!accepts(&["deflate, br"]));
    }
}
