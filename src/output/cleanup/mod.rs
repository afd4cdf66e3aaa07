//! OOM prevention: cleanup actions when a GPU crosses its hard limit, or (with
//! `[cleanup.predict]`) shortly before it is predicted to.
//!
//! An exporter cannot free another process's GPU memory, so it makes the owners do it — fast,
//! safely and on the record. The safety rules follow earlyoom and systemd-oomd: off by default,
//! `dry_run`, never PID 1 or the exporter itself, only processes on the breaching GPU, `avoid`
//! and `prefer` for kills, SIGTERM before SIGKILL, at most one kill per GPU per cooldown.
//!
//! - [`config`]: the `[cleanup]` section, validated once (unsafe settings are refused).
//! - [`decide`]: the pure "is a run due" function; [`predicted`]: the same before the breach, on
//!   the GPU's time to the hard limit (`[cleanup.predict]`), and whether a run moved it.
//! - [`targets`]: which processes may be touched, and the `/proc` checks before a signal.
//! - [`actions`]: signal, webhook, exec and kill, each time-bounded.
//! - [`payload`]: the JSON body / environment describing the breach.
//! - [`reclaim`]: allocator reports order and skip signals; predicted versus measured reclaim.
//! - [`dispatch`]: the task that watches snapshots and starts runs; [`telemetry`]: its metrics.
//!
//! Data flows one way into here (snapshots from the poller's `watch` channel) and nothing served
//! over HTTP can start an action.

pub mod actions;
pub mod config;
pub mod decide;
pub mod dispatch;
pub mod payload;
pub mod predicted;
pub mod reclaim;
pub mod spare;
pub mod targets;
pub mod telemetry;

pub use config::{Action, CleanupConfig, RawAction, RawCleanup};
pub use dispatch::{Dispatcher, Report};
pub use telemetry::CleanupMetrics;

use tokio::sync::{mpsc, watch};

use crate::base::telemetry::Telemetry;
use crate::output::publish::SharedPublished;

/// Starts the dispatcher when cleanup is enabled; its metrics join the self-metrics registry, and
/// each action's outcome is also sent to `observer` (the history's event timeline).
pub fn start(
    config: &CleanupConfig,
    telemetry: &Telemetry,
    snapshots: watch::Receiver<SharedPublished>,
    board: reclaim::ReclaimBoard,
    observer: mpsc::UnboundedSender<Report>,
) -> Option<tokio::task::JoinHandle<()>> {
    if !config.enabled {
        tracing::info!("cleanup actions disabled");
        return None;
    }
    let metrics = CleanupMetrics::new();
    if let Err(e) = metrics.register(&telemetry.registry) {
        tracing::error!(error = %e, "cleanup metrics could not be registered");
    }
    let actions: Vec<&str> = config.actions.iter().map(Action::as_str).collect();
    tracing::info!(
        actions = %actions.join(","),
        cooldown = %humantime::format_duration(config.cooldown),
        dry_run = config.dry_run,
        predict_eta_below = %config.predict.map_or_else(
            || "off".to_string(),
            |p| humantime::format_duration(p.rule.eta_below).to_string()
        ),
        "cleanup actions enabled"
    );
    let config = config.clone();
    // Supervised: a dispatcher that panics is logged, counted and started again with fresh
    // state (its cooldowns start afresh).
    Some(crate::base::supervise::supervise(
        crate::base::supervise::Component::Cleanup,
        &telemetry.components,
        move || {
            let dispatcher = Dispatcher::new(config.clone(), metrics.clone(), snapshots.clone())
                .with_board(board.clone())
                .with_observer(observer.clone());
            tokio::spawn(dispatcher.run())
        },
    ))
}
