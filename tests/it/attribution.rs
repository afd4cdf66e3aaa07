//! Attribution you can act on, through the real binary: names from a fake container runtime
//! (the CRI runtime service served by tonic from our proto subset on a unix socket) beside the
//! fake kubelet, the two attacks (a kube-system process carrying an inferred team-b name,
//! a host process posing as a pod), CRI-O on cgroupfs, and the runtime going away.

use std::path::Path;
use std::sync::{Arc, Mutex};

use vram_exporter::source::kubernetes::pb::cri::{
    Container, ContainerMetadata, ListContainersRequest, ListContainersResponse,
    ListPodSandboxRequest, ListPodSandboxResponse, PodSandbox, PodSandboxMetadata,
};

use vram_testkit::wait::{Poll, Wait};

use crate::cri_server::runtime_service_server::{RuntimeService, RuntimeServiceServer};
use crate::harness::{Exporter, Metrics, Options};
use crate::kube_fakes::{
    container_id, pod, pod_uid, uuid, write_cgroup, Kid, Kubelet, Listener, Server, WAIT,
};

/// The container runtime stand-in: (pod UID, namespace, pod, [(container ID, name)]).
#[derive(Clone, Default)]
pub(crate) struct Runtime {
    pub(crate) pods: Arc<Mutex<Vec<RuntimePod>>>,
    /// Sandboxes answered besides those of `pods` (an answer's bulk).
    pub(crate) padding: Arc<Mutex<Vec<PodSandbox>>>,
    /// What each call saw: the container list's filter asked for running containers only.
    calls: Arc<Mutex<Vec<String>>>,
}

pub(crate) type RuntimePod = (String, String, String, Vec<(String, String)>);

#[tonic::async_trait]
impl RuntimeService for Runtime {
    async fn list_pod_sandbox(
        &self,
        _: tonic::Request<ListPodSandboxRequest>,
    ) -> Result<tonic::Response<ListPodSandboxResponse>, tonic::Status> {
        self.calls.lock().unwrap().push("ListPodSandbox".into());
        let items = self
            .pods
            .lock()
            .unwrap()
            .iter()
            .map(|(uid, ns, name, _)| PodSandbox {
                id: format!("sandbox-{uid}"),
                metadata: Some(PodSandboxMetadata {
                    name: name.clone(),
                    uid: uid.clone(),
                    namespace: ns.clone(),
                    attempt: 0,
                }),
                ..Default::default()
            })
            .chain(self.padding.lock().unwrap().iter().cloned())
            .collect();
        Ok(tonic::Response::new(ListPodSandboxResponse { items }))
    }

    async fn list_containers(
        &self,
        request: tonic::Request<ListContainersRequest>,
    ) -> Result<tonic::Response<ListContainersResponse>, tonic::Status> {
        let state = request
            .into_inner()
            .filter
            .and_then(|f| f.state)
            .map(|s| s.state);
        self.calls
            .lock()
            .unwrap()
            .push(format!("ListContainers state={state:?}"));
        let containers = self
            .pods
            .lock()
            .unwrap()
            .iter()
            .flat_map(|(uid, _, _, cs)| {
                cs.iter().map(move |(id, name)| Container {
                    id: id.clone(),
                    pod_sandbox_id: format!("sandbox-{uid}"),
                    metadata: Some(ContainerMetadata {
                        name: name.clone(),
                        attempt: 0,
                    }),
                    state: 1,
                    ..Default::default()
                })
            })
            .collect();
        Ok(tonic::Response::new(ListContainersResponse { containers }))
    }
}

pub(crate) fn runtime_pod(i: u32, ns: &str, name: &str, container: &str) -> RuntimePod {
    (
        pod_uid(i),
        ns.into(),
        name.into(),
        vec![(container_id(i), container.into())],
    )
}

/// Serves the fake runtime on `path`.
pub(crate) fn serve_runtime(path: &Path, runtime: Runtime) -> Server {
    Server::serve(
        path,
        tonic::transport::Server::builder().add_service(RuntimeServiceServer::new(runtime)),
    )
}

/// A containerd/systemd v2 cgroup file of pod `i`'s container.
fn containerd(i: u32) -> String {
    format!(
        "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/cri-containerd-{}.scope\n",
        pod_uid(i).replace('-', "_"),
        container_id(i)
    )
}

