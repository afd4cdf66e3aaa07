//! OOM prevention: emergency cleanup actions when a GPU crosses its hard limit.
//!
//! An exporter cannot free another process's GPU memory, so it makes the owners do it — fast,
//! safely and on the record. The safety rules follow earlyoom and systemd-oomd: off by default,
//! `dry_run`, never PID 1 or the exporter itself, only processes on the breaching GPU, `avoid`
//! and `prefer` for kills, SIGTERM before SIGKILL, at most one kill per GPU per cooldown.
//!
//! - [`config`]: the `[cleanup]` section, validated once (unsafe settings are refused).
//! - [`decide`]: the pure "is a run due" function.
//! - [`targets`]: which processes may be touched, and the `/proc` checks before a signal.
//! - [`actions`]: signal, webhook, exec and kill, each time-bounded.
//! - [`payload`]: the JSON body / environment describing the breach.
//! - [`dispatch`]: the task that watches snapshots and starts runs; [`telemetry`]: its metrics.
//!
//! Data flows one way into here (snapshots from the poller's `watch` channel) and nothing served
//! over HTTP can start an action.

pub mod actions;
pub mod config;
pub mod decide;
pub mod dispatch;
pub mod payload;
pub mod targets;
pub mod telemetry;

pub use config::{Action, CleanupConfig, RawAction, RawCleanup};
pub use dispatch::{Dispatcher, Report};
pub use telemetry::CleanupMetrics;

use tokio::sync::watch;

use crate::publish::SharedPublished;
use crate::telemetry::Telemetry;

/// Starts the dispatcher when cleanup is enabled; its metrics join the self-metrics registry.
pub fn start(
    config: &CleanupConfig,
    telemetry: &Telemetry,
    snapshots: watch::Receiver<SharedPublished>,
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
        "cleanup actions enabled"
    );
    let config = config.clone();
    // Supervised: a dispatcher that panics is logged, counted and started again with fresh
    // state (its cooldowns start afresh).
    Some(crate::supervise::supervise(
        crate::supervise::Component::Cleanup,
        &telemetry.components,
        move || {
            let dispatcher = Dispatcher::new(config.clone(), metrics.clone(), snapshots.clone());
            tokio::spawn(dispatcher.run())
        },
    ))
}
