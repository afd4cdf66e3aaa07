//! HTTP abuse against the real binary: oversized headers, slow clients holding
//! connections, unknown methods, odd paths and a flood past the concurrency bound are answered
//! with 4xx/503 or closed — never a crash, never a 5xx other than the 503 of load shedding, and
//! never memory that keeps growing. (Attacks aimed at other clients: `hardening.rs`.) Everything stays on loopback and is bounded in count and time.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::harness::{Exporter, Options, MIB};

const ONE_GPU: &str = r#"
[[device]]
uuid = "GPU-abuse"
total = "80GiB"

[[device.process]]
pid = 5000301
name = "trainer"
memory = "20GiB"
"#;

/// Sends `request` as raw bytes and returns the response's status code, or None when the server
/// closed the connection without answering. Write errors (the server hung up mid-request) are
/// expected for oversized requests and are not failures.
fn raw(addr: &str, request: &[u8]) -> Option<u16> {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.write_all(request);
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                if buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut => {
                panic!(
                    "no answer and no close within 10 s for {:?}",
                    preview(request)
                )
            }
            Err(_) => break, // reset: closed
        }
    }
    let head = String::from_utf8_lossy(&buf);
    head.strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
}

fn preview(request: &[u8]) -> String {
    String::from_utf8_lossy(&request[..request.len().min(80)]).into_owned()
}

