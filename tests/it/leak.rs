//! Leak detection through the real binary: what an operator concludes from a trace is what the
//! exporter reports — model loads are not leaks, a leak after usage fell is not masked, a step in
//! a leak reports the leak, a leak under a training sawtooth is found, a slow leak with the
//! default window (time-scaled) is reported within a window, and the real H200 trace replayed;
//! drift itself: a steady leak's is rate times window, a sawtooth's and an old step's are zero.
//!
//! The exporter measures time on its own clock while the test drives scenario time through the
//! time file, so scenario seconds map to wall-clock seconds by a factor the test chooses (`speed`);
//! leak windows are scaled by the same factor, which keeps every case's shape.

use std::time::{Duration, Instant};

use crate::harness::{repo, Exporter, Metrics, Options, GIB, MIB};

/// One observation: scenario seconds, metrics.
pub(crate) type Timeline = Vec<(f64, Metrics)>;

/// Starts the exporter on `scenario` and drives scenario time at `speed` scenario seconds per
/// wall-clock second up to `until`, scraping every 200 ms.
pub(crate) fn replay(scenario: &str, config: &str, speed: f64, until: f64) -> Timeline {
    let e = Exporter::start(Options {
        scenario,
        config,
        time: Some(0.0),
        ..Default::default()
    });
    e.next_poll();
    let started = Instant::now();
    let mut timeline = Vec::new();
    let mut last_scrape = None::<Instant>;
    loop {
        let t = started.elapsed().as_secs_f64() * speed;
        e.set_time(t.min(until));
        if last_scrape.is_none_or(|s| s.elapsed() >= Duration::from_millis(200)) {
            last_scrape = Some(Instant::now());
            timeline.push((t, e.metrics()));
        }
        if t >= until {
            return timeline;
        }
        std::thread::sleep(Duration::from_millis(40));
    }
}

pub(crate) fn gpu(m: &Metrics, name: &str) -> f64 {
    m.gpu(name, "0").unwrap_or(0.0)
}

/// GPU 0's leak rate, checked to be within ±30 % of `want` bytes per wall-clock second.
fn gpu_rate_within_30_percent(m: &Metrics, want: f64) -> f64 {
    let rate = gpu(m, "vram_leak_rate_bytes_per_second");
    assert!(
        (rate / want - 1.0).abs() <= 0.3,
        "rate {} MiB/s, want {} MiB/s",
        rate / MIB,
        want / MIB
    );
    rate
}

/// Scenario seconds during which `pred` held, between `from` and `to`.
fn held_for(timeline: &Timeline, from: f64, to: f64, pred: impl Fn(&Metrics) -> bool) -> f64 {
    timeline
        .windows(2)
        .filter(|w| w[0].0 >= from && w[1].0 <= to && pred(&w[1].1))
        .map(|w| w[1].0 - w[0].0)
        .sum()
}

/// The first scenario time at or after `from` when `pred` held.
pub(crate) fn first(
    timeline: &Timeline,
    from: f64,
    pred: impl Fn(&Metrics) -> bool,
) -> Option<f64> {
    timeline
        .iter()
        .find(|(t, m)| *t >= from && pred(m))
        .map(|(t, _)| *t)
}

pub(crate) const DEVICE: &str =
    "[[device]]\nuuid = \"GPU-leak\"\ntotal = \"80GiB\"\nreserved = \"0\"\noverhead = \"0\"\n";

/// Scenario time runs 10× the wall clock; a 40 s leak window is 4 s real, its floor 1 s.
const FAST: &str = "[poll]\ninterval = \"100ms\"\n[leak]\nwindow = \"4s\"\nfloor_window = \"1s\"\n";

