//! The JSON API's response (`/api/v1/gpus`): an edge type built from a snapshot, so internal types
//! carry no serialisation concerns and the JSON shape is a contract of its own.

use std::time::UNIX_EPOCH;

use serde::Serialize;

use crate::model::engine::{GpuView, ProcessView, Snapshot};
use crate::output::cleanup::spare::SpareRules;
use crate::source::sample::{Memory, MigSample};

/// The body of `/api/v1/gpus`.
#[derive(Debug, Serialize)]
pub struct GpusResponse<'a> {
    /// Unix time of the poll, in seconds; null before the first poll.
    pub taken_at: Option<f64>,
    pub nvml_up: bool,
    pub ready: bool,
    pub driver_version: &'a str,
    pub gpus: Vec<Gpu<'a>>,
}

#[derive(Debug, Serialize)]
pub struct Gpu<'a> {
    pub index: u32,
    pub uuid: &'a str,
    pub model: &'a str,
    pub pci_bus_id: &'a str,
    pub up: bool,
    pub memory: Option<MemoryBytes>,
    pub limits: Option<LimitBytes>,
    /// "ok", "soft" or "hard".
    pub level: &'static str,
    pub soft_violations: u64,
    pub hard_violations: u64,
    pub leak_drift_bytes: u64,
    pub leak_rate_bytes_per_second: f64,
    /// Null while nothing grows; 0 at or above the hard limit.
    pub hard_limit_eta_seconds: Option<f64>,
    /// What would trigger cleanup now: "hard" above the hard limit, "predicted" when the time
    /// to it has stayed under `cleanup.predict.eta_below` for its `for`; null otherwise.
    pub cleanup_trigger: Option<&'static str>,
    /// The GPU's largest processes, largest first: at most `processes.max_per_gpu`, the same
    /// ones as the per-process metric series.
    pub processes: Vec<Process<'a>>,
    /// How many smaller processes on the GPU are not listed in `processes`.
    pub processes_omitted: usize,
    pub migs: Vec<Mig<'a>>,
    /// The containers the device plugin allocated the GPU (or its MIG devices) to (Kubernetes),
    /// at most 64.
    pub allocations: Vec<Allocation<'a>>,
    /// How many more allocations the GPU has than `allocations` lists.
    pub allocations_omitted: usize,
    /// The processes the GPU's latest cleanup run signalled: predicted versus measured reclaim.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cleanup_reclaim: Vec<crate::output::api_allocator::CleanupReclaim>,
}

#[derive(Debug, Serialize)]
pub struct MemoryBytes {
    pub total: u64,
    pub reserved: u64,
    pub free: u64,
    pub allocated: u64,
}

#[derive(Debug, Serialize)]
pub struct LimitBytes {
    pub soft: u64,
    pub hard: u64,
    pub hysteresis: u64,
}

#[derive(Debug, Serialize)]
pub struct Process<'a> {
    pub pid: u32,
    pub name: &'a str,
    pub allocated: u64,
    pub leak_drift_bytes: u64,
    pub leak_rate_bytes_per_second: f64,
    /// The Kubernetes pod and container; null outside Kubernetes.
    pub workload: Option<Workload<'a>>,
    /// The process's own allocator report (`vram_client`); absent without a fresh one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allocator: Option<crate::output::api_allocator::Allocator<'a>>,
    /// The configured signal and kill actions that would spare the process, and why (empty when
    /// none would, or cleanup is off).
    pub spared: Vec<Spared>,
}

/// A cleanup action that spares a process: which one, which rule, what the rule saw (a name and
/// where it came from).
#[derive(Debug, Serialize)]
pub struct Spared {
    /// The action's position in `cleanup.actions`.
    pub action: usize,
    /// "signal" or "kill".
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The configuration key of the rule, e.g. "avoid_namespaces".
    pub rule: &'static str,
    /// e.g. "avoid_namespaces (kube-system, from runtime)".
    pub why: String,
}

/// A process's Kubernetes workload; names are empty when they cannot be told.
#[derive(Debug, Serialize)]
pub struct Workload<'a> {
    pub namespace: &'a str,
    pub pod: &'a str,
    pub container: &'a str,
    pub pod_uid: &'a str,
    pub container_id: &'a str,
    /// Where the namespace and pod come from: "runtime" (the container runtime, acted on),
    /// "inferred" (from the GPU allocation: shown, never acted on) or "none".
    pub name_source: &'static str,
}

#[derive(Debug, Serialize)]
pub struct Allocation<'a> {
    pub namespace: &'a str,
    pub pod: &'a str,
    pub container: &'a str,
    /// The DRA resource claim the GPU came with (in the pod's namespace); empty for a device
    /// plugin's allocation.
    pub claim: &'a str,
}

