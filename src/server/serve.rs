//! Serving the router on a socket: one accept loop for plain TCP and TLS, and one task per
//! connection that bounds everything a client can hold — a global connection cap, a header-size
//! limit, a header-read timeout, a TLS handshake timeout — and drains open connections on
//! shutdown. Also the process-wide file descriptor limit and the logging of accept errors.
//!
//! `axum::serve` is not used because it has no header-read timeout, no header-size limit and no
//! connection cap; the loop here is the same shape with hyper's HTTP/1.1 builder configured. Only
//! HTTP/1.1 is served, plain or over TLS (`web/tls` advertises http/1.1 alone in ALPN).
//!
//! What a connection may cost, and why RSS stays under the shipped 64 MiB limits:
//! - At most [`MAX_CONNECTIONS`] are open. Past it, a new connection closes the oldest *idle* one
//!   (no request in flight): first one that never got a successful answer (a silent socket, a
//!   partial or junk request, a failed login, a TLS handshake not started, an answer not being
//!   read), else the idle keep-alive connection whose last request is the oldest. When every
//!   connection has a request in flight the new one is closed.
//! - A request head may be at most [`MAX_HEADER_BYTES`] (hyper answers 431 beyond), so a
//!   connection buffers at most that much.
//! - A TLS connection waits for its ClientHello under the header-read timeout (like an idle HTTP
//!   connection, and evictable like one), then has [`HANDSHAKE_TIMEOUT`] to finish the handshake.
//!   No slot is held by a silent socket, so idle sockets never delay other handshakes.
//! - A response the peer does not read is dropped: a write that makes no progress for the
//!   request timeout fails ([`write_timeout`]) and the connection is closed. A connection whose
//!   answer is stuck has no request in flight, so at the cap it is evicted like an idle one that
//!   never had a good answer (before the keep-alive scrapers). What
//!   unread responses can hold is bounded in docs/reliability.md ("Unread responses").

mod write_timeout;

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tower::ServiceExt as _;

/// A process-wide sequence: admissions and request starts, in order (a clock for recency).
static REQUESTS: AtomicU64 = AtomicU64::new(0);

/// Connections open at once (plain or TLS, handshaking, idle or busy).
pub const MAX_CONNECTIONS: usize = 512;
/// The largest request head (request line and headers) a client may send; 431 beyond.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// A TLS client whose ClientHello has started arriving must finish its handshake by then.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Accept errors are logged at most once per this interval (with a count of the others).
const ACCEPT_ERROR_LOG_EVERY: Duration = Duration::from_secs(10);

/// Where the TLS accept loop gets the configuration for each new connection.
pub trait TlsSource: Send + Sync + 'static {
    fn current(&self) -> Option<Arc<ServerConfig>>;
}

