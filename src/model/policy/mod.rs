//! The memory-pressure policy: soft/hard limits, episodes with hysteresis, and the pressure level.
//!
//! Everything here is a pure function of (sample, previous state, limits) so it can be tested
//! exhaustively without NVML, clocks or threads. A violation is an *episode*: it is counted on the
//! rising edge, and the next one can only be counted after usage has fallen below the limit minus
//! the hysteresis. A trace that wobbles around a limit therefore counts once.

pub mod limits;
pub mod predict;

pub use limits::{LimitSpec, Limits};

/// Pressure level: 0 ok, 1 above soft, 2 above hard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum Level {
    #[default]
    Ok = 0,
    Soft = 1,
    Hard = 2,
}

impl Level {
    pub fn as_u8(self) -> u8 {
        self as u8
    }

    /// The level's name, as the JSON API, the status page and webhook payloads write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Ok => "ok",
            Level::Soft => "soft",
            Level::Hard => "hard",
        }
    }
}

/// Per-device policy state carried from one poll to the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PolicyState {
    /// Inside a soft episode (armed again only below soft − hysteresis).
    pub soft_active: bool,
    /// Inside a hard episode (armed again only below hard − hysteresis).
    pub hard_active: bool,
    pub soft_violations: u64,
    pub hard_violations: u64,
}

impl PolicyState {
    pub fn level(&self) -> Level {
        if self.hard_active {
            Level::Hard
        } else if self.soft_active {
            Level::Soft
        } else {
            Level::Ok
        }
    }
}

/// The outcome of one evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub state: PolicyState,
    pub level: Level,
    /// This sample started a hard episode.
    pub entered_hard: bool,
    /// This sample started a soft episode.
    pub entered_soft: bool,
}

/// Evaluates one usage sample against the limits, given the state after the previous sample.
pub fn evaluate(allocated: u64, prev: &PolicyState, limits: &Limits) -> Verdict {
    let (soft_active, entered_soft) =
        edge(prev.soft_active, allocated, limits.soft, limits.hysteresis);
    let (hard_active, entered_hard) =
        edge(prev.hard_active, allocated, limits.hard, limits.hysteresis);
    let state = PolicyState {
        // A hard episode implies the soft one: usage cannot be above hard and below soft.
        soft_active: soft_active || hard_active,
        hard_active,
        soft_violations: prev.soft_violations + u64::from(entered_soft),
        hard_violations: prev.hard_violations + u64::from(entered_hard),
    };
    Verdict {
        level: state.level(),
        state,
        entered_hard,
        entered_soft,
    }
}

/// One limit's episode tracking: returns (active, entered).
fn edge(active: bool, allocated: u64, limit: u64, hysteresis: u64) -> (bool, bool) {
    if active {
        (allocated >= limit.saturating_sub(hysteresis), false)
    } else if allocated >= limit {
        (true, true)
    } else {
        (false, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    fn limits() -> Limits {
        // An 80 GiB device with soft 85%, hard 95%, hysteresis 2%.
        limits::LimitSet {
            soft: LimitSpec::Percent(85.0),
            hard: LimitSpec::Percent(95.0),
            hysteresis: LimitSpec::Percent(2.0),
        }
        .resolve(80 * GIB)
        .0
    }

    fn run(trace: &[u64]) -> (PolicyState, Vec<Level>) {
        let l = limits();
        let mut s = PolicyState::default();
        let mut levels = Vec::new();
        for &v in trace {
            let verdict = evaluate(v, &s, &l);
            s = verdict.state;
            levels.push(verdict.level);
        }
        (s, levels)
    }

    #[test]
    fn quiet_trace_counts_nothing() {
        let (s, levels) = run(&[10 * GIB, 40 * GIB, 60 * GIB, 20 * GIB]);
        assert_eq!((s.soft_violations, s.hard_violations), (0, 0));
        assert!(levels.iter().all(|l| *l == Level::Ok));
    }

    #[test]
    fn wobble_around_a_limit_counts_one_episode() {
        // Soft is 68 GiB, re-arm below 66.4 GiB: wobbling between 67 and 69 stays one episode.
        let (s, levels) = run(&[60 * GIB, 69 * GIB, 67 * GIB, 69 * GIB, 67 * GIB, 69 * GIB]);
        assert_eq!(s.soft_violations, 1);
        assert_eq!(s.hard_violations, 0);
        assert_eq!(levels[1..], [Level::Soft; 5]);
    }

    #[test]
    fn falling_below_hysteresis_rearms() {
        let (s, _) = run(&[69 * GIB, 60 * GIB, 69 * GIB, 60 * GIB, 69 * GIB]);
        assert_eq!(s.soft_violations, 3);
    }

    #[test]
    fn jump_straight_to_hard_counts_both() {
        let (s, levels) = run(&[10 * GIB, 78 * GIB, 75 * GIB, 77 * GIB, 10 * GIB]);
        assert_eq!(s.hard_violations, 1);
        assert_eq!(s.soft_violations, 1);
        // 75 GiB is inside hard's hysteresis band (76 − 1.6), so the episode holds the level.
        assert_eq!(
            levels,
            [Level::Ok, Level::Hard, Level::Hard, Level::Hard, Level::Ok]
        );
    }

    #[test]
    fn hard_ends_into_soft() {
        let (s, levels) = run(&[78 * GIB, 70 * GIB, 78 * GIB]);
        assert_eq!(levels, [Level::Hard, Level::Soft, Level::Hard]);
        assert_eq!(s.hard_violations, 2);
        assert_eq!(s.soft_violations, 1);
    }

    #[test]
    fn exactly_at_limit_is_a_breach() {
        let l = limits();
        let v = evaluate(l.hard, &PolicyState::default(), &l);
        assert!(v.entered_hard);
        assert_eq!(v.level, Level::Hard);
    }
}
