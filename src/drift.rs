//! Leak detection: sustained growth of the usage *floor*, its rate, and the drift it has caused.
//!
//! The floor is a rolling minimum over `floor_window`, long enough to span a training step, so the
//! allocate/free sawtooth of a training loop sits on a flat floor. Samples are folded into buckets
//! of a quarter floor window holding only their minimum; only a window's worth (plus one floor
//! window) is kept, so memory per tracked series is bounded.
//!
//! A leak is *sustained* growth of that floor, not a rise between two instants. At each completed
//! bucket the floors of the window are assessed ([`assess`]):
//! - the *run* starts at the latest lowest floor of the window, so usage that was higher earlier
//!   can never hide growth that started after it fell;
//! - the run is growing when at least 70 % of the pairwise slopes between its points are
//!   increases (the 30th percentile of the slopes is positive), both over the whole run and over
//!   its recent half (a leak is ongoing). One step, or two, followed by flat usage never reaches
//!   that (at most 50 % and 67 % of the pairs span a step), and allocations that stopped fail the
//!   recent half, so model loads are not a leak; a steady leak, a staircase that goes on, and a
//!   leak with a step in it are;
//! - the rate is the floor's rise per second since the growth began with its steps left out (a
//!   rise between consecutive points over four times the median rise is a one-time allocation),
//!   so a step inside a leak does not inflate it; the drift is `rate × time since growth began`,
//!   capped at what the floor actually rose.
//!
//! Worked example (README, "Leak detection"): the H200 trace in `nvml-sim/scenarios/traces/`.

use std::collections::VecDeque;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::input::{parse_duration, ConfigError};

/// The `[leak]` section as written.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLeak {
    /// How far back growth of the usage floor is looked for (and the most a leak's drift covers).
    pub window: String,
    /// The span the floor (rolling minimum) is taken over; longer than a training step.
    /// Defaults to a tenth of `window`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub floor_window: Option<String>,
}

impl Default for RawLeak {
    fn default() -> Self {
        RawLeak {
            window: "15m".into(),
            floor_window: None,
        }
    }
}

/// The validated `[leak]` section.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LeakConfig {
    pub window: Duration,
    pub floor_window: Duration,
}

impl RawLeak {
    /// Checks the windows against each other and against the poll interval.
    pub fn validate(&self, poll_interval: Duration) -> Result<LeakConfig, ConfigError> {
        let window = parse_duration("leak.window", &self.window)?;
        if window < Duration::from_secs(1) {
            return Err(ConfigError::invalid(
                "leak.window",
                &self.window,
                "must be at least 1s",
            ));
        }
        let floor_window = match &self.floor_window {
            Some(f) => parse_duration("leak.floor_window", f)?,
            None => window / 10,
        };
        if floor_window >= window || floor_window.is_zero() {
            return Err(ConfigError::invalid(
                "leak.floor_window",
                humantime::format_duration(floor_window),
                format!(
                    "must be shorter than leak.window ({}) and not zero",
                    humantime::format_duration(window)
                ),
            ));
        }
        if floor_window < poll_interval {
            return Err(ConfigError::invalid(
                "leak.floor_window",
                humantime::format_duration(floor_window),
                format!(
                    "must be at least poll.interval ({}), or the floor is a single sample",
                    humantime::format_duration(poll_interval)
                ),
            ));
        }
        Ok(LeakConfig {
            window,
            floor_window,
        })
    }
}

/// Buckets per floor window: the floor is the minimum of the last `FLOOR_BUCKETS` buckets.
const FLOOR_BUCKETS: u64 = 4;

/// A run needs this many floor points (one floor window) before it can be called growing.
const MIN_RUN_POINTS: usize = FLOOR_BUCKETS as usize;

/// The share of pairwise slopes that must be increases for a run to be growing is
/// `1 − GROWTH_QUANTILE`: the slope at this quantile must be positive.
const GROWTH_QUANTILE: f64 = 0.3;

/// A rise between consecutive floor points this many times the median rise is a step.
const STEP_FACTOR: i128 = 4;

/// Floor changes this small are noise, not growth or a fall.
const NOISE_BYTES: u64 = 1 << 20;

/// A run longer than this is thinned to evenly spaced points: it bounds the work per assessment
/// (at most `MAX_POINTS²/2` slopes) whatever the window.
const MAX_POINTS: usize = 48;

