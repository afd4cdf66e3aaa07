//! Which processes an action may touch, and the checks made right before a signal is sent.
//!
//! Selection is pure (a GPU's process list in, pids out) and enforces the safety rules that hold
//! whatever the configuration says: never PID 1 (or 0), never the exporter itself, only processes
//! in that GPU's list, and for kills never an `avoid` match. Right before a signal, [`verify`]
//! checks the host: the pid must be visible in our `/proc` (a pid from another PID namespace
//! would name a different process here), not a zombie, and started before the poll that listed it
//! (so a recycled pid is never hit).

pub use crate::source::procfs::{proc_stat, ProcStat};
use std::time::{Duration, SystemTime};

use crate::model::engine::ProcessView;
use crate::output::cleanup::config::{KillAction, Target, WorkloadFilter};
pub use crate::output::cleanup::spare::{kill_spared, owner_uid, spared_by, Spared};

/// A pid the safety rules never allow, whatever the configuration.
pub fn forbidden(pid: u32, own_pid: u32) -> bool {
    pid <= 1 || pid == own_pid
}

/// The MPS daemons (`nvidia-cuda-mps-server`, `-control`; `comm` keeps 15 bytes:
/// `nvidia-cuda-mps`): never a target. The server holds every MPS client's context; signalling it
/// would take down all of them, and its memory is theirs (the clients are targets of their own).
pub fn mps_daemon(name: &str) -> bool {
    name.starts_with("nvidia-cuda-mps")
}

/// A process no action may touch whatever the configuration: PID 1, the exporter, an MPS daemon.
pub fn untouchable(p: &ProcessView, own_pid: u32) -> bool {
    forbidden(p.pid, own_pid) || mps_daemon(&p.name)
}

/// Whether the workload filter lets an action touch the process: never one in an avoided
/// namespace (or in a pod whose namespace is not known from the runtime while some are avoided);
/// with a namespace or pod regex, only processes in a matching pod named by the runtime. Why a
/// process is spared: [`spared_by`].
pub fn workload_allowed(p: &ProcessView, f: &WorkloadFilter) -> bool {
    spared_by(p, f).is_none()
}

/// The processes a signal action reaches, largest (or most reclaimable) first.
pub fn signal_targets<'a>(
    procs: &'a [ProcessView],
    target: &Target,
    workloads: &WorkloadFilter,
    own_pid: u32,
) -> Vec<&'a ProcessView> {
    let mut eligible: Vec<&ProcessView> = procs
        .iter()
        .filter(|p| !untouchable(p, own_pid) && workload_allowed(p, workloads))
        .collect();
    // Largest first; with allocator reports, the most reclaimable first (`reclaim`).
    eligible.sort_by(|a, b| crate::output::cleanup::reclaim::signal_order(a, b));
    match target {
        Target::All => eligible,
        Target::Top(n) => {
            eligible.truncate(*n);
            eligible
        }
        Target::Match(re) => eligible
            .into_iter()
            .filter(|p| re.is_match(&p.name))
            .collect(),
    }
}

/// The process a kill action terminates: the largest `prefer` match if any, else the largest;
/// never an `avoid` match, PID 1 or the exporter.
pub fn kill_victim<'a>(
    procs: &'a [ProcessView],
    kill: &KillAction,
    own_pid: u32,
) -> Option<&'a ProcessView> {
    let largest = |it: &mut dyn Iterator<Item = &'a ProcessView>| {
        it.max_by(|a, b| a.allocated.cmp(&b.allocated).then(b.pid.cmp(&a.pid)))
    };
    let candidates = || {
        procs
            .iter()
            .filter(move |p| !untouchable(p, own_pid) && kill_spared(p, kill).is_none())
    };
    if kill.prefer.is_some() || !kill.prefer_uids.is_empty() {
        let preferred = |p: &&ProcessView| {
            kill.prefer.as_ref().is_some_and(|r| r.is_match(&p.name))
                || (!kill.prefer_uids.is_empty()
                    && owner_uid(p.pid).is_some_and(|u| kill.prefer_uids.contains(&u)))
        };
        if let Some(p) = largest(&mut candidates().filter(preferred)) {
            return Some(p);
        }
    }
    largest(&mut candidates())
}

/// Whether the process `stat` describes is still alive (zombies are dead: they hold no memory).
pub fn alive(stat: Option<ProcStat>, start_ticks: u64) -> bool {
    matches!(stat, Some(s) if s.start_ticks == start_ticks && s.state != 'Z' && s.state != 'X')
}

