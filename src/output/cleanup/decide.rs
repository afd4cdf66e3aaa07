//! When to clean up: a pure function of (previous per-GPU state, this snapshot's level, now).
//!
//! Kept free of clocks, channels and processes so every rule is unit-tested: entering a hard
//! breach runs the actions at once; staying in it runs them again each `cooldown`; a run that is
//! due while the previous one is still going is *skipped* (and counted), never queued; a kill is
//! allowed at most once per GPU per cooldown, and only after the breach has lasted the kill
//! action's `after`.

use std::time::{Duration, Instant};

use crate::model::policy::predict::Trigger;
use crate::model::policy::Level;

/// What the dispatcher remembers about one GPU between snapshots.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Track {
    /// When the current hard breach began (as first seen); None when not in breach.
    pub hard_since: Option<Instant>,
    /// When a run was last due (run or skipped); cooldown counts from here.
    pub last_due: Option<Instant>,
    /// When a kill was last included in a run.
    pub last_kill: Option<Instant>,
    /// When the current predicted breach began (as first seen); None when there is none.
    pub predicted_since: Option<Instant>,
    /// When a predicted run was last due (run or skipped): predicted runs repeat at most once
    /// per cooldown, whatever the hard path did.
    pub predicted_last_due: Option<Instant>,
}

/// Why a run is due, for the log and the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The GPU just entered hard breach.
    Entered,
    /// It stayed in hard breach for another cooldown.
    StillHard,
    /// Its time to the hard limit stayed under `cleanup.predict.eta_below` (see `predicted`).
    Predicted,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Entered => "entered_hard",
            Reason::StillHard => "still_hard",
            Reason::Predicted => "predicted_breach",
        }
    }

    /// The `trigger` label: hard for the hard path, predicted before the breach.
    pub fn trigger(self) -> Trigger {
        match self {
            Reason::Entered | Reason::StillHard => Trigger::Hard,
            Reason::Predicted => Trigger::Predicted,
        }
    }
}

/// The decision for one GPU and one snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Nothing to do.
    Idle,
    /// Start a run; `kill` says whether a configured kill action may take part.
    Run { reason: Reason, kill: bool },
    /// A run is due but the previous one is still going: count it as skipped.
    Skip { reason: Reason },
}

/// The inputs besides the remembered state.
#[derive(Debug, Clone, Copy)]
pub struct Inputs {
    pub level: Level,
    /// The device answered this poll (a lost GPU is never acted on).
    pub up: bool,
    pub now: Instant,
    pub cooldown: Duration,
    /// A previous run for this GPU has not finished.
    pub in_flight: bool,
    /// The kill action's `after`, if one is configured.
    pub kill_after: Option<Duration>,
}

/// Decides, returning the state to remember and what to do.
pub fn decide(prev: Track, i: Inputs) -> (Track, Decision) {
    if i.level != Level::Hard || !i.up {
        return (
            Track {
                hard_since: None,
                ..prev
            },
            Decision::Idle,
        );
    }
    let hard_since = prev.hard_since.unwrap_or(i.now);
    let reason = if prev.hard_since.is_none() {
        Reason::Entered
    } else {
        Reason::StillHard
    };
    // Entering runs at once; staying runs again each cooldown.
    let due = reason == Reason::Entered
        || prev
            .last_due
            .is_none_or(|t| i.now.saturating_duration_since(t) >= i.cooldown);
    let mut next = Track {
        hard_since: Some(hard_since),
        ..prev
    };
    if !due {
        return (next, Decision::Idle);
    }
    next.last_due = Some(i.now);
    if i.in_flight {
        return (next, Decision::Skip { reason });
    }
    let kill = take_kill(&mut next, i.now, hard_since, i.cooldown, i.kill_after);
    (next, Decision::Run { reason, kill })
}

/// Whether a due run kills (the hard and the predicted path alike): the kill action's `after`
/// has passed since the episode began at `since`, and no kill within the cooldown; a kill is
/// recorded in `next`.
pub(super) fn take_kill(
    next: &mut Track,
    now: Instant,
    since: Instant,
    cooldown: Duration,
    kill_after: Option<Duration>,
) -> bool {
    let kill = kill_after.is_some_and(|after| {
        now.saturating_duration_since(since) >= after
            && next
                .last_kill
                .is_none_or(|k| now.saturating_duration_since(k) >= cooldown)
    });
    if kill {
        next.last_kill = Some(now);
    }
    kill
}

#[cfg(test)]
mod tests {
    use super::*;

    const COOLDOWN: Duration = Duration::from_secs(30);