#[test]
fn a_model_load_is_not_a_leak() {
    // +8 GiB at scenario 20 s, then flat.
    let scenario = format!(
        "{DEVICE}[[device.process]]\npid = 5000301\nname = \"loader\"\n\
         memory = {{ points = [[0, \"1GiB\"], [20, \"1GiB\"], [20.5, \"9GiB\"]] }}\n"
    );
    let tl = replay(&scenario, FAST, 10.0, 90.0);
    let flagged = held_for(&tl, 20.0, 90.0, |m| {
        gpu(m, "vram_leak_drift_bytes") > 4.0 * GIB
    });
    // At most a short confirmation span: well under half the 40 s (scenario) window.
    assert!(flagged < 10.0, "the step showed as a leak for {flagged} s");
    let (_, end) = tl.last().unwrap();
    assert_eq!(gpu(end, "vram_leak_rate_bytes_per_second"), 0.0);
    assert_eq!(gpu(end, "vram_leak_drift_bytes"), 0.0);
    assert!(
        end.gpu("vram_hard_limit_eta_seconds", "0").is_none(),
        "no ETA while nothing grows:\n{}",
        end.text
    );
}

#[test]
fn a_leak_after_usage_fell_is_not_masked() {
    // 40 GiB until scenario 20 s; from 30 s a process leaks 100 MiB per scenario second, which is
    // 1,000 MiB per wall-clock second.
    let scenario = format!(
        "{DEVICE}[[device.process]]\npid = 5000311\nname = \"big\"\nmemory = \"40GiB\"\nstop = 20\n\
         [[device.process]]\npid = 5000312\nname = \"leaky\"\nstart = 30\n\
         memory = {{ linear = {{ start = \"1GiB\", rate = \"100MiB/s\" }} }}\n"
    );
    let tl = replay(&scenario, FAST, 10.0, 80.0);
    let found = first(&tl, 30.0, |m| {
        gpu(m, "vram_leak_rate_bytes_per_second") > 0.0
    })
    .expect("the leak is reported");
    assert!(
        found < 30.0 + 40.0,
        "reported at scenario {found} s, a window after it began"
    );
    let (t_end, end) = tl.last().unwrap();
    gpu_rate_within_30_percent(end, 1000.0 * MIB);
    let process_rate = end
        .value(
            "vram_process_leak_rate_bytes_per_second",
            &[("process", "leaky")],
        )
        .unwrap();
    assert!((process_rate / (1000.0 * MIB) - 1.0).abs() <= 0.3);
    // Roughly rate × elapsed (wall clock), never 0 because usage was higher before.
    let elapsed = (t_end - 30.0) / 10.0;
    let drift = gpu(end, "vram_leak_drift_bytes");
    assert!(
        drift > 0.3 * 1000.0 * MIB * elapsed && drift < 1000.0 * MIB * elapsed * 1.3,
        "drift {} MiB after {elapsed} s",
        drift / MIB
    );
}

#[test]
fn a_step_during_a_leak_reports_the_leak() {
    let scenario = format!(
        "{DEVICE}[[device.process]]\npid = 5000321\nname = \"leaky\"\n\
         memory = {{ linear = {{ start = \"1GiB\", rate = \"100MiB/s\" }} }}\n\
         [[device.process]]\npid = 5000322\nname = \"loader\"\nstart = 40\nmemory = \"8GiB\"\n"
    );
    let tl = replay(&scenario, FAST, 10.0, 75.0);
    let (_, end) = tl.last().unwrap();
    gpu_rate_within_30_percent(end, 1000.0 * MIB);
    // The leak over the (4 s) window, not the 8 GiB step.
    let drift = gpu(end, "vram_leak_drift_bytes");
    assert!(
        drift < 6.0 * GIB,
        "drift {} MiB counts the step",
        drift / MIB
    );
    assert_eq!(
        end.value(
            "vram_process_leak_rate_bytes_per_second",
            &[("process", "loader")]
        ),
        Some(0.0)
    );
}

#[test]
fn a_leak_under_a_training_sawtooth_is_found() {
    let scenario = format!(
        "{DEVICE}[[device.process]]\npid = 5000331\nname = \"trainer\"\n\
         memory = {{ sawtooth = {{ low = \"2GiB\", high = \"10GiB\", period = \"4s\" }} }}\n\
         [[device.process]]\npid = 5000332\nname = \"leaky\"\n\
         memory = {{ linear = {{ start = \"1GiB\", rate = \"100MiB/s\" }} }}\n"
    );
    // The floor window spans five training steps, as the default 90 s spans a training loop's.
    let config = "[poll]\ninterval = \"100ms\"\n[leak]\nwindow = \"8s\"\nfloor_window = \"2s\"\n";
    let tl = replay(&scenario, config, 10.0, 110.0);
    let (_, end) = tl.last().unwrap();
    gpu_rate_within_30_percent(end, 1000.0 * MIB);
    assert_eq!(
        end.value(
            "vram_process_leak_rate_bytes_per_second",
            &[("process", "trainer")]
        ),
        Some(0.0),
        "the sawtooth itself is no leak"
    );
}