/// Bucket geometry shared by every tracker of one exporter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DriftGeometry {
    bucket_ms: u64,
    window_buckets: u64,
}

impl DriftGeometry {
    pub fn new(window: Duration, floor_window: Duration) -> Self {
        let bucket_ms = (floor_window.as_millis() as u64 / FLOOR_BUCKETS).max(1);
        let window_buckets = (window.as_millis() as u64).div_ceil(bucket_ms).max(1);
        DriftGeometry {
            bucket_ms,
            window_buckets,
        }
    }

    /// The most buckets a tracker holds.
    pub fn capacity(&self) -> usize {
        (self.window_buckets + FLOOR_BUCKETS) as usize
    }
}

/// What the assessment of one series says.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Leak {
    /// Sustained growth rate of the floor, in bytes per second; 0 when it is not growing.
    pub rate: f64,
    /// Memory the leak has taken so far: `rate × time since growth began`, at most the rise of the
    /// floor over the window; 0 when it is not growing.
    pub drift: u64,
}

/// The rolling-floor history of one series (a device or a process) and its latest assessment.
#[derive(Debug, Clone)]
pub struct FloorTracker {
    /// (bucket number, minimum seen in it), oldest first.
    buckets: VecDeque<(u64, u64)>,
    leak: Leak,
}

impl FloorTracker {
    pub fn new(geometry: &DriftGeometry) -> Self {
        FloorTracker {
            buckets: VecDeque::with_capacity(geometry.capacity()),
            leak: Leak::default(),
        }
    }

    /// Records a sample taken at `at_ms` (milliseconds on a monotonic clock). When it opens a new
    /// bucket, the completed buckets are assessed again.
    pub fn observe(&mut self, geometry: &DriftGeometry, at_ms: u64, value: u64) {
        let bucket = at_ms / geometry.bucket_ms;
        match self.buckets.back_mut() {
            Some((b, min)) if *b == bucket => {
                *min = (*min).min(value);
                return;
            }
            Some((b, _)) if *b > bucket => return, // A clock going backwards is ignored.
            _ => {}
        }
        let completed = !self.buckets.is_empty();
        self.buckets.push_back((bucket, value));
        let oldest_kept = bucket.saturating_sub(geometry.window_buckets + FLOOR_BUCKETS - 1);
        while self.buckets.front().is_some_and(|(b, _)| *b < oldest_kept) {
            self.buckets.pop_front();
        }
        if completed {
            self.leak = self.assess_completed(geometry);
        }
    }

    /// The latest assessment (as of the last completed bucket).
    pub fn leak(&self) -> Leak {
        self.leak
    }

    /// The floor at each completed bucket of the window, as (seconds, bytes), oldest first.
    fn assess_completed(&self, geometry: &DriftGeometry) -> Leak {
        let n = self.buckets.len();
        if n < 2 {
            return Leak::default();
        }
        // The last bucket was just opened: everything before it is complete.
        let completed = self.buckets.range(..n - 1);
        let last = self.buckets[n - 2].0;
        let first_in_window = last.saturating_sub(geometry.window_buckets);
        let mut points: Vec<(f64, u64)> = Vec::with_capacity(n);
        let mut recent: VecDeque<(u64, u64)> = VecDeque::with_capacity(FLOOR_BUCKETS as usize);
        for &(b, min) in completed {
            recent.push_back((b, min));
            while recent
                .front()
                .is_some_and(|(rb, _)| *rb + FLOOR_BUCKETS <= b)
            {
                recent.pop_front();
            }
            if b >= first_in_window {
                let floor = recent.iter().map(|(_, m)| *m).min().unwrap_or(min);
                let secs = ((b + 1) * geometry.bucket_ms) as f64 / 1000.0;
                points.push((secs, floor));
            }
        }
        assess(&points)
    }