/// Checks a target right before signalling it; returns its start ticks, or why it is refused.
pub fn verify(pid: u32, own_pid: u32, listed_at: Option<SystemTime>) -> Result<u64, &'static str> {
    if forbidden(pid, own_pid) {
        return Err("pid 1 and the exporter itself are never signalled");
    }
    let stat = proc_stat(pid).ok_or("not visible in this PID namespace")?;
    if matches!(stat.state, 'Z' | 'X') {
        return Err("already exited");
    }
    if let (Some(listed), Some(started)) = (listed_at, started_at(stat.start_ticks)) {
        // Tick resolution and clock reads allow a little slack; a recycled pid is far younger.
        if started > listed + Duration::from_millis(50) {
            return Err("pid was reused after the poll that listed it");
        }
    }
    Ok(stat.start_ticks)
}

/// The wall-clock time a process started, from its start ticks and the system uptime.
fn started_at(start_ticks: u64) -> Option<SystemTime> {
    let uptime: f64 = std::fs::read_to_string("/proc/uptime")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz <= 0 {
        return None;
    }
    let age = uptime - start_ticks as f64 / hz as f64;
    SystemTime::now().checked_sub(Duration::from_secs_f64(age.max(0.0)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use regex::Regex;

    fn p(pid: u32, name: &str, gib: u64) -> ProcessView {
        ProcessView {
            pid,
            name: name.into(),
            allocated: gib << 30,
            leak_drift_bytes: 0,
            leak_rate: 0.0,
            workload: None,
            allocator: None,
        }
    }

    fn procs() -> Vec<ProcessView> {
        vec![
            p(1, "init", 50),
            p(999, "vram-exporter", 40),
            p(10, "sshd", 30),
            p(11, "python train.py", 20),
            p(12, "python eval.py", 10),
            p(13, "jupyter", 5),
        ]
    }

    fn pids(v: &[&ProcessView]) -> Vec<u32> {
        v.iter().map(|p| p.pid).collect()
    }

    fn kill(avoid: Option<&str>, prefer: Option<&str>) -> KillAction {
        KillAction {
            grace: Duration::from_secs(1),
            avoid: avoid.map(|r| Regex::new(r).unwrap()),
            prefer: prefer.map(|r| Regex::new(r).unwrap()),
            prefer_uids: vec![],
            after: Duration::ZERO,
            workloads: WorkloadFilter::default(),
        }
    }

    #[test]
    fn signal_targets_skip_init_and_self() {
        let ps = procs();
        assert_eq!(
            pids(&signal_targets(
                &ps,
                &Target::All,
                &WorkloadFilter::default(),
                999
            )),
            [10, 11, 12, 13]
        );
        assert_eq!(
            pids(&signal_targets(
                &ps,
                &Target::Top(2),
                &WorkloadFilter::default(),
                999
            )),
            [10, 11]
        );
        let re = Regex::new("^python").unwrap();
        assert_eq!(
            pids(&signal_targets(
                &ps,
                &Target::Match(re),
                &WorkloadFilter::default(),
                999
            )),
            [11, 12]
        );
        assert!(signal_targets(&[], &Target::All, &WorkloadFilter::default(), 999).is_empty());
    }

    #[test]
    fn victim_is_the_largest_eligible() {
        let ps = procs();
        assert_eq!(kill_victim(&ps, &kill(None, None), 999).unwrap().pid, 10);
        assert_eq!(
            kill_victim(&ps, &kill(Some("^sshd$"), None), 999)
                .unwrap()
                .pid,
            11
        );
    }

    #[test]
    fn prefer_wins_over_size_and_avoid_wins_over_prefer() {
        let ps = procs();
        assert_eq!(
            kill_victim(&ps, &kill(None, Some("eval|jupyter")), 999)
                .unwrap()
                .pid,
            12
        );
        assert_eq!(
            kill_victim(&ps, &kill(Some("eval"), Some("eval|jupyter")), 999)
                .unwrap()
                .pid,
            13
        );
        // Nothing preferred is eligible: fall back to the largest eligible.
        assert_eq!(
            kill_victim(&ps, &kill(Some("eval"), Some("eval")), 999)
                .unwrap()
                .pid,
            10
        );
    }

    #[test]
    fn nobody_eligible_means_no_victim() {
        let ps = vec![p(1, "init", 9), p(999, "me", 9), p(5, "db", 9)];
        assert!(kill_victim(&ps, &kill(Some("^db$"), None), 999).is_none());
    }

    fn in_pod(mut p: ProcessView, namespace: &str, pod: &str) -> ProcessView {
        p.workload = Some(std::sync::Arc::new(crate::source::sample::Workload {
            namespace: namespace.into(),
            pod: pod.into(),
            container: "main".into(),
            pod_uid: "0f4c8a4e-3b6b-4c1f-9d6e-2a5b7c8d9e01".into(),
            container_id: "ab".repeat(32),
            names: match namespace.is_empty() {
                true => crate::source::sample::NameSource::None,
                false => crate::source::sample::NameSource::Runtime,
            },
        }));
        p
    }

    #[test]
    fn workload_filters_and_avoided_namespaces() {
        let ps = vec![
            in_pod(p(20, "dns", 40), "kube-system", "coredns-1"),
            in_pod(p(21, "python", 30), "team-a", "train-0"),
            in_pod(p(22, "python", 20), "team-b", "train-0"),
            // In a pod whose names are unknown: it could be kube-system.
            in_pod(p(23, "python", 15), "", ""),
            p(24, "host-job", 10),
        ];
        let all = |f: &WorkloadFilter| pids(&signal_targets(&ps, &Target::All, f, 999));
        let default = WorkloadFilter::default();
        assert_eq!(all(&default), [21, 22, 24]);
        let none_avoided = WorkloadFilter {
            avoid_namespaces: vec![],
            ..WorkloadFilter::default()
        };
        assert_eq!(all(&none_avoided), [20, 21, 22, 23, 24]);
        let team_a = WorkloadFilter {
            namespace: Some(Regex::new("^team-a$").unwrap()),
            ..WorkloadFilter::default()
        };
        assert_eq!(all(&team_a), [21]);
        let train = WorkloadFilter {
            pod: Some(Regex::new("^train-").unwrap()),
            ..WorkloadFilter::default()
        };
        assert_eq!(all(&train), [21, 22]);
        // Top N counts among the allowed processes only.
        assert_eq!(
            pids(&signal_targets(&ps, &Target::Top(1), &default, 999)),
            [21]
        );
        let mut k = kill(None, None);
        assert_eq!(kill_victim(&ps, &k, 999).unwrap().pid, 21);
        k.workloads = team_a;
        k.workloads.namespace = Some(Regex::new("^team-b$").unwrap());
        assert_eq!(kill_victim(&ps, &k, 999).unwrap().pid, 22);
    }

    #[test]
    fn avoided_uids_are_never_targets() {
        // SAFETY: getuid has no preconditions.
        let me = unsafe { libc::getuid() };
        let ps = vec![p(std::process::id(), "test", 2), p(u32::MAX - 1, "gone", 1)];
        let with = |uids: Vec<u32>| WorkloadFilter {
            avoid_uids: uids,
            ..WorkloadFilter::default()
        };
        let all = |f: &WorkloadFilter| pids(&signal_targets(&ps, &Target::All, f, 999));
        assert_eq!(all(&with(vec![])), [std::process::id(), u32::MAX - 1]);
        assert!(
            all(&with(vec![me])).is_empty(),
            "ours avoided, the unreadable one too"
        );
        assert_eq!(all(&with(vec![me + 1])), [std::process::id()]);
        // prefer_uids: ours is chosen although another is larger.
        let ps = vec![p(std::process::id(), "test", 2), p(u32::MAX - 1, "gone", 9)];
        let mut k = kill(None, None);
        assert_eq!(kill_victim(&ps, &k, 999).unwrap().pid, u32::MAX - 1);
        k.prefer_uids = vec![me];
        assert_eq!(kill_victim(&ps, &k, 999).unwrap().pid, std::process::id());
    }

    #[test]
    fn verify_refuses_init_self_and_invisible() {
        let me = std::process::id();
        assert!(verify(1, me, None).is_err());
        assert!(verify(me, me, None).is_err());
        assert!(verify(u32::MAX - 1, me, None).is_err());
    }

    #[test]
    fn verify_accepts_a_live_child_and_refuses_one_younger_than_the_poll() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id();
        let ok = verify(pid, std::process::id(), Some(SystemTime::now()));
        let old_poll = SystemTime::now() - Duration::from_secs(3600);
        let recycled = verify(pid, std::process::id(), Some(old_poll));
        let _ = child.kill();
        let _ = child.wait();
        assert!(ok.is_ok(), "{ok:?}");
        assert_eq!(
            recycled,
            Err("pid was reused after the poll that listed it")
        );
        assert!(!alive(proc_stat(pid), ok.unwrap()));
    }
}
