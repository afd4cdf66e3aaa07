//! The hostile mix run beside the good scrapers (issue 14): clients that try to starve them —
//! wrong-password floods, silent sockets, slowloris trickles, endless request heads, junk, and
//! logged-in clients that pipeline `GET /metrics` and never read an answer (issue 23: their
//! unread answers must not pile up in the exporter's memory).
//! Every kind is a bounded number of threads and connections, stopped with the load; what they
//! got back is counted for the report (none of it is an error: only good scrapes are judged).

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// How many of each kind.
pub const BAD_AUTH_CLIENTS: usize = 16;
pub const SILENT_SOCKETS: usize = 600;
pub const SLOWLORIS: usize = 100;
pub const ENDLESS_HEADS: usize = 200;
pub const JUNK_CLIENTS: usize = 4;
pub const NEVER_READING: usize = 128;
/// `GET /metrics` requests each never-reading connection sends at once.
pub const PIPELINED: usize = 8;

/// What the hostile clients saw.
#[derive(Default)]
pub struct Counts {
    pub denied: AtomicU64,
    pub shed: AtomicU64,
    pub junk_answered: AtomicU64,
    /// Connections the server closed (evicted, timed out or refused) and that were reopened.
    pub reopened: AtomicU64,
}

pub struct Hostile {
    stop: Arc<AtomicBool>,
    pub counts: Arc<Counts>,
    threads: Vec<JoinHandle<()>>,
}

impl Hostile {
    /// `authorization`: the scrapers' own `Authorization` value, which the never-reading clients
    /// send too (a logged-in client that stops reading, like a stuck scraper).
    pub fn start(addr: SocketAddr, user: &str, authorization: &str) -> Hostile {
        raise_own_fd_limit();
        let stop = Arc::new(AtomicBool::new(false));
        let counts = Arc::new(Counts::default());
        let mut threads = Vec::new();
        for t in 0..BAD_AUTH_CLIENTS {
            let (stop, counts, user) = (stop.clone(), counts.clone(), user.to_string());
            threads.push(std::thread::spawn(move || {
                bad_auth(addr, &user, t, &stop, &counts)
            }));
        }
        let pipelined =
            format!("GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: {authorization}\r\n\r\n")
                .repeat(PIPELINED)
                .into_bytes();
        for (n, kind) in [
            (SILENT_SOCKETS, Held::Silent),
            (SLOWLORIS, Held::Trickle),
            (ENDLESS_HEADS, Held::EndlessHead),
            (NEVER_READING, Held::NeverReads),
        ] {
            let (stop, counts, pipelined) = (stop.clone(), counts.clone(), pipelined.clone());
            threads.push(std::thread::spawn(move || {
                hold(addr, n, kind, &pipelined, &stop, &counts)
            }));
        }
        for t in 0..JUNK_CLIENTS {
            let (stop, counts) = (stop.clone(), counts.clone());
            threads.push(std::thread::spawn(move || junk(addr, t, &stop, &counts)));
        }
        Hostile {
            stop,
            counts,
            threads,
        }
    }

    pub fn stop(self) -> Arc<Counts> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
        self.counts
    }
}

/// This process opens ~1,000 sockets.
fn raise_own_fd_limit() {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain reads and writes of the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) == 0 {
            l.rlim_cur = l.rlim_max.min(65_536);
            libc::setrlimit(libc::RLIMIT_NOFILE, &l);
        }
    }
}

fn connect(addr: SocketAddr) -> Option<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    s.set_write_timeout(Some(Duration::from_secs(2))).ok()?;
    Some(s)
}

/// The status of the next response on `s`; None when closed first.
fn status(s: &mut TcpStream) -> Option<u16> {
    let mut buf = [0u8; 4096];
    let mut got = Vec::new();
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                got.extend_from_slice(&buf[..n]);
                if got.windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
        }
    }
    let text = String::from_utf8_lossy(&got);
    text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

