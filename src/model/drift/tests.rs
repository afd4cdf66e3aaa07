//! Leak detection on synthetic series and on the real H200 trace: what a person concludes is what
//! the assessment says (steps are not leaks, masked leaks are found, rates within bounds).

use super::*;

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// Feeds `f(t)` every `poll_ms` for `secs` seconds; calls `check(t, leak)` after each sample.
fn run(
    geometry: &DriftGeometry,
    secs: f64,
    poll_ms: u64,
    f: impl Fn(f64) -> u64,
    mut check: impl FnMut(f64, Leak),
) -> FloorTracker {
    let mut tracker = FloorTracker::new(geometry);
    let mut ms = 0;
    while ms as f64 <= secs * 1000.0 {
        let t = ms as f64 / 1000.0;
        tracker.observe(geometry, ms, f(t));
        check(t, tracker.leak());
        ms += poll_ms;
    }
    tracker
}

fn default_geometry() -> DriftGeometry {
    DriftGeometry::new(Duration::from_secs(900), Duration::from_secs(90))
}

#[test]
fn steady_leak_rate_and_drift() {
    let g = default_geometry();
    // 1 MiB/s from t = 0 for 30 minutes on a 1 GiB base.
    let t = run(&g, 1800.0, 1000, |s| GIB + (s as u64) * MIB, |_, _| {});
    let leak = t.leak();
    assert!((leak.rate / MIB as f64 - 1.0).abs() < 0.05, "{leak:?}");
    // The floor lags by a floor window; drift covers the window at most.
    assert!(
        leak.drift >= 800 * MIB && leak.drift <= 920 * MIB,
        "{leak:?}"
    );
    assert!(t.len() <= g.capacity());
}

#[test]
fn leak_after_usage_fell_is_reported_within_a_window() {
    let g = default_geometry();
    // 40 GiB for 20 minutes, then 10 GiB, and from t = 1500 s a leak of 2 MiB/s.
    let f = |s: f64| {
        if s < 1200.0 {
            40 * GIB
        } else if s < 1500.0 {
            10 * GIB
        } else {
            10 * GIB + ((s - 1500.0) * 2.0 * MIB as f64) as u64
        }
    };
    let mut first = None;
    let t = run(&g, 2400.0, 1000, f, |t, l| {
        if l.rate > 0.0 && first.is_none() {
            first = Some(t);
        }
    });
    let first = first.expect("the leak was reported");
    assert!(
        first - 1500.0 < 900.0,
        "reported {first} s, {} s after it began",
        first - 1500.0
    );
    let leak = t.leak();
    assert!((leak.rate / (2 * MIB) as f64 - 1.0).abs() < 0.1, "{leak:?}");
    // 900 s of leak at 2 MiB/s less the floor's lag.
    assert!(leak.drift > 1500 * MIB, "{leak:?}");
}

#[test]
fn a_step_then_flat_is_not_a_leak() {
    let g = default_geometry();
    let mut flagged = 0.0f64;
    run(
        &g,
        2400.0,
        1000,
        |s| if s < 600.0 { GIB } else { 3 * GIB },
        |_, l| {
            if l.drift > GIB {
                flagged += 1.0;
            }
        },
    );
    assert!(
        flagged < 0.1 * 900.0,
        "drift above half the step for {flagged} s"
    );
}

#[test]
fn two_quick_steps_are_not_a_leak() {
    // The H200 job's model loads: +10 GiB at 3 s, +14 GiB at 6 s, flat (window 20 s, floor 2 s).
    let g = DriftGeometry::new(Duration::from_secs(20), Duration::from_secs(2));
    let mut over_half = 0;
    run(
        &g,
        17.0,
        250,
        |s| {
            if s < 3.0 {
                600 * MIB
            } else if s < 6.0 {
                10 * GIB + 600 * MIB
            } else {
                24 * GIB + 600 * MIB
            }
        },
        |_, l| {
            if l.drift > 5 * GIB {
                over_half += 1;
            }
        },
    );
    // Polls at 250 ms: at most a short confirmation span (under a quarter window = 5 s).
    assert!(
        over_half * 250 < 5_000,
        "flagged for {} ms",
        over_half * 250
    );
}

#[test]
fn training_sawtooth_gives_no_leak() {
    let g = default_geometry();
    let t = run(
        &g,
        3600.0,
        1000,
        |s| 2048 * MIB + ((s as u64) % 30) * 700 * MIB,
        |_, l| assert_eq!(l.rate, 0.0),
    );
    assert_eq!(t.leak(), Leak::default());
}

#[test]
fn leak_under_a_sawtooth_is_found() {
    let g = default_geometry();
    let t = run(
        &g,
        1800.0,
        1000,
        |s| 2048 * MIB + (s as u64) * MIB + ((s as u64) % 30) * 700 * MIB,
        |_, _| {},
    );
    assert!(
        (t.leak().rate / MIB as f64 - 1.0).abs() < 0.15,
        "{:?}",
        t.leak()
    );
}