/// The `[kubernetes]` section: the fake kubelet, and the fake runtime when given.
pub(crate) fn kubernetes(proc_root: &Path, kubelet: &Path, runtime: Option<&Path>) -> String {
    format!(
        "[poll]\ninterval = \"200ms\"\n[kubernetes]\nenabled = true\nproc_root = \"{}\"\n\
         pod_resources_socket = \"{}\"\nruntime_socket = \"{}\"\nrefresh_interval = \"300ms\"\n\
         timeout = \"300ms\"\nruntime_refresh_interval = \"300ms\"\nruntime_timeout = \"300ms\"\n",
        proc_root.display(),
        kubelet.display(),
        runtime.map_or("none".into(), |r| r.display().to_string())
    )
}

/// A 10 GiB GPU with `procs` (pid, MiB) on it.
pub(crate) fn gpu(i: u32, procs: &[(String, u64)]) -> String {
    let mut s = format!(
        "[[device]]\nname = \"Sim GPU 10G\"\nuuid = \"{}\"\ntotal = \"10GiB\"\nreserved = \"0\"\noverhead = \"0\"\n",
        uuid(i)
    );
    for (pid, mib) in procs {
        s +=
            &format!("[[device.process]]\npid = {pid}\nname = \"python\"\nmemory = \"{mib}MiB\"\n");
    }
    s
}

/// The signal action's audit line (JSON) for the first GPU listing `pid` whose detail holds `want`.
fn audit_with(e: &Exporter, want: &str) -> serde_json::Value {
    let line = e
        .wait_log(|l| l.contains("cleanup action") && l.contains(want), WAIT)
        .unwrap_or_else(|| panic!("no audit line with {want:?}; log:\n{}", e.log().join("\n")));
    serde_json::from_str(&line).unwrap()
}

/// The first attack: a kube-system pod's process runs alone on a GPU the kubelet
/// allocated to team-b/idle-0; cleanup aims at namespace team-b with kube-system avoided. Without
/// the runtime the process carries the inferred name team-b/idle-0 and is spared because the name
/// is a guess; with the runtime it is named kube-system exactly and spared by avoid_namespaces,
/// while a genuine team-b process (named by the runtime) is signalled.
#[test]
fn a_kube_system_process_under_a_team_b_allocation_is_never_signalled() {
    for with_runtime in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let proc_root = dir.path().join("proc");
        let (kubelet_sock, runtime_sock) = (dir.path().join("k.sock"), dir.path().join("r.sock"));
        let system = Listener::spawn(dir.path(), "system");
        let team_b = Listener::spawn(dir.path(), "team-b");
        write_cgroup(&proc_root, &system.kid.pid(), &containerd(1));
        write_cgroup(&proc_root, &team_b.kid.pid(), &containerd(2));
        let kubelet = Kubelet::default();
        *kubelet.pods.lock().unwrap() = vec![
            pod("team-b", "idle-0", &[("main", &[&uuid(0)])]),
            pod("team-b", "train-0", &[("main", &[&uuid(1)])]),
        ];
        let _k = Server::start(&kubelet_sock, kubelet);
        let runtime = Runtime::default();
        *runtime.pods.lock().unwrap() = vec![
            runtime_pod(1, "kube-system", "dcgm-7x", "agent"),
            runtime_pod(2, "team-b", "train-0", "main"),
        ];
        let _r = with_runtime.then(|| serve_runtime(&runtime_sock, runtime.clone()));
        let scenario = gpu(0, &[(system.kid.pid(), 10035)]) + &gpu(1, &[(team_b.kid.pid(), 10035)]);
        let config = kubernetes(&proc_root, &kubelet_sock, with_runtime.then_some(&*runtime_sock))
            + "[cleanup]\nenabled = true\ncooldown = \"1s\"\n[[cleanup.actions]]\ntype = \"signal\"\n\
               signal = \"SIGUSR1\"\ntarget = \"all\"\nnamespace_regex = \"^team-b$\"\n";
        let e = Exporter::start(Options {
            scenario: &scenario,
            config: &config,
            time: None,
            ..Options::default()
        });
        let why = match with_runtime {
            false => "avoid_namespaces (team-b, inferred: not acted on)",
            true => "avoid_namespaces (kube-system, from runtime)",
        };
        let audit = audit_with(&e, &format!("spared: {} {why}", system.kid.pid()));
        assert_eq!(audit["result"], "skipped", "{audit}");
        if with_runtime {
            Wait::new("the team-b process to be signalled", WAIT).must(|| {
                if team_b.signals() == 0 {
                    Poll::Pending(format!("log:\n{}", e.log().join("\n")))
                } else {
                    Poll::Ready(())
                }
            });
            let ok = audit_with(&e, "\"result\":\"ok\"");
            assert_eq!(ok["pids"], team_b.kid.pid(), "{ok}");
            assert_eq!(ok["pods"], "team-b/train-0", "{ok}");
            let calls = runtime.calls.lock().unwrap().clone();
            assert!(
                calls.iter().any(|c| c.contains("state=Some(1)")),
                "running containers asked for: {calls:?}"
            );
        } else {
            // The genuine team-b process has an inferred name too: spared as well.
            audit_with(
                &e,
                &format!(
                    "spared: {} avoid_namespaces (team-b, inferred",
                    team_b.kid.pid()
                ),
            );
            assert_eq!(team_b.signals(), 0);
        }
        // /api/v1/gpus says where the name came from and which rule spares the process.
        let (_, body) = e.get("/api/v1/gpus");
        let api: serde_json::Value = serde_json::from_str(&body).unwrap();
        let p = &api["gpus"][0]["processes"][0];
        let source = if with_runtime { "runtime" } else { "inferred" };
        assert_eq!(p["workload"]["name_source"], source, "{p}");
        assert_eq!(p["spared"][0]["why"], why, "{p}");
        assert_eq!(p["spared"][0]["rule"], "avoid_namespaces", "{p}");
        assert_eq!(system.signals(), 0, "the kube-system process was signalled");
    }
}

