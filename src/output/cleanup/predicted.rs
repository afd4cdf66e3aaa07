//! Cleanup before the breach: when a run is due on a GPU's predicted breach (a pure function,
//! like [`decide`](super::decide)), and whether the run moved the prediction.
//!
//! A predicted run shares the hard path's safety: at most one predicted run per `cooldown` (a
//! hard breach earlier does not hold a later prediction back, as a new hard episode is not held
//! back by an earlier one), one run in flight per GPU (a due run is skipped, never
//! queued), at most one kill per cooldown, a kill only after the kill action's `after` (counted
//! from the start of the prediction) and only with `cleanup.predict.allow_kill`. A GPU in hard
//! breach belongs to the hard path; the prediction is only looked at below the hard limit.
//!
//! *Unmoved*: a predicted run is meant to push the breach away. [`UNMOVED_POLLS`] snapshots
//! after it finished, the GPU's time to the hard limit is compared with the one the run was
//! started on: a prediction is moved when nothing grows any more (no ETA) or the ETA is longer by
//! more than [`MOVED_MARGIN`]; otherwise (shorter, about the same, or the GPU in hard breach)
//! it is counted in `vram_cleanup_predictions_unmoved_total`.

use std::time::{Duration, Instant};

use crate::model::engine::GpuView;
use crate::model::policy::Level;
use crate::output::cleanup::decide::{take_kill, Decision, Reason, Track};

/// Snapshots after a predicted run has finished at which its effect on the ETA is judged.
pub const UNMOVED_POLLS: u32 = 5;

/// An ETA must have grown by more than this share to count as moved (estimates wobble).
pub const MOVED_MARGIN: f64 = 0.1;

/// The inputs of a predicted decision besides the remembered state.
#[derive(Debug, Clone, Copy)]
pub struct PredictedInputs {
    /// The engine's prediction fires for this GPU (below the hard limit, up).
    pub predicted: bool,
    pub now: Instant,
    pub cooldown: Duration,
    pub in_flight: bool,
    /// The kill action's `after` when a kill may take part in predicted runs.
    pub kill_after: Option<Duration>,
}

/// Decides whether a predicted run is due; the hard path ([`super::decide::decide`]) goes first
/// and this is asked only when it is idle.
pub fn decide_predicted(prev: Track, i: PredictedInputs) -> (Track, Decision) {
    if !i.predicted {
        return (
            Track {
                predicted_since: None,
                ..prev
            },
            Decision::Idle,
        );
    }
    let since = prev.predicted_since.unwrap_or(i.now);
    let mut next = Track {
        predicted_since: Some(since),
        ..prev
    };
    let due = prev
        .predicted_last_due
        .is_none_or(|t| i.now.saturating_duration_since(t) >= i.cooldown);
    if !due {
        return (next, Decision::Idle);
    }
    next.predicted_last_due = Some(i.now);
    let reason = Reason::Predicted;
    if i.in_flight {
        return (next, Decision::Skip { reason });
    }
    let kill = take_kill(&mut next, i.now, since, i.cooldown, i.kill_after);
    (next, Decision::Run { reason, kill })
}

/// A predicted run whose effect on the ETA is still to be judged.
#[derive(Debug, Clone, Copy)]
pub struct Pending {
    /// The ETA the run was started on.
    eta: f64,
    polls_left: u32,
}

impl Pending {
    /// A check for a run started on `gpu` (None when its ETA is unknown: nothing to compare).
    pub fn start(gpu: &GpuView) -> Option<Pending> {
        gpu.hard_limit_eta.map(|eta| Pending {
            eta,
            polls_left: UNMOVED_POLLS,
        })
    }

    /// Counts one snapshot (only once the run has finished); when the window is over, says
    /// whether the prediction moved: Some(true) moved, Some(false) unmoved, None not yet.
    pub fn step(&mut self, gpu: &GpuView, run_finished: bool) -> Option<bool> {
        if run_finished {
            self.polls_left = self.polls_left.saturating_sub(1);
        }
        if self.polls_left > 0 {
            return None;
        }
        Some(moved(self.eta, gpu))
    }

    pub fn eta(&self) -> f64 {
        self.eta
    }
}

/// Whether the GPU's prediction now is further away than `eta_at_run`.
fn moved(eta_at_run: f64, gpu: &GpuView) -> bool {
    if !gpu.up || gpu.level == Level::Hard {
        return false;
    }
    match gpu.hard_limit_eta {
        None => true,
        Some(eta) => eta > eta_at_run * (1.0 + MOVED_MARGIN),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COOLDOWN: Duration = Duration::from_secs(30);

    fn at(track: &mut Track, t0: Instant, secs: u64, predicted: bool, kill: bool) -> Decision {
        let (t, d) = decide_predicted(
            *track,
            PredictedInputs {
                predicted,
                now: t0 + Duration::from_secs(secs),
                cooldown: COOLDOWN,
                in_flight: false,
                kill_after: kill.then_some(Duration::from_secs(10)),
            },
        );
        *track = t;
        d
    }

    #[test]
    fn runs_at_once_then_once_per_cooldown() {
        let (t0, mut track) = (Instant::now(), Track::default());
        assert_eq!(at(&mut track, t0, 0, false, false), Decision::Idle);
        let run = Decision::Run {
            reason: Reason::Predicted,
            kill: false,
        };
        assert_eq!(at(&mut track, t0, 1, true, false), run);
        for s in 2..31 {
            assert_eq!(at(&mut track, t0, s, true, false), Decision::Idle, "{s}");
        }
        assert_eq!(at(&mut track, t0, 31, true, false), run);
    }

    #[test]
    fn an_earlier_hard_run_does_not_hold_the_prediction_back_but_an_earlier_kill_does() {
        let t0 = Instant::now();
        let mut track = Track {
            last_due: Some(t0),
            last_kill: Some(t0),
            ..Track::default()
        };
        assert_eq!(
            at(&mut track, t0, 15, true, true),
            Decision::Run {
                reason: Reason::Predicted,
                kill: false
            }
        );
    }

    #[test]
    fn kill_only_when_allowed_and_after_its_wait() {
        let (t0, mut track) = (Instant::now(), Track::default());
        assert_eq!(
            at(&mut track, t0, 0, true, true),
            Decision::Run {
                reason: Reason::Predicted,
                kill: false
            }
        );
        assert_eq!(
            at(&mut track, t0, 30, true, true),
            Decision::Run {
                reason: Reason::Predicted,
                kill: true
            }
        );
    }

    #[test]
    fn due_while_in_flight_is_skipped() {
        let (t, d) = decide_predicted(
            Track::default(),
            PredictedInputs {
                predicted: true,
                now: Instant::now(),
                cooldown: COOLDOWN,
                in_flight: true,
                kill_after: None,
            },
        );
        assert_eq!(
            d,
            Decision::Skip {
                reason: Reason::Predicted
            }
        );
        assert!(t.predicted_last_due.is_some());
    }
}
