//! The dispatcher: a tokio task that watches published snapshots and starts cleanup runs.
//!
//! It is a reader like the HTTP handlers: it subscribes to the poller's `watch` channel, so the
//! polling thread never waits for it, and nothing reachable over HTTP can reach it. For each new
//! snapshot it asks [`decide`] per GPU and, when a run is due, spawns one task that runs the
//! configured actions in order. At most one run per GPU is in flight; a run that is due while the
//! previous one is still going is counted as `skipped` and dropped, so hung webhooks or commands
//! cannot pile up (the "queue" holds at most one run per GPU, and every action is time-bounded).
//!
//! With `[cleanup.predict]`, a GPU the hard path leaves idle is asked [`decide_predicted`] (the
//! engine's prediction in the snapshot), and a predicted run is judged [`UNMOVED_POLLS`]
//! snapshots after it finished (`vram_cleanup_predictions_unmoved_total`).
//!
//! Reclaimed memory: at each run the GPU's allocation is remembered; until [`RECLAIM_POLLS`]
//! snapshots after the run has finished, `vram_cleanup_reclaimed_bytes` shows how far the
//! allocation fell below that (the lowest value seen). The same window measures each signalled
//! process against what its allocator report predicted (`reclaim`): logged when the window
//! closes and kept per GPU for the JSON API.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, watch};

use crate::model::engine::{GpuView, Snapshot};
use crate::model::policy::Level;
use crate::output::cleanup::actions::{self, ActionResult, Outcome};
use crate::output::cleanup::config::{Action, CleanupConfig};
use crate::output::cleanup::decide::{decide, Decision, Inputs, Reason, Track};
use crate::output::cleanup::payload::{hostname, Payload};
use crate::output::cleanup::predicted::{
    decide_predicted, Pending, PredictedInputs, UNMOVED_POLLS,
};
use crate::output::cleanup::reclaim::{self, ReclaimBoard, RunReclaims};
use crate::output::cleanup::telemetry::CleanupMetrics;
use crate::output::publish::SharedPublished;

/// Snapshots after a run has finished over which reclaimed memory is still measured.
pub const RECLAIM_POLLS: u32 = 5;

/// One action's outcome, as logged and counted; also sent to an observer if one is attached.
#[derive(Debug, Clone)]
pub struct Report {
    pub gpu: u32,
    pub uuid: String,
    pub action: &'static str,
    pub reason: &'static str,
    /// "hard" or "predicted".
    pub trigger: &'static str,
    pub outcome: Outcome,
}

/// Watches snapshots and runs cleanup actions.
pub struct Dispatcher {
    shared: Arc<Shared>,
    gpus: HashMap<(u32, String), Slot>,
    snapshots: watch::Receiver<SharedPublished>,
}

/// What every run needs, shared with the run tasks.
struct Shared {
    config: CleanupConfig,
    metrics: CleanupMetrics,
    host: String,
    own_pid: u32,
    /// One HTTP agent per action index (webhooks only), so connections are reused.
    agents: Vec<Option<ureq::Agent>>,
    observer: Option<mpsc::UnboundedSender<Report>>,
    /// Predicted versus measured reclaim of each GPU's latest run, for the JSON API.
    board: ReclaimBoard,
}

struct Slot {
    track: Track,
    in_flight: Arc<AtomicBool>,
    reclaim: Option<Reclaim>,
    /// The latest reclaimed figure, for the audit lines of a run still going.
    reclaimed: Arc<AtomicU64>,
    /// The processes the current run signalled, measured over the same window.
    processes: RunReclaims,
    /// A predicted run whose effect on the ETA is still to be judged.
    pending: Option<Pending>,
}

#[derive(Debug, Clone, Copy)]
struct Reclaim {
    at_dispatch: u64,
    lowest: u64,
    polls_left: u32,
}

impl Dispatcher {
    /// A dispatcher reading `snapshots`; `metrics` must already be registered where wanted.
    pub fn new(
        config: CleanupConfig,
        metrics: CleanupMetrics,
        snapshots: watch::Receiver<SharedPublished>,
    ) -> Self {
        let agents = config
            .actions
            .iter()
            .map(|a| match a {
                Action::Webhook(w) => Some(actions::webhook_agent(w)),
                _ => None,
            })
            .collect();
        Dispatcher {
            shared: Arc::new(Shared {
                config,
                metrics,
                host: hostname(),
                own_pid: std::process::id(),
                agents,
                observer: None,
                board: ReclaimBoard::default(),
            }),
            gpus: HashMap::new(),
            snapshots,
        }
    }