#[test]
fn a_slow_leak_with_the_default_window_is_reported_within_a_window() {
    // 1 % of 80 GiB per minute with the default 15 m window and 90 s floor, time-scaled 60×:
    // scenario minutes are wall-clock seconds, the window is 15 s and the floor 1.5 s.
    let per_minute = 0.01 * 80.0 * GIB;
    let scenario = format!(
        "{DEVICE}[[device.process]]\npid = 5000341\nname = \"slow\"\n\
         memory = {{ linear = {{ start = \"4GiB\", rate = \"{}\" }} }}\n",
        (per_minute / 60.0) as u64
    );
    let config =
        "[poll]\ninterval = \"100ms\"\n[leak]\nwindow = \"15s\"\nfloor_window = \"1500ms\"\n";
    let tl = replay(&scenario, config, 60.0, 16.0 * 60.0);
    let found = first(&tl, 0.0, |m| {
        gpu(m, "vram_leak_rate_bytes_per_second") > 0.0
    })
    .expect("the slow leak is reported");
    assert!(
        found < 15.0 * 60.0,
        "reported after {found} scenario seconds"
    );
    let (_, end) = tl.last().unwrap();
    // Per wall-clock second, that is per scenario minute.
    let rate = gpu_rate_within_30_percent(end, per_minute);
    // The ETA is what is left to the hard limit at that rate.
    let eta = end
        .gpu("vram_hard_limit_eta_seconds", "0")
        .expect("an ETA while the leak grows");
    let left = gpu(end, "vram_hard_limit_bytes") - gpu(end, "vram_allocated_bytes");
    assert!((eta - left / rate).abs() <= 0.05 * eta + 1.0, "eta {eta} s");
}

/// The H200 trace's replay speed (scenario seconds per wall-clock second).
pub(crate) const H200_SPEED: f64 = 1.25;

/// That run's limits (soft 20 GiB, hard 30 GiB) and window (20 s, floor 2 s), scaled.
pub(crate) const H200_CONFIG: &str = "[poll]\ninterval = \"100ms\"\n[limits]\nsoft = \"20GiB\"\n\
     hard = \"30GiB\"\n[leak]\nwindow = \"16s\"\nfloor_window = \"1600ms\"\n";

/// The H200 recording as one process on an H200 (nvml-sim/scenarios/traces).
pub(crate) fn h200_scenario() -> String {
    let trace = repo().join("nvml-sim/scenarios/traces/h200-pytorch-phases.csv");
    format!(
        "[[device]]\nname = \"NVIDIA H200\"\ntotal = 150754820096\nreserved = 644939776\n\
         overhead = \"8.8125MiB\"\n[[device.process]]\npid = 5000001\nname = \"python\"\n\
         memory = {{ trace = {{ file = \"{}\", column = \"process_used_bytes\", interpolate = \"step\", offset = 0 }} }}\n",
        trace.display()
    )
}

