//! The server keeps serving authorized scrapers while other clients misbehave (issue 14, network
//! half), against the real binary on loopback: wrong-password floods, one client's rate limit,
//! the global concurrency limit, timing of unknown users, partial headers on 1,000 connections,
//! idle sockets past the connection cap, a low open-file limit, and secrets in refused files.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;

use crate::harness::{raise_own_fd_limit, Exporter, Options, MIB};

const ONE_GPU: &str = r#"
[[device]]
uuid = "GPU-hardening"
total = "80GiB"

[[device.process]]
pid = 5000401
name = "trainer"
memory = "20GiB"
"#;

/// The shipped memory limit (systemd MemoryMax=64M, DaemonSet 64Mi).
const SHIPPED_LIMIT: f64 = 64.0 * MIB;

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// A TCP connection to `addr` from the loopback address `from` (127.0.0.x), so the exporter sees
/// distinct clients.
fn connect_from(from: [u8; 4], addr: &str) -> TcpStream {
    use socket2::{Domain, Socket, Type};
    let addr: SocketAddr = addr.parse().unwrap();
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    s.bind(&SocketAddr::from((from, 0)).into()).unwrap();
    s.connect(&addr.into()).unwrap();
    s.into()
}

/// One request on `s` (closed after it); the status, or None when the server closed without one.
fn exchange(mut s: TcpStream, path: &str, auth: Option<&str>) -> Option<u16> {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    if let Some(a) = auth {
        req.push_str(&format!("Authorization: {a}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).ok()?;
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

fn request(addr: &str, path: &str, auth: Option<&str>) -> Option<u16> {
    exchange(TcpStream::connect(addr).expect("connect"), path, auth)
}

/// Writes `yaml` as web.yml in a new directory; the directory and the [web] config naming it.
fn web_config(yaml: &str, extra: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let web = dir.path().join("web.yml");
    std::fs::write(&web, yaml).unwrap();
    let config = format!("[web]\n{extra}config_file = \"{}\"\n", web.display());
    (dir, config)
}

fn assert_no_panic(e: &Exporter) {
    let panic = e.wait_log(|l| l.contains("panicked"), Duration::from_millis(200));
    assert!(panic.is_none(), "the exporter panicked: {panic:?}");
}

#[test]
fn a_wrong_password_flood_does_not_starve_authorized_scrapes() {
    let hash = bcrypt::hash("right", 8).unwrap();
    let (_dir, config) = web_config(&format!("basic_auth_users:\n  prom: '{hash}'\n"), "");
    let e = Exporter::start(Options {
        scenario: ONE_GPU,
        config: &config,
        ..Default::default()
    });
    let good = basic("prom", "right");
    // The scraper's credentials are checked once and remembered.
    assert_eq!(request(&e.addr, "/metrics", Some(&good)), Some(200));

    let stop = Arc::new(AtomicBool::new(false));
    let (denied, shed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (ok, failed) = (AtomicUsize::new(0), AtomicUsize::new(0));
    std::thread::scope(|scope| {
        // 80 clients sending random passwords for a known user, as fast as they are answered.
        for t in 0..80 {
            let (stop, denied, shed, addr) = (stop.clone(), denied.clone(), shed.clone(), &e.addr);
            scope.spawn(move || {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    match request(addr, "/metrics", Some(&basic("prom", &format!("x{t}-{i}")))) {
                        Some(401) => denied.fetch_add(1, Ordering::Relaxed),
                        Some(429) => shed.fetch_add(1, Ordering::Relaxed),
                        other => panic!("a wrong password got {other:?}"),
                    };
                }
            });
        }
        std::thread::sleep(Duration::from_millis(500));
        // 48 authorized scrapers, 4 scrapes each, while the flood runs.
        std::thread::scope(|inner| {
            for _ in 0..48 {
                inner.spawn(|| {
                    for _ in 0..4 {
                        match request(&e.addr, "/metrics", Some(&good)) {
                            Some(200) => ok.fetch_add(1, Ordering::Relaxed),
                            _ => failed.fetch_add(1, Ordering::Relaxed),
                        };
                    }
                    assert_eq!(request(&e.addr, "/-/healthy", Some(&good)), Some(200));
                });
            }
        });
        stop.store(true, Ordering::Relaxed);
    });
    let (ok, failed) = (ok.into_inner(), failed.into_inner());
    let (denied, shed) = (denied.load(Ordering::Relaxed), shed.load(Ordering::Relaxed));
    assert_eq!(
        failed, 0,
        "{failed} of 192 authorized scrapes failed during the flood ({ok} ok)"
    );
    assert!(denied > 0, "wrong passwords are checked and refused");
    assert!(
        shed > 0,
        "the bcrypt queue sheds the flood with 429 ({denied} refused)"
    );
    assert_no_panic(&e);
}

/// The median response time of `n` wrong-password requests for `user`.
fn median_denial(addr: &str, user: &str, n: usize) -> Duration {
    let mut times: Vec<Duration> = (0..n)
        .map(|i| {
            let t = Instant::now();
            assert_eq!(
                request(addr, "/metrics", Some(&basic(user, &format!("wrong{i}")))),
                Some(401)
            );
            t.elapsed()
        })
        .collect();
    times.sort();
    times[n / 2]
}

#[test]
fn users_are_not_told_apart_by_the_cost_of_their_hash() {
    // alice's hash is 16 times cheaper than bob's; an unknown user is checked at bob's cost.
    let yaml = format!(
        "basic_auth_users:\n  alice: '{}'\n  bob: '{}'\n",
        bcrypt::hash("a", 4).unwrap(),
        bcrypt::hash("b", 8).unwrap()
    );
    let (_dir, config) = web_config(&yaml, "");
    let e = Exporter::start(Options {
        scenario: ONE_GPU,
        config: &config,
        ..Default::default()
    });
    let alice = median_denial(&e.addr, "alice", 7);
    let nobody = median_denial(&e.addr, "nobody", 7);
    // A ratio, not a time: without padding alice answers in about 1/16 of the unknown user's time.
    assert!(
        alice * 3 > nobody,
        "a wrong password for alice ({alice:?}) answers much sooner than for an unknown user ({nobody:?})"
    );
}

#[test]
fn one_client_over_the_rate_limit_does_not_lock_out_the_others() {
    let yaml = format!(
        "basic_auth_users:\n  prom: '{}'\nrate_limit:\n  interval: 1h\n  burst: 3\n",
        bcrypt::hash("right", 4).unwrap()
    );
    let (_dir, config) = web_config(&yaml, "");
    let e = Exporter::start(Options {
        scenario: ONE_GPU,
        config: &config,
        ..Default::default()
    });
    // 127.0.0.2 spends its burst without credentials, then is refused.
    let attacker: Vec<Option<u16>> = (0..10)
        .map(|_| exchange(connect_from([127, 0, 0, 2], &e.addr), "/metrics", None))
        .collect();
    assert_eq!(&attacker[..3], &[Some(401); 3], "{attacker:?}");
    assert!(
        attacker[3..].iter().all(|s| *s == Some(429)),
        "{attacker:?}"
    );
    // Another client's authorized scrapes and health probes are not.
    let good = basic("prom", "right");
    for _ in 0..3 {
        let s = exchange(
            connect_from([127, 0, 0, 3], &e.addr),
            "/metrics",
            Some(&good),
        );
        assert_eq!(s, Some(200), "an authorized scraper got {s:?}");
    }
    let probe = exchange(
        connect_from([127, 0, 0, 4], &e.addr),
        "/-/healthy",
        Some(&good),
    );
    assert_eq!(probe, Some(200));
}

#[test]
fn the_concurrency_limit_is_shared_by_every_route() {
    // Enough processes that the status page and the JSON API take a while to build.
    let mut scenario = String::from("[[device]]\nuuid = \"GPU-busy\"\ntotal = \"80GiB\"\n");
    for p in 0..1000 {
        scenario.push_str(&format!(
            "[[device.process]]\npid = {}\nname = \"job{p}\"\nmemory = \"10MiB\"\n",
            6_000_000 + p
        ));
    }
    let e = Exporter::start(Options {
        scenario: &scenario,
        config: "[web]\nmax_concurrent_requests = 1\n[processes]\nmax_per_gpu = 1000\n",
        ..Default::default()
    });
    e.wait_metrics("the processes", Duration::from_secs(20), |m| {
        m.count("vram_process_allocated_bytes") >= 100
    });
    // One client per route: with a limit per route none of them would ever be refused.
    let shed = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for path in ["/", "/api/v1/gpus", "/metrics"] {
            let (shed, addr) = (&shed, &e.addr);
            scope.spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(4);
                while Instant::now() < deadline {
                    match request(addr, path, None) {
                        Some(200) => {}
                        Some(503) => {
                            shed.fetch_add(1, Ordering::Relaxed);
                        }
                        other => panic!("{path}: {other:?}"),
                    }
                }
            });
        }
    });
    assert!(
        shed.into_inner() > 0,
        "three routes at once never hit a limit of 1"
    );
    assert_no_panic(&e);
}

