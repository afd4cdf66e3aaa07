//! The predicted breach: the GPU's time to the hard limit has stayed below a threshold for a
//! while. Pure, like the rest of the policy, so the engine can publish it in the snapshot and
//! every reader (cleanup, the JSON API, the status page) sees the same state.
//!
//! A prediction holds while the time to the hard limit (`hard_limit_eta`) is known, above 0 (at
//! or above the hard limit the hard path owns the GPU) and below `eta_below`; it *fires* once it
//! has held for `hold` (the `for` of `[cleanup.predict]`), measured on the poller's monotonic
//! clock. Any sample where it does not hold starts the wait again.

use std::time::Duration;

use super::Level;

/// Why a GPU is (or a cleanup ran) in breach: the `trigger` label of the cleanup counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Trigger {
    /// Allocation is above the hard limit.
    Hard,
    /// The time to the hard limit has stayed under `eta_below` for `for`.
    Predicted,
}

impl Trigger {
    pub const ALL: [Trigger; 2] = [Trigger::Hard, Trigger::Predicted];

    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Hard => "hard",
            Trigger::Predicted => "predicted",
        }
    }
}

/// The validated rule (from `[cleanup.predict]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PredictRule {
    pub eta_below: Duration,
    pub hold: Duration,
}

/// What a GPU's prediction remembers between polls: since when it has held (monotonic ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PredictState {
    pub holding_since_ms: Option<u64>,
}

/// One poll's prediction: the state to keep and whether the prediction fires now.
pub fn evaluate(
    prev: PredictState,
    rule: &PredictRule,
    level: Level,
    eta: Option<f64>,
    now_ms: u64,
) -> (PredictState, bool) {
    let holds =
        level != Level::Hard && eta.is_some_and(|e| e > 0.0 && e < rule.eta_below.as_secs_f64());
    if !holds {
        return (PredictState::default(), false);
    }
    let since = prev.holding_since_ms.unwrap_or(now_ms);
    let fired = now_ms.saturating_sub(since) >= rule.hold.as_millis() as u64;
    (
        PredictState {
            holding_since_ms: Some(since),
        },
        fired,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULE: PredictRule = PredictRule {
        eta_below: Duration::from_secs(60),
        hold: Duration::from_secs(10),
    };

    fn run(steps: &[(u64, Level, Option<f64>)]) -> Vec<bool> {
        let mut state = PredictState::default();
        steps
            .iter()
            .map(|&(s, level, eta)| {
                let (next, fired) = evaluate(state, &RULE, level, eta, s * 1000);
                state = next;
                fired
            })
            .collect()
    }

    #[test]
    fn fires_after_holding_for_the_hold_time() {
        let eta = Some(30.0);
        let got = run(&[
            (0, Level::Ok, eta),
            (5, Level::Soft, eta),
            (10, Level::Soft, eta),
            (11, Level::Soft, eta),
        ]);
        assert_eq!(got, [false, false, true, true]);
    }

    #[test]
    fn an_interruption_starts_the_wait_again() {
        let got = run(&[
            (0, Level::Ok, Some(30.0)),
            (9, Level::Ok, None),
            (10, Level::Ok, Some(30.0)),
            (19, Level::Ok, Some(30.0)),
            (20, Level::Ok, Some(30.0)),
        ]);
        assert_eq!(got, [false, false, false, false, true]);
    }

    #[test]
    fn never_in_hard_breach_nor_far_from_it() {
        let got = run(&[
            (0, Level::Hard, Some(0.0)),
            (20, Level::Hard, Some(0.0)),
            (40, Level::Ok, Some(60.0)),
            (60, Level::Ok, Some(600.0)),
            (80, Level::Ok, Some(0.0)),
        ]);
        assert_eq!(got, [false; 5]);
    }

    #[test]
    fn zero_hold_fires_at_once() {
        let rule = PredictRule {
            hold: Duration::ZERO,
            ..RULE
        };
        let (_, fired) = evaluate(PredictState::default(), &rule, Level::Ok, Some(1.0), 0);
        assert!(fired);
    }
}
