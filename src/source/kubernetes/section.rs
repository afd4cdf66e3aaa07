//! The `[kubernetes]` section: which attribution sources run (the proc root, the kubelet's
//! pod-resources socket, the container runtime's CRI socket), checked once at start; an explicit
//! path that cannot be used is refused (exit 2), a default one that is absent turns its part off.

use std::os::unix::fs::FileTypeExt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{runtime, DEFAULT_PROC_ROOT, DEFAULT_SOCKET};
use crate::base::input::{parse_duration, ConfigError};

/// `kubernetes.enabled`: `"auto"`, `true` or `false` (a boolean or its text).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Enabled {
    Bool(bool),
    Text(String),
}

/// The `[kubernetes]` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawKubernetes {
    /// "auto" (default): attribution where the proc root and the socket exist, a logged
    /// "attribution off" for what is absent; true: both must exist (exit 2 otherwise); false: off.
    pub enabled: Enabled,
    /// Where the host's /proc is seen (the DaemonSet mounts it read-only; no hostPID needed).
    pub proc_root: String,
    /// The kubelet's pod-resources socket.
    pub pod_resources_socket: String,
    /// The container runtime's CRI socket: "auto" (default: the containerd or CRI-O socket where
    /// one is present), "none", or a path (which must be a unix socket).
    pub runtime_socket: String,
    /// How often the pod-resources API is listed and cgroup files are re-read.
    pub refresh_interval: String,
    /// How long one pod-resources call (connect and list) may take.
    pub timeout: String,
    /// How often the container runtime is listed (its own schedule: names change only when pods
    /// come and go, so a slower one costs only how soon a new pod is named).
    pub runtime_refresh_interval: String,
    /// How long one runtime call (connect and both lists) may take.
    pub runtime_timeout: String,
}

impl Default for RawKubernetes {
    fn default() -> Self {
        RawKubernetes {
            enabled: Enabled::Text("auto".into()),
            proc_root: DEFAULT_PROC_ROOT.into(),
            pod_resources_socket: DEFAULT_SOCKET.into(),
            runtime_socket: "auto".into(),
            refresh_interval: "10s".into(),
            timeout: "2s".into(),
            runtime_refresh_interval: "10s".into(),
            runtime_timeout: "2s".into(),
        }
    }
}

/// The validated section: what runs and what was switched off (logged at start).
#[derive(Debug, Clone, Default)]
pub struct KubernetesConfig {
    /// Where cgroup files are read; None: no attribution at all.
    pub proc_root: Option<PathBuf>,
    /// The pod-resources client; None: pod UIDs and container IDs without names.
    pub pod_resources: Option<SocketConfig>,
    /// The container runtime client; None: names only inferred from the GPU allocations.
    pub runtime: Option<SocketConfig>,
    pub refresh_interval: Duration,
    /// Why a part is off, logged once at start.
    pub off: Vec<String>,
}

/// A unix-socket gRPC client's settings (the pod-resources and the runtime client).
#[derive(Debug, Clone)]
pub struct SocketConfig {
    pub socket: PathBuf,
    pub refresh_interval: Duration,
    pub timeout: Duration,
}

/// A client's refresh interval (100 ms to 1 h) and call timeout (10 ms up to the interval and
/// 1 m), each given as (key, text).
fn schedule(
    (interval_key, interval): (&str, &str),
    (timeout_key, timeout_text): (&str, &str),
) -> Result<(Duration, Duration), ConfigError> {
    let every = parse_duration(interval_key, interval)?;
    if every < Duration::from_millis(100) || every > Duration::from_secs(3600) {
        return Err(ConfigError::invalid(
            interval_key,
            interval,
            "must be between 100ms and 1h",
        ));
    }
    let timeout = parse_duration(timeout_key, timeout_text)?;
    if timeout < Duration::from_millis(10) || timeout > every.min(Duration::from_secs(60)) {
        return Err(ConfigError::invalid(
            timeout_key,
            timeout_text,
            format!("must be at least 10ms and at most {interval_key} ({interval}) and 1m"),
        ));
    }
    Ok((every, timeout))
}

