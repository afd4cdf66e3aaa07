//! The exposition: the public metric contract (`vram_*` families), rendered from a snapshot.
//!
//! Families are written straight from a [`Snapshot`] once per poll into one buffer (see
//! `publish`): a scrape then copies bytes, never walks state, and series of vanished processes and
//! devices disappear by construction. The exporter's self-metrics live in `telemetry`.

use std::fmt::Write as _;
use std::time::UNIX_EPOCH;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::config::input::ConfigError;
use crate::model::engine::{GpuView, ProcessView, Snapshot};
use crate::source::sample::Memory;

mod allocator;

/// The exposition format's content type.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The `[processes]` section: how many per-process series each GPU publishes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawProcesses {
    /// Per-process series are published for the top N processes of each GPU by allocation.
    pub max_per_gpu: usize,
}

impl Default for RawProcesses {
    fn default() -> Self {
        RawProcesses { max_per_gpu: 16 }
    }
}

impl RawProcesses {
    /// The validated top-N: it bounds the number of per-process series.
    pub fn validate(&self) -> Result<usize, ConfigError> {
        if self.max_per_gpu > 1024 {
            return Err(ConfigError::invalid(
                "processes.max_per_gpu",
                self.max_per_gpu,
                "must be at most 1024 (it bounds the number of per-process series)",
            ));
        }
        Ok(self.max_per_gpu)
    }
}

