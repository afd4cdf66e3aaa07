//! The poller: a dedicated OS thread that reads NVML on a fixed interval and publishes snapshots.
//!
//! NVML calls block (a hung driver can block for seconds), so they never run on the async runtime.
//! The thread is the single writer of [`Engine`] state; after each poll it renders the exposition
//! once and publishes both ([`Published`]) on a `watch` channel, so readers never wait for NVML.
//! It beats a [`Heartbeat`] at each phase (in NVML, working, waiting) so `/-/healthy` can tell a
//! dead or stalled poller from a slow driver (see `supervise`).

use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::base::input::{parse_duration_within, ConfigError};
use crate::base::supervise::{DiesWith, Heartbeat, Phase};
use crate::base::telemetry::Telemetry;
use crate::model::engine::Engine;
use crate::output::publish::{Published, SharedPublished};
use crate::source::clients::Joiner;
use crate::source::kubernetes::Attributor;
use crate::source::nvml::NvmlSource;

/// The shortest poll interval accepted.
pub const MIN_POLL_INTERVAL: Duration = Duration::from_millis(100);
/// The longest poll interval: slower than this and the exposition is stale for scrapes.
pub const MAX_POLL_INTERVAL: Duration = Duration::from_secs(3600);

/// The `[poll]` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawPoll {
    /// How often NVML is read: "1s", "250ms"; at least 100ms.
    pub interval: String,
}

impl Default for RawPoll {
    fn default() -> Self {
        RawPoll {
            interval: "1s".into(),
        }
    }
}

impl RawPoll {
    /// The poll interval, between 100ms and 1h.
    pub fn validate(&self) -> Result<Duration, ConfigError> {
        let interval = parse_duration_within(
            "poll.interval",
            &self.interval,
            MIN_POLL_INTERVAL,
            MAX_POLL_INTERVAL,
        )?;
        Ok(interval)
    }
}

/// What the poller thread adds to each sample from sources other than NVML, before the engine.
#[derive(Default)]
pub struct Annotators {
    /// Kubernetes workloads (when attribution is on).
    pub kubernetes: Option<Attributor>,
    /// The newest allocator reports of clients (when the clients socket listens).
    pub clients: Option<Joiner>,
}

/// A running poller; dropping the handle's `stop` sender ends the thread at its next tick.
pub struct Poller {
    stop: mpsc::Sender<()>,
    thread: Option<JoinHandle<()>>,
}

impl Poller {
    /// Starts polling at once and then every `interval`, publishing into `publish` with at most
    /// `max_processes_per_gpu` process series per GPU in the exposition; `annotators` add
    /// workloads and allocator reports to each sample before the engine; `heartbeat` follows the
    /// thread's progress.
    #[allow(clippy::too_many_arguments)]
    pub fn spawn(
        mut source: NvmlSource,
        mut engine: Engine,
        mut annotators: Annotators,
        interval: Duration,
        max_processes_per_gpu: usize,
        telemetry: Telemetry,
        publish: watch::Sender<SharedPublished>,
        heartbeat: Arc<Heartbeat>,
    ) -> std::io::Result<Self> {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("nvml-poller".into())
            .spawn(move || {
                let _dies_with = DiesWith(heartbeat.clone());
                let mut next = Instant::now();
                // GPU indices whose poll-error series exist (at 0) already.
                let mut errors_ready = std::collections::BTreeSet::new();
                loop {
                    let started = Instant::now();
                    heartbeat.beat(Phase::Nvml);
                    let mut sample = source.poll();
                    heartbeat.beat(Phase::Working);
                    for gpu in &sample.devices {
                        if errors_ready.insert(gpu.identity.index) {
                            telemetry.init_gpu_errors(gpu.identity.index);
                        }
                    }
                    if let Some(a) = &mut annotators.kubernetes {
                        a.annotate(&mut sample);
                    }
                    if let Some(j) = &mut annotators.clients {
                        j.annotate(&mut sample, interval);
                    }
                    for e in &sample.errors {
                        let gpu = e.gpu.map(|g| g.to_string()).unwrap_or_default();
                        telemetry
                            .poll_errors
                            .with_label_values(&[gpu.as_str(), e.operation.as_str()])
                            .inc();
                    }
                    let published = Published::new(engine.apply(&sample), max_processes_per_gpu);
                    telemetry
                        .poll_duration
                        .observe(started.elapsed().as_secs_f64());
                    publish.send_replace(Arc::new(published));
                    // glibc keeps heap pages freed after a burst of concurrent scrapes; hand them
                    // back once per poll so resident memory returns to its steady size (measured
                    // by tools/bench/compare's RSS after scrapes, see BENCHMARKS.md).
                    #[cfg(all(target_os = "linux", target_env = "gnu"))]
                    // SAFETY: malloc_trim has no preconditions; it only releases free memory.
                    unsafe {
                        libc::malloc_trim(0);
                    }

                    // Fixed-rate ticks; after an overrun (a slow driver) start again from now.
                    next += interval;
                    let now = Instant::now();
                    if next < now {
                        next = now;
                    }
                    heartbeat.beat(Phase::Waiting);
                    match stopped.recv_timeout(next - now) {
                        Err(RecvTimeoutError::Timeout) => continue,
                        Ok(()) | Err(RecvTimeoutError::Disconnected) => {
                            heartbeat.beat(Phase::Stopped);
                            break;
                        }
                    }
                }
            })?;
        Ok(Poller {
            stop,
            thread: Some(thread),
        })
    }

    /// Asks the thread to stop and waits for it unless it is stuck in an NVML call.
    pub fn shutdown(mut self, wait: Duration) {
        let _ = self.stop.send(());
        if let Some(t) = self.thread.take() {
            let deadline = Instant::now() + wait;
            while !t.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if t.is_finished() {
                let _ = t.join();
            }
        }
    }
}
