//! Supervision of the long-lived components, so that the exporter never goes blind while it says
//! it is fine (docs/runbook.md, "Health and supervision").
//!
//! - The async components (cleanup dispatcher, pod-resources and container-runtime clients,
//!   clients-socket accept loop, history, web-configuration watcher) run under [`supervise`]: a task that ends or panics is logged, counted in
//!   `vram_exporter_component_restarts_total{component}` and started again after a backoff
//!   (1 s doubling to 30 s, back to 1 s after a minute of running). `vram_exporter_component_up`
//!   is 0 while it waits to restart.
//! - The poller thread owns NVML and the engine's state, so it is not restarted: it beats a
//!   [`Heartbeat`], and `/-/healthy` fails (503) when the thread died or when it has made no
//!   progress for [`Heartbeat::stall_bound`] while *outside* NVML. A slow or hung NVML call is not
//!   a stall: scrapes keep answering with the last snapshot, marked stale by
//!   `vram_exporter_last_poll_timestamp_seconds`, and health stays 200.
//! - The server is the process's main task: if it ends, the process exits (non-zero on an error)
//!   and the service manager restarts it.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};

/// A supervised component: the `component` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Component {
    Poller,
    Cleanup,
    PodResources,
    Runtime,
    Clients,
    History,
    WebReload,
}

impl Component {
    /// The components that are restarted (their restart counters start at 0).
    pub const RESTARTED: [Component; 6] = [
        Component::Cleanup,
        Component::PodResources,
        Component::Runtime,
        Component::Clients,
        Component::History,
        Component::WebReload,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Component::Poller => "poller",
            Component::Cleanup => "cleanup",
            Component::PodResources => "pod_resources",
            Component::Runtime => "runtime",
            Component::Clients => "clients",
            Component::History => "history",
            Component::WebReload => "web_reload",
        }
    }
}

/// The two supervision families, in the self-metrics registry.
#[derive(Clone)]
pub struct ComponentMetrics {
    pub up: IntGaugeVec,
    pub restarts: IntCounterVec,
}

impl ComponentMetrics {
    pub fn new(registry: &Registry) -> prometheus::Result<ComponentMetrics> {
        let up = IntGaugeVec::new(
            Opts::new(
                "vram_exporter_component_up",
                "1 while a long-lived component of the exporter runs, 0 when it died, stalled or waits to be restarted.",
            ),
            &["component"],
        )?;
        let restarts = IntCounterVec::new(
            Opts::new(
                "vram_exporter_component_restarts_total",
                "Times a component of the exporter ended unexpectedly (a panic) and was started again.",
            ),
            &["component"],
        )?;
        registry.register(Box::new(up.clone()))?;
        registry.register(Box::new(restarts.clone()))?;
        for c in Component::RESTARTED {
            restarts.with_label_values(&[c.as_str()]);
        }
        Ok(ComponentMetrics { up, restarts })
    }
}

/// Aborts the task it holds when dropped (the supervisor's own abort reaches the component).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Running this long resets the backoff.
const HEALTHY_RUN: Duration = Duration::from_secs(60);

/// Runs the task `start` makes and starts it again whenever it ends or panics; aborting the
/// returned handle stops both. Must be called on a tokio runtime.
pub fn supervise(
    component: Component,
    metrics: &ComponentMetrics,
    mut start: impl FnMut() -> tokio::task::JoinHandle<()> + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    let up = metrics.up.with_label_values(&[component.as_str()]);
    let restarts = metrics.restarts.with_label_values(&[component.as_str()]);
    tokio::spawn(async move {
        let mut backoff = FIRST_BACKOFF;
        loop {
            let started = Instant::now();
            let mut task = AbortOnDrop(start());
            up.set(1);
            let ended = (&mut task.0).await;
            up.set(0);
            match ended {
                Ok(()) => tracing::error!(
                    component = component.as_str(),
                    "component ended unexpectedly; restarting it"
                ),
                Err(e) if e.is_panic() => tracing::error!(
                    component = component.as_str(),
                    "component panicked; restarting it"
                ),
                // Aborted from outside: shutting down.
                Err(_) => return,
            }
            restarts.inc();
            if started.elapsed() >= HEALTHY_RUN {
                backoff = FIRST_BACKOFF;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    })
}

/// What the poller thread is doing, as last reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    /// Between NVML calls: attribution, the engine, rendering, publishing.
    Working = 0,
    /// In an NVML call: may take as long as the driver takes, never a stall.
    Nvml = 1,
    /// Waiting for the next tick.
    Waiting = 2,
    /// The thread ended by request.
    Stopped = 3,
    /// The thread ended without a request (a panic).
    Died = 4,
}

/// The poller thread's liveness: its phase and when it last changed.
#[derive(Debug)]
pub struct Heartbeat {
    epoch: Instant,
    /// Milliseconds since `epoch` at the last beat.
    at_ms: AtomicU64,
    phase: AtomicU8,
    stall_bound: Duration,
}

/// Why health fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unhealthy {
    Died,
    Stalled { phase: &'static str, for_secs: u64 },
}

impl std::fmt::Display for Unhealthy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unhealthy::Died => write!(f, "the poller thread died"),
            Unhealthy::Stalled { phase, for_secs } => write!(
                f,
                "the poller made no progress for {for_secs}s while {phase}"
            ),
        }
    }
}