/// The second attack: a host process whose cgroup merely contains a pod segment below
/// the user's delegated slice holds 8 GiB, an innocent host process 2 GiB. The poser is a host
/// process, so the kill takes it, not the innocent one.
#[test]
fn a_host_process_posing_as_a_pod_is_the_kill_target() {
    let dir = tempfile::tempdir().unwrap();
    let proc_root = dir.path().join("proc");
    let kubelet_sock = dir.path().join("k.sock");
    let (poser, innocent) = (Kid::spawn(), Kid::spawn());
    let uid = pod_uid(3).replace('-', "_");
    write_cgroup(
        &proc_root,
        &poser.pid(),
        &format!(
            "0::/user.slice/user-1000.slice/user@1000.service/kubepods.slice/kubepods-pod{uid}.slice/cri-containerd-{}.scope\n",
            container_id(3)
        ),
    );
    write_cgroup(
        &proc_root,
        &innocent.pid(),
        "0::/user.slice/user-1000.slice/session-2.scope\n",
    );
    let _k = Server::start(&kubelet_sock, Kubelet::default());
    let scenario = gpu(0, &[(poser.pid(), 8192), (innocent.pid(), 2048)]);
    let config = kubernetes(&proc_root, &kubelet_sock, None)
        + "[cleanup]\nenabled = true\nallow_kill = true\n[[cleanup.actions]]\ntype = \"kill\"\n\
           grace = \"1s\"\n[limits]\nhard = \"9GiB\"\nsoft = \"8GiB\"\n";
    let e = Exporter::start(Options {
        scenario: &scenario,
        config: &config,
        time: None,
        ..Options::default()
    });
    let audit = audit_with(&e, "\"action\":\"kill\"");
    assert_eq!(audit["pids"], poser.pid(), "{audit}");
    assert_eq!(audit["pods"], "-", "a host process: {audit}");
    let m = e.metrics();
    assert_eq!(
        m.count("vram_process_info"),
        0,
        "no pod labels:\n{}",
        m.text
    );
    assert!(
        crate::harness::Metrics::parse(&m.text).count("vram_process_allocated_bytes") >= 1,
        "{}",
        m.text
    );
    assert!(
        Path::new(&format!("/proc/{}", innocent.pid())).exists(),
        "the innocent process lives"
    );
}

