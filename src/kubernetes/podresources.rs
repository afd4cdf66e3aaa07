//! The kubelet's pod-resources API (v1 `List`, gRPC on a unix socket, read-only, no RBAC): which
//! containers the device plugins allocated which devices to.
//!
//! Listed on a tokio task of its own every refresh interval, never on the poll path; the newest
//! good [`DeviceMap`] is published on a `watch` channel that the poller's attributor reads. A
//! missing socket, a timeout or an error keeps the last good map, counts
//! `vram_exporter_poll_errors_total{operation="pod_resources"}` and is logged once per change of
//! state, not at every refresh. Each refresh connects afresh, so a restarted kubelet (a new
//! socket at the same path) is picked up by the next one.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::watch;

use super::pb::v1::pod_resources_lister_client::PodResourcesListerClient;
use super::pb::v1::{ListPodResourcesRequest, ListPodResourcesResponse};
use super::PodResourcesConfig;
use crate::sample::{Allocation, Operation};
use crate::telemetry::Telemetry;

/// The largest List answer accepted (a node with hundreds of pods answers a few hundred KiB).
const MAX_MESSAGE: usize = 16 * 1024 * 1024;

/// Device ID → the containers it was allocated to, from one List answer.
#[derive(Debug, Clone, Default)]
pub struct DeviceMap {
    /// Sorted, each once; shared by every poll's samples until the next list.
    by_device: HashMap<String, Arc<[Allocation]>>,
    /// namespace → pod → its containers that hold any device.
    pods: HashMap<String, HashMap<String, BTreeSet<String>>>,
}

impl DeviceMap {
    /// Builds the map from a List answer. Device IDs are GPU or MIG UUIDs (the NVIDIA device
    /// plugin's default `uuid` strategy); a time-slicing replica `UUID::N` counts as its GPU.
    pub fn from_response(response: &ListPodResourcesResponse) -> Self {
        let mut map = DeviceMap::default();
        let mut by_device: HashMap<String, Vec<Allocation>> = HashMap::new();
        for pod in &response.pod_resources {
            for container in &pod.containers {
                let allocation = Allocation {
                    namespace: pod.namespace.clone(),
                    pod: pod.name.clone(),
                    container: container.name.clone(),
                };
                let mut holds = false;
                for id in container.devices.iter().flat_map(|d| &d.device_ids) {
                    let uuid = id.split_once("::").map_or(id.as_str(), |(u, _)| u);
                    by_device
                        .entry(uuid.to_string())
                        .or_default()
                        .push(allocation.clone());
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
            .map(|(id, mut allocations)| {
                allocations.sort();
                allocations.dedup();
                (id, allocations.into())
            })
            .collect();
        map
    }

    /// The containers allocated any of `device_ids`, sorted, each once (shared, not copied,
    /// when only one of the IDs is allocated: a GPU without MIG).
    pub fn allocations_of<'a>(
        &self,
        device_ids: impl Iterator<Item = &'a str>,
    ) -> Arc<[Allocation]> {
        let found: Vec<&Arc<[Allocation]>> =
            device_ids.filter_map(|id| self.by_device.get(id)).collect();
        match found[..] {
            [] => Arc::default(),
            [one] => one.clone(),
            _ => {
                let mut out: Vec<Allocation> =
                    found.into_iter().flat_map(|a| a.iter().cloned()).collect();
                out.sort();
                out.dedup();
                out.into()
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

/// Starts the refresh task; the receiver holds an empty map until the first good List.
pub fn spawn(
    config: PodResourcesConfig,
    telemetry: Telemetry,
) -> (watch::Receiver<Arc<DeviceMap>>, tokio::task::JoinHandle<()>) {
    let (tx, rx) = watch::channel(Arc::new(DeviceMap::default()));
    let tx = Arc::new(tx);
    let components = telemetry.components.clone();
    // Supervised: restarted after a panic, keeping the last good list in the channel.
    let task = crate::supervise::supervise(
        crate::supervise::Component::PodResources,
        &components,
        move || tokio::spawn(refresh(config.clone(), telemetry.clone(), tx.clone())),
    );
    (rx, task)
}

/// Lists pod resources every refresh interval, forever.
async fn refresh(
    config: PodResourcesConfig,
    telemetry: Telemetry,
    tx: Arc<watch::Sender<Arc<DeviceMap>>>,
) {
    let mut tick = tokio::time::interval(config.refresh_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The state last logged: None before the first refresh, Ok(()) while listing works.
    let mut last: Option<Result<(), String>> = None;
    loop {
        tick.tick().await;
        let state = match list(&config).await {
            Ok(response) => {
                let map = DeviceMap::from_response(&response);
                if last != Some(Ok(())) {
                    tracing::info!(
                        socket = %config.socket.display(),
                        pods = response.pod_resources.len(),
                        "pod-resources listed: workload names on"
                    );
                }
                tx.send_replace(Arc::new(map));
                Ok(())
            }
            Err(reason) => {
                telemetry
                    .poll_errors
                    .with_label_values(&["", Operation::PodResources.as_str()])
                    .inc();
                if last.as_ref().and_then(|l| l.as_ref().err()) != Some(&reason) {
                    tracing::warn!(
                        socket = %config.socket.display(),
                        reason = %reason,
                        "pod-resources cannot be listed: keeping the last good list"
                    );
                }
                Err(reason)
            }
        };
        last = Some(state);
    }
}

/// One List call on a fresh connection, within the timeout. The error is a stable description
/// (the kind of failure, not its varying details), so that logging once per change works.
async fn list(config: &PodResourcesConfig) -> Result<ListPodResourcesResponse, String> {
    let call = async {
        let socket: PathBuf = config.socket.clone();
        // The URI is required by the API and unused: the connector dials the unix socket.
        let channel = tonic::transport::Endpoint::from_static("http://kubelet.invalid")
            .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
                let socket = socket.clone();
                async move {
                    let stream = tokio::net::UnixStream::connect(socket).await?;
                    Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
                }
            }))
            .await
            .map_err(|e| describe_connect(&e))?;
        let mut client =
            PodResourcesListerClient::new(channel).max_decoding_message_size(MAX_MESSAGE);
        client
            .list(ListPodResourcesRequest {})
            .await
            .map(tonic::Response::into_inner)
            .map_err(|status| format!("the kubelet answered {:?}", status.code()))
    };
    match tokio::time::timeout(config.timeout, call).await {
        Ok(result) => result,
        Err(_) => Err(format!("no answer within {:?}", config.timeout)),
    }
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
