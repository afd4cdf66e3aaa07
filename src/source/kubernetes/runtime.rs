//! The container runtime's CRI v1 runtime service (containerd or CRI-O, gRPC on a unix socket,
//! read-only: `ListPodSandbox` and `ListContainers`): the authoritative name of every pod UID on
//! the node and of every running container ID, time-sliced GPUs included.
//!
//! Listed on a tokio task of its own every refresh interval, never on the poll path; the newest
//! good [`RuntimeNames`] is published on a `watch` channel that the poller's attributor reads. A
//! missing socket, a timeout or an error keeps the last good names, counts
//! `vram_exporter_poll_errors_total{operation="runtime"}` and is logged once per change of state.
//! Each refresh connects afresh, so a restarted runtime is picked up by the next one. Names longer
//! than Kubernetes allows and UIDs or IDs that are not in their form are left out (bounded labels).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::watch;

use super::limits::{container_ok, namespace_ok, pod_ok};
use super::pb::cri::{
    Container, ContainerFilter, ContainerState, ContainerStateValue, ListContainersRequest,
    ListContainersResponse, ListPodSandboxRequest, ListPodSandboxResponse, PodSandbox,
};
use super::{budget, cgroup, refresh, SocketConfig};
use crate::base::operation::Operation;
use crate::base::supervise::Component;
use crate::base::telemetry::Telemetry;

/// Sandbox ID → pod UID, and pod UID → its names.
type Pods = (HashMap<String, String>, HashMap<String, PodName>);

/// A pod's namespace and name, as the runtime recorded them from the kubelet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodName {
    pub namespace: String,
    pub name: String,
}

/// Pod UID → its names, container ID → its name, from one pair of list answers.
#[derive(Debug, Clone, Default)]
pub struct RuntimeNames {
    pods: HashMap<String, PodName>,
    containers: HashMap<String, String>,
}

impl RuntimeNames {
    /// The names of the pod with this UID.
    pub fn pod(&self, uid: &str) -> Option<&PodName> {
        self.pods.get(uid)
    }

    /// The name of the container with this runtime ID.
    pub fn container(&self, id: &str) -> Option<&str> {
        self.containers.get(id).map(String::as_str)
    }

    /// How many pods are named.
    pub fn pods(&self) -> usize {
        self.pods.len()
    }

    /// Of the sandboxes, those whose UID and names are within the bounds: (sandbox ID → pod
    /// UID, pod UID → names).
    fn pods_of(sandboxes: Vec<PodSandbox>) -> Pods {
        let mut sandbox_uid = HashMap::new();
        let mut pods = HashMap::new();
        for s in sandboxes {
            let Some(m) = s.metadata else { continue };
            if !cgroup::is_uid(&m.uid) || !namespace_ok(&m.namespace) || !pod_ok(&m.name) {
                continue;
            }
            sandbox_uid.insert(s.id, m.uid.clone());
            pods.insert(
                m.uid,
                PodName {
                    namespace: m.namespace,
                    name: m.name,
                },
            );
        }
        (sandbox_uid, pods)
    }

    /// The names: the pods, and the running containers of those pods within the bounds.
    fn from_lists((sandbox_uid, pods): Pods, containers: Vec<Container>) -> Self {
        let mut names = RuntimeNames {
            pods,
            containers: HashMap::new(),
        };
        for c in containers {
            let Some(m) = c.metadata else { continue };
            if !cgroup::is_container_id(&c.id)
                || !container_ok(&m.name)
                || !sandbox_uid.contains_key(&c.pod_sandbox_id)
            {
                continue;
            }
            names.containers.insert(c.id, m.name);
        }
        names.pods.shrink_to_fit();
        names.containers.shrink_to_fit();
        names
    }
}

/// Starts the refresh task (supervised, see `refresh`); the receiver holds no names until the
/// first good list.
pub fn spawn(
    config: SocketConfig,
    telemetry: Telemetry,
) -> (
    watch::Receiver<Arc<RuntimeNames>>,
    tokio::task::JoinHandle<()>,
) {
    refresh::spawn(
        CLIENT,
        config,
        telemetry,
        |config: SocketConfig| async move {
            let names = list(&config).await?;
            let pods = names.pods();
            Ok((names, pods))
        },
    )
}

/// The container-runtime client, for its counters and log lines.
const CLIENT: refresh::Client = refresh::Client {
    component: Component::Runtime,
    operation: Operation::Runtime,
    listed: "container runtime listed: pod names from the runtime",
    failing: "container runtime cannot be listed: keeping the last good names",
};

/// Both list calls on one fresh connection (the refresh loop bounds them by the timeout). The
/// error is a stable description.
async fn list(config: &SocketConfig) -> Result<RuntimeNames, String> {
    let channel = super::podresources::connect(config.socket.clone(), "runtime").await?;
    let bytes = budget::call(
        channel.clone(),
        "/runtime.v1.RuntimeService/ListPodSandbox",
        ListPodSandboxRequest { filter: None },
    )
    .await
    .map_err(|s| format!("ListPodSandbox answered {:?}", s.code()))?;
    let sandboxes = budget::decode::<ListPodSandboxResponse>(bytes, &budget::SANDBOXES)?.items;
    // The sandboxes' names only, before the containers are fetched: one answer at a time.
    let pods = RuntimeNames::pods_of(sandboxes);
    let running = ContainerFilter {
        state: Some(ContainerStateValue {
            state: ContainerState::ContainerRunning.into(),
        }),
        ..Default::default()
    };
    let bytes = budget::call(
        channel,
        "/runtime.v1.RuntimeService/ListContainers",
        ListContainersRequest {
            filter: Some(running),
        },
    )
    .await
    .map_err(|s| format!("ListContainers answered {:?}", s.code()))?;
    let containers =
        budget::decode::<ListContainersResponse>(bytes, &budget::CONTAINERS)?.containers;
    Ok(RuntimeNames::from_lists(pods, containers))
}

/// The runtime sockets tried, in order, when `kubernetes.runtime_socket` is "auto".
pub const AUTO_SOCKETS: [&str; 2] = ["/run/containerd/containerd.sock", "/var/run/crio/crio.sock"];

/// The socket "auto" finds: the first of [`AUTO_SOCKETS`] that is a unix socket.
pub fn detect() -> Option<PathBuf> {
    use std::os::unix::fs::FileTypeExt;
    AUTO_SOCKETS
        .iter()
        .map(PathBuf::from)
        .find(|p| std::fs::metadata(p).is_ok_and(|m| m.file_type().is_socket()))
}
