//! Running one action: signal, webhook, exec or kill, each bounded in time, each ending in an
//! [`Outcome`] that becomes a counter increment and one audit log line.
//!
//! Every action runs on a tokio task of its own, off the polling thread; blocking HTTP runs on the
//! blocking pool. Each has a hard bound: a webhook its timeout per attempt and a bounded number of
//! retries, a command its timeout (then its whole process group is killed and reaped), a kill its
//! grace plus a short wait after SIGKILL.

use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::model::engine::{GpuView, ProcessView};
use crate::model::policy::predict::Trigger;
use crate::model::policy::Level;
use crate::output::cleanup::config::{ExecAction, KillAction, SignalAction, WebhookAction};
use crate::output::cleanup::payload::Payload;
use crate::output::cleanup::reclaim;
use crate::output::cleanup::spare::{self, Spared};
use crate::output::cleanup::targets::{self, alive, proc_stat};

/// The `result` label of `vram_cleanups_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionResult {
    Ok,
    Failed,
    Skipped,
    DryRun,
}

impl ActionResult {
    pub const ALL: [ActionResult; 4] = [
        ActionResult::Ok,
        ActionResult::Failed,
        ActionResult::Skipped,
        ActionResult::DryRun,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ActionResult::Ok => "ok",
            ActionResult::Failed => "failed",
            ActionResult::Skipped => "skipped",
            ActionResult::DryRun => "dry_run",
        }
    }
}

/// What one action did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub result: ActionResult,
    /// The processes it touched (or would have, in a dry run); for exec, the command's pid.
    pub pids: Vec<u32>,
    /// A sentence for the audit log.
    pub detail: String,
}

impl Outcome {
    pub fn new(result: ActionResult, pids: Vec<u32>, detail: impl Into<String>) -> Self {
        Outcome {
            result,
            pids,
            detail: detail.into(),
        }
    }
}

/// The GPU's processes (largest first; PID 1, the exporter and MPS daemons left out) that `rule`
/// spares, and why.
fn spared_on(
    gpu: &GpuView,
    own_pid: u32,
    rule: impl Fn(&ProcessView) -> Option<Spared>,
) -> Vec<(u32, Spared)> {
    let mut out: Vec<(u64, u32, Spared)> = gpu
        .processes
        .iter()
        .filter(|p| !targets::untouchable(p, own_pid))
        .filter_map(|p| rule(p).map(|s| (p.allocated, p.pid, s)))
        .collect();
    out.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    out.into_iter().map(|(_, pid, s)| (pid, s)).collect()
}

/// Sends the signal to the GPU's target processes.
pub fn signal(
    a: &SignalAction,
    gpu: &GpuView,
    listed_at: Option<SystemTime>,
    own_pid: u32,
    dry_run: bool,
) -> Outcome {
    // `min_reclaimable` narrows the processes by their own reports before the target picks;
    // reports never add a process the target would not reach.
    let candidates: Vec<_> = gpu
        .processes
        .iter()
        .filter(|p| reclaim::gives_enough(p, a.min_reclaimable))
        .cloned()
        .collect();
    let chosen = targets::signal_targets(&candidates, &a.target, &a.workloads, own_pid);
    let pids: Vec<u32> = chosen.iter().map(|p| p.pid).collect();
    let spared = spare::describe(&spared_on(gpu, own_pid, |p| {
        targets::spared_by(p, &a.workloads)
    }));
    if pids.is_empty() {
        let detail = if !spared.is_empty() {
            format!("no process on the GPU may be signalled; {spared}")
        } else if candidates.len() < gpu.processes.len() {
            "no process on the GPU matches the target with min_reclaimable to give".to_string()
        } else {
            "no process on the GPU matches the target".to_string()
        };
        return Outcome::new(ActionResult::Skipped, pids, detail);
    }
    if dry_run {
        return Outcome::new(
            ActionResult::DryRun,
            pids,
            format!("would send {}", a.signal.name),
        );
    }
    let (mut sent, mut failed, mut refused) = (Vec::new(), Vec::<(u32, String)>::new(), Vec::new());
    for pid in pids {
        match targets::verify(pid, own_pid, listed_at) {
            Err(why) => refused.push(format!("{pid}: {why}")),
            Ok(_) => {
                // SAFETY: kill(2) with a verified pid > 1 and an allowed signal.
                if unsafe { libc::kill(pid as i32, a.signal.number) } == 0 {
                    sent.push(pid);
                } else {
                    failed.push((pid, std::io::Error::last_os_error().to_string()));
                }
            }
        }
    }
    let mut detail = format!("sent {} to {} process(es)", a.signal.name, sent.len());
    if !failed.is_empty() {
        let f: Vec<String> = failed.iter().map(|(p, e)| format!("{p}: {e}")).collect();
        detail.push_str(&format!("; failed: {}", f.join(", ")));
    }
    if !refused.is_empty() {
        detail.push_str(&format!("; not signalled: {}", refused.join(", ")));
    }
    if !spared.is_empty() {
        detail.push_str(&format!("; {spared}"));
    }
    let result = if !failed.is_empty() {
        ActionResult::Failed
    } else if sent.is_empty() {
        ActionResult::Skipped
    } else {
        ActionResult::Ok
    };
    sent.extend(failed.iter().map(|(p, _)| *p));
    Outcome::new(result, sent, detail)
}

