//! Tests of the `[kubernetes]` section and of the attributor on hand-written proc roots and
//! pod-resources answers.

use super::*;
use crate::source::kubernetes::pb::v1::{
    ContainerDevices, ContainerResources, ListPodResourcesResponse, PodResources,
};
use crate::source::sample::{DeviceSample, MigSample, PollSample, ProcessList, ProcessSample};

fn raw(f: impl FnOnce(&mut RawKubernetes)) -> RawKubernetes {
    let mut r = RawKubernetes::default();
    f(&mut r);
    r
}

#[test]
fn defaults_turn_the_absent_socket_off_and_keep_proc() {
    let c = raw(|r| r.pod_resources_socket = DEFAULT_SOCKET.into())
        .validate()
        .unwrap();
    if !std::path::Path::new(DEFAULT_SOCKET).exists() {
        assert!(c.pod_resources.is_none());
        assert!(
            c.off[0].contains("pod-resources attribution off"),
            "{:?}",
            c.off
        );
    }
    assert_eq!(c.proc_root.as_deref(), Some(std::path::Path::new("/proc")));
    assert_eq!(c.refresh_interval, Duration::from_secs(10));
}

#[test]
fn off_means_nothing_runs_and_bad_values_name_the_key() {
    for off in [Enabled::Bool(false), Enabled::Text("false".into())] {
        let c = raw(|r| r.enabled = off).validate().unwrap();
        assert!(c.proc_root.is_none() && c.pod_resources.is_none());
    }
    let err = |f: fn(&mut RawKubernetes)| raw(f).validate().unwrap_err().to_string();
    assert!(err(|r| r.proc_root = "relative".into()).starts_with("kubernetes.proc_root"));
    assert!(err(|r| r.proc_root = "/no/such/dir".into()).contains("cannot be read"));
    assert!(err(|r| r.timeout = "20s".into()).starts_with("kubernetes.timeout"));
    assert!(err(|r| r.refresh_interval = "2h".into()).starts_with("kubernetes.refresh_interval"));
    assert!(err(|r| {
        r.enabled = Enabled::Bool(true);
        r.pod_resources_socket = "/no/such.sock".into();
    })
    .starts_with("kubernetes.pod_resources_socket"));
}