    /// Buckets held, for tests of the memory bound.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

/// Assesses a floor series — (seconds, bytes), oldest first, one window — for sustained growth.
/// Pure; see the module documentation for the rule.
pub fn assess(points: &[(f64, u64)]) -> Leak {
    let Some(&(_, lowest)) = points.iter().min_by_key(|(_, f)| *f) else {
        return Leak::default();
    };
    // The run starts at the latest point within noise of the window's lowest floor.
    let start = points
        .iter()
        .rposition(|(_, f)| *f <= lowest + NOISE_BYTES)
        .unwrap_or(0);
    let run = thin(&points[start..]);
    let (t_now, f_now) = *run.last().expect("run holds its start");
    let rise = f_now.saturating_sub(lowest);
    if run.len() < MIN_RUN_POINTS || rise <= NOISE_BYTES {
        return Leak::default();
    }
    // Growing over the run, and still growing over its recent half: allocations that stopped
    // (a few model loads in a row, then flat) are not a leak, whatever they added up to.
    let recent = run.len() - (run.len() / 2).max(MIN_RUN_POINTS);
    if !growing(&run) || !growing(&run[recent..]) {
        return Leak::default();
    }
    // Growth began at the last point of the run still within noise of its start.
    let from = run
        .iter()
        .position(|(_, f)| *f > lowest + NOISE_BYTES)
        .map_or(0, |i| i.saturating_sub(1));
    let rate = sustained_rate(&run[from..]);
    let elapsed = t_now - run[from].0;
    let drift = (rate * elapsed).min(rise as f64) as u64;
    Leak { rate, drift }
}

/// The growth of `points` per second with its steps left out: a rise between two consecutive
/// points larger than `STEP_FACTOR` times the median rise is a one-time allocation, not leak.
fn sustained_rate(points: &[(f64, u64)]) -> f64 {
    let rises: Vec<i128> = points
        .windows(2)
        .map(|w| i128::from(w[1].1) - i128::from(w[0].1))
        .collect();
    let mut positive: Vec<i128> = rises
        .iter()
        .copied()
        .filter(|d| *d > i128::from(NOISE_BYTES))
        .collect();
    let elapsed = points.last().map_or(0.0, |p| p.0) - points.first().map_or(0.0, |p| p.0);
    if positive.is_empty() || elapsed <= 0.0 {
        return 0.0;
    }
    let mid = (positive.len() - 1) / 2;
    let (_, median, _) = positive.select_nth_unstable(mid);
    let step = *median * STEP_FACTOR;
    let sustained: i128 = rises.iter().filter(|d| **d <= step).sum();
    (sustained.max(0) as f64) / elapsed
}

/// Whether at least `1 − GROWTH_QUANTILE` of the pairwise slopes are increases.
fn growing(points: &[(f64, u64)]) -> bool {
    let mut slopes = pairwise_slopes(points);
    if slopes.is_empty() {
        return false;
    }
    let at = ((slopes.len() - 1) as f64 * GROWTH_QUANTILE).floor() as usize;
    let (_, q, _) = slopes.select_nth_unstable_by(at, f64::total_cmp);
    *q > 0.0
}

/// Seconds until `current` reaches `limit` growing at `rate` bytes per second: 0 when it already
/// has, None when nothing grows.
pub fn seconds_until(current: u64, limit: u64, rate: f64) -> Option<f64> {
    if current >= limit {
        Some(0.0)
    } else if rate > 0.0 {
        Some((limit - current) as f64 / rate)
    } else {
        None
    }
}

/// Every pair's slope in bytes per second; changes within noise count as flat.
fn pairwise_slopes(points: &[(f64, u64)]) -> Vec<f64> {
    let mut slopes = Vec::with_capacity(points.len() * points.len().saturating_sub(1) / 2);
    for (i, &(ti, fi)) in points.iter().enumerate() {
        for &(tj, fj) in &points[i + 1..] {
            let dt = tj - ti;
            let slope = if fj.abs_diff(fi) <= NOISE_BYTES || dt <= 0.0 {
                0.0
            } else {
                (fj as f64 - fi as f64) / dt
            };
            slopes.push(slope);
        }
    }
    slopes
}

/// At most `MAX_POINTS` evenly spaced points of `run`, its first and last included.
fn thin(run: &[(f64, u64)]) -> Vec<(f64, u64)> {
    if run.len() <= MAX_POINTS {
        return run.to_vec();
    }
    let step = (run.len() - 1) as f64 / (MAX_POINTS - 1) as f64;
    (0..MAX_POINTS)
        .map(|i| run[((i as f64 * step).round() as usize).min(run.len() - 1)])
        .collect()
}

#[cfg(test)]
mod tests {
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
        let csv = include_str!("../nvml-sim/scenarios/traces/h200-pytorch-phases.csv");
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
}
