//! Kubernetes workload attribution: which namespace, pod and container holds each process's GPU
//! memory, and which containers the device plugin allocated each GPU to.
//!
//! Three sources, none on the scrape path:
//! - `cgroup`: a process's pod UID and container ID, read from `<proc_root>/<pid>/cgroup` by the
//!   poller thread ([`Attributor`]), cached per process and re-read every refresh interval;
//! - `podresources`: the kubelet's pod-resources API (gRPC on a unix socket), listed on its own
//!   tokio task every refresh interval; a failure keeps the last good list;
//! - `runtime`: the container runtime's CRI service (containerd or CRI-O), listed the same way:
//!   the authoritative name of every pod UID and container ID ([`NameSource::Runtime`]).
//!
//! Without the runtime, names are inferred ([`NameSource::Inferred`]; shown, never acted on by
//! cleanup) by pairing the other two: the pod-resources API names
//! the containers a GPU was allocated to but not their UIDs, the cgroup gives the UIDs but no
//! names. A pod UID is named when a GPU allocated to exactly one pod runs processes of exactly one
//! pod UID; what is learnt that way stays known (it is a fact about the pod) while the pod is
//! listed, and names that pod's processes on time-sliced GPUs too. A container ID is named the
//! same way within its pod, or directly when its pod has one container. Whatever cannot be told
//! stays empty: `vram_process_info` always carries the UID and container ID for a join with
//! kube-state-metrics. Owns the `[kubernetes]` section.

pub mod budget;
pub mod cgroup;
pub mod dra;
pub mod limits;
pub mod pb;
pub mod podresources;
mod refresh;
pub mod runtime;
mod section;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::source::sample::{NameSource, PollSample, ProcessList, Workload};

use self::cgroup::ContainerRef;
pub use self::podresources::DeviceMap;
pub use self::runtime::RuntimeNames;
pub use self::section::{Enabled, KubernetesConfig, RawKubernetes, SocketConfig};

/// The proc root read by default.
pub const DEFAULT_PROC_ROOT: &str = "/proc";
/// Where the kubelet serves the pod-resources API.
pub const DEFAULT_SOCKET: &str = "/var/lib/kubelet/pod-resources/kubelet.sock";
/// The largest `/proc/<pid>/cgroup` read (a v1 file with every controller is about 1 KiB).
const CGROUP_FILE_LIMIT: u64 = 64 * 1024;

/// Starts what the configuration asks for: the pod-resources task (on the current tokio
/// runtime) and the attributor that the poller thread runs. None when attribution is off.
pub fn start(
    config: &KubernetesConfig,
    telemetry: &crate::base::telemetry::Telemetry,
) -> Option<(Attributor, Vec<tokio::task::JoinHandle<()>>)> {
    for reason in &config.off {
        tracing::info!("{reason}");
    }
    let proc_root = config.proc_root.clone()?;
    let mut tasks = Vec::new();
    let devices = config.pod_resources.as_ref().map(|p| {
        let (rx, task) = podresources::spawn(p.clone(), telemetry.clone());
        tasks.push(task);
        rx
    });
    let names = config.runtime.as_ref().map(|r| {
        let (rx, task) = runtime::spawn(r.clone(), telemetry.clone());
        tasks.push(task);
        rx
    });
    tracing::info!(
        proc_root = %proc_root.display(),
        pod_resources = config.pod_resources.is_some(),
        runtime = %config.runtime.as_ref().map_or("none".into(), |r| r.socket.display().to_string()),
        "Kubernetes workload attribution on"
    );
    let mut attributor = Attributor::new(proc_root, config.refresh_interval, devices);
    attributor.runtime = names;
    Some((attributor, tasks))
}

/// A process's cgroup as last read, and the workload last published for it.
struct Cached {
    container: Option<Arc<ContainerRef>>,
    read_at: Instant,
    /// The poll that last listed the process.
    seen: u64,
    /// The workload published, and the names generation it was made with.
    workload: Option<(Arc<Workload>, u64)>,
}