/// CRI-O with its cgroupfs manager (`/kubepods/<qos>/pod<uid>/crio-<id>`, no `.scope`), cgroup v1
/// and v2, on a time-sliced GPU: both pods named exactly by the runtime, the container names too.
#[test]
fn crio_on_cgroupfs_and_time_sliced_gpus_are_named_by_the_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let proc_root = dir.path().join("proc");
    let (kubelet_sock, runtime_sock) = (dir.path().join("k.sock"), dir.path().join("r.sock"));
    let (v1, v2) = (Kid::spawn(), Kid::spawn());
    let path = |i: u32| {
        format!(
            "/kubepods/besteffort/pod{}/crio-{}",
            pod_uid(i),
            container_id(i)
        )
    };
    write_cgroup(
        &proc_root,
        &v1.pid(),
        &format!(
            "11:memory:{p}\n4:cpu,cpuacct:{p}\n1:name=systemd:{p}\n",
            p = path(4)
        ),
    );
    write_cgroup(&proc_root, &v2.pid(), &format!("0::{}\n", path(5)));
    // The GPU is time-sliced between both pods: inference cannot name either.
    let kubelet = Kubelet::default();
    *kubelet.pods.lock().unwrap() = vec![
        pod("ml", "a-0", &[("main", &[&format!("{}::0", uuid(0))])]),
        pod("ml", "b-0", &[("main", &[&format!("{}::1", uuid(0))])]),
    ];
    let _k = Server::start(&kubelet_sock, kubelet);
    let runtime = Runtime::default();
    *runtime.pods.lock().unwrap() = vec![
        runtime_pod(4, "ml", "a-0", "trainer"),
        runtime_pod(5, "ml", "b-0", "server"),
    ];
    let _r = serve_runtime(&runtime_sock, runtime);
    let e = Exporter::start(Options {
        scenario: &gpu(0, &[(v1.pid(), 1024), (v2.pid(), 512)]),
        config: &kubernetes(&proc_root, &kubelet_sock, Some(&runtime_sock)),
        time: None,
        ..Options::default()
    });
    let named = |m: &Metrics, pid: &str, pod: &str, container: &str| {
        m.value(
            "vram_process_allocated_bytes",
            &[
                ("pid", pid),
                ("namespace", "ml"),
                ("pod", pod),
                ("container", container),
            ],
        )
        .is_some()
    };
    let m = e.wait_metrics("both named by the runtime", WAIT, |m| {
        named(m, &v1.pid(), "a-0", "trainer") && named(m, &v2.pid(), "b-0", "server")
    });
    crate::golden::promtool_check(&m.text);
    for (kid, i) in [(&v1, 4), (&v2, 5)] {
        assert_eq!(
            m.value(
                "vram_process_info",
                &[
                    ("pid", &kid.pid()),
                    ("pod_uid", &pod_uid(i)),
                    ("container_id", &container_id(i)),
                    ("name_source", "runtime"),
                ],
            ),
            Some(1.0),
            "{}",
            m.text
        );
    }
}

/// The runtime goes away: the last good names stay, errors are counted under
/// operation="runtime" and logged once; an explicit runtime socket that does not exist is refused.
#[test]
fn runtime_gone_keeps_the_last_names_and_a_missing_socket_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let proc_root = dir.path().join("proc");
    let (kubelet_sock, runtime_sock) = (dir.path().join("k.sock"), dir.path().join("r.sock"));
    let kid = Kid::spawn();
    write_cgroup(&proc_root, &kid.pid(), &containerd(6));
    let _k = Server::start(&kubelet_sock, Kubelet::default());
    let runtime = Runtime::default();
    *runtime.pods.lock().unwrap() = vec![runtime_pod(6, "ml", "job-6", "main")];
    let server = serve_runtime(&runtime_sock, runtime);
    let e = Exporter::start(Options {
        scenario: &gpu(0, &[(kid.pid(), 1024)]),
        config: &kubernetes(&proc_root, &kubelet_sock, Some(&runtime_sock)),
        time: None,
        ..Options::default()
    });
    let pod_of = |m: &Metrics| m.value("vram_process_allocated_bytes", &[("pod", "job-6")]);
    e.wait_metrics("named", WAIT, |m| pod_of(m).is_some());
    drop(server);
    let errors = |m: &Metrics| {
        m.value(
            "vram_exporter_poll_errors_total",
            &[("operation", "runtime")],
        )
        .unwrap_or(0.0)
    };
    let m = e.wait_metrics("failed refreshes", WAIT, |m| errors(m) >= 3.0);
    assert!(pod_of(&m).is_some(), "last good names kept:\n{}", m.text);
    let logged = e
        .log()
        .iter()
        .filter(|l| l.contains("container runtime cannot be listed"))
        .count();
    assert_eq!(logged, 1, "logged once per change");

    let path = dir.path().join("bad.toml");
    let mut failures = Vec::new();
    for (socket, words) in [
        (
            "/no/such/runtime.sock",
            &[
                "kubernetes.runtime_socket",
                "/no/such/runtime.sock",
                "cannot be used",
            ][..],
        ),
        (
            "relative.sock",
            &["kubernetes.runtime_socket", "absolute path"][..],
        ),
    ] {
        std::fs::write(
            &path,
            format!("[kubernetes]\nenabled = \"auto\"\nruntime_socket = \"{socket}\"\n"),
        )
        .unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_vram-exporter"))
            .arg("--config")
            .arg(&path)
            .arg("--check-config")
            .output()
            .unwrap();
        failures.extend(crate::harness::refusal_problem(socket, &out, words));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The label set of one `vram_gpu_allocation_info` series with namespace `ml`.
fn claim_info<'a>(
    gpu: &'a str,
    pod: &'a str,
    container: &'a str,
    claim: &'a str,
) -> [(&'a str, &'a str); 5] {
    [
        ("gpu", gpu),
        ("namespace", "ml"),
        ("pod", pod),
        ("container", container),
        ("claim", claim),
    ]
}