/// The domain families of one snapshot in the text exposition format.
/// `max_processes_per_gpu` bounds the per-process series of each GPU (largest first).
pub fn render(s: &Snapshot, max_processes_per_gpu: usize) -> Bytes {
    let mut out = String::with_capacity(4096 + s.gpus.len() * (2048 + max_processes_per_gpu * 400));
    // `write!` into a String cannot fail.
    let w = &mut out;
    let labels = Labels::new(s, max_processes_per_gpu);

    family(
        w,
        "vram_exporter_build_info",
        "gauge",
        "Build of the exporter (version, git revision) and the NVIDIA driver it talks to (value 1).",
    );
    let _ = writeln!(
        w,
        "vram_exporter_build_info{{version=\"{}\",revision=\"{}\",driver_version=\"{}\"}} 1",
        crate::config::build_info::VERSION,
        Escaped(crate::config::build_info::REVISION),
        Escaped(&s.driver_version)
    );
    family(
        w,
        "vram_nvml_up",
        "gauge",
        "Whether NVML is initialised (1) or could not be (0).",
    );
    let _ = writeln!(w, "vram_nvml_up {}", u8::from(s.nvml_up));
    family(
        w,
        "vram_exporter_last_poll_timestamp_seconds",
        "gauge",
        "Unix time of the last completed poll; a stale value means NVML calls are hanging.",
    );
    let ts = s
        .taken_at
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    let _ = writeln!(w, "vram_exporter_last_poll_timestamp_seconds {ts:.3}");

    if !s.gpus.is_empty() {
        family(
            w,
            "vram_gpu_info",
            "gauge",
            "GPU identity (value 1): NVML index, UUID, model name and PCI bus id.",
        );
        for g in &s.gpus {
            let _ = writeln!(
                w,
                "vram_gpu_info{{gpu=\"{}\",uuid=\"{}\",model=\"{}\",pci_bus_id=\"{}\"}} 1",
                g.identity.index,
                Escaped(&g.identity.uuid),
                Escaped(&g.identity.model),
                Escaped(&g.identity.pci_bus_id)
            );
        }
        per_gpu(
            w,
            &labels,
            "vram_device_up",
            "gauge",
            "Whether the GPU answers NVML (0 when lost).",
            |g| Some(u64::from(g.up)),
        );
    }
    let mem = |f: fn(&Memory) -> u64| move |g: &GpuView| g.memory.filter(|_| g.up).map(|m| f(&m));
    per_gpu(
        w,
        &labels,
        "vram_total_bytes",
        "gauge",
        "Total memory of the GPU.",
        mem(|m| m.total),
    );
    per_gpu(
        w,
        &labels,
        "vram_allocated_bytes",
        "gauge",
        "Memory allocated on the GPU (NVML \"used\", excluding reserved).",
        mem(|m| m.allocated),
    );
    per_gpu(
        w,
        &labels,
        "vram_reserved_bytes",
        "gauge",
        "Memory reserved by the driver and firmware, unavailable to processes.",
        mem(|m| m.reserved),
    );
    per_gpu(
        w,
        &labels,
        "vram_free_bytes",
        "gauge",
        "Memory free on the GPU.",
        mem(|m| m.free),
    );
    per_gpu(
        w,
        &labels,
        "vram_soft_limit_bytes",
        "gauge",
        "Effective soft limit (warning) of the GPU.",
        |g| g.limits.map(|l| l.soft),
    );
    per_gpu(
        w,
        &labels,
        "vram_hard_limit_bytes",
        "gauge",
        "Effective hard limit (page, cleanup) of the GPU.",
        |g| g.limits.map(|l| l.hard),
    );
    per_gpu(
        w,
        &labels,
        "vram_pressure_level",
        "gauge",
        "Memory pressure: 0 ok, 1 above the soft limit, 2 above the hard limit (held until usage falls below limit minus hysteresis).",
        |g| g.memory.filter(|_| g.up).map(|_| u64::from(g.level.as_u8())),
    );
    per_gpu(
        w,
        &labels,
        "vram_soft_limit_violations_total",
        "counter",
        "Episodes of allocation reaching the soft limit (rising edges, with hysteresis).",
        |g| Some(g.soft_violations),
    );
    per_gpu(
        w,
        &labels,
        "vram_hard_limit_violations_total",
        "counter",
        "Episodes of allocation reaching the hard limit (rising edges, with hysteresis).",
        |g| Some(g.hard_violations),
    );
    per_gpu(
        w,
        &labels,
        "vram_leak_drift_bytes",
        "gauge",
        "Memory a leak has taken on the GPU: sustained growth of the allocation floor (rolling minimum) times how long it has grown, within the leak window; 0 when the floor is not growing.",
        |g| g.memory.filter(|_| g.up).map(|_| g.leak_drift_bytes),
    );
    per_gpu(
        w,
        &labels,
        "vram_leak_rate_bytes_per_second",
        "gauge",
        "Sustained growth rate of the GPU's allocation floor (rolling minimum); 0 when it is not growing.",
        // Whole bytes per second: finer is noise, and integers render several times faster.
        |g| g.memory.filter(|_| g.up).map(|_| g.leak_rate.round() as u64),
    );
    per_gpu(
        w,
        &labels,
        "vram_hard_limit_eta_seconds",
        "gauge",
        "Seconds until allocation reaches the hard limit at the current leak rate; 0 at or above it, absent while nothing grows.",
        |g| {
            g.hard_limit_eta
                .filter(|_| g.up)
                .map(|eta| (eta * 10.0).round() / 10.0)
        },
    );

    if s.gpus.iter().any(|g| !g.migs.is_empty()) {
        family(
            w,
            "vram_mig_info",
            "gauge",
            "A MIG instance of a GPU in MIG mode (value 1): the parent's gpu and uuid, the MIG index, UUID and profile.",
        );
        for g in &s.gpus {
            for m in &g.migs {
                let _ = writeln!(
                    w,
                    "vram_mig_info{{gpu=\"{}\",uuid=\"{}\",mig=\"{}\",mig_uuid=\"{}\",profile=\"{}\"}} 1",
                    g.identity.index,
                    Escaped(&g.identity.uuid),
                    m.index,
                    Escaped(&m.uuid),
                    Escaped(&m.profile)
                );
            }
        }
        per_mig(
            w,
            s,
            "vram_mig_total_bytes",
            "Total memory of a MIG instance (part of its parent's vram_total_bytes).",
            |m| m.total,
        );
        per_mig(
            w,
            s,
            "vram_mig_allocated_bytes",
            "Memory allocated in a MIG instance (part of its parent's vram_allocated_bytes).",
            |m| m.allocated,
        );
        per_mig(
            w,
            s,
            "vram_mig_reserved_bytes",
            "Memory reserved in a MIG instance.",
            |m| m.reserved,
        );
        per_mig(
            w,
            s,
            "vram_mig_free_bytes",
            "Memory free in a MIG instance.",
            |m| m.free,
        );
    }

    if s.gpus.iter().any(|g| !g.allocations.is_empty()) {
        family(
            w,
            "vram_gpu_allocation_info",
            "gauge",
            "A container the device plugin allocated the GPU, one of its MIG devices or a time-slicing replica of it to, or a DRA claim gave it (claim: the claim's name, in the pod's namespace; empty for a device plugin's allocation) (value 1), from the kubelet's pod-resources API.",
        );
        for (g, gl) in s.gpus.iter().zip(&labels.gpu) {
            for a in g.allocations.iter() {
                let _ = writeln!(
                    w,
                    "vram_gpu_allocation_info{{{gl},namespace=\"{}\",pod=\"{}\",container=\"{}\",claim=\"{}\"}} 1",
                    Escaped(&a.namespace),
                    Escaped(&a.pod),
                    Escaped(&a.container),
                    Escaped(&a.claim)
                );
            }
        }
        family(
            w,
            "vram_gpu_allocations_omitted",
            "gauge",
            "Allocations of the GPU left out of vram_gpu_allocation_info, which lists at most 64 per GPU.",
        );
        for (g, gl) in s.gpus.iter().zip(&labels.gpu) {
            let _ = writeln!(
                w,
                "vram_gpu_allocations_omitted{{{gl}}} {}",
                g.allocations.omitted
            );
        }
    }

    let n = max_processes_per_gpu;
    if n > 0 && s.gpus.iter().any(|g| g.up && !g.processes.is_empty()) {
        family(
            w,
            "vram_process_allocated_bytes",
            "gauge",
            "Memory allocated by a process on the GPU (the largest processes.max_per_gpu per GPU).",
        );
        per_process(w, &labels, "vram_process_allocated_bytes", |p| p.allocated);
        family(
            w,
            "vram_process_leak_drift_bytes",
            "gauge",
            "Memory a leak has taken in a process: sustained growth of its allocation floor times how long it has grown, within the leak window (same processes as vram_process_allocated_bytes).",
        );
        per_process(w, &labels, "vram_process_leak_drift_bytes", |p| {
            p.leak_drift_bytes
        });
        family(
            w,
            "vram_process_leak_rate_bytes_per_second",
            "gauge",
            "Sustained growth rate of a process's allocation floor; 0 when it is not growing (same processes as vram_process_allocated_bytes).",
        );
        per_process(w, &labels, "vram_process_leak_rate_bytes_per_second", |p| {
            p.leak_rate.round() as u64
        });
        if labels.info.iter().flatten().any(Option::is_some) {
            family(
                w,
                "vram_process_info",
                "gauge",
                "The Kubernetes pod UID and container ID of a process in a pod (value 1), from its cgroup (same processes as vram_process_allocated_bytes); join with kube_pod_info on uid. name_source: where the process's namespace and pod labels come from (runtime, inferred from the GPU allocation, or none).",
            );
            for l in labels.info.iter().flatten().flatten() {
                let _ = writeln!(w, "vram_process_info{{{l}}} 1");
            }
        }
    }
    // Allocator reports from clients (nothing when no process reports).
    allocator::render(w, &labels);
    Bytes::from(out)
}

