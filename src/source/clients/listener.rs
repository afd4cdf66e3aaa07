//! The clients socket: a unix-socket listener on its own tokio task, never on the poll or scrape
//! path, that reads clients' reports and publishes the newest of each process in a `watch`
//! channel ([`ClientTable`]) for the poller.
//!
//! What a client can hold is bounded: [`MAX_CLIENTS`] connections (more are closed at once and
//! counted), one line of [`MAX_LINE`] bytes buffered (a longer one closes the connection),
//! [`RATE`] lines a second with a burst of [`BURST`] (more are dropped and counted), a connection
//! silent for [`IDLE`] is closed, and a process's table entry holds one report and its last
//! [`MAX_EVENTS`] events; the first line must come within [`FIRST_LINE`] and identify the
//! connection (anything else closes it), and one process may hold [`PER_PROCESS`] connections. Identity (see `identity`) is resolved once per connection, from its
//! first message (a connection whose first message cannot be identified is closed, at most
//! [`RESOLVING`] resolutions run at once); every later message must repeat the same pid and start
//! time.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;

use super::config::SocketConfig;
use super::identity::{self, Identity};
use super::message::{self, Kind, Message, Refusal, MAX_LINE};
use super::table::{ClientTable, DeviceReport, Entry};
use super::telemetry::ClientMetrics;
use crate::base::supervise::{supervise, Component, ComponentMetrics};
use crate::source::sample::{AllocatorStats, ClientEvent};

/// The most connections at once.
pub const MAX_CLIENTS: usize = 64;
/// Lines per second a connection may send on average, and its burst.
pub const RATE: f64 = 20.0;
pub const BURST: f64 = 40.0;
/// A connection with no complete line for this long is closed.
pub const IDLE: Duration = Duration::from_secs(60);
/// A connection whose first line takes longer than this is closed (a slot is not held anonymously).
pub const FIRST_LINE: Duration = Duration::from_secs(5);
/// Connections one identified process may hold at once (a reconnect may overlap the old one).
pub const PER_PROCESS: u32 = 2;
/// Events kept per process.
pub const MAX_EVENTS: usize = 8;
/// The interval assumed for a client that announces none.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);
/// Identities resolved at once (a claimed one scans the proc root): a flood of connections
/// queues here rather than scanning in parallel.
const RESOLVING: usize = 2;

/// Binds the socket (replacing a stale one; refusing when another process listens on it), sets
/// its mode and group, and starts the accept loop, supervised: after a panic the loop starts again
/// over the same bound socket and the same shared state (table, connection counts), and the
/// connections already served carry on.
pub fn spawn(
    config: SocketConfig,
    metrics: ClientMetrics,
    components: &ComponentMetrics,
) -> std::io::Result<(watch::Receiver<ClientTable>, tokio::task::JoinHandle<()>)> {
    let listener = bind(&config)?;
    let (tx, rx) = watch::channel(ClientTable::default());
    let shared = Shared::new(listener, config, tx, metrics);
    let task = supervise(Component::Clients, components, move || {
        tokio::spawn(accept_loop(shared.clone()))
    });
    Ok((rx, task))
}

/// What outlives one run of the accept loop: the bound socket and everything its connections
/// share.
#[derive(Clone)]
struct Shared {
    listener: Arc<UnixListener>,
    config: Arc<SocketConfig>,
    table: Arc<watch::Sender<ClientTable>>,
    metrics: ClientMetrics,
    /// Connections served now.
    active: Arc<AtomicUsize>,
    resolving: Arc<tokio::sync::Semaphore>,
    per_process: Arc<Mutex<HashMap<u32, u32>>>,
    next_conn: Arc<AtomicU64>,
}

impl Shared {
    fn new(
        listener: UnixListener,
        config: SocketConfig,
        table: watch::Sender<ClientTable>,
        metrics: ClientMetrics,
    ) -> Self {
        Shared {
            listener: Arc::new(listener),
            config: Arc::new(config),
            table: Arc::new(table),
            metrics,
            active: Arc::default(),
            resolving: Arc::new(tokio::sync::Semaphore::new(RESOLVING)),
            per_process: Arc::default(),
            next_conn: Arc::new(AtomicU64::new(1)),
        }
    }
}

fn bind(config: &SocketConfig) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
    let path = &config.path;
    if let Ok(m) = std::fs::symlink_metadata(path) {
        if !m.file_type().is_socket() {
            return Err(std::io::Error::other(format!(
                "{} exists and is not a socket",
                path.display()
            )));
        }
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(std::io::Error::other(format!(
                "another process listens on {}",
                path.display()
            )));
        }
        std::fs::remove_file(path)?;
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(config.mode))?;
    if let Some(gid) = config.group {
        std::os::unix::fs::chown(path, None, Some(gid))?;
    }
    Ok(listener)
}