/// Serves `app` on `listener` until `shutdown` resolves: plain HTTP, or TLS when `tls` is given.
///
/// Every connection gets a header read timeout: a client must deliver a complete request head
/// within `header_read_timeout` of starting one (or of the connection going idle), else the
/// connection is closed. Slow clients holding connections open ("slowloris") therefore cost a
/// socket for a bounded time only, and at most [`MAX_CONNECTIONS`] sockets. On shutdown,
/// connections still open are given `header_read_timeout` to finish before they are dropped.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<dyn TlsSource>>,
    app: Router,
    header_read_timeout: Duration,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let conns = Arc::new(Connections::new(MAX_CONNECTIONS));
    let graceful = GracefulShutdown::new();
    let mut accept_errors = AcceptErrors::default();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        // Shutdown is polled first: its first poll installs the signal handlers, which must happen
        // before the first connection is served (else a SIGTERM right after it kills the process).
        let accepted = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let (tcp, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                // Out of file descriptors and the like. Closing an idle connection frees one for
                // the next scrape; the pause keeps the loop from spinning.
                accept_errors.record(&e);
                if e.raw_os_error() == Some(libc::EMFILE) || e.raw_os_error() == Some(libc::ENFILE)
                {
                    conns.evict_one();
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // No Nagle delay (Go's net package does the same for exporter-toolkit's servers): a
        // `/metrics` answer is written as the shared exposition, then the scrape's self-metrics,
        // and the second write must not wait for the peer's delayed ACK of the first (40 ms).
        let _ = tcp.set_nodelay(true);
        let Some(slot) = conns.admit() else {
            tracing::debug!(%peer, "every connection has a request in flight; closing a new one");
            continue;
        };
        let tls_config = match &tls {
            None => None,
            Some(source) => match source.current() {
                Some(config) => Some(config),
                None => {
                    tracing::error!("no TLS configuration; dropping the connection");
                    continue;
                }
            },
        };
        let conn = Conn {
            app: app.clone(),
            peer,
            slot,
            header_read_timeout,
            watcher: graceful.watcher(),
        };
        tokio::spawn(conn.run(tcp, tls_config));
    }
    drop(listener);
    // Connections with nothing in flight (idle, or still waiting for a TLS ClientHello) are
    // closed now; the others finish their request.
    conns.close_idle();
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(header_read_timeout) => {
            tracing::debug!("connections still open at shutdown were dropped");
        }
    }
    Ok(())
}

/// One accepted connection and what it needs to be served.
struct Conn {
    app: Router,
    peer: SocketAddr,
    slot: Slot,
    header_read_timeout: Duration,
    watcher: Watcher,
}

impl Conn {
    async fn run(self, tcp: TcpStream, tls: Option<Arc<ServerConfig>>) {
        let state = self.slot.state.clone();
        let closed = state.close.notified();
        tokio::pin!(closed);
        let Some(config) = tls else {
            tokio::select! {
                () = self.serve_http(tcp) => {}
                () = &mut closed => {}
            }
            return;
        };
        let peer = self.peer;
        // A silent socket waits like an idle HTTP connection: bounded by the header-read timeout,
        // closed first when the cap is reached, and holding nothing another handshake needs.
        let hello = tokio::time::timeout(self.header_read_timeout, tcp.readable());
        tokio::select! {
            r = hello => match r {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return,
                Err(_) => {
                    tracing::debug!(%peer, "no TLS ClientHello before the header-read timeout");
                    return;
                }
            },
            () = &mut closed => return,
        }
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp));
        let stream = tokio::select! {
            r = handshake => match r {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            },
            () = &mut closed => return,
        };
        tokio::select! {
            () = self.serve_http(stream) => {}
            () = &mut closed => {}
        }
    }

    /// HTTP/1.1 on `io` until the client or the server ends the connection.
    async fn serve_http<I>(self, io: I)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Conn {
            app,
            peer,
            slot,
            header_read_timeout,
            watcher,
        } = self;
        let state = slot.state.clone();
        let unread = state.unread.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<_>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            let busy = Busy::start(state.clone());
            let call = app.clone().oneshot(request.map(axum::body::Body::new));
            async move {
                let response = call.await;
                if let Ok(r) = &response {
                    busy.finish(r.status().as_u16() < 400);
                }
                response
            }
        });
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(header_read_timeout)
            .max_buf_size(MAX_HEADER_BYTES)
            .serve_connection(
                // The write timeout is the request timeout too: an answer the peer does not
                // take within it is as dead as a request that did not arrive within it.
                TokioIo::new(write_timeout::WriteTimeout::new(
                    io,
                    header_read_timeout,
                    unread,
                )),
                service,
            );
        if let Err(e) = watcher.watch(connection).await {
            tracing::debug!(%peer, error = %e, "connection ended with an error");
        }
        drop(slot);
    }
}