pub(crate) fn family(w: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(w, "# HELP {name} {help}");
    let _ = writeln!(w, "# TYPE {name} {kind}");
}

fn per_gpu<V: std::fmt::Display>(
    w: &mut String,
    labels: &Labels<'_>,
    name: &str,
    kind: &str,
    help: &str,
    value: impl Fn(&GpuView) -> Option<V>,
) {
    let mut wrote_header = false;
    for (g, l) in labels.s.gpus.iter().zip(&labels.gpu) {
        if let Some(v) = value(g) {
            if !wrote_header {
                family(w, name, kind, help);
                wrote_header = true;
            }
            let _ = writeln!(w, "{name}{{{l}}} {v}");
        }
    }
}

fn per_mig(w: &mut String, s: &Snapshot, name: &str, help: &str, value: impl Fn(&Memory) -> u64) {
    family(w, name, "gauge", help);
    for g in &s.gpus {
        for m in &g.migs {
            if let Some(mem) = &m.memory {
                let _ = writeln!(
                    w,
                    "{name}{{gpu=\"{}\",uuid=\"{}\",mig=\"{}\",mig_uuid=\"{}\"}} {}",
                    g.identity.index,
                    Escaped(&g.identity.uuid),
                    m.index,
                    Escaped(&m.uuid),
                    value(mem)
                );
            }
        }
    }
}

