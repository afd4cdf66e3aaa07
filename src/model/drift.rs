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

use crate::base::input::{parse_duration_within, ConfigError};

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
        let window = parse_duration_within("leak.window", &self.window, MIN_WINDOW, MAX_WINDOW)?;
        let floor_window = match &self.floor_window {
            Some(f) => parse_duration_within("leak.floor_window", f, Duration::ZERO, MAX_WINDOW)?,
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
        if floor_window < window / MAX_WINDOW_TO_FLOOR {
            return Err(ConfigError::invalid(
                "leak.floor_window",
                humantime::format_duration(floor_window),
                format!(
                    "must be at least 1/{MAX_WINDOW_TO_FLOOR} of leak.window ({}): every tracked \
                     series keeps 4 buckets per floor window over the whole window",
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

/// `leak.window` bounds: a week of history is far more than a leak needs to show.
const MIN_WINDOW: Duration = Duration::from_secs(1);
const MAX_WINDOW: Duration = Duration::from_secs(7 * 24 * 3600);

/// `leak.floor_window` is at least `leak.window` / this: a series holds at most
/// `4 × 256 + 4` buckets (16 KiB), whatever the window.
const MAX_WINDOW_TO_FLOOR: u32 = 256;

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
mod tests;
