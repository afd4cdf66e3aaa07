//! HTTP: the axum router — `/metrics`, the status page, health, readiness and the JSON API.
//!
//! Handlers only read the newest published [`Snapshot`]; none of them calls NVML, so a hung driver
//! never slows a scrape. Load is bounded: past `max_concurrent_requests` (one limit shared by every
//! route) a request is answered 503 at once (never queued), and a request that outlives
//! `request_timeout` gets 408; the health endpoints are never shed. Nothing here can trigger a
//! cleanup action. With `--web.config.file`, the per-client rate limit, configured headers and
//! basic auth wrap every route (see `web/`), health endpoints included unless the file opens
//! them. Basic auth runs outside the concurrency limit with its own bounded queue, so a flood of
//! wrong passwords never takes the slots of authorized scrapes.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use tokio::sync::{watch, Semaphore};

use crate::api::GpusResponse;
use crate::exposition::CONTENT_TYPE;
use crate::publish::SharedPublished;
use crate::telemetry::Telemetry;
use crate::web;
use crate::web::auth::{Live, HEALTH_PATHS};

/// What every handler can read.
#[derive(Clone)]
pub struct AppState {
    pub published: watch::Receiver<SharedPublished>,
    pub telemetry: Telemetry,
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
    let mut router = Router::new()
        .route("/", get(status_page))
        .route("/metrics", get(metrics))
        .route("/-/healthy", get(healthy))
        .route("/-/ready", get(ready))
        .route("/api/v1/gpus", get(gpus))
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

async fn metrics(State(state): State<AppState>) -> Response {
    let published = state.latest();
    let mut body = Vec::with_capacity(published.exposition.len() + 4096);
    body.extend_from_slice(&published.exposition);
    state.telemetry.encode_into(&mut body);
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response()
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
    Json(GpusResponse::new(&published.snapshot)).into_response()
}

async fn status_page(State(state): State<AppState>) -> Html<String> {
    Html(crate::status_page::render(&state.latest().snapshot))
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        "not found; see / for the endpoints\n",
    )
        .into_response()
}
