//! The kubelet's pod-resources API (v1 `List`, gRPC on a unix socket, read-only, no RBAC): which
//! containers the device plugins allocated which devices to.
//!
//! Listed on a tokio task of its own every refresh interval, never on the poll path; the newest
//! good [`DeviceMap`] is published on a `watch` channel that the poller's attributor reads. A
//! missing socket, a timeout or an error keeps the last good map, counts
//! `vram_exporter_poll_errors_total{operation="pod_resources"}` and is logged once per change of
//! state, not at every refresh. Each refresh connects afresh, so a restarted kubelet (a new
//! socket at the same path) is picked up by the next one.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::watch;

use super::limits::{container_ok, namespace_ok, pod_ok, MAX_ALLOCATIONS_PER_GPU};
use super::pb::v1::{ListPodResourcesRequest, ListPodResourcesResponse};
use super::SocketConfig;
use super::{budget, dra, refresh};
use crate::base::operation::Operation;
use crate::base::supervise::Component;
use crate::base::telemetry::Telemetry;
use crate::source::sample::{Allocation, Allocations};

/// Device ID → the containers it was allocated to, from one List answer.
#[derive(Debug, Clone, Default)]
pub struct DeviceMap {
    /// The first allocations of each device in sorted order (at most
    /// [`MAX_ALLOCATIONS_PER_GPU`]) and how many more there were; shared by every poll's samples
    /// until the next list.
    by_device: HashMap<String, Allocations>,
    /// namespace → pod → its containers that hold any device.
    pods: HashMap<String, HashMap<String, BTreeSet<String>>>,
}

/// The longest device ID kept: GPU and MIG UUIDs are 40 characters (`MIG-GPU-<uuid>/<gi>/<ci>`
/// about 50); a longer ID is no NVIDIA device's.
const MAX_DEVICE_ID: usize = 96;

/// One device's allocations while a list is read: the smallest ones kept, every distinct one
/// counted by its hash (8 bytes each, not a copy of its names).
#[derive(Default)]
struct Bounded {
    kept: BTreeSet<Allocation>,
    seen: HashSet<u64>,
}

impl Bounded {
    fn add(&mut self, a: &Allocation) {
        let mut h = std::hash::DefaultHasher::new();
        a.hash(&mut h);
        if !self.seen.insert(h.finish()) {
            return;
        }
        self.kept.insert(a.clone());
        if self.kept.len() > MAX_ALLOCATIONS_PER_GPU {
            self.kept.pop_last();
        }
    }

    fn finish(self) -> Allocations {
        Allocations {
            omitted: self.seen.len() - self.kept.len(),
            list: self.kept.into_iter().collect(),
        }
    }
}

impl DeviceMap {
    /// Builds the map from a List answer. Device IDs are GPU or MIG UUIDs (the NVIDIA device
    /// plugin's default `uuid` strategy); a time-slicing replica `UUID::N` counts as its GPU. DRA
    /// claims of NVIDIA's driver are filed under their GPU's minor number ([`dra::minor_key`]).
    /// Pods and containers whose names are longer than Kubernetes allows, and device IDs longer
    /// than any GPU's, are left out: no label grows with the answer.
    pub fn from_response(response: &ListPodResourcesResponse) -> Self {
        let mut map = DeviceMap::default();
        let mut by_device: HashMap<String, Bounded> = HashMap::new();
        for pod in &response.pod_resources {
            if !namespace_ok(&pod.namespace) || !pod_ok(&pod.name) {
                continue;
            }
            for container in &pod.containers {
                if !container_ok(&container.name) {
                    continue;
                }
                let allocation = Allocation {
                    namespace: pod.namespace.clone(),
                    pod: pod.name.clone(),
                    container: container.name.clone(),
                    claim: String::new(),
                };
                let mut holds = false;
                for id in container.devices.iter().flat_map(|d| &d.device_ids) {
                    let uuid = id.split_once("::").map_or(id.as_str(), |(u, _)| u);
                    if uuid.is_empty() || uuid.len() > MAX_DEVICE_ID {
                        continue;
                    }
                    by_device
                        .entry(uuid.to_string())
                        .or_default()
                        .add(&allocation);
                    holds = true;
                }
                // DRA: the GPUs NVIDIA's driver gave the container, filed by minor number.
                for (claim, key) in dra::claimed(container, &pod.namespace) {
                    let claimed = Allocation {
                        claim: claim.to_string(),
                        ..allocation.clone()
                    };
                    by_device.entry(key).or_default().add(&claimed);
                    holds = true;
                }
                if holds {
                    map.pods
                        .entry(pod.namespace.clone())
                        .or_default()
                        .entry(pod.name.clone())
                        .or_default()
                        .insert(container.name.clone());
                }
            }
        }
        map.by_device = by_device
            .into_iter()
            .map(|(id, b)| (id, b.finish()))
            .collect();
        map
    }