/// Random wrong passwords for the real user, one request per connection.
fn bad_auth(addr: SocketAddr, user: &str, t: usize, stop: &AtomicBool, counts: &Counts) {
    use base64::Engine as _;
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let Some(mut s) = connect(addr) else {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        let token =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:guess-{t}-{i}"));
        let req = format!(
            "GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {token}\r\nConnection: close\r\n\r\n"
        );
        if s.write_all(req.as_bytes()).is_err() {
            continue;
        }
        match status(&mut s) {
            Some(401) => counts.denied.fetch_add(1, Ordering::Relaxed),
            Some(_) | None => counts.shed.fetch_add(1, Ordering::Relaxed),
        };
    }
}

#[derive(Clone, Copy)]
enum Held {
    /// Connected, never sends a byte.
    Silent,
    /// Sends one byte of a request head every 200 ms.
    Trickle,
    /// Sends 15 KiB of one header line that never ends, then waits.
    EndlessHead,
    /// Sends pipelined, authorized `GET /metrics` requests and never reads an answer.
    NeverReads,
}

/// `TCP_ESTABLISHED` of linux/tcp_states.h (the `libc` crate does not export the states).
const TCP_ESTABLISHED: u8 = 1;

/// Whether the server still has `s` open. A never-reading client must not read to find out: it
/// asks the kernel whether the connection is still established (not closed or reset by the server).
fn server_keeps(s: &TcpStream, kind: Held) -> bool {
    if let Held::NeverReads = kind {
        use std::os::fd::AsRawFd as _;
        // SAFETY: an all-zero tcp_info is valid; getsockopt writes at most `len` bytes into it.
        let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
        // SAFETY: `info` and `len` are valid for writes for the call's duration.
        let ok = unsafe {
            libc::getsockopt(
                s.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_INFO,
                (&mut info as *mut libc::tcp_info).cast(),
                &mut len,
            )
        } == 0;
        return ok && info.tcpi_state == TCP_ESTABLISHED;
    }
    let _ = s.set_nonblocking(true);
    let mut b = [0u8; 512];
    let mut r: &TcpStream = s;
    let alive = matches!(r.read(&mut b), Err(e) if e.kind() == ErrorKind::WouldBlock);
    let _ = s.set_nonblocking(false);
    alive
}

/// Keeps `n` connections of one kind open, reopening those the server closes.
fn hold(
    addr: SocketAddr,
    n: usize,
    kind: Held,
    pipelined: &[u8],
    stop: &AtomicBool,
    counts: &Counts,
) {
    let mut open: Vec<TcpStream> = Vec::with_capacity(n);
    let endless = {
        let mut h = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Padding: ".to_vec();
        h.resize(15 * 1024, b'a');
        h
    };
    while !stop.load(Ordering::Relaxed) {
        // Drop the connections the server closed.
        let before = open.len();
        open.retain(|s| server_keeps(s, kind));
        if before > 0 {
            counts
                .reopened
                .fetch_add((before - open.len()) as u64, Ordering::Relaxed);
        }
        while open.len() < n && !stop.load(Ordering::Relaxed) {
            let Some(mut s) = connect(addr) else { break };
            let first: &[u8] = match kind {
                Held::Silent => b"",
                Held::Trickle => b"GET /metrics HTTP/1.1\r\n",
                Held::EndlessHead => &endless,
                Held::NeverReads => pipelined,
            };
            if s.write_all(first).is_ok() {
                open.push(s);
            }
        }
        if let Held::Trickle = kind {
            for s in &mut open {
                let _ = s.write_all(b"X");
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Junk: garbage bytes, an oversized head, unknown methods and odd paths, one per connection.
fn junk(addr: SocketAddr, t: usize, stop: &AtomicBool, counts: &Counts) {
    let mut oversized = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
    oversized.resize(64 * 1024, b'b');
    oversized.extend_from_slice(b"\r\n\r\n");
    let requests: Vec<Vec<u8>> = vec![
        b"\x00\x01\x02\x03 garbage \xff\xfe\r\n\r\n".to_vec(),
        oversized,
        b"FROBNICATE /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec(),
        b"GET /%ff%00/../../etc/passwd HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec(),
        b"GET /metrics HTTP/9.9\r\n\r\n".to_vec(),
    ];
    let mut i = t;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let Some(mut s) = connect(addr) else {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        let _ = s.write_all(&requests[i % requests.len()]);
        if status(&mut s).is_some() {
            counts.junk_answered.fetch_add(1, Ordering::Relaxed);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
