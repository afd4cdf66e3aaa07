//! The engine and its snapshot: folds each poll's samples through the policy and drift trackers
//! into an immutable [`Snapshot`].
//!
//! The [`Engine`] is owned by the poller thread and is the only writer of policy and drift state.
//! Each poll produces a new [`Snapshot`] that the poller publishes (see `publish`) to readers — HTTP
//! handlers and cleanup — who never see a half-updated state. The engine renders nothing: the
//! exposition and the JSON API are built from the snapshot downstream.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use crate::model::drift::{self, DriftGeometry, FloorTracker, Leak, LeakConfig};
use crate::model::policy::limits::LimitsConfig;
use crate::model::policy::predict::{self, PredictRule, PredictState, Trigger};
use crate::model::policy::{self, Level, Limits, PolicyState};
use crate::source::sample::{
    Allocations, DeviceIdentity, DeviceSample, Memory, MigSample, PollSample, ProcessAllocator,
    ProcessList, Workload,
};

/// What the exporter knows after one poll; cheap to share (`Arc`), never mutated.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// When the poll ran; None before the first poll.
    pub taken_at: Option<SystemTime>,
    pub nvml_up: bool,
    /// True once a poll with NVML up has completed; it stays true afterwards, so a later NVML
    /// failure is reported by `vram_nvml_up 0` rather than by vanishing from service discovery.
    pub ready: bool,
    pub driver_version: String,
    pub gpus: Vec<GpuView>,
}

impl Snapshot {
    /// The state before the first poll: not ready, NVML not (yet) up.
    pub fn initial() -> Self {
        Snapshot {
            taken_at: None,
            nvml_up: false,
            ready: false,
            driver_version: String::new(),
            gpus: Vec::new(),
        }
    }
}

/// One GPU as published.
#[derive(Debug, Clone)]
pub struct GpuView {
    pub identity: DeviceIdentity,
    pub up: bool,
    pub memory: Option<Memory>,
    pub limits: Option<Limits>,
    pub level: Level,
    pub soft_violations: u64,
    pub hard_violations: u64,
    /// Memory the GPU's leak has taken so far (0 when nothing leaks): its processes' drift plus
    /// that of the memory no listed process accounts for (see [`forecast`]).
    pub leak_drift_bytes: u64,
    /// The GPU's leak rate, bytes per second (0 when nothing leaks): its processes' rates plus
    /// the floor rate of the memory no listed process accounts for (see [`forecast`]).
    pub leak_rate: f64,
    /// Seconds until allocation reaches the hard limit at `leak_rate`: 0 at or above it, None
    /// when nothing grows or the limits are unknown.
    pub hard_limit_eta: Option<f64>,
    /// The predicted-breach rule (`[cleanup.predict]`) fires: the ETA has stayed under its
    /// threshold for its hold time. Always false without the rule.
    pub predicted: bool,
    /// Every process on the GPU, largest first.
    pub processes: Vec<ProcessView>,
    /// MIG instances, when the GPU is up and in MIG mode.
    pub migs: Vec<MigSample>,
    /// The containers the device plugin allocated this GPU (or its MIG devices) to (capped, with
    /// the count of those left out).
    pub allocations: Allocations,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProcessView {
    pub pid: u32,
    pub name: String,
    pub allocated: u64,
    pub leak_drift_bytes: u64,
    /// Bytes per second; 0 when the process's floor is not growing.
    pub leak_rate: f64,
    /// The Kubernetes pod and container of the process; None outside Kubernetes.
    pub workload: Option<Arc<Workload>>,
    /// The process's own allocator report for this GPU (`clients`); None without a fresh one.
    pub allocator: Option<Arc<ProcessAllocator>>,
}

/// What the engine keeps of a process between polls: its drift tracker, its last allocation and
/// workload (republished while the process query fails).
struct ProcessState {
    tracker: FloorTracker,
    allocated: u64,
    workload: Option<Arc<Workload>>,
}

impl GpuView {
    /// What puts the GPU in breach now, if anything: hard above the hard limit, predicted when
    /// the prediction fires.
    pub fn trigger(&self) -> Option<Trigger> {
        if !self.up {
            None
        } else if self.level == Level::Hard {
            Some(Trigger::Hard)
        } else if self.predicted {
            Some(Trigger::Predicted)
        } else {
            None
        }
    }
}

/// Identity of a process for drift: a reused pid with another start (clock ticks since boot) or
/// another name starts fresh.
type ProcessKey = (u32, u64, String);

struct DeviceState {
    policy: PolicyState,
    /// (total the limits were resolved for, the limits).
    limits: Option<(u64, Limits)>,
    /// The floor of the memory no listed process accounts for, while processes are listed.
    unaccounted: FloorTracker,
    /// The floor of the whole allocation: the forecast while the GPU lists no processes (it is
    /// always kept, so a list that disappears does not restart the forecast from nothing).
    total: FloorTracker,
    predict: PredictState,
    /// Each process seen at the last good process query.
    processes: HashMap<ProcessKey, ProcessState>,
    /// Consecutive polls whose process query failed and which republished the last good list.
    held_polls: u32,
}

/// How many consecutive failed process queries republish the last good process list (with its
/// drift state) before the GPU's processes are dropped: a transient NVML error must not reset
/// every process's leak drift or make its series flap, a lasting one must not freeze them.
pub const MAX_HELD_PROCESS_POLLS: u32 = 10;

/// Folds polls into snapshots. Owned by one thread.
pub struct Engine {
    limits: LimitsConfig,
    geometry: DriftGeometry,
    prediction: Option<PredictRule>,
    devices: HashMap<(u32, String), DeviceState>,
    ready: bool,
}

impl Engine {
    pub fn new(limits: LimitsConfig, leak: LeakConfig) -> Self {
        Engine {
            limits,
            geometry: DriftGeometry::new(leak.window, leak.floor_window),
            prediction: None,
            devices: HashMap::new(),
            ready: false,
        }
    }