/// Opens `n` connections that each send `bytes` of an unfinished request head, in 4 KiB pieces
/// taking turns (so the server reads each piece before the next arrives).
fn partial_heads(addr: &str, n: usize, bytes: usize) -> Vec<TcpStream> {
    // One long header line that never ends: the head stays incomplete.
    let mut head = b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nX-Padding: ".to_vec();
    head.resize(bytes, b'a');
    let mut conns: Vec<TcpStream> = (0..n)
        .filter_map(|_| TcpStream::connect(addr).ok())
        .collect();
    for s in &conns {
        s.set_nonblocking(true).unwrap();
    }
    for (i, piece) in head.chunks(4 * 1024).enumerate() {
        for s in &mut conns {
            // Non-blocking: a connection the server closed, or whose buffers are full, is skipped.
            let _ = s.write(piece);
        }
        if i % 16 == 15 {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    conns
}

#[test]
fn a_thousand_partial_request_heads_stay_under_the_memory_limit() {
    raise_own_fd_limit();
    let e = Exporter::start(Options {
        scenario: ONE_GPU,
        config: "[web]\nrequest_timeout = \"30s\"\n",
        ..Default::default()
    });
    assert_eq!(e.get("/metrics").0, 200);
    let before = e.rss();
    // 256 KiB each: far more than the 16 KiB a request head may have (the server answers 431),
    // and 15 KiB, just under it: what a connection may legitimately buffer.
    let over = partial_heads(&e.addr, 1000, 256 * 1024);
    std::thread::sleep(Duration::from_secs(1));
    let over_rss = e.rss();
    let under = partial_heads(&e.addr, 1000, 15 * 1024);
    std::thread::sleep(Duration::from_secs(1));
    let under_rss = e.rss();
    // Scrapes are still served while the connections are held.
    let t = Instant::now();
    assert_eq!(e.get("/metrics").0, 200);
    let scrape = t.elapsed();
    eprintln!(
        "RSS: {:.1} MiB before, {:.1} MiB after 1,000 × 256 KiB heads, {:.1} MiB after 1,000 × 15 KiB; scrape {scrape:?}",
        before / MIB,
        over_rss / MIB,
        under_rss / MIB
    );
    for (what, rss) in [("256 KiB", over_rss), ("15 KiB", under_rss)] {
        assert!(
            rss < 0.75 * SHIPPED_LIMIT,
            "1,000 connections sending {what} of headers: {:.1} MiB resident, the shipped limit is 64 MiB",
            rss / MIB
        );
    }
    drop((over, under));
    assert_no_panic(&e);
}

#[test]
fn idle_sockets_past_the_connection_cap_do_not_block_scrapes() {
    raise_own_fd_limit();
    let e = Exporter::start(Options {
        scenario: ONE_GPU,
        config: "[web]\nrequest_timeout = \"60s\"\n",
        ..Default::default()
    });
    let mut keepalive = vram_testkit::http::Client::new(e.addr.parse().unwrap()).strict();
    assert_eq!(keepalive.get("/metrics").unwrap().status, 200);
    let idle: Vec<TcpStream> = (0..1000)
        .map(|_| TcpStream::connect(&e.addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    // A new connection is served (the oldest silent socket made room for it)...
    assert_eq!(request(&e.addr, "/metrics", None), Some(200));
    // ...and the kept-alive scraper, idle meanwhile but answered before, was not the one closed.
    assert_eq!(keepalive.get("/metrics").unwrap().status, 200);
    // At least 1000 - 512 of the silent sockets were closed by the server.
    let closed = idle
        .iter()
        .filter(|s| {
            s.set_read_timeout(Some(Duration::from_millis(5))).unwrap();
            let mut b = [0u8; 1];
            let mut r: &TcpStream = s;
            !matches!(r.read(&mut b), Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut)
        })
        .count();
    assert!(
        closed >= 1000 - 512,
        "only {closed} idle sockets were closed"
    );
    assert_no_panic(&e);
}

#[test]
fn the_open_file_soft_limit_is_raised_at_start() {
    raise_own_fd_limit();
    let e = Exporter::start(Options {
        scenario: ONE_GPU,
        config: "[web]\nrequest_timeout = \"60s\"\n",
        nofile: Some((128, None)),
        ..Default::default()
    });
    let line = e
        .wait_log(|l| l.contains("open-file limit"), Duration::from_secs(5))
        .expect("the limit is logged");
    assert!(line.contains("raised"), "{line}");
    // 300 idle connections fit under the raised limit and the cap: a scrape is served at once.
    let idle: Vec<TcpStream> = (0..300)
        .map(|_| TcpStream::connect(&e.addr).unwrap())
        .collect();
    let mut c =
        vram_testkit::http::Client::new(e.addr.parse().unwrap()).timeout(Duration::from_secs(5));
    assert_eq!(c.get("/metrics").unwrap().status, 200);
    drop(idle);
}

#[test]
fn running_out_of_file_descriptors_is_logged_once_and_scrapes_go_on() {
    raise_own_fd_limit();
    // Hard limit 64 too: the exporter cannot raise it, and runs out with ~40 connections.
    let e = Exporter::start(Options {
        scenario: ONE_GPU,
        config: "[web]\nrequest_timeout = \"60s\"\n",
        nofile: Some((64, Some(64))),
        ..Default::default()
    });
    let idle: Vec<TcpStream> = (0..150)
        .map(|_| TcpStream::connect(&e.addr).unwrap())
        .collect();
    let line = e
        .wait_log(|l| l.contains("accept failed"), Duration::from_secs(10))
        .unwrap_or_else(|| {
            panic!(
                "running out of descriptors is logged:\n{}",
                e.log().join("\n")
            )
        });
    assert!(line.contains("file descriptors"), "{line}");
    // An idle connection is closed for each new one: a scrape still gets through.
    let mut c =
        vram_testkit::http::Client::new(e.addr.parse().unwrap()).timeout(Duration::from_secs(10));
    let status = c.get("/metrics").map(|r| r.status);
    assert!(matches!(status, Ok(200)), "{status:?}");
    std::thread::sleep(Duration::from_secs(2));
    let logged = e
        .log()
        .iter()
        .filter(|l| l.contains("accept failed"))
        .count();
    assert!(
        logged <= 2,
        "accept errors are rate-limited; {logged} lines"
    );
    drop(idle);
    assert_no_panic(&e);
}

/// `--check-config` with a web configuration, bounded: (exit code, stderr).
fn check_web_config(web: &std::path::Path) -> (Option<i32>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_vram-exporter"))
        .arg("--web.config.file")
        .arg(web)
        .arg("--check-config")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("--check-config hung on {}", web.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn secrets_in_refused_files_are_never_echoed() {
    let dir = tempfile::tempdir().unwrap();
    let web = dir.path().join("web.yml");
    std::fs::write(dir.path().join("server.pem"), "x").unwrap();
    // A private key pasted where its file name belongs.
    std::fs::write(
        &web,
        "tls_server_config:\n  cert_file: server.pem\n  key_file: \"-----BEGIN PRIVATE KEY-----\\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwSECRET\\n-----END PRIVATE KEY-----\\n\"\n",
    )
    .unwrap();
    let (code, err) = check_web_config(&web);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("tls_server_config.key_file"), "{err}");
    assert!(!err.contains("MIIEvQ") && !err.contains("SECRET"), "{err}");
    // A shadow-style file swapped in for web.yml.
    std::fs::write(
        &web,
        "root:$6$s4ltS4lt$H4shOfTheRootPassw0rd:19700:0:99999:7:::\n",
    )
    .unwrap();
    let (code, err) = check_web_config(&web);
    assert_eq!(code, Some(2), "{err}");
    assert!(!err.contains("H4sh") && !err.contains("s4lt"), "{err}");
    // A key file that is not PEM but starts like it.
    std::fs::write(
        dir.path().join("k.pem"),
        "-----BEGIN TOPSECRET-----x\nAAAA\n",
    )
    .unwrap();
    std::fs::write(&web, "tls_server_config:\n  cert: x\n  key_file: k.pem\n").unwrap();
    let (code, err) = check_web_config(&web);
    assert_eq!(code, Some(2), "{err}");
    assert!(!err.contains("TOPSECRET"), "{err}");
}

#[test]
fn a_fifo_in_place_of_a_named_file_is_refused_without_hanging() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("cert.pem");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let web = dir.path().join("web.yml");
    std::fs::write(
        &web,
        "tls_server_config:\n  cert_file: cert.pem\n  key_file: cert.pem\n",
    )
    .unwrap();
    let (code, err) = check_web_config(&web);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("FIFO"), "{err}");
    // web.yml itself a FIFO.
    let web_fifo = dir.path().join("web-fifo.yml");
    let c = std::ffi::CString::new(web_fifo.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let (code, err) = check_web_config(&web_fifo);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("web.config_file") && err.contains("FIFO"),
        "{err}"
    );
}
