//! Leak drift: how much the usage *floor* rose over the leak window.
//!
//! The floor is a rolling minimum over `floor_window`, long enough to span a training step, so the
//! allocate/free sawtooth of a training loop sits on a flat floor and shows no drift, while a steady
//! leak lifts the floor by `rate × window`. Drift is `floor now − floor one window ago`, clamped at
//! zero (a falling floor is no leak). Memory per tracked series is bounded: samples are folded into
//! fixed-width buckets holding only their minimum, and only `window + floor_window` worth of buckets
//! are kept.

use std::collections::VecDeque;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::input::{parse_duration, ConfigError};

/// The `[leak]` section as written.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLeak {
    /// How far back the usage floor is compared: drift = floor now − floor one window ago.
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

/// The rolling-floor history of one series (a device or a process).
#[derive(Debug, Clone)]
pub struct FloorTracker {
    /// (bucket number, minimum seen in it), oldest first.
    buckets: VecDeque<(u64, u64)>,
}

impl FloorTracker {
    pub fn new(geometry: &DriftGeometry) -> Self {
        FloorTracker {
            buckets: VecDeque::with_capacity(geometry.capacity()),
        }
    }

    /// Records a sample taken at `at_ms` (milliseconds on a monotonic clock).
    pub fn observe(&mut self, geometry: &DriftGeometry, at_ms: u64, value: u64) {
        let bucket = at_ms / geometry.bucket_ms;
        match self.buckets.back_mut() {
            Some((b, min)) if *b == bucket => *min = (*min).min(value),
            Some((b, _)) if *b > bucket => {} // A clock going backwards is ignored.
            _ => self.buckets.push_back((bucket, value)),
        }
        let oldest_kept = bucket.saturating_sub(geometry.window_buckets + FLOOR_BUCKETS - 1);
        while self.buckets.front().is_some_and(|(b, _)| *b < oldest_kept) {
            self.buckets.pop_front();
        }
    }

    /// The drift in bytes: the rise of the floor over the window, or over the history held when
    /// that is shorter than the window.
    pub fn drift(&self, geometry: &DriftGeometry) -> u64 {
        let Some(&(current, _)) = self.buckets.back() else {
            return 0;
        };
        let recent_from = current.saturating_sub(FLOOR_BUCKETS - 1);
        let floor_now = self
            .buckets
            .iter()
            .rev()
            .take_while(|(b, _)| *b >= recent_from)
            .map(|(_, m)| *m)
            .min()
            .unwrap_or(0);
        // The floor window ending one window ago; when history is shorter, the oldest buckets held.
        let then_end = current.saturating_sub(geometry.window_buckets);
        let first = self.buckets.front().map(|(b, _)| *b).unwrap_or(current);
        let then_end = then_end.max(first + FLOOR_BUCKETS - 1);
        if then_end >= recent_from {
            return 0; // Not enough history to compare two disjoint floors.
        }
        let then_from = then_end.saturating_sub(FLOOR_BUCKETS - 1);
        let floor_then = self
            .buckets
            .iter()
            .filter(|(b, _)| *b >= then_from && *b <= then_end)
            .map(|(_, m)| *m)
            .min();
        match floor_then {
            Some(then) => floor_now.saturating_sub(then),
            None => 0,
        }
    }

    /// Buckets held, for tests of the memory bound.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    /// Feeds `f(t_seconds)` once per second for `secs` seconds and returns the final drift.
    fn feed(geometry: &DriftGeometry, secs: u64, f: impl Fn(u64) -> u64) -> (FloorTracker, u64) {
        let mut t = FloorTracker::new(geometry);
        for s in 0..=secs {
            t.observe(geometry, s * 1000, f(s));
        }
        let d = t.drift(geometry);
        (t, d)
    }

    fn geometry() -> DriftGeometry {
        DriftGeometry::new(Duration::from_secs(900), Duration::from_secs(90))
    }

    #[test]
    fn steady_leak_gives_rate_times_window() {
        let g = geometry();
        // 1 MiB/s for 30 minutes: the floor rose by about 900 MiB over the 15-minute window.
        let (t, d) = feed(&g, 1800, |s| 1024 * MIB + s * MIB);
        let expected = 900 * MIB;
        assert!(d.abs_diff(expected) <= 30 * MIB, "drift {} MiB", d / MIB);
        assert!(t.len() <= g.capacity());
    }

    #[test]
    fn training_sawtooth_gives_no_drift() {
        let g = geometry();
        // Allocate 0→20 GiB over 30 s then free, forever: floor stays at the 2 GiB baseline.
        let (_, d) = feed(&g, 3600, |s| 2048 * MIB + (s % 30) * 700 * MIB);
        assert_eq!(d, 0);
    }

    #[test]
    fn one_time_step_returns_to_zero_after_a_window() {
        let g = geometry();
        let step = |s: u64| if s < 600 { 1024 * MIB } else { 3072 * MIB };
        let mut t = FloorTracker::new(&g);
        let mut during = 0;
        for s in 0..=2400u64 {
            t.observe(&g, s * 1000, step(s));
            if s == 900 {
                during = t.drift(&g);
            }
        }
        assert_eq!(during, 2048 * MIB, "the step shows while inside the window");
        assert_eq!(
            t.drift(&g),
            0,
            "a window after the step the floor is flat again"
        );
    }

    #[test]
    fn falling_usage_is_not_negative_drift() {
        let g = geometry();
        let (_, d) = feed(&g, 1800, |s| 4096 * MIB - s * MIB);
        assert_eq!(d, 0);
    }

    #[test]
    fn short_history_reports_partial_then_none() {
        let g = geometry();
        let (_, d) = feed(&g, 30, |s| s * MIB);
        assert_eq!(
            d, 0,
            "history shorter than two floor windows cannot show drift"
        );
        let (_, d) = feed(&g, 400, |s| s * MIB);
        assert!(
            d > 200 * MIB && d < 400 * MIB,
            "partial window drift {} MiB",
            d / MIB
        );
    }

    #[test]
    fn memory_is_bounded() {
        let g = geometry();
        let (t, _) = feed(&g, 86_400, |s| s);
        assert!(t.len() <= g.capacity(), "{} > {}", t.len(), g.capacity());
        assert!(g.capacity() <= 64);
    }
}