#[derive(Debug, Serialize)]
pub struct Mig<'a> {
    pub index: u32,
    pub uuid: &'a str,
    pub profile: &'a str,
    pub memory: Option<MemoryBytes>,
}

impl<'a> GpusResponse<'a> {
    /// The response for `s`, listing at most `max_processes_per_gpu` processes per GPU, each with
    /// the cleanup actions of `rules` that would spare it.
    pub fn new(s: &'a Snapshot, max_processes_per_gpu: usize, rules: &SpareRules) -> Self {
        GpusResponse {
            taken_at: s
                .taken_at
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map(|d| d.as_secs_f64()),
            nvml_up: s.nvml_up,
            ready: s.ready,
            driver_version: &s.driver_version,
            gpus: s
                .gpus
                .iter()
                .map(|g| Gpu::new(g, max_processes_per_gpu, rules))
                .collect(),
        }
    }
}

impl GpusResponse<'_> {
    /// Adds each GPU's latest cleanup run's per-process reclaim (from cleanup's board).
    pub fn with_reclaims(
        mut self,
        board: &std::collections::HashMap<
            String,
            std::sync::Arc<[crate::output::cleanup::reclaim::ProcessReclaim]>,
        >,
    ) -> Self {
        for g in &mut self.gpus {
            if let Some(r) = board.get(g.uuid) {
                g.cleanup_reclaim = crate::output::api_allocator::CleanupReclaim::list(r);
            }
        }
        self
    }
}

impl<'a> Gpu<'a> {
    fn new(g: &'a GpuView, max_processes: usize, rules: &SpareRules) -> Self {
        let listed = g.processes.len().min(max_processes);
        Gpu {
            index: g.identity.index,
            uuid: &g.identity.uuid,
            model: &g.identity.model,
            pci_bus_id: &g.identity.pci_bus_id,
            up: g.up,
            memory: g.memory.map(MemoryBytes::from),
            limits: g.limits.map(|l| LimitBytes {
                soft: l.soft,
                hard: l.hard,
                hysteresis: l.hysteresis,
            }),
            level: g.level.as_str(),
            soft_violations: g.soft_violations,
            hard_violations: g.hard_violations,
            leak_drift_bytes: g.leak_drift_bytes,
            leak_rate_bytes_per_second: g.leak_rate,
            hard_limit_eta_seconds: g.hard_limit_eta,
            cleanup_trigger: g.trigger().map(|t| t.as_str()),
            processes: g.processes[..listed]
                .iter()
                .map(|p| Process::new(p, rules))
                .collect(),
            processes_omitted: g.processes.len() - listed,
            migs: g.migs.iter().map(Mig::new).collect(),
            allocations: g
                .allocations
                .iter()
                .map(|a| Allocation {
                    namespace: &a.namespace,
                    pod: &a.pod,
                    container: &a.container,
                    claim: &a.claim,
                })
                .collect(),
            allocations_omitted: g.allocations.omitted,
            cleanup_reclaim: Vec::new(),
        }
    }
}

impl From<Memory> for MemoryBytes {
    fn from(m: Memory) -> Self {
        MemoryBytes {
            total: m.total,
            reserved: m.reserved,
            free: m.free,
            allocated: m.allocated,
        }
    }
}

impl<'a> Process<'a> {
    fn new(p: &'a ProcessView, rules: &SpareRules) -> Self {
        Process {
            pid: p.pid,
            name: &p.name,
            allocated: p.allocated,
            leak_drift_bytes: p.leak_drift_bytes,
            leak_rate_bytes_per_second: p.leak_rate,
            workload: p.workload.as_deref().map(|w| Workload {
                namespace: &w.namespace,
                pod: &w.pod,
                container: &w.container,
                pod_uid: &w.pod_uid,
                container_id: &w.container_id,
                name_source: w.names.as_str(),
            }),
            allocator: crate::output::api_allocator::Allocator::new(p),
            spared: rules
                .verdicts(p)
                .into_iter()
                .map(|v| Spared {
                    action: v.action,
                    kind: v.kind,
                    rule: v.spared.rule,
                    why: v.spared.to_string(),
                })
                .collect(),
        }
    }
}

impl<'a> Mig<'a> {
    fn new(m: &'a MigSample) -> Self {
        Mig {
            index: m.index,
            uuid: &m.uuid,
            profile: &m.profile,
            memory: m.memory.map(MemoryBytes::from),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initial_snapshot_has_null_time_and_no_gpus() {
        let s = Snapshot::initial();
        let v = serde_json::to_value(GpusResponse::new(&s, 16, &SpareRules::default())).unwrap();
        assert!(v["taken_at"].is_null());
        assert_eq!(v["nvml_up"], false);
        assert_eq!(v["gpus"].as_array().unwrap().len(), 0);
    }
}