fn request(method: &str, target: &[u8]) -> Vec<u8> {
    let mut r = Vec::new();
    r.extend_from_slice(method.as_bytes());
    r.push(b' ');
    r.extend_from_slice(target);
    r.extend_from_slice(b" HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    r
}

fn rss(e: &Exporter) -> f64 {
    e.metrics()
        .value("process_resident_memory_bytes", &[])
        .expect("process_resident_memory_bytes")
}

fn assert_no_panic(e: &mut Exporter) {
    let panic = e.wait_log(|l| l.contains("panicked"), Duration::from_millis(300));
    assert!(panic.is_none(), "the exporter panicked: {panic:?}");
}

/// Normal scrapes from `threads` threads, `per_thread` each, over keep-alive connections.
fn scrape_load(e: &Exporter, threads: usize, per_thread: usize) {
    std::thread::scope(|scope| {
        for t in 0..threads {
            let url_metrics = e.url("/metrics");
            let url_api = e.url("/api/v1/gpus");
            let url_missing = e.url("/missing");
            scope.spawn(move || {
                let agent: ureq::Agent = ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .timeout_global(Some(Duration::from_secs(10)))
                    .build()
                    .into();
                for i in 0..per_thread {
                    let url = match (i + t) % 3 {
                        0 => &url_metrics,
                        1 => &url_api,
                        _ => &url_missing,
                    };
                    let mut resp = agent.get(url).call().expect("request");
                    let status = resp.status().as_u16();
                    let _ = resp.body_mut().read_to_vec();
                    assert!(status == 200 || status == 404, "{url}: {status}");
                }
            });
        }
    });
}

#[test]
fn hostile_requests_are_refused_and_memory_stays_bounded() {
    let mut e = Exporter::start(Options {
        scenario: ONE_GPU,
        config: "[poll]\ninterval = \"100ms\"\n",
        ..Default::default()
    });
    e.next_poll();
    scrape_load(&e, 4, 300);
    let before = rss(&e);

    for round in 0..3 {
        // Oversized headers: one 1 MiB header, and 500 small ones.
        let mut big = b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nX-Big: ".to_vec();
        big.extend(std::iter::repeat_n(b'a', 1 << 20));
        big.extend_from_slice(b"\r\n\r\n");
        let status = raw(&e.addr, &big);
        assert!(
            matches!(status, None | Some(431) | Some(400)),
            "1 MiB header: {status:?}"
        );
        let mut many = b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n".to_vec();
        for i in 0..500 {
            many.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        let status = raw(&e.addr, &many);
        assert!(
            matches!(status, None | Some(431) | Some(400)),
            "500 headers: {status:?}"
        );

        // Unknown and unsupported methods on a real route.
        for method in [
            "POST",
            "PUT",
            "DELETE",
            "PATCH",
            "OPTIONS",
            "TRACE",
            "FROBNICATE",
        ] {
            let status = raw(&e.addr, &request(method, b"/metrics"));
            assert_eq!(status, Some(405), "{method} /metrics");
        }
        assert_eq!(raw(&e.addr, &request("BREW", b"/api/v1/gpus")), Some(405));
        // Not even a method.
        let status = raw(&e.addr, b"\x00\x01\x02 / HTTP/1.1\r\n\r\n");
        assert!(
            matches!(status, None | Some(400)),
            "binary method: {status:?}"
        );

        // Paths with odd bytes.
        let long = format!("/{}", "a".repeat(60_000));
        let very_long = format!("/{}", "b".repeat(200_000));
        let odd: Vec<&[u8]> = vec![
            b"/metrics%00",
            b"/%00",
            b"/%ff%fe",
            b"/metrics/%2e%2e/%2e%2e/etc/passwd",
            b"/../../etc/passwd",
            b"//metrics/",
            b"/\xff\xfe\xfd",
            b"/metrics\x00",
            b"/caf\xc3\xa9/\xe2\x82",
            b"/%",
            b"/%zz",
            b"*",
            long.as_bytes(),
            very_long.as_bytes(),
        ];
        for target in odd {
            let status = raw(&e.addr, &request("GET", target));
            assert!(
                status.is_none_or(|s| (400..500).contains(&s)),
                "GET {:?}: {status:?} (round {round})",
                preview(target)
            );
        }
        // The real routes still answer in between.
        assert_eq!(e.get("/metrics").0, 200);
    }

    scrape_load(&e, 4, 300);
    let after = rss(&e);
    assert!(
        after - before < 8.0 * MIB,
        "resident memory grew from {:.1} MiB to {:.1} MiB",
        before / MIB,
        after / MIB
    );
    assert_eq!(e.get("/-/healthy").0, 200);
    assert_no_panic(&mut e);
}

#[test]
fn slow_clients_are_cut_off_and_others_are_still_served() {
    // The request timeout (2 s here) also bounds how long a request head may take to arrive.
    let mut e = Exporter::start(Options {
        scenario: ONE_GPU,
        config: "[web]\nrequest_timeout = \"2s\"\n",
        ..Default::default()
    });
    e.wait_metrics("first poll", Duration::from_secs(10), |m| {
        m.count("vram_total_bytes") == 1
    });
    const SLOW: usize = 100;
    let mut slow: Vec<TcpStream> = (0..SLOW)
        .map(|_| {
            let mut s = TcpStream::connect(&e.addr).unwrap();
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n")
                .unwrap();
            s
        })
        .collect();
    // Slowloris: one header byte per connection every 200 ms, while others scrape normally.
    let started = Instant::now();
    let mut served = 0;
    let mut trickled = 0usize;
    while started.elapsed() < Duration::from_secs(3) {
        for s in &mut slow {
            let _ = s.write_all(b"X");
        }
        trickled += 1;
        let t = Instant::now();
        let (status, body) = e.get("/metrics");
        assert_eq!(status, 200);
        assert!(body.contains("vram_total_bytes"));
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "a normal scrape waited {:?} behind slow clients",
            t.elapsed()
        );
        served += 1;
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(served >= 5 && trickled >= 5);

    // Every slow connection is closed by the server (well) within a generous bound.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut open: Vec<TcpStream> = slow;
    while !open.is_empty() && Instant::now() < deadline {
        open.retain_mut(|s| {
            let _ = s.write_all(b"X");
            s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
            let mut buf = [0u8; 1024];
            match s.read(&mut buf) {
                Ok(_) => false, // EOF, or an error response before the close
                Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut => {
                    true
                }
                Err(_) => false,
            }
        });
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        open.is_empty(),
        "{} of {SLOW} slow connections still open 20 s after the header timeout",
        open.len()
    );
    assert_eq!(e.get("/metrics").0, 200);
    assert_no_panic(&mut e);
}

#[test]
fn a_flood_past_the_concurrency_bound_is_shed_with_503() {
    // 48 clients log in at once: their first bcrypt checks overrun the bcrypt queue (429) until
    // the credentials are remembered; then they overrun a concurrency bound of 4 (503).
    let hash = bcrypt::hash("flood-pass", 8).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let web = dir.path().join("web.yml");
    std::fs::write(
        &web,
        format!(
            "basic_auth_users:\n  flood: '{hash}'\nvram_exporter:\n  unauthenticated_health: true\n"
        ),
    )
    .unwrap();
    let config = format!(
        "[web]\nmax_concurrent_requests = 4\nconfig_file = \"{}\"\n",
        web.display()
    );
    let mut e = Exporter::start(Options {
        scenario: ONE_GPU,
        config: &config,
        ..Default::default()
    });
    let ok = Arc::new(AtomicUsize::new(0));
    let shed = Arc::new(AtomicUsize::new(0));
    let auth = format!("Basic {}", base64_encode(b"flood:flood-pass"));
    std::thread::scope(|scope| {
        for _ in 0..48 {
            let (ok, shed, auth) = (ok.clone(), shed.clone(), auth.clone());
            let url = e.url("/metrics");
            scope.spawn(move || {
                let agent: ureq::Agent = ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .timeout_global(Some(Duration::from_secs(30)))
                    .build()
                    .into();
                for _ in 0..4 {
                    let mut resp = agent
                        .get(&url)
                        .header("Authorization", &auth)
                        .call()
                        .expect("flood request");
                    let _ = resp.body_mut().read_to_vec();
                    match resp.status().as_u16() {
                        200 => ok.fetch_add(1, Ordering::Relaxed),
                        429 | 503 => shed.fetch_add(1, Ordering::Relaxed),
                        other => panic!("flood got {other}"),
                    };
                }
            });
        }
    });
    let (ok, shed) = (ok.load(Ordering::Relaxed), shed.load(Ordering::Relaxed));
    assert_eq!(ok + shed, 192);
    assert!(ok >= 1, "some requests are served during the flood");
    assert!(
        shed >= 1,
        "the excess is shed with 429 or 503 ({ok} served)"
    );
    // After the flood: served normally.
    assert_eq!(e.get("/-/healthy").0, 200);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let resp = agent
        .get(&e.url("/metrics"))
        .header("Authorization", &auth)
        .call()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_no_panic(&mut e);
}

fn base64_encode(input: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(input)
}
