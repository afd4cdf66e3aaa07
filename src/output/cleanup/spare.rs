//! Why a signal or kill action spares a process: the workload rules (`avoid_uids`,
//! `avoid_namespaces`, `namespace_regex`, `pod_regex`) as one verdict that names the rule and where
//! the name it judged came from, for the selection, the audit line and `/api/v1/gpus`.
//!
//! Only names from the container runtime ([`NameSource::Runtime`]) decide: a name inferred from
//! the GPU allocation may belong to another pod on that GPU, so a pod process whose name is not
//! authoritative is spared wherever a namespace is avoided, and never matches a namespace or pod
//! regex. Processes outside Kubernetes are not concerned by `avoid_namespaces`.

use std::fmt;

use crate::model::engine::ProcessView;
use crate::output::cleanup::config::{Action, CleanupConfig, KillAction, WorkloadFilter};
use crate::source::sample::{NameSource, Workload};

/// A rule that spares a process, and what it judged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spared {
    /// The configuration key: `avoid_uids`, `avoid_namespaces`, `namespace_regex`, `pod_regex`
    /// (or `avoid` for a kill's process-name rule).
    pub rule: &'static str,
    /// What it saw, e.g. `kube-system, from runtime` or `team-b, inferred: not acted on`.
    pub what: String,
}

impl fmt::Display for Spared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.rule, self.what)
    }
}

/// Which name of a workload a regex is matched against.
type NameOf = fn(&Workload) -> &str;

/// The rule of `f` that spares `p`, or None when the workload rules let an action touch it.
pub fn spared_by(p: &ProcessView, f: &WorkloadFilter) -> Option<Spared> {
    let spared = |rule, what: String| Some(Spared { rule, what });
    if !f.avoid_uids.is_empty() {
        match owner_uid(p.pid) {
            None => return spared("avoid_uids", "owner unknown".into()),
            Some(u) if f.avoid_uids.contains(&u) => {
                return spared("avoid_uids", format!("uid {u}"))
            }
            Some(_) => {}
        }
    }
    let w = p.workload.as_deref();
    if let Some(w) = w {
        if !f.avoid_namespaces.is_empty()
            && (w.names != NameSource::Runtime || f.avoid_namespaces.contains(&w.namespace))
        {
            return spared("avoid_namespaces", source_of(w, &w.namespace));
        }
    }
    let regexes: [(&'static str, &Option<regex::Regex>, NameOf); 2] = [
        ("namespace_regex", &f.namespace, |w| &w.namespace),
        ("pod_regex", &f.pod, |w| &w.pod),
    ];
    for (rule, re, value) in regexes {
        let Some(re) = re else { continue };
        match w {
            None => return spared(rule, "not in a pod".into()),
            Some(w) if w.names != NameSource::Runtime || !re.is_match(value(w)) => {
                return spared(rule, source_of(w, value(w)))
            }
            Some(_) => {}
        }
    }
    None
}

/// The rule of a kill action that spares `p`: its `avoid` name regex, then the workload rules.
pub fn kill_spared(p: &ProcessView, kill: &KillAction) -> Option<Spared> {
    if kill.avoid.as_ref().is_some_and(|r| r.is_match(&p.name)) {
        return Some(Spared {
            rule: "avoid",
            what: "process name".into(),
        });
    }
    spared_by(p, &kill.workloads)
}

/// The sparing rules of the configured signal and kill actions (none while cleanup is off), for
/// `/api/v1/gpus` to say which action would spare a process and why.
#[derive(Debug, Clone, Default)]
pub struct SpareRules {
    /// (the action's position in `cleanup.actions`, the action).
    actions: Vec<(usize, Action)>,
}

/// One action that spares a process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// The action's position in `cleanup.actions`.
    pub action: usize,
    /// `signal` or `kill`.
    pub kind: &'static str,
    pub spared: Spared,
}

impl SpareRules {
    pub fn new(config: &CleanupConfig) -> Self {
        if !config.enabled {
            return SpareRules::default();
        }
        let actions = config
            .actions
            .iter()
            .enumerate()
            .filter(|(_, a)| matches!(a, Action::Signal(_) | Action::Kill(_)))
            .map(|(i, a)| (i, a.clone()))
            .collect();
        SpareRules { actions }
    }

    /// The actions that spare `p`, and why.
    pub fn verdicts(&self, p: &ProcessView) -> Vec<Verdict> {
        self.actions
            .iter()
            .filter_map(|(i, a)| {
                let spared = match a {
                    Action::Signal(s) => spared_by(p, &s.workloads),
                    Action::Kill(k) => kill_spared(p, k),
                    _ => None,
                }?;
                Some(Verdict {
                    action: *i,
                    kind: a.as_str(),
                    spared,
                })
            })
            .collect()
    }
}