/// Annotates each poll's sample with workloads and allocations; owned by the poller thread.
///
/// In the steady state (same processes, same pod-resources list, cgroups fresh) a poll costs one
/// cache lookup per process: names are only worked out again when something they depend on
/// changed (a process came or went, a cgroup was re-read differently, a new list arrived).
pub struct Attributor {
    proc_root: PathBuf,
    reread_after: Duration,
    devices: Option<watch::Receiver<Arc<DeviceMap>>>,
    /// The container runtime's names (authoritative); None without a runtime socket.
    pub runtime: Option<watch::Receiver<Arc<RuntimeNames>>>,
    /// The runtime's names the workloads were worked out with.
    last_names: Option<Arc<RuntimeNames>>,
    /// (pid, start ticks) → its cgroup; a reused pid has other start ticks where the exporter's own
    /// /proc sees the process, and is caught at the next re-read where it does not (start 0).
    cache: HashMap<(u32, u64), Cached>,
    /// Pod UID → (namespace, pod), learnt from GPUs allocated to one pod.
    pods: HashMap<String, (String, String)>,
    /// Container ID → container name, learnt the same way within a pod.
    containers: HashMap<String, String>,
    /// The poll counter (marks the cache entries listed by the current poll).
    epoch: u64,
    /// Bumped whenever a name could have changed; a cached workload of an older one is redone.
    names_gen: u64,
    /// The pod-resources list the names were worked out with.
    last_map: Option<Arc<DeviceMap>>,
    /// The cache changed (an entry added, re-read differently or dropped) this poll.
    cache_changed: bool,
}

impl Attributor {
    pub fn new(
        proc_root: PathBuf,
        reread_after: Duration,
        devices: Option<watch::Receiver<Arc<DeviceMap>>>,
    ) -> Self {
        Attributor {
            proc_root,
            reread_after,
            devices,
            runtime: None,
            last_names: None,
            cache: HashMap::new(),
            pods: HashMap::new(),
            containers: HashMap::new(),
            epoch: 0,
            names_gen: 0,
            last_map: None,
            cache_changed: false,
        }
    }

    /// Fills in each listed process's workload and each GPU's allocations.
    pub fn annotate(&mut self, sample: &mut PollSample) {
        let map = self.devices.as_ref().map(|rx| rx.borrow().clone());
        let map_changed = match (&map, &self.last_map) {
            (Some(new), Some(old)) => !Arc::ptr_eq(new, old),
            (None, None) => false,
            _ => true,
        };
        self.last_map = map.clone();
        let names = self.runtime.as_ref().map(|rx| rx.borrow().clone());
        let names_changed = match (&names, &self.last_names) {
            (Some(new), Some(old)) => !Arc::ptr_eq(new, old),
            (None, None) => false,
            _ => true,
        };
        self.last_names = names.clone();
        let now = Instant::now();
        self.epoch += 1;
        self.cache_changed = false;
        // Each GPU's processes' containers, read (or taken from the cache) once.
        let mut refs: Vec<Vec<Option<Arc<ContainerRef>>>> =
            Vec::with_capacity(sample.devices.len());
        for dev in &mut sample.devices {
            if let Some(map) = &map {
                let minor = dev.identity.minor.map(dra::minor_key);
                dev.allocations = map.allocations_of(
                    std::iter::once(dev.identity.uuid.as_str())
                        .chain(dev.migs.iter().map(|m| m.uuid.as_str()))
                        .chain(minor.as_deref()),
                );
            }
            let listed = dev.processes.listed();
            let mut dev_refs = Vec::with_capacity(listed.len());
            for p in listed {
                dev_refs.push(self.container_of((p.pid, p.start_ticks), now));
            }
            refs.push(dev_refs);
        }
        let before = self.cache.len();
        let epoch = self.epoch;
        self.cache.retain(|_, c| c.seen == epoch);
        self.cache_changed |= self.cache.len() != before;
        if map_changed || names_changed || self.cache_changed {
            self.names_gen += 1;
            if let Some(map) = &map {
                self.learn(sample, &refs, map);
            }
        }
        for (dev, dev_refs) in sample.devices.iter_mut().zip(&refs) {
            let ProcessList::Listed(list) = &mut dev.processes else {
                continue;
            };
            for (p, c) in list.iter_mut().zip(dev_refs) {
                p.workload = c.as_ref().map(|c| {
                    self.workload_of((p.pid, p.start_ticks), c, map.as_deref(), names.as_deref())
                });
            }
        }
    }

    /// The container of a process, from the cache while it is fresh.
    fn container_of(&mut self, key: (u32, u64), now: Instant) -> Option<Arc<ContainerRef>> {
        if let Some(c) = self.cache.get_mut(&key) {
            c.seen = self.epoch;
            if now.duration_since(c.read_at) < self.reread_after {
                return c.container.clone();
            }
        }
        let path = self.proc_root.join(key.0.to_string()).join("cgroup");
        let container = match crate::base::files::read_regular(&path, CGROUP_FILE_LIMIT) {
            Ok(bytes) => cgroup::parse(&bytes).map(Arc::new),
            Err(e) => {
                tracing::debug!(pid = key.0, error = %e, "cgroup file not read");
                None
            }
        };
        let mut changed = false;
        let entry = self.cache.entry(key).or_insert_with(|| {
            changed = true;
            Cached {
                container: None,
                read_at: now,
                seen: 0,
                workload: None,
            }
        });
        if entry.container != container {
            entry.workload = None;
            entry.container = container.clone();
            changed = true;
        }
        entry.read_at = now;
        entry.seen = self.epoch;
        self.cache_changed |= changed;
        container
    }