impl Heartbeat {
    /// A heartbeat for a poller ticking every `interval`: it stalls after twice the interval
    /// plus 30 s without progress outside NVML.
    pub fn new(interval: Duration) -> Arc<Heartbeat> {
        Arc::new(Heartbeat {
            epoch: Instant::now(),
            at_ms: AtomicU64::new(0),
            phase: AtomicU8::new(Phase::Working as u8),
            stall_bound: interval * 2 + Duration::from_secs(30),
        })
    }

    /// How long the thread may go without progress outside NVML.
    pub fn stall_bound(&self) -> Duration {
        self.stall_bound
    }

    /// Reports a new phase (and progress).
    pub fn beat(&self, phase: Phase) {
        let ms = self.epoch.elapsed().as_millis() as u64;
        self.at_ms.store(ms, Ordering::Release);
        self.phase.store(phase as u8, Ordering::Release);
    }

    fn phase(&self) -> Phase {
        match self.phase.load(Ordering::Acquire) {
            0 => Phase::Working,
            1 => Phase::Nvml,
            2 => Phase::Waiting,
            3 => Phase::Stopped,
            _ => Phase::Died,
        }
    }

    /// Whether the poller is alive and making progress (or inside NVML, however long).
    pub fn check(&self) -> Result<(), Unhealthy> {
        self.check_at(self.epoch.elapsed())
    }

    fn check_at(&self, now: Duration) -> Result<(), Unhealthy> {
        let since = now.saturating_sub(Duration::from_millis(self.at_ms.load(Ordering::Acquire)));
        let phase = match self.phase() {
            Phase::Nvml | Phase::Stopped => return Ok(()),
            Phase::Died => return Err(Unhealthy::Died),
            Phase::Working => "working",
            Phase::Waiting => "waiting for its next tick",
        };
        if since > self.stall_bound {
            return Err(Unhealthy::Stalled {
                phase,
                for_secs: since.as_secs(),
            });
        }
        Ok(())
    }
}

/// Held by the poller thread: marks the heartbeat `Died` when the thread unwinds without having
/// been told to stop.
pub struct DiesWith(pub Arc<Heartbeat>);

impl Drop for DiesWith {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.beat(Phase::Died);
            tracing::error!("the poller thread died; /-/healthy now fails");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nvml_is_never_a_stall_but_everything_else_is_bounded() {
        let h = Heartbeat::new(Duration::from_secs(1));
        let bound = h.stall_bound();
        h.beat(Phase::Nvml);
        assert_eq!(h.check_at(Duration::from_secs(3600)), Ok(()));
        h.beat(Phase::Working);
        let at = h.epoch.elapsed();
        assert_eq!(h.check_at(at + bound / 2), Ok(()));
        assert!(matches!(
            h.check_at(at + bound * 2),
            Err(Unhealthy::Stalled { .. })
        ));
        h.beat(Phase::Waiting);
        assert!(h.check_at(h.epoch.elapsed() + bound * 2).is_err());
        h.beat(Phase::Stopped);
        assert_eq!(h.check_at(h.epoch.elapsed() + bound * 2), Ok(()));
    }

    #[test]
    fn a_panicking_thread_marks_itself_dead() {
        let h = Heartbeat::new(Duration::from_secs(1));
        let guard = DiesWith(h.clone());
        let t = std::thread::spawn(move || {
            let _guard = guard;
            panic!("boom");
        });
        assert!(t.join().is_err());
        assert_eq!(h.check(), Err(Unhealthy::Died));
    }

    #[test]
    fn every_restarted_component_has_its_own_counter_at_zero() {
        let registry = Registry::new();
        let _metrics = ComponentMetrics::new(&registry).unwrap();
        let mut labels: Vec<&str> = Component::RESTARTED.iter().map(|c| c.as_str()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), Component::RESTARTED.len(), "distinct labels");
        assert!(
            !labels.contains(&Component::Poller.as_str()),
            "the poller is not restarted"
        );
        let text = prometheus::TextEncoder::new()
            .encode_to_string(&registry.gather())
            .unwrap();
        let mut exposed: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("vram_exporter_component_restarts_total{component=\""))
            .filter_map(|l| l.strip_suffix("\"} 0"))
            .collect();
        exposed.sort_unstable();
        assert_eq!(exposed, labels, "each at 0 before any restart");
    }

    fn counted_runs(metrics: &ComponentMetrics) -> u64 {
        metrics.restarts.with_label_values(&["cleanup"]).get()
    }

    #[test]
    fn a_panicking_task_is_restarted_and_counted() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let registry = Registry::new();
        let metrics = ComponentMetrics::new(&registry).unwrap();
        let runs = Arc::new(AtomicU64::new(0));
        let counted = runs.clone();
        rt.block_on(async move {
            let sup = supervise(Component::Cleanup, &metrics, move || {
                let n = counted.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    if n < 2 {
                        panic!("component failure {n}");
                    }
                    std::future::pending::<()>().await
                })
            });
            // Two backoffs (1 s, 2 s), then the third run stays up; bounded at 60 s.
            for _ in 0..1200 {
                let up = metrics.up.with_label_values(&["cleanup"]).get();
                if counted_runs(&metrics) == 2 && up == 1 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let restarts = metrics.restarts.with_label_values(&["cleanup"]).get();
            let up = metrics.up.with_label_values(&["cleanup"]).get();
            sup.abort();
            assert_eq!((restarts, up), (2, 1));
            assert_eq!(
                metrics.restarts.with_label_values(&["web_reload"]).get(),
                0,
                "every restarted component's counter exists at 0"
            );
        });
        assert_eq!(runs.load(Ordering::SeqCst), 3);
    }
}