/// A name and where it came from: `kube-system, from runtime`, `team-b, inferred: not acted on`,
/// or `unknown, pod uid …`.
fn source_of(w: &Workload, name: &str) -> String {
    match w.names {
        NameSource::Runtime => format!("{name}, from runtime"),
        NameSource::Inferred => format!("{name}, inferred: not acted on"),
        NameSource::None => format!("unknown, pod uid {}", w.pod_uid),
    }
}

/// The user a process runs as: the owner of its `/proc/<pid>` (its effective uid).
pub fn owner_uid(pid: u32) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(format!("/proc/{pid}"))
        .ok()
        .map(|m| m.uid())
}

/// At most this many spared processes are named in one audit line (the largest first).
const NAMED: usize = 8;

/// The audit sentence for processes a rule spared: `spared: 12 avoid_namespaces (kube-system,
/// from runtime), 13 …` (at most 8 named, then how many more); empty when none was.
pub fn describe(spared: &[(u32, Spared)]) -> String {
    if spared.is_empty() {
        return String::new();
    }
    let mut each: Vec<String> = spared
        .iter()
        .take(NAMED)
        .map(|(pid, s)| format!("{pid} {s}"))
        .collect();
    if spared.len() > NAMED {
        each.push(format!("{} more", spared.len() - NAMED));
    }
    format!("spared: {}", each.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use regex::Regex;
    use std::sync::Arc;

    fn in_pod(ns: &str, pod: &str, names: NameSource) -> ProcessView {
        ProcessView {
            pid: 4242,
            name: "python".into(),
            allocated: 1 << 30,
            leak_drift_bytes: 0,
            leak_rate: 0.0,
            workload: Some(Arc::new(Workload {
                namespace: ns.into(),
                pod: pod.into(),
                container: "main".into(),
                pod_uid: "0f4c8a4e-3b6b-4c1f-9d6e-2a5b7c8d9e01".into(),
                container_id: "ab".repeat(32),
                names,
            })),
            allocator: None,
        }
    }

    #[test]
    fn an_inferred_name_never_decides() {
        let team_b = WorkloadFilter {
            namespace: Some(Regex::new("^team-b$").unwrap()),
            ..WorkloadFilter::default()
        };
        // The attack: a kube-system process inferred to be team-b/idle-0.
        let guessed = in_pod("team-b", "idle-0", NameSource::Inferred);
        assert_eq!(
            spared_by(&guessed, &team_b).unwrap().to_string(),
            "avoid_namespaces (team-b, inferred: not acted on)"
        );
        let no_avoid = WorkloadFilter {
            avoid_namespaces: vec![],
            ..team_b.clone()
        };
        assert_eq!(
            spared_by(&guessed, &no_avoid).unwrap().to_string(),
            "namespace_regex (team-b, inferred: not acted on)"
        );
        let named = in_pod("team-b", "idle-0", NameSource::Runtime);
        assert_eq!(spared_by(&named, &team_b), None);
        let system = in_pod("kube-system", "dns", NameSource::Runtime);
        assert_eq!(
            spared_by(&system, &WorkloadFilter::default())
                .unwrap()
                .to_string(),
            "avoid_namespaces (kube-system, from runtime)"
        );
        let unnamed = in_pod("", "", NameSource::None);
        assert!(spared_by(&unnamed, &WorkloadFilter::default())
            .unwrap()
            .to_string()
            .starts_with("avoid_namespaces (unknown, pod uid 0f4c8a4e"));
        let pod_re = WorkloadFilter {
            pod: Some(Regex::new("^train").unwrap()),
            avoid_namespaces: vec![],
            ..WorkloadFilter::default()
        };
        assert_eq!(
            spared_by(&named, &pod_re).unwrap().to_string(),
            "pod_regex (idle-0, from runtime)"
        );
    }

    #[test]
    fn host_processes_pass_avoid_namespaces_but_no_regex() {
        let mut host = in_pod("", "", NameSource::None);
        host.workload = None;
        assert_eq!(spared_by(&host, &WorkloadFilter::default()), None);
        let f = WorkloadFilter {
            pod: Some(Regex::new(".").unwrap()),
            ..WorkloadFilter::default()
        };
        assert_eq!(
            spared_by(&host, &f).unwrap().to_string(),
            "pod_regex (not in a pod)"
        );
        assert_eq!(
            describe(&[(7, spared_by(&host, &f).unwrap())]),
            "spared: 7 pod_regex (not in a pod)"
        );
        assert_eq!(describe(&[]), "");
    }
}