    /// Learns pod and container names where a GPU's allocation makes them unambiguous, and
    /// forgets those of pods no longer listed.
    fn learn(
        &mut self,
        sample: &PollSample,
        refs: &[Vec<Option<Arc<ContainerRef>>>],
        map: &DeviceMap,
    ) {
        for (dev, dev_refs) in sample.devices.iter().zip(refs) {
            let pods: BTreeSet<(&str, &str)> = dev
                .allocations
                .iter()
                .map(|a| (a.namespace.as_str(), a.pod.as_str()))
                .collect();
            let uids: BTreeSet<&str> = dev_refs
                .iter()
                .flatten()
                .map(|c| c.pod_uid.as_str())
                .collect();
            let (Some((ns, pod)), Some(uid)) = (only(&pods), only(&uids)) else {
                continue;
            };
            if self.pods.get(uid).is_none_or(|(n, p)| n != ns || p != pod) {
                self.pods
                    .insert(uid.to_string(), (ns.to_string(), pod.to_string()));
            }
            let names: BTreeSet<&str> = dev
                .allocations
                .iter()
                .filter(|a| a.namespace == ns && a.pod == pod)
                .map(|a| a.container.as_str())
                .collect();
            let ids: BTreeSet<&str> = dev_refs
                .iter()
                .flatten()
                .map(|c| c.container_id.as_str())
                .collect();
            if let (Some(name), Some(id)) = (only(&names), only(&ids)) {
                if self.containers.get(id).is_none_or(|n| n != name) {
                    self.containers.insert(id.to_string(), name.to_string());
                }
            }
        }
        self.pods.retain(|_, (ns, pod)| map.has_pod(ns, pod));
        // A container's name is kept while its pod is named and a process of it is cached.
        let live: HashSet<&str> = self
            .cache
            .values()
            .filter_map(|c| c.container.as_ref())
            .filter(|c| self.pods.contains_key(&c.pod_uid))
            .map(|c| c.container_id.as_str())
            .collect();
        self.containers.retain(|id, _| live.contains(id.as_str()));
    }

    /// The workload of a process in `container`, reusing the last one while nothing changed.
    fn workload_of(
        &mut self,
        key: (u32, u64),
        container: &ContainerRef,
        map: Option<&DeviceMap>,
        runtime: Option<&RuntimeNames>,
    ) -> Arc<Workload> {
        if let Some((w, generation)) = self.cache.get(&key).and_then(|c| c.workload.as_ref()) {
            if *generation == self.names_gen {
                return w.clone();
            }
        }
        // The runtime's names where it knows the pod; else what the allocations let us infer.
        let (namespace, pod, name, source) = match runtime.and_then(|r| r.pod(&container.pod_uid)) {
            Some(p) => (
                p.namespace.as_str(),
                p.name.as_str(),
                runtime
                    .and_then(|r| r.container(&container.container_id))
                    .unwrap_or(""),
                NameSource::Runtime,
            ),
            None => {
                let (namespace, pod) = self
                    .pods
                    .get(&container.pod_uid)
                    .map(|(n, p)| (n.as_str(), p.as_str()))
                    .unwrap_or(("", ""));
                let name = self
                    .containers
                    .get(&container.container_id)
                    .map(String::as_str)
                    .or_else(|| map.and_then(|m| m.only_container(namespace, pod)))
                    .unwrap_or("");
                let source = match namespace.is_empty() {
                    true => NameSource::None,
                    false => NameSource::Inferred,
                };
                (namespace, pod, name, source)
            }
        };
        let generation = self.names_gen;
        let entry = self.cache.get_mut(&key).expect("read this poll");
        if let Some((w, g)) = &mut entry.workload {
            if w.namespace == namespace && w.pod == pod && w.container == name && w.names == source
            {
                *g = generation;
                return w.clone();
            }
        }
        let w = Arc::new(Workload {
            names: source,
            namespace: namespace.to_string(),
            pod: pod.to_string(),
            container: name.to_string(),
            pod_uid: container.pod_uid.clone(),
            container_id: container.container_id.clone(),
        });
        entry.workload = Some((w.clone(), self.names_gen));
        w
    }
}

/// The one element of a set of one.
fn only<T: Copy + Ord>(set: &BTreeSet<T>) -> Option<T> {
    match set.len() {
        1 => set.first().copied(),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
