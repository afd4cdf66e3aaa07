//! Bounded writes (issue 23): 512 connections that pipeline `GET /metrics` and never read the
//! answers. Once, each connection kept its unsent copy of the exposition for as long as the
//! socket stayed open (RSS 10 → 95 MiB, and it stayed). Now an answer the peer does not take
//! within the request timeout is dropped with its connection, and the exposition is shared
//! between the answers rather than copied into each: resident memory stays bounded and the
//! sockets are closed by the server while the clients still hold them.

use std::io::Write as _;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::harness::{raise_own_fd_limit, repo, Exporter, Options, MIB};

/// The shipped memory limit (systemd `MemoryMax=64M`, DaemonSet `64Mi`).
const SHIPPED_LIMIT: f64 = 64.0 * MIB;
const CONNECTIONS: usize = 512;
const PIPELINED: usize = 16;

/// Sockets the process has open (its fds that are sockets).
fn sockets(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| {
            dir.filter_map(Result::ok)
                .filter(|e| {
                    std::fs::read_link(e.path())
                        .is_ok_and(|l| l.to_string_lossy().starts_with("socket:"))
                })
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn never_reading_pipelined_clients_are_dropped_after_the_write_timeout() {
    raise_own_fd_limit();
    let scenario =
        std::fs::read_to_string(repo().join("nvml-sim/scenarios/large-node.toml")).unwrap();
    // The largest exposition the limits allow per GPU: every process of large-node listed.
    let e = Exporter::start(Options {
        scenario: &scenario,
        config: "[processes]\nmax_per_gpu = 1024\n[web]\nrequest_timeout = \"2s\"\n",
        ..Default::default()
    });
    e.next_poll();
    let exposition = e.get("/metrics").1.len();
    assert!(
        exposition > 100_000,
        "large-node renders {exposition} bytes"
    );
    let baseline_sockets = sockets(e.pid());
    let before = e.rss();

    let request = format!("GET /metrics HTTP/1.1\r\nHost: {}\r\n\r\n", e.addr).repeat(PIPELINED);
    let mut clients = Vec::with_capacity(CONNECTIONS);
    for _ in 0..CONNECTIONS {
        // A small receive window, so the kernel buffers little and the answers wait in the server.
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let addr: std::net::SocketAddr = e.addr.parse().unwrap();
        socket.connect(&addr.into()).unwrap();
        let mut s = TcpStream::from(socket);
        s.write_all(request.as_bytes()).unwrap();
        clients.push(s);
    }
    // The answers pile up unread; sample resident memory while they do.
    let mut peak = e.rss();
    let deadline = Instant::now() + Duration::from_secs(60);
    while sockets(e.pid()) < baseline_sockets + CONNECTIONS / 2 && Instant::now() < deadline {
        peak = peak.max(e.rss());
        std::thread::sleep(Duration::from_millis(20));
    }
    for _ in 0..50 {
        peak = peak.max(e.rss());
        std::thread::sleep(Duration::from_millis(20));
    }
    // The server closes them after the write timeout while the clients still hold them open.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        peak = peak.max(e.rss());
        let open = sockets(e.pid());
        if open <= baseline_sockets + 8 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{open} sockets still open (baseline {baseline_sockets}): unread answers are never dropped"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let after = e.rss();
    eprintln!(
        "{CONNECTIONS} never-reading connections x {PIPELINED} pipelined GET /metrics ({exposition} bytes each): \
         RSS {:.1} MiB before, {:.1} MiB peak, {:.1} MiB after they were dropped",
        before / MIB,
        peak / MIB,
        after / MIB
    );
    assert!(
        peak < SHIPPED_LIMIT,
        "resident memory {:.1} MiB over the shipped limit",
        peak / MIB
    );
    // Still serving, and nothing panicked.
    assert_eq!(e.get("/metrics").0, 200);
    assert_eq!(e.get("/-/healthy").0, 200);
    assert!(e
        .wait_log(|l| l.contains("panicked"), Duration::from_millis(200))
        .is_none());
    drop(clients);
}