    /// Sends every action's report to `observer` as well (benchmarks and tests).
    pub fn with_observer(mut self, observer: mpsc::UnboundedSender<Report>) -> Self {
        if let Some(shared) = Arc::get_mut(&mut self.shared) {
            shared.observer = Some(observer);
        }
        self
    }

    /// Publishes predicted versus measured reclaim per process into `board` (the JSON API's).
    pub fn with_board(mut self, board: ReclaimBoard) -> Self {
        if let Some(shared) = Arc::get_mut(&mut self.shared) {
            shared.board = board;
        }
        self
    }

    /// Runs until the snapshot channel closes.
    pub async fn run(mut self) {
        // The snapshot already there when we start counts too (a GPU may be in breach at start).
        self.snapshots.mark_changed();
        while self.snapshots.changed().await.is_ok() {
            let published = self.snapshots.borrow_and_update().clone();
            self.on_snapshot(&published.snapshot, Instant::now());
        }
    }

    /// Handles one snapshot: reclaim bookkeeping, then a decision per GPU.
    pub fn on_snapshot(&mut self, snapshot: &Snapshot, now: Instant) {
        let kill_after = self.shared.config.actions.iter().find_map(|a| match a {
            Action::Kill(k) => Some(k.after),
            _ => None,
        });
        let predict = self.shared.config.predict;
        let predicted_kill_after = kill_after.filter(|_| predict.is_some_and(|p| p.allow_kill));
        for gpu in &snapshot.gpus {
            let key = (gpu.identity.index, gpu.identity.uuid.clone());
            let slot = self.gpus.entry(key).or_insert_with(|| {
                self.shared.metrics.init_gpu(gpu, &self.shared.config);
                Slot {
                    track: Track::default(),
                    in_flight: Arc::new(AtomicBool::new(false)),
                    reclaim: None,
                    reclaimed: Arc::new(AtomicU64::new(0)),
                    processes: RunReclaims::default(),
                    pending: None,
                }
            });
            measure_reclaim(&self.shared, slot, gpu);
            judge_prediction(&self.shared, slot, gpu);
            let (track, decision) = decide(
                slot.track,
                Inputs {
                    level: gpu.level,
                    up: gpu.up,
                    now,
                    cooldown: self.shared.config.cooldown,
                    in_flight: slot.in_flight.load(Ordering::Acquire),
                    kill_after,
                },
            );
            slot.track = track;
            let decision = match decision {
                Decision::Idle if predict.is_some() && gpu.level != Level::Hard => {
                    let (track, decision) = decide_predicted(
                        slot.track,
                        PredictedInputs {
                            predicted: gpu.up && gpu.predicted,
                            now,
                            cooldown: self.shared.config.cooldown,
                            in_flight: slot.in_flight.load(Ordering::Acquire),
                            kill_after: predicted_kill_after,
                        },
                    );
                    slot.track = track;
                    decision
                }
                other => other,
            };
            match decision {
                Decision::Idle => {}
                Decision::Skip { reason } => {
                    for action in self.shared.runnable(reason) {
                        let outcome = Outcome::new(
                            ActionResult::Skipped,
                            vec![],
                            "the previous cleanup run for this GPU is still in progress",
                        );
                        self.shared
                            .finish(gpu, action, reason, outcome, &slot.reclaimed);
                    }
                }
                Decision::Run { reason, kill } => {
                    if reason == Reason::Predicted && !self.shared.config.dry_run {
                        slot.pending = Pending::start(gpu);
                    }
                    if !self.shared.config.dry_run {
                        let allocated = gpu.memory.map_or(0, |m| m.allocated);
                        slot.reclaim = Some(Reclaim {
                            at_dispatch: allocated,
                            lowest: allocated,
                            polls_left: RECLAIM_POLLS,
                        });
                        slot.reclaimed.store(0, Ordering::Relaxed);
                        slot.processes.clear();
                        self.shared.metrics.set_reclaimed(gpu, 0);
                    }
                    slot.in_flight.store(true, Ordering::Release);
                    let run = Run {
                        shared: self.shared.clone(),
                        snapshots: self.snapshots.clone(),
                        gpu: gpu.identity.index,
                        uuid: gpu.identity.uuid.clone(),
                        reason,
                        kill,
                        in_flight: slot.in_flight.clone(),
                        reclaimed: slot.reclaimed.clone(),
                        processes: slot.processes.clone(),
                    };
                    tokio::spawn(run.go());
                }
            }
        }
    }
}