/// DRA: NVIDIA's driver (`gpu.nvidia.com`) names GPUs `gpu-<minor>` and MIG devices
/// `gpu-<parentMinor>-mig-…`; the kubelet lists them in `dynamic_resources`. Each is published in
/// `vram_gpu_allocation_info` on the GPU of that minor number with the claim's name; another
/// driver's device is not one of our GPUs.
#[test]
fn dra_claims_of_the_nvidia_driver_are_published_on_their_gpus() {
    use vram_exporter::source::kubernetes::pb::v1::{
        ClaimResource, ContainerResources, DynamicResource, PodResources,
    };
    let dir = tempfile::tempdir().unwrap();
    let proc_root = dir.path().join("proc");
    std::fs::create_dir_all(&proc_root).unwrap();
    let kubelet_sock = dir.path().join("k.sock");
    let claim = |name: &str, driver: &str, device: &str| DynamicResource {
        claim_name: name.into(),
        claim_namespace: "ml".into(),
        claim_resources: vec![ClaimResource {
            driver_name: driver.into(),
            pool_name: "node-a".into(),
            device_name: device.into(),
            ..Default::default()
        }],
    };
    let claimed = |pod: &str, container: &str, claims: Vec<DynamicResource>| PodResources {
        name: pod.into(),
        namespace: "ml".into(),
        containers: vec![ContainerResources {
            name: container.into(),
            dynamic_resources: claims,
            ..Default::default()
        }],
    };
    let kubelet = Kubelet::default();
    *kubelet.pods.lock().unwrap() = vec![
        claimed(
            "infer-0",
            "server",
            vec![
                claim("whole-gpu", "gpu.nvidia.com", "gpu-0"),
                claim("nic", "net.example.com", "gpu-1"),
            ],
        ),
        claimed(
            "mig-0",
            "main",
            vec![claim("a-slice", "gpu.nvidia.com", "gpu-1-mig-1g10gb-0-1")],
        ),
    ];
    let _k = Server::start(&kubelet_sock, kubelet);
    let e = Exporter::start(Options {
        scenario: &(gpu(0, &[]) + &gpu(1, &[])),
        config: &kubernetes(&proc_root, &kubelet_sock, None),
        time: None,
        ..Options::default()
    });
    let m = e.wait_metrics("the claims", WAIT, |m| {
        m.value(
            "vram_gpu_allocation_info",
            &claim_info("0", "infer-0", "server", "whole-gpu"),
        )
        .is_some()
            && m.value(
                "vram_gpu_allocation_info",
                &claim_info("1", "mig-0", "main", "a-slice"),
            )
            .is_some()
    });
    assert_eq!(
        m.count("vram_gpu_allocation_info"),
        2,
        "the other driver's device is no GPU of ours:\n{}",
        m.text
    );
    let (_, body) = e.get("/api/v1/gpus");
    let api: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        api["gpus"][1]["allocations"][0]["claim"], "a-slice",
        "{api}"
    );
    crate::golden::promtool_check(&m.text);
}
