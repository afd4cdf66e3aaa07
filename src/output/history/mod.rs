//! History: what the GPUs and their largest processes did over the last hour, and a timeline of
//! events, kept in memory for the status page and `/api/v1/history`.
//!
//! It is an output like the HTTP handlers and cleanup: a tokio task ([`spawn`]) folds each
//! published snapshot (and each cleanup outcome the dispatcher reports) into fixed rings, off the
//! poller thread and off the scrape path. Readers take the lock only to copy what they asked for
//! ([`History::query`]) and render after releasing it.
//!
//! Memory is fixed by construction: per GPU at most [`series::BYTES_PER_GPU`] (under 48 KiB: the
//! last 10 minutes at 5 s, the last hour at 30 s, the 16 largest processes' last 10 minutes at
//! 10 s), and [`events::MAX_EVENTS`] events in all. GPUs that stop enumerating are dropped.

pub mod events;
pub mod handler;
pub mod json;
mod ring;
pub mod series;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, watch};

use crate::base::supervise::{supervise, Component, ComponentMetrics};
use crate::model::engine::{GpuView, Snapshot};
use crate::model::policy::Level;
use crate::output::cleanup::actions::ActionResult;
use crate::output::cleanup::Report;
use crate::output::publish::SharedPublished;
use events::{Event, Events, Kind};
use series::{GpuSeries, ProcessSeries, MAX_PROCESSES_PER_GPU};

/// Polls after a cleanup over which the memory it reclaimed is measured (as the dispatcher does).
const RECLAIM_POLLS: u32 = crate::output::cleanup::dispatch::RECLAIM_POLLS;

/// The shared history; cheap to clone through `Arc`.
#[derive(Debug, Default)]
pub struct History {
    store: Mutex<Store>,
}

#[derive(Debug, Default)]
struct Store {
    /// Unix seconds of the newest snapshot folded in.
    now: f64,
    gpus: Vec<GpuHistory>,
    events: Events,
}

#[derive(Debug)]
struct GpuHistory {
    index: u32,
    uuid: String,
    model: String,
    series: GpuSeries,
    /// The largest processes' series, largest first at the last fold.
    processes: Vec<ProcessSeries>,
    /// What the previous snapshot showed, to tell what changed.
    seen: Option<Seen>,
    /// The allocation at the newest snapshot in hard breach: what a cleanup started from, even
    /// when its outcome arrives after a snapshot that already shows the memory freed.
    hard_allocated: u64,
    /// Snapshots folded since that one; a breach older than a reclaim window is not what a
    /// cleanup answered (a run on a prediction starts below the hard limit).
    since_hard: u32,
    reclaim: Option<Reclaim>,
}

#[derive(Debug)]
struct Seen {
    up: bool,
    level: Level,
    leaking: bool,
    allocated: u64,
    /// Every process: pid, name, whether its floor grows.
    processes: Vec<(u32, String, bool)>,
}

/// A cleanup whose reclaimed memory is being measured.
#[derive(Debug, Clone, Copy)]
struct Reclaim {
    event: u64,
    at: u64,
    lowest: u64,
    polls_left: u32,
}