    /// The containers allocated any of `device_ids`, sorted, each once, at most
    /// [`MAX_ALLOCATIONS_PER_GPU`] (shared, not copied, when only one of the IDs is allocated: a
    /// GPU without MIG). Merging MIG devices, `omitted` may count a container twice.
    pub fn allocations_of<'a>(&self, device_ids: impl Iterator<Item = &'a str>) -> Allocations {
        let found: Vec<&Allocations> = device_ids.filter_map(|id| self.by_device.get(id)).collect();
        match found[..] {
            [] => Allocations::default(),
            [one] => one.clone(),
            _ => {
                let mut out: Vec<Allocation> =
                    found.iter().flat_map(|a| a.list.iter().cloned()).collect();
                out.sort();
                out.dedup();
                let over = out.len().saturating_sub(MAX_ALLOCATIONS_PER_GPU);
                out.truncate(MAX_ALLOCATIONS_PER_GPU);
                Allocations {
                    list: out.into(),
                    omitted: over + found.iter().map(|a| a.omitted).sum::<usize>(),
                }
            }
        }
    }

    /// Whether the pod holds any device.
    pub fn has_pod(&self, namespace: &str, pod: &str) -> bool {
        self.containers_of(namespace, pod).is_some()
    }

    fn containers_of(&self, namespace: &str, pod: &str) -> Option<&BTreeSet<String>> {
        self.pods.get(namespace)?.get(pod)
    }

    /// The name of the pod's container when exactly one of its containers holds devices.
    pub fn only_container(&self, namespace: &str, pod: &str) -> Option<&str> {
        let containers = self.containers_of(namespace, pod)?;
        match containers.len() {
            1 => containers.iter().next().map(String::as_str),
            _ => None,
        }
    }
}

/// Starts the refresh task (supervised, see `refresh`); the receiver holds an empty map until
/// the first good List.
pub fn spawn(
    config: SocketConfig,
    telemetry: Telemetry,
) -> (watch::Receiver<Arc<DeviceMap>>, tokio::task::JoinHandle<()>) {
    refresh::spawn(
        CLIENT,
        config,
        telemetry,
        |config: SocketConfig| async move {
            let response = list(&config).await?;
            // The answer is dropped once mapped, before the map is published.
            Ok((
                DeviceMap::from_response(&response),
                response.pod_resources.len(),
            ))
        },
    )
}

/// The pod-resources client, for its counters and log lines.
const CLIENT: refresh::Client = refresh::Client {
    component: Component::PodResources,
    operation: Operation::PodResources,
    listed: "pod-resources listed: workload names on",
    failing: "pod-resources cannot be listed: keeping the last good list",
};

/// One List call on a fresh connection (the refresh loop bounds it by the timeout). The error is
/// a stable description (the kind of failure, not its varying details).
async fn list(config: &SocketConfig) -> Result<ListPodResourcesResponse, String> {
    let channel = connect(config.socket.clone(), "kubelet").await?;
    let bytes = budget::call(
        channel,
        "/v1.PodResourcesLister/List",
        ListPodResourcesRequest {},
    )
    .await
    .map_err(|status| format!("the kubelet answered {:?}", status.code()))?;
    budget::decode(bytes, &budget::POD_RESOURCES)
}

/// A gRPC channel to the unix socket `socket` (the kubelet's or the container runtime's); the
/// error is the kind of failure (socket absent, permission denied, refused).
pub(super) async fn connect(
    socket: PathBuf,
    host: &'static str,
) -> Result<tonic::transport::Channel, String> {
    // The URI is required by the API and unused: the connector dials the unix socket.
    tonic::transport::Endpoint::from_shared(format!("http://{host}.invalid"))
        .map_err(|_| "cannot connect".to_string())?
        .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
            let socket = socket.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(socket).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
            }
        }))
        .await
        .map_err(|e| describe_connect(&e))
}

/// A connection failure as its io error kind (socket absent, permission denied, refused).
fn describe_connect(e: &tonic::transport::Error) -> String {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return format!("cannot connect: {}", io.kind());
        }
        source = s.source();
    }
    "cannot connect".to_string()
}
