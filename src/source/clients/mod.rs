//! Allocator reports from inside jobs: what PyTorch's caching allocator (or any runtime speaking
//! docs/client-protocol.md) holds per GPU, which NVML cannot see.
//!
//! A source like `kubernetes`: `listener` reads clients on its own tokio task and publishes the
//! newest report of each process in a `watch` channel; the poller thread's `table::Joiner` puts
//! fresh reports on the processes NVML lists, in the sample, before the engine. Downstream they
//! are plain data on each `ProcessView`: `exposition::allocator` renders the allocator families, the
//! JSON API lists them, cleanup orders its signals by them. Owns the `[clients]` section.

pub mod config;
pub mod identity;
pub mod listener;
pub mod message;
pub mod table;
pub mod telemetry;

pub use self::config::{ClientsConfig, RawClients};
pub use self::table::Joiner;

/// Removes the socket at shutdown, so clients see "no exporter" rather than a dead socket (a new
/// exporter would replace it anyway).
pub fn remove_socket(config: &ClientsConfig) {
    if let Some(s) = &config.socket {
        let _ = std::fs::remove_file(&s.path);
    }
}

/// Starts the listener the configuration asks for (supervised, as `components`), registering its
/// self-metrics; None when off.
pub fn start(
    config: &ClientsConfig,
    registry: &prometheus::Registry,
    components: &crate::base::supervise::ComponentMetrics,
) -> std::io::Result<Option<(Joiner, tokio::task::JoinHandle<()>)>> {
    if let Some(reason) = &config.off {
        tracing::info!("{reason}");
    }
    let Some(socket) = config.socket.clone() else {
        return Ok(None);
    };
    let (path, required) = (socket.path.clone(), socket.required);
    let metrics = telemetry::ClientMetrics::new();
    let (rx, task) = match listener::spawn(socket, metrics.clone(), components) {
        Ok(started) => started,
        Err(e) if !required => {
            tracing::warn!(
                socket = %path.display(),
                error = %e,
                "allocator reports off: the clients socket cannot be made (clients.enabled = \"auto\")"
            );
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    if let Err(e) = metrics.register(registry) {
        tracing::warn!(error = %e, "client metrics not registered");
    }
    tracing::info!(socket = %path.display(), "allocator reports: listening for clients");
    Ok(Some((Joiner::new(rx, metrics), task)))
}
