//! vram-exporter: watches GPU memory through NVML, applies a soft/hard limit policy and leak-drift
//! tracking, and serves Prometheus metrics, a JSON API and a status page.
//!
//! One folder per pipeline stage, data flowing one way: `base` (what every stage stands on: input
//! checks, logging, the text-format encoder, supervision, self-metrics) → `source` (NVML →
//! samples, with Kubernetes and allocator annotations) → `model` (policy and drift in the engine →
//! snapshot) → `output` (publication with the exposition rendered once, JSON, page, history,
//! cleanup) → `server` (the poller thread and HTTP) → `config` (the assembled configuration: every
//! stage's section, layered and validated once). A stage imports only stages before it.
//! See ARCHITECTURE.md for the code map, the import rule and the invariants.
//!
//! Public API: [`run`] and [`RunError`] for the binary, and the stages for `main.rs`, `tests/`,
//! `benches/` and `tools/`, which build samples, engines, snapshots and configurations and render
//! outputs directly. Modules nothing outside the crate needs are `pub(crate)` in their stage
//! (`base::{encoder, files, supervise}`, `source::procfs`, `output::api_allocator`,
//! `server::{hangup, http, poller, serve}`); nothing is re-exported.

pub mod base;
pub mod config;
pub mod model;
pub mod output;
pub mod server;
pub mod source;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::base::build_info;
use crate::base::supervise;
use crate::base::telemetry::Telemetry;
use crate::config::Config;
use crate::model::engine::Engine;
use crate::output::publish::Published;
use crate::output::{cleanup, history, status_page};
use crate::server::{hangup, http, poller, serve, web};
use crate::source::{clients, kubernetes, nvml};

/// An error that stops the server after the configuration was accepted.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start the poller thread: {0}")]
    Poller(std::io::Error),
    #[error("cannot listen on the clients socket: {0}")]
    Clients(std::io::Error),
    #[error("server error: {0}")]
    Serve(std::io::Error),
}

/// Starts polling and serves HTTP until SIGINT or SIGTERM.
pub async fn run(config: Config) -> Result<(), RunError> {
    serve::raise_fd_limit();
    let listener = tokio::net::TcpListener::bind(config.web.listen)
        .await
        .map_err(|source| RunError::Bind {
            addr: config.web.listen,
            source,
        })?;
    let local = listener.local_addr().map_err(RunError::Serve)?;

    // SIGHUP is handled from here on (before, it would end the process as by default).
    let hangup = Arc::new(tokio::sync::Notify::new());
    let hangups = hangup::on_hangup(config.web.security.is_some().then(|| hangup.clone()));
    let telemetry = Telemetry::new();
    let heartbeat = supervise::Heartbeat::new(config.poll_interval);
    let (tx, rx) = watch::channel(Arc::new(Published::initial(config.max_processes_per_gpu)));
    let source = nvml::NvmlSource::new(config.nvml_library.clone(), config.poll_interval);
    let engine = Engine::new(config.limits.clone(), config.leak)
        .with_prediction(config.cleanup.predict.as_ref().map(|p| p.rule));
    // Workload attribution: its pod-resources and runtime tasks run here, its cgroup reads on the poller.
    let (attributor, kubernetes_tasks) = match kubernetes::start(&config.kubernetes, &telemetry) {
        Some((a, tasks)) => (Some(a), tasks),
        None => (None, Vec::new()),
    };
    // Allocator reports: the listener runs here, the join with each sample on the poller.
    let (joiner, clients_task) =
        match clients::start(&config.clients, &telemetry.registry, &telemetry.components)
            .map_err(RunError::Clients)?
        {
            Some((j, task)) => (Some(j), Some(task)),
            None => (None, None),
        };
    let annotators = poller::Annotators {
        kubernetes: attributor,
        clients: joiner,
    };
    let poller = poller::Poller::spawn(
        source,
        engine,
        annotators,
        config.poll_interval,
        config.max_processes_per_gpu,
        telemetry.clone(),
        tx,
        heartbeat.clone(),
    )
    .map_err(RunError::Poller)?;
    // OOM prevention reads snapshots like any other reader; it never delays polling or scrapes.
    let reclaims = cleanup::reclaim::ReclaimBoard::default();
    // History reads snapshots and cleanup outcomes the same way (see `history`).
    let (reports, cleanup_reports) = tokio::sync::mpsc::unbounded_channel();
    let cleanup = cleanup::start(
        &config.cleanup,
        &telemetry,
        rx.clone(),
        reclaims.clone(),
        reports,
    );
    let history = Arc::new(history::History::new());
    let history_task = history::spawn(
        history.clone(),
        rx.clone(),
        cleanup_reports,
        &telemetry.components,
    );

    let state = http::AppState {
        published: rx,
        telemetry,
        telemetry_path: config.web.telemetry_path.as_str().into(),
        spare_rules: Arc::new(cleanup::spare::SpareRules::new(&config.cleanup)),
        reclaims,
        history,
        poller: heartbeat,
    };
    // The web configuration (TLS, basic auth, headers) was loaded and checked with the rest of
    // the configuration; from here on it is live and re-read when its files change.
    let web = config.web.security.clone();
    let live = web
        .as_ref()
        .map(|w| Arc::new(web::auth::Live::new(w.access.clone(), w.tls.clone())));
    let watcher = web
        .as_ref()
        .zip(live.clone())
        .map(|(w, l)| web::reload::spawn(w, l, hangup, &state.telemetry.components));
    let app = http::app(
        state,
        http::RequestLimits {
            max_concurrent_requests: config.web.max_concurrent_requests,
            request_timeout: config.web.request_timeout,
        },
        live.clone(),
    );
    // TLS when the web configuration has a certificate; each handshake uses the current one.
    let tls = match (&web, live) {
        (Some(w), Some(live)) if w.tls.is_some() => {
            if w.http2 {
                tracing::info!("HTTP/2 is not offered; TLS clients are served HTTP/1.1");
            }
            Some(live as Arc<dyn serve::TlsSource>)
        }
        _ => None,
    };
    let tls_on = tls.is_some();
    tracing::info!(
        address = %local,
        http2 = false,
        "TLS is {}",
        if tls_on { "enabled" } else { "disabled" }
    );
    tracing::info!(
        address = %local,
        tls = tls_on,
        poll_interval = ?config.poll_interval,
        telemetry_path = %config.web.telemetry_path,
        version = build_info::VERSION,
        revision = build_info::REVISION,
        "listening"
    );
    tracing::info!(
        url = %status_page::url(local, tls_on),
        "status page: every GPU now and over the last hour, with its events"
    );
    let served = serve::serve(
        listener,
        tls,
        app,
        config.web.request_timeout,
        serve::shutdown_signal(),
    )
    .await;
    hangups.abort();
    if let Some(watcher) = watcher {
        watcher.abort();
    }
    if let Some(cleanup) = cleanup {
        cleanup.abort();
    }
    history_task.abort();
    for task in kubernetes_tasks {
        task.abort();
    }
    if let Some(task) = clients_task {
        task.abort();
        clients::remove_socket(&config.clients);
    }
    poller.shutdown(Duration::from_secs(2));
    served.map_err(RunError::Serve)
}