    struct Sim {
        t0: Instant,
        track: Track,
        kill_after: Option<Duration>,
    }

    impl Sim {
        fn new(kill_after: Option<Duration>) -> Self {
            Sim {
                t0: Instant::now(),
                track: Track::default(),
                kill_after,
            }
        }

        fn at(&mut self, secs: u64, level: Level, in_flight: bool) -> Decision {
            let (t, d) = decide(
                self.track,
                Inputs {
                    level,
                    up: true,
                    now: self.t0 + Duration::from_secs(secs),
                    cooldown: COOLDOWN,
                    in_flight,
                    kill_after: self.kill_after,
                },
            );
            self.track = t;
            d
        }
    }

    use Decision::*;
    use Level::*;
    use Reason::*;

    #[test]
    fn entering_hard_runs_at_once() {
        let mut s = Sim::new(None);
        assert_eq!(s.at(0, Ok, false), Idle);
        assert_eq!(s.at(1, Soft, false), Idle);
        assert_eq!(
            s.at(2, Hard, false),
            Run {
                reason: Entered,
                kill: false
            }
        );
    }

    #[test]
    fn still_hard_runs_again_only_after_cooldown() {
        let mut s = Sim::new(None);
        assert!(matches!(s.at(0, Hard, false), Run { .. }));
        for t in 1..30 {
            assert_eq!(s.at(t, Hard, false), Idle, "t={t}");
        }
        assert_eq!(
            s.at(30, Hard, false),
            Run {
                reason: StillHard,
                kill: false
            }
        );
        assert_eq!(s.at(31, Hard, false), Idle);
        assert!(matches!(s.at(60, Hard, false), Run { .. }));
    }

    #[test]
    fn a_new_episode_runs_at_once_even_within_cooldown() {
        let mut s = Sim::new(None);
        assert!(matches!(s.at(0, Hard, false), Run { .. }));
        assert_eq!(s.at(1, Ok, false), Idle);
        assert_eq!(
            s.at(2, Hard, false),
            Run {
                reason: Entered,
                kill: false
            }
        );
    }

    #[test]
    fn due_while_in_flight_is_skipped_and_waits_another_cooldown() {
        let mut s = Sim::new(None);
        assert!(matches!(s.at(0, Hard, false), Run { .. }));
        assert_eq!(s.at(30, Hard, true), Skip { reason: StillHard });
        // The skip counted as the due time: no skip storm on every following snapshot.
        assert_eq!(s.at(31, Hard, true), Idle);
        assert_eq!(s.at(45, Hard, false), Idle);
        assert!(matches!(s.at(60, Hard, false), Run { .. }));
    }

    #[test]
    fn entering_while_in_flight_is_skipped() {
        let mut s = Sim::new(None);
        assert!(matches!(s.at(0, Hard, false), Run { .. }));
        assert_eq!(s.at(1, Ok, true), Idle);
        assert_eq!(s.at(2, Hard, true), Skip { reason: Entered });
    }

    #[test]
    fn lost_gpu_is_never_acted_on() {
        let (t, d) = decide(
            Track::default(),
            Inputs {
                level: Hard,
                up: false,
                now: Instant::now(),
                cooldown: COOLDOWN,
                in_flight: false,
                kill_after: Some(Duration::ZERO),
            },
        );
        assert_eq!((t, d), (Track::default(), Idle));
    }

    #[test]
    fn kill_at_most_once_per_cooldown_even_across_episodes() {
        let mut s = Sim::new(Some(Duration::ZERO));
        assert_eq!(
            s.at(0, Hard, false),
            Run {
                reason: Entered,
                kill: true
            }
        );
        assert_eq!(s.at(1, Ok, false), Idle);
        // New episode: the cheap actions run at once, the kill waits for the cooldown.
        assert_eq!(
            s.at(2, Hard, false),
            Run {
                reason: Entered,
                kill: false
            }
        );
        assert_eq!(
            s.at(32, Hard, false),
            Run {
                reason: StillHard,
                kill: true
            }
        );
    }

    #[test]
    fn kill_waits_for_after() {
        let mut s = Sim::new(Some(Duration::from_secs(60)));
        assert_eq!(
            s.at(0, Hard, false),
            Run {
                reason: Entered,
                kill: false
            }
        );
        assert_eq!(
            s.at(30, Hard, false),
            Run {
                reason: StillHard,
                kill: false
            }
        );
        assert_eq!(
            s.at(60, Hard, false),
            Run {
                reason: StillHard,
                kill: true
            }
        );
    }
}
