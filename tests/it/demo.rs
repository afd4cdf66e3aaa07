//! The quick start's promise: `vram-exporter --simulate demo` shows a leak detected, a soft and a
//! hard episode and a cleanup within two minutes, and says on start-up where to look.
//!
//! The shipped demo runs with its scenario clock sped up 4× (a copy of demo.toml with another
//! `speed`, found by name through VRAM_EXPORTER_SCENARIO_DIR, so the demo preset applies as for
//! `--simulate demo`). Episodes and the cleanup follow the scenario clock, so their times are
//! read in scenario seconds (wall seconds since before the start × 4, an overestimate); leak
//! detection follows the exporter's own clock (wall time), so its time is read in wall seconds.
//! The bounds are the demo's promise (2 minutes), far above what it takes (about 45 s, 70 s,
//! 105 s and 45 s).

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use vram_testkit::exporter::Launch;

use crate::harness::{get, repo, sim_library};

const SPEED: f64 = 4.0;
const PROMISE_S: f64 = 120.0;

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[test]
fn the_demo_shows_everything_within_two_minutes() {
    sim_library();
    let dir = tempfile::tempdir().unwrap();
    let shipped = std::fs::read_to_string(repo().join("nvml-sim/scenarios/demo.toml")).unwrap();
    assert!(
        shipped.contains("\nspeed = 1.0\n"),
        "the demo runs at real speed"
    );
    let fast = shipped.replace("\nspeed = 1.0\n", &format!("\nspeed = {SPEED}\n"));
    std::fs::write(dir.path().join("demo.toml"), fast).unwrap();

    let started = unix_now();
    let e = Launch::new(env!("CARGO_BIN_EXE_vram-exporter"))
        .clean_env()
        .simulate(Path::new("demo"))
        .env("VRAM_EXPORTER_SCENARIO_DIR", dir.path())
        .start()
        .unwrap_or_else(|err| panic!("{err}"));
    let url = |path: &str| format!("http://{}{path}", e.addr);

    // Start-up says where to look, and what the demo will show.
    let page = e
        .process
        .wait_log(|l| l.contains("\"url\""), Duration::from_secs(10))
        .expect("a start-up line naming the status page");
    assert!(page.contains(&url("/")), "{page}");
    assert!(
        e.process
            .log()
            .iter()
            .any(|l| l.contains("demo: GPU 0 leaks")),
        "{:?}",
        e.process.log()
    );

    // Wait (bounded by the promise, in wall time at this speed, plus slack for a loaded
    // machine) until the timeline holds every kind of event.
    let wanted = [
        "leak_started",
        "soft_started",
        "hard_started",
        "cleanup",
        "hard_ended",
        "soft_ended",
    ];
    let deadline = Instant::now() + Duration::from_secs(180);
    let history = loop {
        let (status, body) = get(&url("/api/v1/history?events=256"));
        assert_eq!(status, 200, "{body}");
        let h: Value = serde_json::from_str(&body).unwrap();
        let kinds: Vec<&str> = h["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e["kind"].as_str())
            .collect();
        if wanted.iter().all(|w| kinds.contains(w)) {
            break h;
        }
        assert!(
            Instant::now() < deadline,
            "missing some of {wanted:?}: {kinds:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    let events = history["events"].as_array().unwrap();
    let first = |kind: &str, gpu: u64| {
        events
            .iter()
            .find(|e| e["kind"] == kind && e["gpu"] == gpu)
            .unwrap_or_else(|| panic!("no {kind} on GPU {gpu}: {events:#?}"))
    };
    let wall = |e: &Value| e["t"].as_f64().unwrap() - started;

    // GPU 0's leak, on the exporter's clock.
    let leak = first("leak_started", 0);
    assert!(
        wall(leak) < PROMISE_S,
        "leak detected after {} s",
        wall(leak)
    );
    // GPU 2's episodes and its cleanup, on the scenario clock.
    for kind in [
        "soft_started",
        "hard_started",
        "cleanup",
        "hard_ended",
        "soft_ended",
    ] {
        let at = wall(first(kind, 2)) * SPEED;
        assert!(at < PROMISE_S, "{kind} at scenario second {at:.0}");
    }
    let cleanup = first("cleanup", 2);
    assert_eq!(cleanup["result"], "dry_run", "{cleanup}");
    // The training sawtooth on GPU 1 is no leak.
    assert!(
        !events
            .iter()
            .any(|e| e["kind"] == "leak_started" && e["gpu"] == 1),
        "{events:#?}"
    );

    // And the page, without JavaScript, shows them.
    let (status, page) = get(&url("/"));
    assert_eq!(status, 200);
    for sentence in [
        "leak detected",
        "crossed the soft limit",
        "crossed the hard limit",
        "cleanup <b>signal</b>: dry run",
        "back under the hard limit",
    ] {
        assert!(page.contains(sentence), "{sentence} not on the page");
    }
    assert!(
        page.contains("class=\"band hard\""),
        "a hard band on GPU 2's chart"
    );
}