async fn accept_loop(shared: Shared) {
    let mut last_error: Option<Instant> = None;
    loop {
        let stream = match shared.listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                // Out of file descriptors and the like: logged at most every 10 s, then retried.
                if last_error.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                    tracing::warn!(error = %e, "clients socket: accept failed");
                    last_error = Some(Instant::now());
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if shared.active.load(Ordering::Relaxed) >= MAX_CLIENTS {
            shared.metrics.refused(Refusal::TooManyClients);
            continue;
        }
        shared.active.fetch_add(1, Ordering::Relaxed);
        shared.metrics.connected.inc();
        let conn = Connection {
            id: shared.next_conn.fetch_add(1, Ordering::Relaxed),
            config: shared.config.clone(),
            table: shared.table.clone(),
            metrics: shared.metrics.clone(),
            resolving: shared.resolving.clone(),
            per_process: shared.per_process.clone(),
        };
        let active = shared.active.clone();
        tokio::spawn(async move {
            let pid = conn.serve(stream).await;
            if let Some(pid) = pid {
                conn.release_process_slot(pid);
                conn.table.send_if_modified(|t| {
                    let mine = t.entries.get(&pid).is_some_and(|e| e.conn == conn.id);
                    if mine {
                        t.entries.remove(&pid);
                    }
                    mine
                });
            }
            conn.metrics.connected.dec();
            active.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

struct Connection {
    id: u64,
    config: Arc<SocketConfig>,
    table: Arc<watch::Sender<ClientTable>>,
    metrics: ClientMetrics,
    resolving: Arc<tokio::sync::Semaphore>,
    /// Connections held per identified pid.
    per_process: Arc<Mutex<HashMap<u32, u32>>>,
}

/// A token bucket: [`RATE`] lines a second, [`BURST`] at once.
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn take(&mut self) -> bool {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.at).as_secs_f64() * RATE).min(BURST);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// What a connection keeps between messages.
struct State {
    identity: Option<Identity>,
    seq: u64,
    events: VecDeque<ClientEvent>,
}

impl Connection {
    /// Serves one client until it closes, misbehaves or idles; returns the pid it spoke for.
    async fn serve(&self, stream: UnixStream) -> Option<u32> {
        let peer = stream.peer_cred().ok().and_then(|c| c.pid());
        let mut reader = BufReader::with_capacity(4096, stream);
        let mut line = Vec::with_capacity(1024);
        let mut bucket = Bucket {
            tokens: BURST,
            at: Instant::now(),
        };
        let mut state = State {
            identity: None,
            seq: 0,
            events: VecDeque::with_capacity(MAX_EVENTS),
        };
        loop {
            line.clear();
            let limit = (MAX_LINE + 1) as u64;
            let mut bounded = (&mut reader).take(limit);
            let read = bounded.read_until(b'\n', &mut line);
            let deadline = if state.identity.is_some() {
                IDLE
            } else {
                FIRST_LINE
            };
            match tokio::time::timeout(deadline, read).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => break, // closed, failed or idle
            }
            if line.last() != Some(&b'\n') {
                if line.len() > MAX_LINE {
                    self.metrics.refused(Refusal::TooLarge);
                }
                break; // too long, or cut by the end of the stream
            }
            let parsed = match bucket.take() {
                true => message::parse(&line[..line.len() - 1]),
                false => Err(Refusal::Rate),
            };
            let msg = match parsed {
                Ok(m) => m,
                Err(why) => {
                    self.metrics.refused(why);
                    if state.identity.is_none() {
                        break; // a connection must open with a message that identifies it
                    }
                    continue;
                }
            };
            let first = state.identity.is_none();
            if !self.identify(&mut state, peer, &msg).await {
                self.metrics.refused(Refusal::Identity);
                if first {
                    break; // never identified: nothing it says can count
                }
                continue;
            }
            if first && !self.take_process_slot(state.identity.map_or(0, |i| i.pid)) {
                self.metrics.refused(Refusal::TooManyClients);
                return None; // its slot was never taken: nothing to give back
            }
            self.apply(&mut state, msg);
            self.metrics.accepted();
        }
        state.identity.map(|i| i.pid)
    }

    /// Counts a connection for `pid`; false when the process already holds [`PER_PROCESS`].
    fn take_process_slot(&self, pid: u32) -> bool {
        let mut held = self.per_process.lock().unwrap_or_else(|e| e.into_inner());
        let n = held.entry(pid).or_insert(0);
        if *n >= PER_PROCESS {
            return false;
        }
        *n += 1;
        true
    }

    fn release_process_slot(&self, pid: u32) {
        let mut held = self.per_process.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = held.get_mut(&pid) {
            *n -= 1;
            if *n == 0 {
                held.remove(&pid);
            }
        }
    }

    /// Resolves the identity at the first message; later ones must repeat the same claim.
    async fn identify(&self, state: &mut State, peer: Option<i32>, msg: &Message) -> bool {
        if let Some(id) = state.identity {
            return msg.pid == id.claimed_pid && msg.start_time == id.claimed_start;
        }
        let (mode, root) = (self.config.identity, self.config.proc_root.clone());
        let (pid, start) = (msg.pid, msg.start_time);
        let Ok(_permit) = self.resolving.acquire().await else {
            return false;
        };
        let resolved = tokio::task::spawn_blocking(move || {
            identity::resolve(mode, Path::new(&root), peer, pid, start)
        })
        .await;
        match resolved {
            Ok(Ok(id)) => {
                state.identity = Some(id);
                true
            }
            Ok(Err(why)) => {
                tracing::debug!(claimed_pid = pid, peer_pid = ?peer, "client refused: {why}");
                false
            }
            Err(_) => false,
        }
    }

    fn apply(&self, state: &mut State, msg: Message) {
        let Some(id) = state.identity else { return };
        let now = SystemTime::now();
        let mut report = None;
        match msg.kind {
            Kind::Event => {
                if state.events.len() == MAX_EVENTS {
                    state.events.pop_front();
                }
                state.events.push_back(ClientEvent {
                    at: now,
                    event: message::clip(msg.event.as_deref().unwrap_or_default()),
                    fields: msg
                        .fields
                        .iter()
                        .take(message::MAX_EVENT_FIELDS)
                        .map(|(k, v)| {
                            let text = match v {
                                serde_json::Value::String(s) => message::clip(s),
                                other => message::clip(&other.to_string()),
                            };
                            (message::clip(k), text)
                        })
                        .collect(),
                });
            }
            Kind::Report => {
                state.seq += 1;
                let interval = msg
                    .interval_ms
                    .map_or(DEFAULT_INTERVAL, Duration::from_millis);
                let devices = msg
                    .devices
                    .into_iter()
                    .map(|d| DeviceReport {
                        uuid: d.uuid,
                        stats: AllocatorStats {
                            allocated: d.allocated_bytes,
                            reserved: d.reserved_bytes,
                            active: d.active_bytes,
                            inactive_split: d.inactive_split_bytes,
                            peak_reserved: d.peak_reserved_bytes,
                            alloc_retries: d.alloc_retries,
                            ooms: d.ooms,
                        },
                        released: d.released_bytes,
                    })
                    .collect();
                report = Some((interval, devices));
            }
        }
        let events: Arc<[ClientEvent]> = state.events.iter().cloned().collect();
        let seq = state.seq;
        let conn = self.id;
        self.table.send_modify(|t| {
            let old = t.entries.get(&id.pid).filter(|e| e.conn == conn);
            let (received, interval, devices) = match (report, old) {
                (Some((interval, devices)), _) => (Some((Instant::now(), now)), interval, devices),
                (None, Some(old)) => (old.received, old.interval, old.devices.clone()),
                (None, None) => (None, DEFAULT_INTERVAL, Vec::new()),
            };
            t.entries.insert(
                id.pid,
                Arc::new(Entry {
                    conn,
                    start_ticks: id.start_ticks,
                    seq,
                    received,
                    interval,
                    devices,
                    events,
                }),
            );
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::clients::config::IdentityMode;

    /// Waits (bounded) until `ok` holds.
    async fn until(ok: impl Fn() -> bool) -> bool {
        for _ in 0..200 {
            if ok() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }

    #[test]
    fn a_restarted_accept_loop_serves_the_same_socket_and_keeps_its_connections() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clients.sock");
        let config = SocketConfig {
            path: path.clone(),
            mode: 0o600,
            group: None,
            identity: IdentityMode::Peer,
            proc_root: "/proc".into(),
            required: true,
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let listener = bind(&config).unwrap();
            let (tx, _rx) = watch::channel(ClientTable::default());
            let metrics = ClientMetrics::new();
            let shared = Shared::new(listener, config, tx, metrics.clone());
            let first = tokio::spawn(accept_loop(shared.clone()));
            let _held = UnixStream::connect(&path).await.unwrap();
            assert!(until(|| metrics.connected.get() == 1).await);
            // The loop ends (as after a panic) and a new one starts over the same listener.
            first.abort();
            assert!(first.await.unwrap_err().is_cancelled());
            let second = tokio::spawn(accept_loop(shared.clone()));
            let _again = UnixStream::connect(&path).await.unwrap();
            assert!(
                until(|| metrics.connected.get() == 2).await,
                "the first connection is still counted and the second one accepted"
            );
            assert_eq!(shared.active.load(Ordering::Relaxed), 2);
            second.abort();
        });
    }
}