impl History {
    pub fn new() -> Self {
        History {
            store: Mutex::new(Store {
                events: Events::new(),
                ..Store::default()
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Store> {
        // A panic while folding leaves consistent rings (every write is one assignment).
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Folds one snapshot in, with series for at most `max_processes` processes per GPU.
    pub fn fold(&self, s: &Snapshot, max_processes: usize) {
        let Some(t) = s.taken_at.and_then(unix_seconds) else {
            return;
        };
        let max_processes = max_processes.min(MAX_PROCESSES_PER_GPU);
        let mut store = self.lock();
        let store = &mut *store;
        store.now = t;
        store.gpus.retain(|h| {
            s.gpus
                .iter()
                .any(|g| g.identity.index == h.index && g.identity.uuid == h.uuid)
        });
        for g in &s.gpus {
            let pos = store
                .gpus
                .iter()
                .position(|h| h.index == g.identity.index && h.uuid == g.identity.uuid);
            let h = match pos {
                Some(i) => &mut store.gpus[i],
                None => {
                    store.gpus.push(GpuHistory::new(g));
                    store.gpus.sort_by_key(|h| h.index);
                    let i = store.gpus.iter().position(|h| h.index == g.identity.index);
                    &mut store.gpus[i.unwrap_or(0)]
                }
            };
            h.fold(t, g, max_processes, &mut store.events);
        }
    }

    /// Records a cleanup action's outcome (from the dispatcher) at `t` (unix seconds).
    pub fn record_cleanup(&self, r: &Report, t: f64) {
        let mut store = self.lock();
        let store = &mut *store;
        let Some(h) = store
            .gpus
            .iter_mut()
            .find(|h| h.index == r.gpu && h.uuid == r.uuid)
        else {
            return;
        };
        let now = h.seen.as_ref().map_or(0, |s| s.allocated);
        let at = match h.since_hard <= RECLAIM_POLLS {
            true => h.hard_allocated.max(now),
            false => now,
        };
        let touched = r.outcome.result == ActionResult::Ok;
        let id = store.events.push(Event {
            t,
            gpu: r.gpu,
            kind: Kind::Cleanup,
            pid: None,
            bytes: at,
            trigger: r.trigger,
            action: r.action,
            result: r.outcome.result.as_str(),
            detail: r.outcome.detail.clone(),
            reclaimed: touched.then_some(0),
            ..Event::default()
        });
        if touched {
            h.reclaim = Some(Reclaim {
                event: id,
                at,
                lowest: now,
                polls_left: RECLAIM_POLLS,
            });
            if let Some(e) = store.events.get_mut(id) {
                e.reclaimed = Some(at - now);
            }
        }
    }

    /// Copies out what `q` asks for; the caller renders it after the lock is released.
    pub fn query(&self, q: &json::Query) -> json::HistoryResponse {
        json::HistoryResponse::copy(&self.lock(), q)
    }
}

impl Store {
    /// What the history holds now, in bytes: its rings (allocated whole when made), the names
    /// and previous-poll state it keeps, and the event ring with its strings.
    fn held_bytes(&self) -> usize {
        use std::mem::size_of;
        let gpus: usize = self
            .gpus
            .iter()
            .map(|h| {
                size_of::<GpuHistory>()
                    + series::GpuSeries::RING_BYTES
                    + h.uuid.capacity()
                    + h.model.capacity()
                    + h.processes
                        .iter()
                        .map(|p| {
                            size_of::<ProcessSeries>()
                                + ProcessSeries::RING_BYTES
                                + p.name.capacity()
                        })
                        .sum::<usize>()
                    + h.seen.as_ref().map_or(0, |s| {
                        size_of::<Seen>()
                            + s.processes
                                .iter()
                                .map(|(_, n, _)| size_of::<(u32, String, bool)>() + n.capacity())
                                .sum::<usize>()
                    })
            })
            .sum();
        gpus + self.events.held_bytes()
    }
}

impl GpuHistory {
    fn new(g: &GpuView) -> Self {
        GpuHistory {
            index: g.identity.index,
            uuid: g.identity.uuid.clone(),
            model: g.identity.model.clone(),
            series: GpuSeries::default(),
            processes: Vec::new(),
            seen: None,
            hard_allocated: 0,
            since_hard: u32::MAX,
            reclaim: None,
        }
    }

    fn fold(&mut self, t: f64, g: &GpuView, max_processes: usize, events: &mut Events) {
        if self.model.is_empty() {
            self.model = g.identity.model.clone();
        }
        self.series.record(t as u64, g);
        let allocated = g.memory.filter(|_| g.up).map_or(0, |m| m.allocated);
        if g.up && g.level == Level::Hard {
            self.hard_allocated = allocated;
            self.since_hard = 0;
        } else {
            self.since_hard = self.since_hard.saturating_add(1);
        }
        let now = Seen {
            up: g.up,
            level: g.level,
            leaking: g.leak_rate > 0.0,
            allocated,
            processes: g
                .processes
                .iter()
                .map(|p| (p.pid, p.name.clone(), p.leak_rate > 0.0))
                .collect(),
        };
        let event = |kind: Kind| Event {
            t,
            gpu: g.identity.index,
            kind,
            bytes: allocated,
            rate: g.leak_rate,
            ..Event::default()
        };
        // The first snapshot of a GPU is its starting state, not a change.
        if let Some(before) = &self.seen {
            if before.up != now.up {
                events.push(event(if now.up { Kind::GpuBack } else { Kind::GpuLost }));
            }
            // Episodes nest: soft starts before hard and ends after it.
            let crossed = |floor: Level| (before.level >= floor, now.level >= floor);
            for (floor, kind) in [
                (Level::Soft, Kind::SoftStarted),
                (Level::Hard, Kind::HardStarted),
            ] {
                if crossed(floor) == (false, true) {
                    events.push(event(kind));
                }
            }
            for (floor, kind) in [
                (Level::Hard, Kind::HardEnded),
                (Level::Soft, Kind::SoftEnded),
            ] {
                if crossed(floor) == (true, false) {
                    events.push(event(kind));
                }
            }
            if before.leaking != now.leaking && now.up {
                let kind = if now.leaking {
                    Kind::LeakStarted
                } else {
                    Kind::LeakEnded
                };
                events.push(event(kind));
            }
            process_events(t, g, before, &now, events);
        } else if now.level >= Level::Soft {
            // Already in breach at start: the episode is shown as starting now.
            events.push(event(Kind::SoftStarted));
            if now.level == Level::Hard {
                events.push(event(Kind::HardStarted));
            }
        }
        if let Some(r) = &mut self.reclaim {
            if g.up {
                r.lowest = r.lowest.min(allocated);
            }
            r.polls_left = r.polls_left.saturating_sub(1);
            let reclaimed = r.at.saturating_sub(r.lowest);
            if let Some(e) = events.get_mut(r.event) {
                e.reclaimed = Some(reclaimed);
            }
            if r.polls_left == 0 {
                self.reclaim = None;
            }
        }
        // Series for the largest processes only; a process that leaves them loses its series.
        let top = &g.processes[..g.processes.len().min(max_processes)];
        let mut kept = Vec::with_capacity(top.len());
        for p in top {
            let mut s = match self.processes.iter().position(|s| s.is(p)) {
                Some(i) => self.processes.swap_remove(i),
                None => ProcessSeries::new(p),
            };
            s.record(t as u64, p);
            kept.push(s);
        }
        self.processes = kept;
        if g.up || self.seen.is_none() {
            self.seen = Some(now);
        } else if let Some(seen) = &mut self.seen {
            // A lost GPU keeps its last known processes: they did not exit.
            seen.up = false;
        }
    }
}

/// Arrivals, exits and per-process leaks between `before` and `now` (a lost GPU's processes
/// are neither).
fn process_events(t: f64, g: &GpuView, before: &Seen, now: &Seen, events: &mut Events) {
    if !now.up {
        return;
    }
    let event = |kind: Kind, pid: u32, name: &str, bytes: u64, rate: f64| Event {
        t,
        gpu: g.identity.index,
        kind,
        pid: Some(pid),
        name: name.to_string(),
        bytes,
        rate,
        ..Event::default()
    };
    for (pid, name, _) in &before.processes {
        if !now.processes.iter().any(|(p, n, _)| p == pid && n == name) {
            events.push(event(Kind::ProcessExited, *pid, name, 0, 0.0));
        }
    }
    for p in &g.processes {
        let old = before
            .processes
            .iter()
            .find(|(pid, name, _)| *pid == p.pid && *name == p.name);
        let leaking = p.leak_rate > 0.0;
        match old {
            None => {
                events.push(event(
                    Kind::ProcessArrived,
                    p.pid,
                    &p.name,
                    p.allocated,
                    0.0,
                ));
            }
            Some((_, _, was)) if *was != leaking => {
                let kind = if leaking {
                    Kind::LeakStarted
                } else {
                    Kind::LeakEnded
                };
                events.push(event(kind, p.pid, &p.name, p.allocated, p.leak_rate));
            }
            Some(_) => {}
        }
    }
}

fn unix_seconds(t: SystemTime) -> Option<f64> {
    t.duration_since(UNIX_EPOCH).ok().map(|d| d.as_secs_f64())
}

/// What the history task reads: kept across its restarts, so that a restarted task neither
/// loses the cleanup reports' channel nor folds a snapshot twice.
struct Inputs {
    snapshots: watch::Receiver<SharedPublished>,
    /// None once cleanup is off (or stopped).
    reports: Option<mpsc::UnboundedReceiver<Report>>,
}

impl Inputs {
    fn shared(
        snapshots: watch::Receiver<SharedPublished>,
        reports: mpsc::UnboundedReceiver<Report>,
    ) -> Arc<tokio::sync::Mutex<Inputs>> {
        Arc::new(tokio::sync::Mutex::new(Inputs {
            snapshots,
            reports: Some(reports),
        }))
    }
}

/// Starts the task that folds every published snapshot and every cleanup report into `history`,
/// supervised: after a panic it starts again with the same inputs and what `history` held.
pub fn spawn(
    history: Arc<History>,
    mut snapshots: watch::Receiver<SharedPublished>,
    reports: mpsc::UnboundedReceiver<Report>,
    components: &ComponentMetrics,
) -> tokio::task::JoinHandle<()> {
    snapshots.mark_changed();
    let inputs = Inputs::shared(snapshots, reports);
    supervise(Component::History, components, move || {
        tokio::spawn(run(history.clone(), inputs.clone()))
    })
}

/// Folds until aborted; holds the inputs while it runs.
async fn run(history: Arc<History>, inputs: Arc<tokio::sync::Mutex<Inputs>>) {
    let mut inputs = inputs.lock().await;
    let Inputs { snapshots, reports } = &mut *inputs;
    loop {
        let report = async {
            match reports.as_mut() {
                Some(r) => r.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            changed = snapshots.changed() => {
                if changed.is_err() {
                    // The poller is gone (shutting down, or dead, which health reports):
                    // nothing more will come, and restarting cannot change that.
                    return std::future::pending().await;
                }
                let p = snapshots.borrow_and_update().clone();
                history.fold(&p.snapshot, p.max_processes_per_gpu);
            }
            r = report => match r {
                Some(r) => {
                    // The dispatcher acted on a snapshot this task may not have folded yet:
                    // fold it first, so the breach precedes its cleanup on the timeline.
                    if snapshots.has_changed().unwrap_or(false) {
                        let p = snapshots.borrow_and_update().clone();
                        history.fold(&p.snapshot, p.max_processes_per_gpu);
                    }
                    let t = unix_seconds(SystemTime::now()).unwrap_or(0.0);
                    history.record_cleanup(&r, t);
                }
                // Cleanup is off (or stopped): only snapshots from now on.
                None => *reports = None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::publish::Published;
    use std::time::Duration;

    fn published(at_secs: u64) -> SharedPublished {
        let snapshot = Snapshot {
            taken_at: Some(UNIX_EPOCH + Duration::from_secs(at_secs)),
            ..Snapshot::initial()
        };
        Arc::new(Published::new(snapshot, 4))
    }

    /// Waits (bounded) until the history's newest fold is at `t`.
    async fn folded(history: &History, t: f64) -> bool {
        for _ in 0..200 {
            if history.lock().now == t {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }

    #[test]
    fn a_restarted_task_keeps_its_inputs_and_what_the_history_held() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let history = Arc::new(History::new());
            let (snapshots_tx, snapshots) = watch::channel(published(1_000));
            let (reports_tx, reports) = mpsc::unbounded_channel();
            let mut snapshots = snapshots;
            snapshots.mark_changed();
            let inputs = Inputs::shared(snapshots, reports);
            let first = tokio::spawn(run(history.clone(), inputs.clone()));
            assert!(folded(&history, 1_000.0).await);
            // The task ends (as after a panic): the reports' channel stays open.
            first.abort();
            assert!(first.await.unwrap_err().is_cancelled());
            assert!(!reports_tx.is_closed(), "the reports' receiver is kept");
            snapshots_tx.send_replace(published(2_000));
            let second = tokio::spawn(run(history.clone(), inputs.clone()));
            assert!(folded(&history, 2_000.0).await, "the restarted task folds");
            assert!(
                inputs.try_lock().is_err(),
                "it holds the inputs while it runs"
            );
            second.abort();
        });
    }
}
