//! Serving the router on a socket: the accept loops (plain TCP, or TLS terminated with whichever
//! configuration is current) and the connection loop both share, which gives every connection a
//! header-read timeout and drains open connections on shutdown.
//!
//! `axum::serve` is not used because it has no header-read timeout; the loop here is the same
//! shape with hyper's HTTP/1.1 builder configured. Only HTTP/1.1 is served, plain or over TLS
//! (`web/tls` advertises http/1.1 alone in ALPN).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use rustls::ServerConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_rustls::server::TlsStream;

/// Where the TLS accept loop gets the configuration for each new connection.
pub trait TlsSource: Send + Sync + 'static {
    fn current(&self) -> Option<Arc<ServerConfig>>;
}

/// Serves `app` on `listener` until `shutdown` resolves: plain HTTP, or TLS when `tls` is given.
///
/// Every connection gets a header read timeout: a client must deliver a complete request head
/// within `header_read_timeout` of starting one (or of the connection going idle), else the
/// connection is closed. Slow clients holding connections open ("slowloris") therefore cost a
/// socket for a bounded time only. On shutdown, connections still open are given
/// `header_read_timeout` to finish before they are dropped.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<dyn TlsSource>>,
    app: Router,
    header_read_timeout: Duration,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    match tls {
        None => connections(listener, app, header_read_timeout, shutdown).await,
        Some(source) => {
            let listener = TlsListener::new(listener, source)?;
            connections(listener, app, header_read_timeout, shutdown).await
        }
    }
}

/// The connection loop: one hyper HTTP/1.1 connection per accepted stream, each watched for a
/// graceful shutdown.
async fn connections<L>(
    mut listener: L,
    app: Router,
    header_read_timeout: Duration,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()>
where
    L: axum::serve::Listener,
{
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::server::graceful::GracefulShutdown;
    use hyper_util::service::TowerToHyperService;

    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        // `accept` retries by itself: axum's TcpListener and the TLS accept loop both skip
        // connection errors and wait a second after others (out of file descriptors).
        // Shutdown is polled first: its first poll installs the signal handlers, which must happen
        // before the first connection is served (else a SIGTERM right after it kills the process).
        let (io, _peer) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let service = TowerToHyperService::new(app.clone());
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(header_read_timeout)
            .serve_connection(TokioIo::new(io), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(header_read_timeout) => {
            tracing::debug!("connections still open at shutdown were dropped");
        }
    }
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down");
}

/// Handshakes in flight at once; more connections wait in the kernel's accept queue.
const MAX_HANDSHAKES: usize = 256;
/// A client that has not finished its handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A listener that hands over only connections whose TLS handshake succeeded.
///
/// Handshakes run in their own tasks, so one slow client never holds up the next accept; each
/// uses the configuration current when it was accepted, which is how a reloaded certificate is
/// served without a restart.
struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    acceptor: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    fn new(listener: TcpListener, source: Arc<dyn TlsSource>) -> io::Result<TlsListener> {
        let local = listener.local_addr()?;
        let (tx, ready) = mpsc::channel(64);
        let acceptor = tokio::spawn(tls_accept_loop(listener, source, tx));
        Ok(TlsListener {
            ready,
            local,
            acceptor,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.acceptor.abort();
    }
}

/// The TLS accept loop: accepts TCP connections and hands each to a handshake task.
async fn tls_accept_loop(
    listener: TcpListener,
    source: Arc<dyn TlsSource>,
    ready: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    let permits = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let (tcp, peer) = match listener.accept().await {
            Ok(pair) => pair,
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                // Out of file descriptors and the like: wait instead of spinning.
                tracing::error!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let Some(config) = source.current() else {
            tracing::error!("no TLS configuration; dropping the connection");
            continue;
        };
        let ready = ready.clone();
        tokio::spawn(async move {
            let acceptor = tokio_rustls::TlsAcceptor::from(config);
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => {
                    drop(permit);
                    let _ = ready.send((stream, peer)).await;
                }
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        });
    }
}

fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(pair) => pair,
            // The accept loop only ends when the listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local)
    }
}