    /// Publishes the predicted-breach state of each GPU under `rule` (None: never predicted).
    pub fn with_prediction(mut self, rule: Option<PredictRule>) -> Self {
        self.prediction = rule;
        self
    }

    /// Applies one poll and returns the snapshot to publish.
    pub fn apply(&mut self, sample: &PollSample) -> Snapshot {
        self.ready |= sample.nvml_up;
        let gpus = sample
            .devices
            .iter()
            .map(|dev| self.apply_device(dev, sample.monotonic_ms))
            .collect();
        // Devices that no longer enumerate are forgotten; lost ones stay (they are in the sample).
        self.devices.retain(|(index, uuid), _| {
            sample
                .devices
                .iter()
                .any(|d| d.identity.index == *index && &d.identity.uuid == uuid)
        });
        Snapshot {
            taken_at: Some(sample.taken_at),
            nvml_up: sample.nvml_up,
            ready: self.ready,
            driver_version: sample.driver_version.clone(),
            gpus,
        }
    }

    fn apply_device(&mut self, dev: &DeviceSample, now_ms: u64) -> GpuView {
        let geometry = &self.geometry;
        let key = (dev.identity.index, dev.identity.uuid.clone());
        let state = self.devices.entry(key).or_insert_with(|| DeviceState {
            policy: PolicyState::default(),
            limits: None,
            unaccounted: FloorTracker::new(geometry),
            total: FloorTracker::new(geometry),
            predict: PredictState::default(),
            processes: HashMap::new(),
            held_polls: 0,
        });
        let mut view = GpuView {
            identity: dev.identity.clone(),
            up: dev.up,
            memory: dev.memory,
            limits: state.limits.map(|(_, l)| l),
            level: Level::Ok,
            soft_violations: state.policy.soft_violations,
            hard_violations: state.policy.hard_violations,
            leak_drift_bytes: 0,
            leak_rate: 0.0,
            hard_limit_eta: None,
            predicted: false,
            processes: Vec::new(),
            migs: if dev.up { dev.migs.clone() } else { Vec::new() },
            allocations: dev.allocations.clone(),
        };
        if !dev.up {
            state.predict = PredictState::default();
            return view;
        }
        let listed;
        (view.processes, listed) = state.processes(dev, geometry, now_ms);
        let Some(mem) = dev.memory else {
            return view;
        };
        let limits = match state.limits {
            Some((total, l)) if total == mem.total => l,
            _ => {
                let l = resolve_for(&self.limits, &dev.identity, mem.total);
                state.limits = Some((mem.total, l));
                l
            }
        };
        let verdict = policy::evaluate(mem.allocated, &state.policy, &limits);
        state.policy = verdict.state;
        view.limits = Some(limits);
        view.level = verdict.level;
        view.soft_violations = verdict.state.soft_violations;
        view.hard_violations = verdict.state.hard_violations;
        // The memory the listed processes account for follows their own leaks; the rest follows
        // the floor rule, and all of it when the GPU lists no processes.
        state.total.observe(geometry, now_ms, mem.allocated);
        let leak = if listed {
            let accounted: u64 = view.processes.iter().map(|p| p.allocated).sum();
            let unaccounted = mem.allocated.saturating_sub(accounted);
            state.unaccounted.observe(geometry, now_ms, unaccounted);
            forecast(
                view.processes.iter().map(|p| Leak {
                    rate: p.leak_rate,
                    drift: p.leak_drift_bytes,
                }),
                state.unaccounted.leak(),
            )
        } else {
            state.total.leak()
        };
        view.leak_drift_bytes = leak.drift;
        view.leak_rate = leak.rate;
        view.hard_limit_eta = drift::seconds_until(mem.allocated, limits.hard, leak.rate);
        if let Some(rule) = &self.prediction {
            let (next, fired) =
                predict::evaluate(state.predict, rule, view.level, view.hard_limit_eta, now_ms);
            state.predict = next;
            view.predicted = fired;
        }
        view
    }
}

/// The GPU's leak from what is known, where its processes are listed: the sum of their leaks and
/// the leak of the memory no listed process accounts for (the driver's own, processes NVML does
/// not list or reports no memory for, MIG instances without process lists). Memory is additive,
/// so a sum of floors that each grow at their own rate grows at the sum of the rates; a job
/// arriving adds its (non-growing) floor and a job leaving removes it, and neither changes the
/// sum of the rates.
pub fn forecast(processes: impl Iterator<Item = Leak>, unaccounted: Leak) -> Leak {
    processes.fold(unaccounted, |acc, p| Leak {
        rate: acc.rate + p.rate,
        drift: acc.drift.saturating_add(p.drift),
    })
}

impl DeviceState {
    /// This poll's processes (largest first), with their drift trackers brought up to date; a
    /// failed query republishes the last good list for a while, untouched. The flag says whether
    /// there is a list (listed or held), as opposed to none (not supported, a lasting failure).
    fn processes(
        &mut self,
        dev: &DeviceSample,
        geometry: &DriftGeometry,
        now_ms: u64,
    ) -> (Vec<ProcessView>, bool) {
        let listed = match &dev.processes {
            ProcessList::Failed if self.held_polls < MAX_HELD_PROCESS_POLLS => {
                // A failed process query (not NOT_SUPPORTED, which is no error): republish the
                // last good list and keep its drift state untouched.
                self.held_polls += 1;
                let mut held: Vec<ProcessView> = self
                    .processes
                    .iter()
                    .map(|((pid, _, name), p)| ProcessView {
                        pid: *pid,
                        name: name.clone(),
                        allocated: p.allocated,
                        leak_drift_bytes: p.tracker.leak().drift,
                        leak_rate: p.tracker.leak().rate,
                        workload: p.workload.clone(),
                        // A held list republishes no allocator report: it may be stale.
                        allocator: None,
                    })
                    .collect();
                held.sort_by(|a, b| b.allocated.cmp(&a.allocated).then(a.pid.cmp(&b.pid)));
                return (held, true);
            }
            // A lasting failure publishes no processes and drops their trackers.
            other => other.listed(),
        };
        self.held_polls = 0;
        let mut live: HashMap<ProcessKey, ProcessState> = HashMap::with_capacity(listed.len());
        let mut views = Vec::with_capacity(listed.len());
        for p in listed {
            let key = (p.pid, p.start_ticks, p.name.clone());
            let mut tracker = self
                .processes
                .remove(&key)
                .map(|p| p.tracker)
                .unwrap_or_else(|| FloorTracker::new(geometry));
            tracker.observe(geometry, now_ms, p.allocated);
            views.push(ProcessView {
                pid: p.pid,
                name: p.name.clone(),
                allocated: p.allocated,
                leak_drift_bytes: tracker.leak().drift,
                leak_rate: tracker.leak().rate,
                workload: p.workload.clone(),
                allocator: p.allocator.clone(),
            });
            live.insert(
                key,
                ProcessState {
                    tracker,
                    allocated: p.allocated,
                    workload: p.workload.clone(),
                },
            );
        }
        // Trackers of processes that vanished are dropped here.
        self.processes = live;
        (views, matches!(dev.processes, ProcessList::Listed(_)))
    }
}

/// The device's limits in bytes; a set that had to be adjusted to fit the device is logged.
fn resolve_for(config: &LimitsConfig, identity: &DeviceIdentity, total: u64) -> Limits {
    let set = config.for_device(identity.index, &identity.uuid, &identity.model);
    let (limits, adjustments) = set.resolve(total);
    if adjustments.any() {
        tracing::warn!(
            gpu = identity.index,
            uuid = %identity.uuid,
            total,
            soft = limits.soft,
            hard = limits.hard,
            soft_clamped = adjustments.soft_clamped,
            hard_clamped = adjustments.hard_clamped,
            soft_lowered = adjustments.soft_lowered,
            "limits adjusted to fit the device: a limit above total is clamped to total, soft is kept below hard"
        );
    }
    limits
}
