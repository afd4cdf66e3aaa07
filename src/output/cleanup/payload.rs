//! What a webhook receives as JSON and an exec'd command as JSON on stdin and environment variables.
//!
//! One struct, built from the GPU's view in the newest snapshot, so both actions always describe
//! the same facts with the same names. Strings that come from NVML or the host (UUID, model, host
//! name, process names) have their control characters removed here, so a newline in a driver
//! string can never add a line to a command's environment or a field a receiver splits on.

use serde::Serialize;

use crate::model::engine::GpuView;
use crate::output::cleanup::decide::Reason;

/// How many of the GPU's largest processes the payload lists.
pub const PAYLOAD_PROCESSES: usize = 16;

/// The facts about one GPU in hard breach, or predicted to breach.
#[derive(Debug, Clone, Serialize)]
pub struct Payload {
    pub host: String,
    pub gpu: u32,
    pub uuid: String,
    pub model: String,
    pub allocated_bytes: u64,
    pub total_bytes: u64,
    pub soft_limit_bytes: u64,
    pub hard_limit_bytes: u64,
    /// "ok", "soft" or "hard".
    pub level: &'static str,
    /// "entered_hard", "still_hard" or "predicted_breach".
    pub reason: &'static str,
    /// "hard" (above the hard limit) or "predicted" (before it, on the time to it).
    pub trigger: &'static str,
    /// The GPU's leak rate (bytes per second, 0 when nothing leaks).
    pub leak_rate_bytes_per_second: f64,
    /// Seconds until the hard limit at that rate: 0 at or above it, null when nothing grows.
    pub hard_limit_eta_seconds: Option<f64>,
    /// The largest processes on the GPU, largest first.
    pub processes: Vec<PayloadProcess>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PayloadProcess {
    pub pid: u32,
    pub name: String,
    pub bytes: u64,
    /// The Kubernetes workload (empty strings outside Kubernetes or when unknown).
    pub namespace: String,
    pub pod: String,
    pub container: String,
    pub pod_uid: String,
    pub container_id: String,
    /// Where namespace and pod come from: "runtime" (exact), "inferred" (a guess from the GPU
    /// allocation: do not act on it) or "none".
    pub name_source: &'static str,
}

impl Payload {
    pub fn new(host: &str, gpu: &GpuView, reason: Reason) -> Self {
        let limits = gpu.limits;
        Payload {
            host: printable(host),
            gpu: gpu.identity.index,
            uuid: printable(&gpu.identity.uuid),
            model: printable(&gpu.identity.model),
            allocated_bytes: gpu.memory.map_or(0, |m| m.allocated),
            total_bytes: gpu.memory.map_or(0, |m| m.total),
            soft_limit_bytes: limits.map_or(0, |l| l.soft),
            hard_limit_bytes: limits.map_or(0, |l| l.hard),
            level: gpu.level.as_str(),
            reason: reason.as_str(),
            trigger: reason.trigger().as_str(),
            leak_rate_bytes_per_second: gpu.leak_rate.round(),
            hard_limit_eta_seconds: gpu.hard_limit_eta.map(|e| (e * 10.0).round() / 10.0),
            processes: gpu
                .processes
                .iter()
                .take(PAYLOAD_PROCESSES)
                .map(|p| {
                    let w = p.workload.as_deref().cloned().unwrap_or_default();
                    PayloadProcess {
                        pid: p.pid,
                        name: printable(&p.name),
                        bytes: p.allocated,
                        namespace: w.namespace,
                        pod: w.pod,
                        container: w.container,
                        pod_uid: w.pod_uid,
                        container_id: w.container_id,
                        name_source: w.names.as_str(),
                    }
                })
                .collect(),
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        // Serialising plain strings and integers cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The environment an exec'd command gets (on top of the exporter's own).
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let pids: Vec<String> = self.processes.iter().map(|p| p.pid.to_string()).collect();
        // One word per pid, in the same order: "namespace/pod", or "-" outside Kubernetes or
        // when the names are unknown (Kubernetes names hold no spaces; anything odd becomes _).
        let pods: Vec<String> = self
            .processes
            .iter()
            .map(|p| {
                if p.pod.is_empty() {
                    "-".to_string()
                } else {
                    format!("{}/{}", p.namespace, p.pod)
                        .chars()
                        .map(|c| {
                            if c.is_whitespace() || c.is_control() {
                                '_'
                            } else {
                                c
                            }
                        })
                        .collect()
                }
            })
            .collect();
        vec![
            ("VRAM_HOST", self.host.clone()),
            ("VRAM_GPU", self.gpu.to_string()),
            ("VRAM_UUID", self.uuid.clone()),
            ("VRAM_MODEL", self.model.clone()),
            ("VRAM_ALLOCATED_BYTES", self.allocated_bytes.to_string()),
            ("VRAM_TOTAL_BYTES", self.total_bytes.to_string()),
            ("VRAM_SOFT_LIMIT_BYTES", self.soft_limit_bytes.to_string()),
            ("VRAM_HARD_LIMIT_BYTES", self.hard_limit_bytes.to_string()),
            ("VRAM_LEVEL", self.level.to_string()),
            ("VRAM_REASON", self.reason.to_string()),
            ("VRAM_TRIGGER", self.trigger.to_string()),
            (
                "VRAM_LEAK_RATE_BYTES_PER_SECOND",
                format!("{:.0}", self.leak_rate_bytes_per_second),
            ),
            // Empty when nothing grows.
            (
                "VRAM_HARD_LIMIT_ETA_SECONDS",
                self.hard_limit_eta_seconds
                    .map_or_else(String::new, |e| format!("{e:.1}")),
            ),
            ("VRAM_TOP_PIDS", pids.join(" ")),
            ("VRAM_TOP_PODS", pods.join(" ")),
            (
                "VRAM_TOP_POD_SOURCES",
                self.processes
                    .iter()
                    .map(|p| p.name_source)
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
        ]
    }
}

/// The text without its control characters (C0, DEL and C1: newlines, tabs, escapes).
fn printable(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).collect()
}

/// This machine's host name, for the payload; empty if it cannot be read.
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates when it fits.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return String::new();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::engine::ProcessView;
    use crate::model::policy::{Level, Limits};
    use crate::source::sample::{DeviceIdentity, Memory};