/// What the cap needs to know of an open connection.
struct ConnState {
    /// Requests being answered on it now.
    in_flight: AtomicUsize,
    /// Whether it ever got a successful (< 400) answer.
    trusted: AtomicBool,
    /// Whether a write to it is waiting for the peer to read (set by the write timeout).
    unread: Arc<AtomicBool>,
    /// When its last request started (admission order until then): a keep-alive scraper is
    /// recent, a client that sent a burst and went quiet is not.
    last_request: AtomicU64,
    /// Told when the connection is to be closed (evicted, or idle at shutdown).
    close: Notify,
}

impl ConnState {
    fn idle(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) == 0
    }
}

/// Marks a request in flight on its connection until dropped.
struct Busy {
    state: Arc<ConnState>,
}

impl Busy {
    fn start(state: Arc<ConnState>) -> Busy {
        state.in_flight.fetch_add(1, Ordering::AcqRel);
        state
            .last_request
            .store(REQUESTS.fetch_add(1, Ordering::Relaxed), Ordering::Relaxed);
        Busy { state }
    }

    fn finish(self, success: bool) {
        if success {
            self.state.trusted.store(true, Ordering::Release);
        }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.state.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The open connections, oldest first, and the cap.
struct Connections {
    max: usize,
    inner: Mutex<Registry>,
}

#[derive(Default)]
struct Registry {
    next_id: u64,
    open: BTreeMap<u64, Arc<ConnState>>,
}

/// A connection's place under the cap, given back when dropped.
struct Slot {
    id: u64,
    state: Arc<ConnState>,
    owner: Arc<Connections>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.owner.lock().open.remove(&self.id);
    }
}

impl Connections {
    fn new(max: usize) -> Connections {
        Connections {
            max,
            inner: Mutex::new(Registry::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A slot for a new connection; at the cap the oldest idle connection is closed for it.
    /// `None` when every open connection has a request in flight.
    fn admit(self: &Arc<Self>) -> Option<Slot> {
        let mut reg = self.lock();
        if reg.open.len() >= self.max && !Self::evict(&mut reg) {
            return None;
        }
        let id = reg.next_id;
        reg.next_id += 1;
        let state = Arc::new(ConnState {
            in_flight: AtomicUsize::new(0),
            last_request: AtomicU64::new(REQUESTS.fetch_add(1, Ordering::Relaxed)),
            trusted: AtomicBool::new(false),
            unread: Arc::new(AtomicBool::new(false)),
            close: Notify::new(),
        });
        reg.open.insert(id, state.clone());
        Some(Slot {
            id,
            state,
            owner: self.clone(),
        })
    }

    /// Closes one idle connection (for a file descriptor); false when none is idle.
    fn evict_one(&self) -> bool {
        Self::evict(&mut self.lock())
    }

    /// Closes the oldest idle connection that never had a successful answer or whose peer is
    /// not reading its answer, else the idle one whose last request is the oldest (so an active
    /// keep-alive scraper goes last); false when none is idle.
    fn evict(reg: &mut Registry) -> bool {
        let victim = reg
            .open
            .iter()
            .find(|(_, c)| {
                c.idle() && (!c.trusted.load(Ordering::Acquire) || c.unread.load(Ordering::Acquire))
            })
            .or_else(|| {
                reg.open
                    .iter()
                    .filter(|(_, c)| c.idle())
                    .min_by_key(|(_, c)| c.last_request.load(Ordering::Relaxed))
            })
            .map(|(id, _)| *id);
        match victim.and_then(|id| reg.open.remove(&id)) {
            Some(c) => {
                c.close.notify_one();
                true
            }
            None => false,
        }
    }

    /// At shutdown: closes every connection with nothing in flight.
    fn close_idle(&self) {
        let mut reg = self.lock();
        reg.open.retain(|_, c| {
            if c.idle() {
                c.close.notify_one();
                false
            } else {
                true
            }
        });
    }
}

/// Logs accept errors at most once per [`ACCEPT_ERROR_LOG_EVERY`], counting the rest.
#[derive(Default)]
struct AcceptErrors {
    last_logged: Option<Instant>,
    suppressed: u64,
}

impl AcceptErrors {
    fn record(&mut self, e: &io::Error) {
        let due = self
            .last_logged
            .is_none_or(|t| t.elapsed() >= ACCEPT_ERROR_LOG_EVERY);
        if !due {
            self.suppressed += 1;
            return;
        }
        let fd_limit = matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE));
        tracing::error!(
            error = %e,
            suppressed = self.suppressed,
            "accept failed{}",
            if fd_limit {
                "; out of file descriptors (raise LimitNOFILE / ulimit -n); closing an idle connection"
            } else {
                ""
            }
        );
        self.last_logged = Some(Instant::now());
        self.suppressed = 0;
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

/// Raises the soft limit on open files to the hard limit, so connections, cleanup children and
/// webhooks do not run out at the common default of 1024. Logs what it did; a refusal (e.g. a
/// seccomp filter) is logged and the limit stays as it is.
pub fn raise_fd_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        tracing::warn!(error = %io::Error::last_os_error(), "cannot read the open-file limit");
        return;
    }
    let (soft, hard) = (limit.rlim_cur, limit.rlim_max);
    if soft >= hard {
        tracing::info!(limit = soft, "open-file limit");
        return;
    }
    limit.rlim_cur = hard;
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } == 0 {
        tracing::info!(
            from = soft,
            to = hard,
            "open-file limit raised to the hard limit"
        );
    } else {
        tracing::warn!(
            error = %io::Error::last_os_error(),
            limit = soft,
            "cannot raise the open-file limit; keeping it"
        );
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_closes_untrusted_idle_connections_first() {
        let conns = Arc::new(Connections::new(3));
        let a = conns.admit().unwrap();
        let b = conns.admit().unwrap();
        let c = conns.admit().unwrap();
        // a: a good keep-alive scraper, idle; b: busy; c: never answered.
        a.state.trusted.store(true, Ordering::Release);
        let busy_b = Busy::start(b.state.clone());
        let d = conns.admit().expect("c is evicted");
        assert_eq!(conns.lock().open.len(), 3);
        assert!(!conns.lock().open.contains_key(&c.id), "untrusted first");
        assert!(conns.lock().open.contains_key(&a.id));
        // With d busy, the only idle one left is the trusted a.
        let busy_d = Busy::start(d.state.clone());
        let e = conns.admit().expect("a is evicted");
        assert!(!conns.lock().open.contains_key(&a.id));
        assert!(conns.lock().open.contains_key(&d.id));
        let busy_e = Busy::start(e.state.clone());
        assert!(conns.admit().is_none(), "everything is busy");
        drop(busy_d);
        drop((busy_b, busy_e));
        drop(b);
        assert_eq!(conns.lock().open.len(), 2, "a dropped slot is given back");
    }

    #[test]
    fn a_connection_whose_answer_is_not_read_goes_before_a_good_idle_one() {
        let conns = Arc::new(Connections::new(2));
        let scraper = conns.admit().unwrap();
        let stuck = conns.admit().unwrap();
        for c in [&scraper, &stuck] {
            c.state.trusted.store(true, Ordering::Release);
        }
        stuck.state.unread.store(true, Ordering::Release);
        let _new = conns.admit().expect("one is evicted");
        assert!(conns.lock().open.contains_key(&scraper.id));
        assert!(!conns.lock().open.contains_key(&stuck.id));
    }

    #[test]
    fn among_good_idle_connections_the_least_recently_used_goes_first() {
        let conns = Arc::new(Connections::new(2));
        let scraper = conns.admit().unwrap();
        let burst = conns.admit().unwrap();
        for c in [&scraper, &burst] {
            c.state.trusted.store(true, Ordering::Release);
        }
        // The older connection keeps scraping; the newer one went quiet after its burst.
        drop(Busy::start(scraper.state.clone()));
        let _new = conns.admit().expect("one is evicted");
        assert!(conns.lock().open.contains_key(&scraper.id));
        assert!(!conns.lock().open.contains_key(&burst.id));
    }
}