#[test]
fn brief_dips_are_not_leaks() {
    let g = default_geometry();
    run(
        &g,
        3600.0,
        1000,
        |s| if (s as u64) % 600 < 5 { GIB } else { 20 * GIB },
        |_, l| assert_eq!(l.rate, 0.0),
    );
}

#[test]
fn a_step_during_a_leak_reports_the_leak() {
    let g = default_geometry();
    let f = |s: f64| {
        let leak = (s * MIB as f64) as u64;
        if s < 1200.0 {
            GIB + leak
        } else {
            GIB + 8 * GIB + leak
        }
    };
    let t = run(&g, 1500.0, 1000, f, |_, _| {});
    let leak = t.leak();
    assert!((leak.rate / MIB as f64 - 1.0).abs() < 0.2, "{leak:?}");
    assert!(leak.drift < 2 * GIB, "the 8 GiB step is not leak: {leak:?}");
}

#[test]
fn a_staircase_is_a_leak() {
    let g = default_geometry();
    // 500 MiB every 2 minutes: sparse steps, sustained growth.
    let t = run(
        &g,
        2400.0,
        1000,
        |s| GIB + ((s as u64) / 120) * 500 * MIB,
        |_, _| {},
    );
    let per_s = 500.0 * MIB as f64 / 120.0;
    assert!((t.leak().rate / per_s - 1.0).abs() < 0.3, "{:?}", t.leak());
}

#[test]
fn falling_usage_is_no_leak() {
    let g = default_geometry();
    run(
        &g,
        1800.0,
        1000,
        |s| 4096 * MIB - (s as u64) * MIB,
        |_, l| assert_eq!(l, Leak::default()),
    );
}

#[test]
fn memory_and_work_are_bounded() {
    let g = default_geometry();
    let t = run(&g, 86_400.0, 1000, |s| s as u64 * MIB, |_, _| {});
    assert!(t.len() <= g.capacity(), "{} > {}", t.len(), g.capacity());
    assert!(g.capacity() <= 64);
    // A window of many buckets is thinned before slopes are taken.
    let long: Vec<(f64, u64)> = (0..1000).map(|i| (i as f64, i * MIB)).collect();
    assert_eq!(thin(&long).len(), MAX_POINTS);
    assert!((assess(&long).rate / MIB as f64 - 1.0).abs() < 0.01);
}

/// The H200 trace (nvml-sim/scenarios/traces): what a person reading it concludes, checked on
/// the GPU's used bytes with the window of that run (20 s, floor 2 s), sampled as recorded.
#[test]
fn h200_trace_reads_as_a_person_reads_it() {
    let csv = include_str!("../../../nvml-sim/scenarios/traces/h200-pytorch-phases.csv");
    let g = DriftGeometry::new(Duration::from_secs(20), Duration::from_secs(2));
    let mut tracker = FloorTracker::new(&g);
    let mut detected_at = None;
    let mut rate_at_detection = 0.0;
    let mut step_flagged_ms = 0.0;
    let mut last_t = None::<f64>;
    for line in csv.lines().skip(1) {
        let cols: Vec<&str> = line.split(',').collect();
        let t: f64 = cols[0].parse().unwrap();
        let used: u64 = cols[2].parse().unwrap();
        // The exporter's clock starts at 0; the trace starts before the context is up.
        let ms = ((t + 6.0) * 1000.0) as u64;
        tracker.observe(&g, ms, used);
        let leak = tracker.leak();
        if (3.0..17.0).contains(&t) && leak.drift > 5 * GIB {
            step_flagged_ms += (t - last_t.unwrap_or(t)) * 1000.0;
        }
        if t >= 21.0 && detected_at.is_none() && leak.rate > 0.0 {
            detected_at = Some(t);
            rate_at_detection = leak.rate;
        }
        if (36.0..37.0).contains(&t) {
            let want = 0.5 * GIB as f64;
            assert!(
                (leak.rate / want - 1.0).abs() <= 0.3,
                "rate at t={t}: {:.2} GiB/s",
                leak.rate / GIB as f64
            );
        }
        last_t = Some(t);
    }
    let at = detected_at.expect("the leak from t=21 s is detected");
    eprintln!(
        "H200 trace: leak detected at t={at} s at {:.3} GiB/s; final {:.3} GiB/s, drift {:.2} GiB; steps flagged {step_flagged_ms:.0} ms",
        rate_at_detection / GIB as f64,
        tracker.leak().rate / GIB as f64,
        tracker.leak().drift as f64 / GIB as f64
    );
    assert!(at < 37.0, "detected at t={at}");
    assert!(rate_at_detection > 0.0);
    // The two early allocations (+10 GiB, +14 GiB) are no leak beyond a short confirmation.
    assert!(
        step_flagged_ms < 5_000.0,
        "steps flagged for {step_flagged_ms} ms"
    );
}