/// Terminates the GPU's largest eligible process: SIGTERM, then SIGKILL after `grace` if the
/// same process is still there. Skipped when the GPU is no longer in the breach the run is for
/// (above its hard limit; for a predicted run, above it or still predicted to reach it).
pub async fn kill(
    a: &KillAction,
    gpu: &GpuView,
    listed_at: Option<SystemTime>,
    own_pid: u32,
    dry_run: bool,
    trigger: Trigger,
) -> Outcome {
    let still = match trigger {
        Trigger::Hard => gpu.level == Level::Hard,
        Trigger::Predicted => gpu.trigger().is_some(),
    };
    if !still {
        return Outcome::new(
            ActionResult::Skipped,
            vec![],
            match trigger {
                Trigger::Hard => "the GPU is no longer above its hard limit",
                Trigger::Predicted => "the GPU is no longer predicted to reach its hard limit",
            },
        );
    }
    let Some(victim) = targets::kill_victim(&gpu.processes, a, own_pid) else {
        let spared = spare::describe(&spared_on(gpu, own_pid, |p| targets::kill_spared(p, a)));
        return Outcome::new(
            ActionResult::Skipped,
            vec![],
            format!(
                "no eligible process (avoid, avoid_namespaces, PID 1, the exporter and MPS \
                 daemons are never killed){}",
                if spared.is_empty() {
                    String::new()
                } else {
                    format!("; {spared}")
                }
            ),
        );
    };
    let (pid, what) = (
        victim.pid,
        match victim.workload.as_deref() {
            Some(w) => format!(
                "{} ({}, pod {}/{} uid {}, {} bytes)",
                victim.pid, victim.name, w.namespace, w.pod, w.pod_uid, victim.allocated
            ),
            None => format!(
                "{} ({}, {} bytes)",
                victim.pid, victim.name, victim.allocated
            ),
        },
    );
    if dry_run {
        return Outcome::new(
            ActionResult::DryRun,
            vec![pid],
            format!(
                "would send SIGTERM to {what}, then SIGKILL after {}",
                humantime::format_duration(a.grace)
            ),
        );
    }
    let start_ticks = match targets::verify(pid, own_pid, listed_at) {
        Ok(s) => s,
        Err(why) => {
            return Outcome::new(ActionResult::Skipped, vec![pid], format!("{what}: {why}"))
        }
    };
    // SAFETY: kill(2) on a verified pid > 1 that is not the exporter.
    if unsafe { libc::kill(pid as i32, libc::SIGTERM) } != 0 {
        let e = std::io::Error::last_os_error();
        return Outcome::new(
            ActionResult::Failed,
            vec![pid],
            format!("SIGTERM to {what}: {e}"),
        );
    }
    if wait_gone(pid, start_ticks, a.grace).await {
        return Outcome::new(
            ActionResult::Ok,
            vec![pid],
            format!("{what} exited after SIGTERM"),
        );
    }
    // Still the same process (start ticks unchanged, not a zombie): escalate.
    if alive(proc_stat(pid), start_ticks) {
        // SAFETY: as above; the start ticks check makes sure the pid was not reused.
        if unsafe { libc::kill(pid as i32, libc::SIGKILL) } != 0 {
            let e = std::io::Error::last_os_error();
            return Outcome::new(
                ActionResult::Failed,
                vec![pid],
                format!("SIGKILL to {what}: {e}"),
            );
        }
    }
    if wait_gone(pid, start_ticks, Duration::from_secs(5)).await {
        Outcome::new(
            ActionResult::Ok,
            vec![pid],
            format!(
                "{what} ignored SIGTERM for {}; killed with SIGKILL",
                humantime::format_duration(a.grace)
            ),
        )
    } else {
        Outcome::new(
            ActionResult::Failed,
            vec![pid],
            format!("{what} still running 5s after SIGKILL"),
        )
    }
}