/// Once a predicted run's window is over, counts and logs whether it moved the GPU's ETA.
fn judge_prediction(shared: &Shared, slot: &mut Slot, gpu: &GpuView) {
    let Some(pending) = slot.pending.as_mut() else {
        return;
    };
    let Some(moved) = pending.step(gpu, !slot.in_flight.load(Ordering::Acquire)) else {
        return;
    };
    let eta_at_run = pending.eta();
    slot.pending = None;
    let eta_now = gpu.hard_limit_eta.map(|e| (e * 10.0).round() / 10.0);
    if moved {
        tracing::info!(
            gpu = gpu.identity.index,
            uuid = %gpu.identity.uuid,
            eta_at_cleanup_seconds = eta_at_run,
            eta_after_seconds = eta_now,
            polls = UNMOVED_POLLS,
            "cleanup prediction moved"
        );
    } else {
        shared.metrics.count_unmoved(gpu);
        tracing::warn!(
            gpu = gpu.identity.index,
            uuid = %gpu.identity.uuid,
            eta_at_cleanup_seconds = eta_at_run,
            eta_after_seconds = eta_now,
            level = gpu.level.as_str(),
            polls = UNMOVED_POLLS,
            "cleanup prediction unmoved: the hard limit is no further away after the cleanup"
        );
    }
}

fn measure_reclaim(shared: &Shared, slot: &mut Slot, gpu: &GpuView) {
    let Some(r) = slot.reclaim.as_mut() else {
        return;
    };
    if let Some(mem) = gpu.memory.filter(|_| gpu.up) {
        r.lowest = r.lowest.min(mem.allocated);
    }
    // The window counts from the end of the run: a kill's grace can outlast several polls.
    if !slot.in_flight.load(Ordering::Acquire) {
        r.polls_left = r.polls_left.saturating_sub(1);
    }
    let reclaimed = r.at_dispatch.saturating_sub(r.lowest);
    slot.reclaimed.store(reclaimed, Ordering::Relaxed);
    shared.metrics.set_reclaimed(gpu, reclaimed);
    let processes = slot.processes.observe(gpu, r.polls_left == 0);
    if !processes.is_empty() {
        shared
            .board
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(gpu.identity.uuid.clone(), processes.clone());
    }
    if r.polls_left == 0 {
        let per_process = processes
            .iter()
            .map(|p| {
                let predicted = p.predicted.map_or("-".to_string(), |b| b.to_string());
                format!("{}:{predicted}:{}", p.pid, p.measured())
            })
            .collect::<Vec<_>>()
            .join(",");
        tracing::info!(
            gpu = gpu.identity.index,
            uuid = %gpu.identity.uuid,
            allocated_at_cleanup = r.at_dispatch,
            lowest_after = r.lowest,
            reclaimed_bytes = reclaimed,
            per_process = %per_process,
            polls = RECLAIM_POLLS,
            "cleanup reclaim measured"
        );
        slot.reclaim = None;
    }
}

/// One run: the configured actions, in order, for one GPU.
struct Run {
    shared: Arc<Shared>,
    snapshots: watch::Receiver<SharedPublished>,
    gpu: u32,
    uuid: String,
    reason: Reason,
    kill: bool,
    in_flight: Arc<AtomicBool>,
    reclaimed: Arc<AtomicU64>,
    processes: RunReclaims,
}

impl Run {
    async fn go(self) {
        let shared = &self.shared;
        let steps: Vec<(usize, &Action)> = shared
            .config
            .actions
            .iter()
            .enumerate()
            .filter(|(_, a)| self.kill || !matches!(a, Action::Kill(_)))
            .filter(|(_, a)| shared.may_run(a, self.reason))
            .collect();
        let last = steps.len().saturating_sub(1);
        for (n, (i, action)) in steps.into_iter().enumerate() {
            // Each action sees the newest snapshot: targets must be on the GPU *now*.
            let published = self.snapshots.borrow().clone();
            let snapshot = &published.snapshot;
            let Some(gpu) = snapshot
                .gpus
                .iter()
                .find(|g| g.identity.index == self.gpu && g.identity.uuid == self.uuid)
            else {
                break;
            };
            let outcome = if !gpu.up {
                Outcome::new(ActionResult::Skipped, vec![], "the GPU is not answering")
            } else {
                self.step(i, action, gpu, snapshot).await
            };
            if matches!(action, Action::Signal(_)) && outcome.result != ActionResult::DryRun {
                self.processes.signalled(gpu, &outcome.pids);
            }
            if n == last {
                self.in_flight.store(false, Ordering::Release);
            }
            shared.finish(gpu, action, self.reason, outcome, &self.reclaimed);
        }
        self.in_flight.store(false, Ordering::Release);
    }