impl RawKubernetes {
    /// Checks the keys; an explicitly configured path (or `enabled = true`) that does not exist
    /// is refused, a default one that does not exist turns its part off.
    pub fn validate(&self) -> Result<KubernetesConfig, ConfigError> {
        let required = match &self.enabled {
            Enabled::Bool(false) => return Ok(KubernetesConfig::default()),
            Enabled::Bool(true) => true,
            Enabled::Text(t) => match t.trim() {
                "auto" => false,
                "true" => true,
                "false" => return Ok(KubernetesConfig::default()),
                _ => {
                    return Err(ConfigError::invalid(
                        "kubernetes.enabled",
                        t,
                        "must be \"auto\", true or false",
                    ))
                }
            },
        };
        let (refresh_interval, timeout) = schedule(
            ("kubernetes.refresh_interval", &self.refresh_interval),
            ("kubernetes.timeout", &self.timeout),
        )?;
        let (runtime_interval, runtime_timeout) = schedule(
            (
                "kubernetes.runtime_refresh_interval",
                &self.runtime_refresh_interval,
            ),
            ("kubernetes.runtime_timeout", &self.runtime_timeout),
        )?;
        let mut off = Vec::new();
        let proc_root = PathBuf::from(&self.proc_root);
        let explicit = required || self.proc_root != DEFAULT_PROC_ROOT;
        if !proc_root.is_absolute() {
            return Err(ConfigError::invalid(
                "kubernetes.proc_root",
                &self.proc_root,
                "must be an absolute path",
            ));
        }
        match std::fs::metadata(&proc_root) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(ConfigError::invalid(
                    "kubernetes.proc_root",
                    &self.proc_root,
                    "is not a directory",
                ))
            }
            Err(e) if explicit => {
                return Err(ConfigError::invalid(
                    "kubernetes.proc_root",
                    &self.proc_root,
                    format!("cannot be read: {e}"),
                ))
            }
            Err(e) => {
                off.push(format!(
                    "workload attribution off: kubernetes.proc_root {} cannot be read ({e})",
                    self.proc_root
                ));
                return Ok(KubernetesConfig {
                    off,
                    ..KubernetesConfig::default()
                });
            }
        }
        let socket = PathBuf::from(&self.pod_resources_socket);
        let explicit = required || self.pod_resources_socket != DEFAULT_SOCKET;
        let pod_resources = match std::fs::metadata(&socket) {
            Ok(m) if m.file_type().is_socket() => Some(SocketConfig {
                socket,
                refresh_interval,
                timeout,
            }),
            Ok(_) => {
                return Err(ConfigError::invalid(
                    "kubernetes.pod_resources_socket",
                    &self.pod_resources_socket,
                    "is not a unix socket",
                ))
            }
            Err(e) if explicit => {
                return Err(ConfigError::invalid(
                    "kubernetes.pod_resources_socket",
                    &self.pod_resources_socket,
                    format!("cannot be used: {e}"),
                ))
            }
            Err(e) => {
                off.push(format!(
                    "pod-resources attribution off (pod UIDs and container IDs only, no names): \
                     kubernetes.pod_resources_socket {} is absent ({e})",
                    self.pod_resources_socket
                ));
                None
            }
        };
        let kubelet = pod_resources.is_some();
        let runtime = self
            .runtime_socket(kubelet, &mut off)?
            .map(|socket| SocketConfig {
                socket,
                refresh_interval: runtime_interval,
                timeout: runtime_timeout,
            });
        Ok(KubernetesConfig {
            proc_root: Some(proc_root),
            pod_resources,
            runtime,
            refresh_interval,
            off,
        })
    }

    /// `runtime_socket`: "none", "auto" (on a Kubernetes node, `kubelet` being whether its
    /// pod-resources socket is there: a present containerd or CRI-O socket, else off) or an
    /// absolute path to a unix socket. "auto" never turns on without the kubelet: Docker's own
    /// containerd serves no CRI, and a host without pods has no pod to name.
    fn runtime_socket(
        &self,
        kubelet: bool,
        off: &mut Vec<String>,
    ) -> Result<Option<PathBuf>, ConfigError> {
        let key = "kubernetes.runtime_socket";
        let text = self.runtime_socket.trim();
        match text {
            "none" => return Ok(None),
            "auto" if !kubelet => return Ok(None),
            "auto" => {
                let found = runtime::detect();
                if found.is_none() {
                    off.push(format!(
                        "container runtime names off (names inferred from GPU allocations, \
                         never acted on): no runtime socket at {}",
                        runtime::AUTO_SOCKETS.join(" or ")
                    ));
                }
                return Ok(found);
            }
            _ => {}
        }
        let path = PathBuf::from(text);
        if !path.is_absolute() {
            return Err(ConfigError::invalid(
                key,
                text,
                "must be \"auto\", \"none\" or an absolute path",
            ));
        }
        match std::fs::metadata(&path) {
            Ok(m) if m.file_type().is_socket() => Ok(Some(path)),
            Ok(_) => Err(ConfigError::invalid(key, text, "is not a unix socket")),
            Err(e) => Err(ConfigError::invalid(
                key,
                text,
                format!("cannot be used: {e}"),
            )),
        }
    }
}