    fn view() -> GpuView {
        GpuView {
            identity: DeviceIdentity {
                index: 2,
                uuid: "GPU-x\n".into(),
                model: "Sim\r\nVRAM_LEVEL=ok\u{1b}[2J".into(),
                pci_bus_id: "0".into(),
                minor: None,
            },
            up: true,
            memory: Some(Memory {
                total: 100,
                reserved: 1,
                free: 2,
                allocated: 97,
            }),
            limits: Some(Limits {
                soft: 85,
                hard: 95,
                hysteresis: 2,
            }),
            level: Level::Hard,
            soft_violations: 1,
            hard_violations: 1,
            leak_drift_bytes: 0,
            leak_rate: 0.0,
            hard_limit_eta: None,
            predicted: false,
            processes: (0..20)
                .map(|i| ProcessView {
                    pid: 100 + i,
                    name: format!("p{i}"),
                    allocated: 50 - u64::from(i),
                    leak_drift_bytes: 0,
                    leak_rate: 0.0,
                    workload: None,
                    allocator: None,
                })
                .collect(),
            migs: vec![],
            allocations: Default::default(),
        }
    }

    #[test]
    fn json_and_env_carry_the_same_facts() {
        let p = Payload::new("node-1", &view(), Reason::Entered);
        let v: serde_json::Value = serde_json::from_slice(&p.to_json()).unwrap();
        assert_eq!(v["host"], "node-1");
        assert_eq!(v["gpu"], 2);
        assert_eq!(v["allocated_bytes"], 97);
        assert_eq!(v["hard_limit_bytes"], 95);
        assert_eq!(v["level"], "hard");
        assert_eq!(v["trigger"], "hard");
        assert!(v["hard_limit_eta_seconds"].is_null());
        assert_eq!(v["processes"].as_array().unwrap().len(), PAYLOAD_PROCESSES);
        assert_eq!(v["processes"][0]["pid"], 100);
        assert_eq!(v["processes"][0]["bytes"], 50);
        let env = p.env();
        let get = |k: &str| env.iter().find(|(n, _)| *n == k).unwrap().1.clone();
        assert_eq!(get("VRAM_GPU"), "2");
        assert_eq!(get("VRAM_ALLOCATED_BYTES"), "97");
        assert!(get("VRAM_TOP_PIDS").starts_with("100 101 "));
        // Control characters never reach the environment or the JSON.
        assert_eq!(get("VRAM_UUID"), "GPU-x");
        assert_eq!(get("VRAM_MODEL"), "SimVRAM_LEVEL=ok[2J");
        assert_eq!(v["model"], "SimVRAM_LEVEL=ok[2J");
        assert_eq!(get("VRAM_TRIGGER"), "hard");
        assert_eq!(get("VRAM_HARD_LIMIT_ETA_SECONDS"), "");
    }

    #[test]
    fn a_prediction_carries_its_trigger_rate_and_eta() {
        let mut gpu = view();
        gpu.level = Level::Soft;
        gpu.leak_rate = 512.0 * 1024.0 * 1024.0;
        gpu.hard_limit_eta = Some(42.34);
        let p = Payload::new("node-1", &gpu, Reason::Predicted);
        let v: serde_json::Value = serde_json::from_slice(&p.to_json()).unwrap();
        assert_eq!(v["reason"], "predicted_breach");
        assert_eq!(v["trigger"], "predicted");
        assert_eq!(v["leak_rate_bytes_per_second"], 536870912.0);
        assert_eq!(v["hard_limit_eta_seconds"], 42.3);
        let env = p.env();
        let get = |k: &str| env.iter().find(|(n, _)| *n == k).unwrap().1.clone();
        assert_eq!(get("VRAM_TRIGGER"), "predicted");
        assert_eq!(get("VRAM_LEAK_RATE_BYTES_PER_SECOND"), "536870912");
        assert_eq!(get("VRAM_HARD_LIMIT_ETA_SECONDS"), "42.3");
    }
}