    async fn step(&self, i: usize, action: &Action, gpu: &GpuView, snapshot: &Snapshot) -> Outcome {
        let s = &self.shared;
        let dry = s.config.dry_run;
        match action {
            Action::Signal(a) => actions::signal(a, gpu, snapshot.taken_at, s.own_pid, dry),
            Action::Kill(a) => {
                let trigger = self.reason.trigger();
                actions::kill(a, gpu, snapshot.taken_at, s.own_pid, dry, trigger).await
            }
            Action::Webhook(a) => {
                let body = Payload::new(&s.host, gpu, self.reason).to_json();
                let agent = s.agents[i]
                    .clone()
                    .unwrap_or_else(|| actions::webhook_agent(a));
                actions::webhook(a, agent, body, dry).await
            }
            Action::Exec(a) => {
                let payload = Payload::new(&s.host, gpu, self.reason);
                actions::exec(a, &payload, dry).await
            }
        }
    }
}

impl Shared {
    /// Whether `action` takes part in a run for `reason`: on a prediction, a kill or a
    /// terminating signal only with `cleanup.predict.allow_kill`.
    fn may_run(&self, action: &Action, reason: Reason) -> bool {
        reason != Reason::Predicted
            || !action.terminates()
            || self.config.predict.is_some_and(|p| p.allow_kill)
    }

    /// The actions a run for `reason` may include.
    fn runnable(&self, reason: Reason) -> impl Iterator<Item = &Action> {
        self.config
            .actions
            .iter()
            .filter(move |a| self.may_run(a, reason))
    }

    /// Counts, logs (the audit line) and reports one action's outcome.
    fn finish(
        &self,
        gpu: &GpuView,
        action: &Action,
        reason: Reason,
        outcome: Outcome,
        reclaimed: &AtomicU64,
    ) {
        let label = action.as_str();
        let trigger = reason.trigger().as_str();
        self.metrics
            .count(gpu, label, outcome.result, reason.trigger());
        let pids = outcome
            .pids
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(",");
        // The pods of those pids, in the same order: "namespace/pod", "-" outside Kubernetes.
        let pods = outcome
            .pids
            .iter()
            .map(|pid| {
                gpu.processes
                    .iter()
                    .find(|p| p.pid == *pid)
                    .and_then(|p| p.workload.as_deref())
                    .map_or_else(
                        || "-".to_string(),
                        |w| match w.pod.is_empty() {
                            true => format!("uid:{}", w.pod_uid),
                            false => format!("{}/{}", w.namespace, w.pod),
                        },
                    )
            })
            .collect::<Vec<_>>()
            .join(",");
        let reclaimed = reclaimed.load(Ordering::Relaxed);
        // What each signalled process's report predicted it would free ("pid:bytes", "pid:-"
        // without a report); measured per process when the reclaim window closes.
        let predicted = match action {
            Action::Signal(_) => reclaim::audit_pairs(outcome.pids.iter().map(|pid| {
                let p = gpu.processes.iter().find(|p| p.pid == *pid);
                (*pid, p.and_then(reclaim::predicted))
            })),
            _ => String::new(),
        };
        macro_rules! audit {
            ($level:ident) => {
                tracing::$level!(
                    action = label,
                    gpu = gpu.identity.index,
                    uuid = %gpu.identity.uuid,
                    reason = reason.as_str(),
                    trigger,
                    pids = %pids,
                    pods = %pods,
                    result = outcome.result.as_str(),
                    detail = %outcome.detail,
                    allocated_bytes = gpu.memory.map_or(0, |m| m.allocated),
                    reclaimed_bytes = reclaimed,
                    predicted_reclaim = %predicted,
                    leak_rate_bytes_per_second = gpu.leak_rate.round() as u64,
                    hard_limit_eta_seconds = gpu.hard_limit_eta.map(|e| (e * 10.0).round() / 10.0),
                    dry_run = self.config.dry_run,
                    "cleanup action"
                )
            };
        }
        match outcome.result {
            ActionResult::Failed => audit!(warn),
            _ => audit!(info),
        }
        if let Some(tx) = &self.observer {
            let _ = tx.send(Report {
                gpu: gpu.identity.index,
                uuid: gpu.identity.uuid.clone(),
                action: label,
                reason: reason.as_str(),
                trigger,
                outcome,
            });
        }
    }
}