fn per_process<V: std::fmt::Display>(
    w: &mut String,
    labels: &Labels<'_>,
    name: &str,
    value: impl Fn(&ProcessView) -> V,
) {
    for (g, ls) in labels.s.gpus.iter().zip(&labels.process) {
        for (p, l) in g.processes.iter().zip(ls) {
            let _ = writeln!(w, "{name}{{{l}}} {}", value(p));
        }
    }
}

/// The label sets of one render, escaped and formatted once and written by every family: each
/// GPU's `gpu,uuid`, each published process's `gpu,uuid,pid,process,namespace,pod,container`
/// (top N of up GPUs; the workload labels empty when unknown) and, for those in a pod,
/// `gpu,uuid,pid,process,pod_uid,container_id,name_source`.
pub(crate) struct Labels<'a> {
    pub(crate) s: &'a Snapshot,
    pub(crate) gpu: Vec<String>,
    pub(crate) process: Vec<Vec<String>>,
    info: Vec<Vec<Option<String>>>,
}

impl<'a> Labels<'a> {
    fn new(s: &'a Snapshot, max_processes_per_gpu: usize) -> Self {
        let gpu: Vec<String> = s
            .gpus
            .iter()
            .map(|g| {
                format!(
                    "gpu=\"{}\",uuid=\"{}\"",
                    g.identity.index,
                    Escaped(&g.identity.uuid)
                )
            })
            .collect();
        let published = |g: &'a GpuView| {
            let n = if g.up { max_processes_per_gpu } else { 0 };
            g.processes.iter().take(n)
        };
        let process = s
            .gpus
            .iter()
            .zip(&gpu)
            .map(|(g, gl)| {
                published(g)
                    .map(|p| {
                        let (ns, pod, container) = p
                            .workload
                            .as_deref()
                            .map(|w| (w.namespace.as_str(), w.pod.as_str(), w.container.as_str()))
                            .unwrap_or(("", "", ""));
                        format!(
                            "{gl},pid=\"{}\",process=\"{}\",namespace=\"{}\",pod=\"{}\",container=\"{}\"",
                            p.pid,
                            Escaped(&p.name),
                            Escaped(ns),
                            Escaped(pod),
                            Escaped(container)
                        )
                    })
                    .collect()
            })
            .collect();
        let info = s
            .gpus
            .iter()
            .zip(&gpu)
            .map(|(g, gl)| {
                published(g)
                    .map(|p| {
                        p.workload.as_deref().map(|w| {
                            format!(
                                "{gl},pid=\"{}\",process=\"{}\",pod_uid=\"{}\",container_id=\"{}\",name_source=\"{}\"",
                                p.pid,
                                Escaped(&p.name),
                                Escaped(&w.pod_uid),
                                Escaped(&w.container_id),
                                w.names.as_str()
                            )
                        })
                    })
                    .collect()
            })
            .collect();
        Labels {
            s,
            gpu,
            process,
            info,
        }
    }
}

/// A label value escaped for the text format: backslash, double quote and newline.
struct Escaped<'a>(&'a str);

impl std::fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.0;
        if !s.contains(['\\', '"', '\n']) {
            return f.write_str(s);
        }
        for c in s.chars() {
            match c {
                '\\' => f.write_str("\\\\")?,
                '"' => f.write_str("\\\"")?,
                '\n' => f.write_str("\\n")?,
                c => std::fmt::Write::write_char(f, c)?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_label_values() {
        assert_eq!(Escaped("a\"b\\c\nd").to_string(), "a\\\"b\\\\c\\nd");
        assert_eq!(Escaped("plain").to_string(), "plain");
    }

    #[test]
    fn initial_snapshot_reports_nvml_down() {
        let bytes = render(&Snapshot::initial(), 16);
        let text = std::str::from_utf8(&bytes).unwrap();
        assert!(text.contains("vram_nvml_up 0\n"));
        assert!(!text.contains("vram_gpu_info"));
    }
}
