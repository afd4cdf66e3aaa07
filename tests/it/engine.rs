//! The engine on hand-built samples: episodes and levels flow into the snapshot, a reused pid
//! starts a fresh leak tracker, a failed process query holds the last good list for a while, and a
//! lost GPU keeps its counters. Built with the test kit's builders, as the benchmarks are.

use std::time::Duration;

use vram_exporter::model::engine::{Engine, MAX_HELD_PROCESS_POLLS};
use vram_exporter::model::policy::Level;
use vram_exporter::source::sample::{PollSample, ProcessList};
use vram_testkit::builders::{device_with, engine_with, poll, process, GIB};

fn engine() -> Engine {
    engine_with(Duration::from_secs(60), Duration::from_secs(4))
}

/// One 80 GiB GPU with `allocated` in use and `procs` as (pid, name, bytes), at `ms`.
fn sample(ms: u64, allocated: u64, procs: &[(u32, &str, u64)]) -> PollSample {
    let processes = procs
        .iter()
        .map(|&(pid, name, bytes)| process(pid, name, bytes))
        .collect();
    poll(ms, vec![device_with(0, allocated, processes)])
}

#[test]
fn episodes_and_level_flow_into_the_snapshot() {
    let mut e = engine();
    e.apply(&sample(0, 10 * GIB, &[]));
    let s = e.apply(&sample(1000, 77 * GIB, &[]));
    assert_eq!(s.gpus[0].level, Level::Hard);
    assert_eq!(s.gpus[0].hard_violations, 1);
    assert!(s.ready);
    let s = e.apply(&sample(2000, 10 * GIB, &[]));
    assert_eq!(s.gpus[0].level, Level::Ok);
    assert_eq!(s.gpus[0].hard_violations, 1);
}

#[test]
fn reused_pid_starts_fresh_drift() {
    let mut e = engine();
    for s in 0..=60u64 {
        e.apply(&sample(
            s * 1000,
            10 * GIB,
            &[(7, "trainer", GIB + s * (1 << 24))],
        ));
    }
    let s = e.apply(&sample(
        61_000,
        10 * GIB,
        &[(7, "trainer", GIB + 61 * (1 << 24))],
    ));
    assert!(s.gpus[0].processes[0].leak_drift_bytes > 0);
    let s = e.apply(&sample(62_000, 10 * GIB, &[(7, "other", 2 * GIB)]));
    assert_eq!(s.gpus[0].processes[0].leak_drift_bytes, 0);
}

#[test]
fn a_failed_process_query_holds_the_last_list_for_a_while() {
    let mut e = engine();
    for s in 0..=30u64 {
        e.apply(&sample(
            s * 1000,
            10 * GIB,
            &[(7, "leaky", GIB + s * (1 << 24))],
        ));
    }
    let before = e.apply(&sample(31_000, 10 * GIB, &[(7, "leaky", 2 * GIB)]));
    let drift = before.gpus[0].processes[0].leak_drift_bytes;
    assert!(drift > 0);
    let failed = |ms| {
        let mut s = sample(ms, 10 * GIB, &[]);
        s.devices[0].processes = ProcessList::Failed;
        s
    };
    for i in 0..MAX_HELD_PROCESS_POLLS as u64 {
        let s = e.apply(&failed(32_000 + i));
        assert_eq!(s.gpus[0].processes, before.gpus[0].processes, "held");
    }
    // A lasting failure drops the list (and its trackers).
    let s = e.apply(&failed(33_000));
    assert!(s.gpus[0].processes.is_empty());
    let s = e.apply(&sample(34_000, 10 * GIB, &[(7, "leaky", 2 * GIB)]));
    assert_eq!(s.gpus[0].processes[0].leak_drift_bytes, 0);
}

#[test]
fn a_transient_process_failure_keeps_drift() {
    let mut e = engine();
    for s in 0..=30u64 {
        e.apply(&sample(
            s * 1000,
            10 * GIB,
            &[(7, "leaky", GIB + s * (1 << 24))],
        ));
    }
    let mut failed = sample(31_000, 10 * GIB, &[]);
    failed.devices[0].processes = ProcessList::Failed;
    e.apply(&failed);
    let s = e.apply(&sample(
        32_000,
        10 * GIB,
        &[(7, "leaky", GIB + 32 * (1 << 24))],
    ));
    assert!(
        s.gpus[0].processes[0].leak_drift_bytes >= 20 * (1 << 24),
        "drift survived one failed query: {}",
        s.gpus[0].processes[0].leak_drift_bytes
    );
}

#[test]
fn lost_device_keeps_counters() {
    let mut e = engine();
    e.apply(&sample(0, 77 * GIB, &[]));
    let mut lost = sample(1000, 0, &[]);
    lost.devices[0].up = false;
    lost.devices[0].memory = None;
    let s = e.apply(&lost);
    assert!(!s.gpus[0].up);
    assert_eq!(s.gpus[0].hard_violations, 1);
    let s = e.apply(&sample(2000, 77 * GIB, &[]));
    assert_eq!(
        s.gpus[0].hard_violations, 1,
        "still one episode: the state survived the loss"
    );
}
