//! HTTP: the axum router — `/metrics` (or `--web.telemetry-path`), the status page, health,
//! readiness and the JSON API.
//!
//! Handlers only read the newest published [`Snapshot`]; none of them calls NVML, so a hung driver
//! never slows a scrape. Load is bounded: past `max_concurrent_requests` (one limit shared by every
//! route) a request is answered 503 at once (never queued), and a request that outlives
//! `request_timeout` gets 408; the health endpoints are never shed. Nothing here can trigger a
//! cleanup action. With `--web.config.file`, the per-client rate limit, configured headers and
//! basic auth wrap every route (see `web/`), health endpoints included unless the file opens
//! them. Basic auth runs outside the concurrency limit with its own bounded queue, so a flood of
//! wrong passwords never takes the slots of authorized scrapes.
//! A scraper that accepts gzip gets the exposition compressed once per poll (see `publish`).

mod shared_body;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use tokio::sync::{watch, Semaphore};

use crate::base::encoder::CONTENT_TYPE;
use crate::base::supervise::{Component, Heartbeat};
use crate::base::telemetry::Telemetry;
use crate::output::api::GpusResponse;
use crate::output::publish::SharedPublished;
use crate::server::web;
use crate::server::web::auth::{Live, HEALTH_PATHS};

/// What every handler can read.
#[derive(Clone)]
pub struct AppState {
    pub published: watch::Receiver<SharedPublished>,
    pub telemetry: Telemetry,
    /// Where `/metrics` is served (`web.telemetry_path`, validated).
    pub telemetry_path: Arc<str>,
    /// The cleanup actions' sparing rules, for `/api/v1/gpus`.
    pub spare_rules: Arc<crate::output::cleanup::spare::SpareRules>,
    /// Cleanup's predicted versus measured reclaim per process, for `/api/v1/gpus`.
    pub reclaims: crate::output::cleanup::reclaim::ReclaimBoard,
    /// The recent past, for `/api/v1/history` and the status page.
    pub history: Arc<crate::output::history::History>,
    /// The poller thread's liveness, for `/-/healthy` and `vram_exporter_component_up`.
    pub poller: Arc<Heartbeat>,
}

impl axum::extract::FromRef<AppState> for Arc<crate::output::history::History> {
    fn from_ref(state: &AppState) -> Self {
        state.history.clone()
    }
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
/// Layers from the outside in: with a web configuration (`access`), the per-client rate limit
/// and configured headers (so even a 429 or 503 carries them), then basic auth (cached
/// credentials answer at once; bcrypt checks have their own bounded queue); then the global
/// concurrency limit and request timeout; then the routes.
pub fn app(state: AppState, limits: RequestLimits, access: Option<Arc<Live>>) -> Router {
    let telemetry_path = state.telemetry_path.clone();
    let mut router = Router::new()
        .route("/", get(status_page))
        .route(&telemetry_path, get(metrics))
        .route("/-/healthy", get(healthy))
        .route("/-/ready", get(ready))
        .route("/api/v1/gpus", get(gpus))
        .route(
            "/api/v1/history",
            get(crate::output::history::handler::history),
        )
        .fallback(not_found)
        .with_state(state);
    // `Router::layer` wraps each route separately: the semaphore is shared through the state so
    // the limit is global.
    let limiter = Arc::new(Limiter {
        permits: Semaphore::new(limits.max_concurrent_requests),
        timeout: limits.request_timeout,
    });
    router = router.layer(middleware::from_fn_with_state(limiter, limit));
    if let Some(live) = access {
        router = router
            .layer(middleware::from_fn_with_state(
                live.clone(),
                web::auth::basic_auth,
            ))
            .layer(middleware::from_fn_with_state(
                live,
                web::auth::headers_and_rate_limit,
            ));
    }
    router
}

/// The global concurrency limit and the request timeout.
struct Limiter {
    permits: Semaphore,
    timeout: Duration,
}

async fn limit(State(limiter): State<Arc<Limiter>>, request: Request, next: Next) -> Response {
    if HEALTH_PATHS.contains(&request.uri().path()) {
        return next.run(request).await;
    }
    let Ok(_permit) = limiter.permits.try_acquire() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "too many concurrent requests\n",
        )
            .into_response();
    };
    match tokio::time::timeout(limiter.timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => (StatusCode::REQUEST_TIMEOUT, "request timed out\n").into_response(),
    }
}

async fn metrics(State(state): State<AppState>, request: HeaderMap) -> Response {
    let published = state.latest();
    let poller_up = i64::from(state.poller.check().is_ok());
    let up = &state.telemetry.components.up;
    up.with_label_values(&[Component::Poller.as_str()])
        .set(poller_up);
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
    let mut tail = Vec::with_capacity(8192);
    state.telemetry.encode_into(&mut tail);
    let body = shared_body::SharedBody::new(published.exposition.clone(), tail);
    ([content_type, vary], axum::body::Body::new(body)).into_response()
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

/// 200 while the poller is alive and not stalled outside NVML (a hung driver stays healthy:
/// restarting cannot fix it, and scrapes still answer); 503 naming why otherwise.
async fn healthy(State(state): State<AppState>) -> Response {
    match state.poller.check() {
        Ok(()) => (StatusCode::OK, "OK\n").into_response(),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("unhealthy: {why}\n"),
        )
            .into_response(),
    }
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
    let reclaims = state.reclaims.read().map(|b| b.clone()).unwrap_or_default();
    Json(
        GpusResponse::new(
            &published.snapshot,
            published.max_processes_per_gpu,
            &state.spare_rules,
        )
        .with_reclaims(&reclaims),
    )
    .into_response()
}

async fn status_page(State(state): State<AppState>) -> Response {
    let history = state.history.query(&Default::default());
    let page = crate::output::status_page::render(
        &state.latest().snapshot,
        &history,
        &state.telemetry_path,
    );
    let csp = HeaderValue::from_static(crate::output::status_page::content_security_policy());
    (
        [
            (header::CONTENT_SECURITY_POLICY, csp),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        Html(page),
    )
        .into_response()
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