/// The H200 trace (nvml-sim/scenarios/traces) replayed at 1.25× with that run's limits (soft
/// 20 GiB, hard 30 GiB) and window (20 s, floor 2 s, scaled): what a person reading it concludes.
#[test]
fn the_h200_trace_reads_as_a_person_reads_it() {
    let speed = H200_SPEED;
    let tl = replay(&h200_scenario(), H200_CONFIG, speed, 38.5);

    let flagged = held_for(&tl, 3.0, 17.0, |m| {
        gpu(m, "vram_leak_drift_bytes") > 5.0 * GIB
    });
    assert!(
        flagged < 5.0,
        "the allocations at t=3 s and t=6 s showed as a leak for {flagged} s"
    );
    let found = first(&tl, 21.0, |m| {
        gpu(m, "vram_leak_rate_bytes_per_second") > 0.0
    })
    .expect("the leak from t=21 s is reported");
    assert!(found < 37.0, "reported at t={found} s");
    let at_36 = &tl.iter().find(|(t, _)| *t >= 36.0).unwrap().1;
    let rate = gpu(at_36, "vram_leak_rate_bytes_per_second");
    let want = 0.5 * GIB * speed;
    assert!(
        (rate / want - 1.0).abs() <= 0.3,
        "rate {:.3} GiB/s (scenario), want 0.5",
        rate / GIB / speed
    );

    let (_, end) = tl.last().unwrap();
    assert_eq!(
        gpu(end, "vram_hard_limit_violations_total"),
        1.0,
        "one hard episode; allocation seen around t=9 s: {:?}",
        tl.iter()
            .filter(|(t, _)| (8.5..10.0).contains(t))
            .map(|(t, m)| (*t, gpu(m, "vram_allocated_bytes") / GIB))
            .collect::<Vec<_>>()
    );
    assert_eq!(gpu(end, "vram_soft_limit_violations_total"), 2.0);
    let soft = |n: f64| {
        first(&tl, 0.0, move |m| {
            gpu(m, "vram_soft_limit_violations_total") >= n
        })
        .unwrap()
    };
    assert!(
        (soft(1.0) - 6.0).abs() < 1.0,
        "first soft episode at {}",
        soft(1.0)
    );
    assert!(
        (soft(2.0) - 36.0).abs() < 1.5,
        "second soft episode at {}",
        soft(2.0)
    );
}

/// Drift uses the exporter's clock; scenario time runs at `speed`, so a short window shows it.
fn drift_after(memory: &str, seconds: u64) -> (f64, f64) {
    let scenario = format!(
        "speed = 10.0\n[[device]]\nuuid = \"GPU-drift\"\ntotal = \"80GiB\"\noverhead = \"0\"\nreserved = \"0\"\n\
         [[device.process]]\npid = 5000020\nname = \"job\"\nmemory = {memory}\n"
    );
    let e = Exporter::start(Options {
        scenario: &scenario,
        config: "[poll]\ninterval = \"100ms\"\n[leak]\nwindow = \"4s\"\nfloor_window = \"1s\"\n",
        time: None,
        ..Default::default()
    });
    std::thread::sleep(Duration::from_secs(seconds));
    let m = e.metrics();
    (
        m.gpu("vram_leak_drift_bytes", "0").unwrap(),
        m.value("vram_process_leak_drift_bytes", &[("pid", "5000020")])
            .unwrap(),
    )
}

#[test]
fn drift_of_a_steady_leak_is_rate_times_window() {
    // 1 MiB per scenario second at speed 10: 10 MiB per real second; a 4 s window gives ~40 MiB.
    let (device, process) = drift_after(r#"{ linear = { start = "1GiB", rate = "1MiB/s" } }"#, 7);
    assert!(
        (30.0 * MIB..=50.0 * MIB).contains(&device),
        "device drift {} MiB",
        device / MIB
    );
    assert!(
        (30.0 * MIB..=50.0 * MIB).contains(&process),
        "process drift {} MiB",
        process / MIB
    );
}

#[test]
fn drift_of_a_training_sawtooth_is_zero() {
    // A 2-scenario-second cycle at speed 10 is 0.2 s real: far shorter than the 1 s floor window.
    // Sampling catches the sawtooth at slightly different phases, so the floor can jitter by a
    // sliver of the amplitude; a leak-like drift would be gigabytes.
    let (device, process) = drift_after(
        r#"{ sawtooth = { low = "2GiB", high = "30GiB", period = "2s" } }"#,
        7,
    );
    let amplitude = 28.0 * GIB;
    assert!(
        device < 0.01 * amplitude,
        "device drift {} MiB",
        device / MIB
    );
    assert!(
        process < 0.01 * amplitude,
        "process drift {} MiB",
        process / MIB
    );
}

#[test]
fn drift_of_a_step_returns_to_zero_after_a_window() {
    // One step up at scenario 20 s (real 2 s); after 2 s + window + floor it is flat again.
    let (device, _) = drift_after(
        r#"{ points = [[0, "1GiB"], [20, "1GiB"], [21, "5GiB"]] }"#,
        9,
    );
    assert_eq!(device, 0.0);
}