/// (namespace, pod, [(container, device IDs)]) as the kubelet lists it.
type Pod<'a> = (&'a str, &'a str, &'a [(&'a str, &'a [&'a str])]);

fn response(pods: &[Pod<'_>]) -> ListPodResourcesResponse {
    ListPodResourcesResponse {
        pod_resources: pods
            .iter()
            .map(|(ns, name, containers)| PodResources {
                name: name.to_string(),
                namespace: ns.to_string(),
                containers: containers
                    .iter()
                    .map(|(c, ids)| ContainerResources {
                        name: c.to_string(),
                        devices: vec![ContainerDevices {
                            resource_name: "nvidia.com/gpu".into(),
                            device_ids: ids.iter().map(|s| s.to_string()).collect(),
                            topology: None,
                        }],
                        ..Default::default()
                    })
                    .collect(),
            })
            .collect(),
    }
}

#[test]
fn device_map_strips_replicas_and_includes_mig_devices() {
    let map = DeviceMap::from_response(&response(&[
        ("a", "p1", &[("c", &["GPU-1::0", "GPU-1::1"])]),
        ("b", "p2", &[("c", &["GPU-1::2"]), ("d", &["MIG-9"])]),
        ("c", "idle", &[("c", &[])]),
    ]));
    let on_gpu1 = map.allocations_of(["GPU-1"].into_iter());
    assert_eq!(on_gpu1.len(), 2, "{on_gpu1:?}");
    let with_mig = map.allocations_of(["GPU-2", "MIG-9"].into_iter());
    assert_eq!(with_mig[0].container, "d");
    assert!(map.has_pod("a", "p1") && !map.has_pod("c", "idle"));
    assert_eq!(map.only_container("a", "p1"), Some("c"));
    assert_eq!(map.only_container("b", "p2"), None);
}

const UID_A: &str = "0f4c8a4e-3b6b-4c1f-9d6e-2a5b7c8d9e01";
const UID_B: &str = "0f4c8a4e-3b6b-4c1f-9d6e-2a5b7c8d9e02";

fn proc_root(files: &[(u32, String)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (pid, text) in files {
        let d = dir.path().join(pid.to_string());
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("cgroup"), text).unwrap();
    }
    dir
}

fn cg(uid: &str, id: char) -> String {
    format!(
        "0::/kubepods/burstable/pod{uid}/{}\n",
        id.to_string().repeat(64)
    )
}

fn sample(devices: &[(&str, &[u32], &[&str])]) -> PollSample {
    PollSample {
        taken_at: std::time::SystemTime::UNIX_EPOCH,
        monotonic_ms: 0,
        nvml_up: true,
        driver_version: String::new(),
        devices: devices
            .iter()
            .enumerate()
            .map(|(i, (uuid, pids, migs))| DeviceSample {
                identity: crate::source::sample::DeviceIdentity {
                    index: i as u32,
                    uuid: uuid.to_string(),
                    model: "Sim".into(),
                    pci_bus_id: String::new(),
                    minor: None,
                },
                up: true,
                memory: None,
                processes: ProcessList::Listed(
                    pids.iter()
                        .map(|&pid| ProcessSample {
                            pid,
                            name: "python".into(),
                            start_ticks: 7,
                            allocated: 1,
                            workload: None,
                            allocator: None,
                        })
                        .collect(),
                ),
                migs: migs
                    .iter()
                    .enumerate()
                    .map(|(m, u)| MigSample {
                        index: m as u32,
                        uuid: u.to_string(),
                        profile: "1g.10gb".into(),
                        memory: None,
                    })
                    .collect(),
                allocations: Default::default(),
            })
            .collect(),
        errors: Vec::new(),
    }
}

fn workload(s: &PollSample, dev: usize, n: usize) -> Option<Workload> {
    s.devices[dev].processes.listed()[n]
        .workload
        .as_deref()
        .cloned()
}

#[test]
fn names_are_learnt_where_unambiguous_and_used_on_shared_gpus() {
    let root = proc_root(&[
        (10, cg(UID_A, 'a')),
        (11, cg(UID_A, 'b')),
        (12, cg(UID_B, 'c')),
        (13, "0::/user.slice\n".into()),
    ]);
    let (tx, rx) = watch::channel(Arc::new(DeviceMap::from_response(&response(&[
        (
            "ns-a",
            "pod-a",
            &[("main", &["GPU-0"]), ("side", &["GPU-1::0"])],
        ),
        ("ns-b", "pod-b", &[("srv", &["GPU-1::1"])]),
        ("ns-m", "pod-m", &[("mig", &["MIG-5"])]),
    ]))));
    let mut a = Attributor::new(root.path().to_path_buf(), Duration::from_secs(60), Some(rx));
    let mut s = sample(&[
        ("GPU-0", &[10], &[]),
        ("GPU-1", &[11, 12], &[]),
        ("GPU-2", &[13], &["MIG-5"]),
    ]);
    a.annotate(&mut s);
    let w = workload(&s, 0, 0).unwrap();
    assert_eq!(
        (w.namespace.as_str(), w.pod.as_str(), w.container.as_str()),
        ("ns-a", "pod-a", "main")
    );
    assert_eq!(w.pod_uid, UID_A);
    // Shared GPU: pod-a's UID is known from GPU 0; its container there is not (two containers).
    let w = workload(&s, 1, 0).unwrap();
    assert_eq!((w.pod.as_str(), w.container.as_str()), ("pod-a", ""));
    // pod-b was never alone on a GPU: UID and container ID only.
    let w = workload(&s, 1, 1).unwrap();
    assert_eq!((w.pod.as_str(), w.pod_uid.as_str()), ("", UID_B));
    assert_eq!(workload(&s, 2, 0), None);
    assert_eq!(
        s.devices[2].allocations.len(),
        1,
        "MIG allocation on its parent"
    );
    assert_eq!(s.devices[1].allocations.len(), 2);

    // The same Arc is published while nothing changes.
    let before = s.devices[0].processes.listed()[0].workload.clone().unwrap();
    let mut s2 = sample(&[("GPU-0", &[10], &[])]);
    a.annotate(&mut s2);
    assert!(Arc::ptr_eq(
        &before,
        s2.devices[0].processes.listed()[0]
            .workload
            .as_ref()
            .unwrap()
    ));

    // The pod leaves the list: its learnt name is forgotten.
    tx.send_replace(Arc::new(DeviceMap::default()));
    let mut s3 = sample(&[("GPU-1", &[11], &[])]);
    a.annotate(&mut s3);
    assert_eq!(workload(&s3, 0, 0).unwrap().pod, "");
}

#[test]
fn without_pod_resources_uids_still_come_from_cgroups() {
    let root = proc_root(&[(10, cg(UID_A, 'a')), (11, "\u{0}\u{1}not a cgroup".into())]);
    let mut a = Attributor::new(root.path().to_path_buf(), Duration::from_millis(0), None);
    let mut s = sample(&[("GPU-0", &[10, 11, 12], &[])]);
    a.annotate(&mut s);
    let w = workload(&s, 0, 0).unwrap();
    assert_eq!((w.pod_uid.as_str(), w.pod.as_str()), (UID_A, ""));
    assert_eq!(workload(&s, 0, 1), None, "malformed");
    assert_eq!(workload(&s, 0, 2), None, "no file");
    // Re-read every poll with a zero interval: a changed cgroup is seen at once.
    std::fs::write(root.path().join("11/cgroup"), cg(UID_B, 'e')).unwrap();
    a.annotate(&mut s);
    assert_eq!(workload(&s, 0, 1).unwrap().pod_uid, UID_B);
}

#[test]
fn runtime_socket_auto_needs_the_kubelet_and_a_path_must_be_a_socket() {
    // No kubelet socket here: "auto" stays off whatever runtime socket the host has.
    let c = raw(|r| r.runtime_socket = "auto".into())
        .validate()
        .unwrap();
    if c.pod_resources.is_none() {
        assert!(c.runtime.is_none());
    }
    let c = raw(|r| r.runtime_socket = "none".into())
        .validate()
        .unwrap();
    assert!(c.runtime.is_none());
    let err = |v: &str| {
        raw(|r| r.runtime_socket = v.into())
            .validate()
            .unwrap_err()
            .to_string()
    };
    assert!(err("relative.sock").contains("absolute path"));
    assert!(err("/no/such.sock").contains("cannot be used"));
    assert!(err("/proc").contains("is not a unix socket"));
}