/// Waits until the process with these start ticks is gone (or a zombie); false on timeout.
async fn wait_gone(pid: u32, start_ticks: u64, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if !alive(proc_stat(pid), start_ticks) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A webhook's HTTP client: per-attempt timeout, statuses returned rather than raised.
pub fn webhook_agent(a: &WebhookAction) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(a.timeout))
        .http_status_as_error(false)
        .user_agent(concat!("vram-exporter/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

/// POSTs the payload, retrying transport errors, 429 and 5xx up to `retries` times.
pub async fn webhook(
    a: &WebhookAction,
    agent: ureq::Agent,
    body: Vec<u8>,
    dry_run: bool,
) -> Outcome {
    if dry_run {
        return Outcome::new(
            ActionResult::DryRun,
            vec![],
            format!("would POST to {}", a.shown),
        );
    }
    // Only the redacted form is ever written into a detail, error texts that quote the URL
    // included.
    let (url, shown, retries) = (a.url.clone(), a.shown.clone(), a.retries);
    let attempts = retries + 1;
    let task = tokio::task::spawn_blocking(move || {
        let mut last = String::new();
        for attempt in 0..attempts {
            if attempt > 0 {
                std::thread::sleep(backoff(attempt));
            }
            let sent = agent
                .post(&url)
                .header("content-type", "application/json")
                .send(&body[..]);
            match sent {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    if (200..300).contains(&status) {
                        return (
                            true,
                            format!("POST {shown}: {status} (attempt {})", attempt + 1),
                        );
                    }
                    last = format!("POST {shown}: HTTP {status}");
                    if status != 429 && status < 500 {
                        break;
                    }
                }
                Err(e) => last = format!("POST {shown}: {}", e.to_string().replace(&url, &shown)),
            }
        }
        (false, format!("{last} (after {attempts} attempt(s))"))
    });
    // The blocking task is bounded by the agent's timeout; this outer bound only guards a bug.
    let bound = (a.timeout + Duration::from_secs(3)) * attempts;
    match tokio::time::timeout(bound, task).await {
        Ok(Ok((true, detail))) => Outcome::new(ActionResult::Ok, vec![], detail),
        Ok(Ok((false, detail))) => Outcome::new(ActionResult::Failed, vec![], detail),
        Ok(Err(e)) => Outcome::new(ActionResult::Failed, vec![], format!("webhook task: {e}")),
        Err(_) => Outcome::new(
            ActionResult::Failed,
            vec![],
            format!("POST {}: no answer within {bound:?}", a.shown),
        ),
    }
}

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(200u64 << attempt.min(4)).min(Duration::from_secs(2))
}

/// Runs the command directly (never through a shell) with the payload as environment variables
/// and as JSON on stdin; a non-zero exit or the timeout is a failure.
pub async fn exec(a: &ExecAction, payload: &Payload, dry_run: bool) -> Outcome {
    if dry_run {
        return Outcome::new(
            ActionResult::DryRun,
            vec![],
            format!("would run {:?}", a.argv),
        );
    }
    let mut cmd = tokio::process::Command::new(&a.argv[0]);
    cmd.args(&a.argv[1..])
        .envs(payload.env())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        // Its own process group, so a timeout kills whatever it started too.
        .process_group(0);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return Outcome::new(
                ActionResult::Failed,
                vec![],
                format!("cannot start {:?}: {e}", a.argv[0]),
            )
        }
    };
    let pid = child.id().unwrap_or(0);
    if let Some(mut stdin) = child.stdin.take() {
        let json = payload.to_json();
        // A command that ignores stdin closes the pipe early; that is not an error.
        tokio::spawn(async move {
            let _ = stdin.write_all(&json).await;
        });
    }
    // Read to the end, whatever the command writes: a pipe closed early would kill it with
    // SIGPIPE (or fail its writes) and turn a success into a failure.
    let stderr = child
        .stderr
        .take()
        .map(|s| tokio::spawn(drain(s, STDERR_KEPT)));
    let waited = tokio::time::timeout(a.timeout, child.wait()).await;
    let (result, mut detail) = match waited {
        Ok(Ok(status)) if status.success() => {
            (ActionResult::Ok, format!("{:?} exited 0", a.argv[0]))
        }
        Ok(Ok(status)) => (
            ActionResult::Failed,
            format!("{:?} failed: {status}", a.argv[0]),
        ),
        Ok(Err(e)) => (
            ActionResult::Failed,
            format!("waiting for {:?}: {e}", a.argv[0]),
        ),
        Err(_) => {
            if pid > 0 {
                // SAFETY: the group was created for this child (process_group(0) above).
                unsafe {
                    libc::killpg(pid as i32, libc::SIGKILL);
                }
            }
            let _ = child.kill().await;
            (
                ActionResult::Failed,
                format!(
                    "{:?} timed out after {}; killed",
                    a.argv[0],
                    humantime::format_duration(a.timeout)
                ),
            )
        }
    };
    if let Some(mut task) = stderr {
        // The command has exited (or its group was killed): the pipe ends unless something it
        // started elsewhere still holds it open, so the drain gets a short grace, then stops.
        match tokio::time::timeout(Duration::from_millis(200), &mut task).await {
            Ok(Ok((kept, total))) if result == ActionResult::Failed && total > 0 => {
                let text = String::from_utf8_lossy(&kept);
                detail.push_str(&format!("; stderr: {}", text.trim()));
                if total > kept.len() as u64 {
                    detail.push_str(&format!(" [first {} of {total} bytes]", kept.len()));
                }
            }
            Ok(_) => {}
            Err(_) => task.abort(),
        }
    }
    Outcome::new(result, vec![pid], detail)
}

/// How much of an exec'd command's stderr the audit line keeps.
pub const STDERR_KEPT: usize = 2048;

/// Reads a pipe to its end, keeping its first `keep` bytes; returns them and the total read.
async fn drain(mut pipe: impl tokio::io::AsyncRead + Unpin, keep: usize) -> (Vec<u8>, u64) {
    let (mut kept, mut total) = (Vec::with_capacity(keep), 0u64);
    let mut buf = [0u8; 8192];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                total += n as u64;
                let room = keep - kept.len();
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
    (kept, total)
}
