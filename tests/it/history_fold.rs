//! The history on the engine's snapshots from hand-built samples (as `engine.rs` tests the
//! engine): a GPU lost and back and a process's leak starting and ending reach the timeline, and
//! its memory stays fixed however long processes churn.

use std::time::Duration;

use vram_exporter::model::engine::Engine;
use vram_exporter::output::history::json::Query;
use vram_exporter::output::history::series::BYTES_PER_GPU;
use vram_exporter::output::history::History;
use vram_exporter::source::sample::PollSample;
use vram_testkit::builders::{device_with, engine_with, node, poll, process, GIB};

/// Scenario clocks start here (ms), so snapshot times are far from the epoch.
const T0: u64 = 1_700_000_000_000;

fn kinds(h: &History) -> Vec<(String, Option<u32>)> {
    let r = h.query(&Query {
        events: 256,
        ..Query::default()
    });
    r.events
        .iter()
        .map(|e| (e.kind.to_string(), e.pid))
        .collect()
}

fn fold(e: &mut Engine, h: &History, s: &PollSample) {
    h.fold(&e.apply(s), 16);
}

#[test]
fn lost_back_and_a_process_leak_reach_the_timeline() {
    let mut e = engine_with(Duration::from_secs(60), Duration::from_secs(4));
    let h = History::new();
    let one = |ms: u64, leaky: u64| {
        poll(
            T0 + ms,
            vec![device_with(
                0,
                leaky + 2 * GIB,
                vec![process(7, "leaky", leaky), process(8, "steady", 2 * GIB)],
            )],
        )
    };
    // 40 s of steady growth (100 MiB/s), then flat for a minute: a leak that starts and ends.
    let mut ms = 0;
    while ms <= 40_000 {
        fold(&mut e, &h, &one(ms, GIB + ms * 100 * 1024 * 1024 / 1000));
        ms += 500;
    }
    let top = GIB + 40_000 * 100 * 1024 * 1024 / 1000;
    while ms <= 110_000 {
        fold(&mut e, &h, &one(ms, top));
        ms += 500;
    }
    let mut lost = one(ms, top);
    lost.devices[0].up = false;
    lost.devices[0].memory = None;
    fold(&mut e, &h, &lost);
    fold(&mut e, &h, &one(ms + 500, top));

    let k = kinds(&h);
    let pos = |kind: &str, pid: Option<u32>| {
        k.iter()
            .position(|(x, p)| x == kind && *p == pid)
            .unwrap_or_else(|| panic!("no {kind} {pid:?} in {k:?}"))
    };
    assert!(
        pos("leak_started", Some(7)) < pos("leak_ended", Some(7)),
        "{k:?}"
    );
    assert!(pos("leak_started", None) < pos("leak_ended", None), "{k:?}");
    assert!(pos("gpu_lost", None) < pos("gpu_back", None), "{k:?}");
    assert!(
        !k.iter()
            .any(|(x, p)| x.starts_with("leak") && *p == Some(8)),
        "{k:?}"
    );
    // A lost GPU's processes did not exit.
    assert!(!k.iter().any(|(x, _)| x == "process_exited"), "{k:?}");
}

#[test]
fn memory_stays_fixed_while_processes_churn() {
    let mut e = engine_with(Duration::from_secs(60), Duration::from_secs(4));
    let h = History::new();
    let held = |h: &History| h.query(&Query::default()).held_bytes;
    let churn = |i: u64| {
        let mut s = node(2, 40, T0 + i * 1000);
        for d in &mut s.devices {
            if let vram_exporter::source::sample::ProcessList::Listed(ps) = &mut d.processes {
                // Every poll, new pids with new (long) names replace half of them.
                for p in ps.iter_mut().take(20) {
                    p.pid += (i as u32 % 1000) * 100_000;
                    p.name = format!("{}-{i}-{}", p.name, "x".repeat(300));
                }
            }
        }
        s
    };
    for i in 0..600 {
        fold(&mut e, &h, &churn(i));
    }
    let after_10_min = held(&h);
    let mut last = e.apply(&churn(600));
    h.fold(&last, 16);
    for i in 601..4200 {
        last = e.apply(&churn(i));
        h.fold(&last, 16);
    }
    let after_70_min = held(&h);
    let r = h.query(&Query::default());
    assert_eq!(
        r.events_held, 128,
        "the process events' ring is full; the other half is kept for episodes and cleanups"
    );
    assert!(
        r.gpus.iter().all(|g| g.processes.len() == 16),
        "series for the 16 largest processes only"
    );
    // Two GPUs' series within their bound; the previous poll's 40 processes' names and the
    // events besides.
    let events_and_seen = 256 * 512 + 2 * 40 * (64 + 400);
    assert!(
        after_70_min <= 2 * BYTES_PER_GPU + events_and_seen,
        "{after_70_min} bytes"
    );
    assert!(
        after_70_min <= after_10_min + 16 * 1024,
        "history grew from {after_10_min} to {after_70_min} bytes"
    );
    println!("history held: {after_10_min} bytes after 10 minutes, {after_70_min} after 70 (2 GPUs, 40 churning processes each)");

    // The page with a full history: measured, not asserted (shared machines).
    let started = std::time::Instant::now();
    let page = vram_exporter::output::status_page::render(&last, &r, "/metrics");
    println!(
        "status page with a full 10-minute history of 2 GPUs: {} bytes, rendered in {:?}",
        page.len(),
        started.elapsed()
    );
    let main = &page[page.find("<main").unwrap()..page.find("</main>").unwrap()];
    assert_eq!(main.matches("<svg class=\"spark\"").count(), 2);
}
