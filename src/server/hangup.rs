//! SIGHUP: the conventional "reload" signal never ends the process (its default action would,
//! silently, with status 129). With a web configuration file it makes the watcher re-read the
//! file and its certificates at once (exporter-toolkit files are reloaded, as on any change);
//! the main configuration file is read only at start, so without a web configuration the signal
//! is logged and otherwise ignored. See docs/runbook.md, "Signals".

use std::sync::Arc;

use tokio::sync::Notify;

/// Handles SIGHUP until the returned task is aborted; `reload` is woken for each one.
pub fn on_hangup(reload: Option<Arc<Notify>>) -> tokio::task::JoinHandle<()> {
    #[cfg(unix)]
    let handler = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup());
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            let mut signals = match handler {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "SIGHUP cannot be handled; it will end the process");
                    return;
                }
            };
            while signals.recv().await.is_some() {
                match &reload {
                    Some(r) => r.notify_one(),
                    None => tracing::info!(
                        "SIGHUP received: nothing to reload (the configuration file is read at start; restart to apply changes)"
                    ),
                }
            }
        }
        #[cfg(not(unix))]
        drop(reload);
    })
}
