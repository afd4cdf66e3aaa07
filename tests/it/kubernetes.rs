//! Kubernetes workload attribution with real parts: the exporter binary on nvml-sim with live
//! child processes, a fake proc root holding real-format cgroup files for each runtime, driver and
//! cgroup version, and the kubelet's pod-resources API served by tonic (from the vendored proto)
//! on a unix socket that disappears and comes back.

use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::harness::{Exporter, Metrics, Options};
use crate::kube_fakes::{
    container_id, pod, pod_uid, uuid, write_cgroup, Kid, Kubelet, Listener, Server, WAIT,
};

/// The cgroup file of a container, in each runtime/driver/version combination a node can have.
fn cgroup_file(form: usize, i: u32) -> String {
    let (uid, id) = (pod_uid(i), container_id(i));
    let slice_uid = uid.replace('-', "_");
    let systemd = |runtime: &str| {
        format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{slice_uid}.slice/{runtime}-{id}.scope"
        )
    };
    let v1 = |path: &str| {
        format!(
            "12:pids:{path}\n10:memory:{path}\n4:cpu,cpuacct:{path}\n1:name=systemd:{path}\n0::/\n"
        )
    };
    match form {
        0 => format!("0::{}\n", systemd("cri-containerd")),
        1 => v1(&systemd("crio")),
        2 => format!("0::{}\n", systemd("docker")),
        3 => v1(&format!("/kubepods/burstable/pod{uid}/{id}")),
        4 => format!("0::/kubepods/besteffort/pod{uid}/{id}\n"),
        _ => {
            format!("0::/kubepods.slice/kubepods-pod{slice_uid}.slice/cri-containerd-{id}.scope\n")
        }
    }
}

fn device(i: u32, pids: &[&Kid]) -> String {
    let mut s = format!(
        "[[device]]\nname = \"Sim GPU 10G\"\nuuid = \"{}\"\ntotal = \"10GiB\"\nreserved = \"0\"\noverhead = \"0\"\n",
        uuid(i)
    );
    for (n, _) in pids.iter().enumerate() {
        s += &format!(
            "[[device.process]]\npid_env = \"KID_{i}_{n}\"\nname = \"python\"\nmemory = \"{}MiB\"\n",
            512 * (n + 1)
        );
    }
    s
}

fn kid_env(i: u32, pids: &[&Kid]) -> Vec<(String, String)> {
    pids.iter()
        .enumerate()
        .map(|(n, k)| (format!("KID_{i}_{n}"), k.pid()))
        .collect()
}

fn start(scenario: &str, env: Vec<(String, String)>, proc_root: &Path, socket: &Path) -> Exporter {
    let config = format!(
        "[poll]\ninterval = \"200ms\"\n[kubernetes]\nenabled = true\nproc_root = \"{}\"\n\
         pod_resources_socket = \"{}\"\nrefresh_interval = \"300ms\"\ntimeout = \"300ms\"\n",
        proc_root.display(),
        socket.display()
    );
    Exporter::start(Options {
        scenario,
        config: &config,
        env,
        time: None,
        ..Options::default()
    })
}

/// The labels of the process series of `pid`.
fn process_labels(m: &Metrics, pid: &str) -> Option<Vec<(String, String)>> {
    m.samples
        .iter()
        .find(|(n, ls, _)| {
            n == "vram_process_allocated_bytes" && ls.iter().any(|(k, v)| k == "pid" && v == pid)
        })
        .map(|(_, ls, _)| ls.clone())
}

fn label<'a>(ls: &'a [(String, String)], key: &str) -> &'a str {
    ls.iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no label {key} in {ls:?}"))
}

fn has_pod(m: &Metrics, pid: &str, pod: &str) -> bool {
    process_labels(m, pid).is_some_and(|ls| label(&ls, "pod") == pod)
}

#[test]
fn every_runtime_and_driver_is_attributed_and_time_slices_are_named_from_what_was_learnt() {
    let dir = tempfile::tempdir().unwrap();
    let proc_root = dir.path().join("proc");
    let socket = dir.path().join("kubelet.sock");
    // GPUs 0..=5: one pod each, in each cgroup form; GPU 6 time-sliced between the pod of GPU 0
    // (whose UID is learnt there) and pod 7 (seen nowhere alone: UID only); GPU 7 a host process.
    let kids: Vec<Kid> = (0..9).map(|_| Kid::spawn()).collect();
    let mut scenario = String::new();
    let mut env = Vec::new();
    let mut pods = Vec::new();
    for i in 0..6u32 {
        let k = &kids[i as usize];
        scenario += &device(i, &[k]);
        env.extend(kid_env(i, &[k]));
        write_cgroup(&proc_root, &k.pid(), &cgroup_file(i as usize, i));
        pods.push(pod(
            &format!("team-{i}"),
            &format!("train-{i}"),
            &[("trainer", &[&uuid(i)])],
        ));
    }
    // Time slicing: replicas UUID::0 and UUID::1 of GPU 6.
    let shared = [&kids[6], &kids[7]];
    scenario += &device(6, &shared);
    env.extend(kid_env(6, &shared));
    write_cgroup(
        &proc_root,
        &kids[6].pid(),
        &cgroup_file(0, 0).replace(&container_id(0), &container_id(60)),
    );
    write_cgroup(&proc_root, &kids[7].pid(), &cgroup_file(3, 7));
    pods[0]
        .containers
        .push(pod("", "", &[("sidecar", &[&format!("{}::0", uuid(6))])]).containers[0].clone());
    pods.push(pod(
        "team-7",
        "infer-7",
        &[("server", &[&format!("{}::1", uuid(6))])],
    ));
    // GPU 7: a process outside Kubernetes.
    scenario += &device(7, &[&kids[8]]);
    env.extend(kid_env(7, &[&kids[8]]));
    write_cgroup(
        &proc_root,
        &kids[8].pid(),
        "0::/user.slice/user-1000.slice/session-2.scope\n",
    );

    let kubelet = Kubelet::default();
    *kubelet.pods.lock().unwrap() = pods;
    let _server = Server::start(&socket, kubelet);
    let e = start(&scenario, env, &proc_root, &socket);

    let m = e.wait_metrics("every pod named", WAIT, |m| {
        (0..6).all(|i| has_pod(m, &kids[i].pid(), &format!("train-{i}")))
            && has_pod(m, &kids[6].pid(), "train-0")
    });
    for i in 0..6u32 {
        let ls = process_labels(&m, &kids[i as usize].pid()).unwrap();
        assert_eq!(label(&ls, "namespace"), format!("team-{i}"), "form {i}");
        assert_eq!(label(&ls, "container"), "trainer", "form {i}");
        let info = m
            .value(
                "vram_process_info",
                &[
                    ("pid", &kids[i as usize].pid()),
                    ("pod_uid", &pod_uid(i)),
                    ("container_id", &container_id(i)),
                    ("gpu", &i.to_string()),
                ],
            )
            .unwrap_or_else(|| panic!("no vram_process_info for form {i}:\n{}", m.text));
        assert_eq!(info, 1.0);
        assert_eq!(
            m.value(
                "vram_gpu_allocation_info",
                &[
                    ("uuid", &uuid(i)),
                    ("namespace", &format!("team-{i}")),
                    ("pod", &format!("train-{i}")),
                    ("container", "trainer")
                ]
            ),
            Some(1.0)
        );
    }
    // The time-sliced GPU: pod 0's UID was learnt on GPU 0, its other container by elimination
    // is not (two containers): the sidecar stays unnamed; pod 7 was never alone on a GPU.
    let ls = process_labels(&m, &kids[6].pid()).unwrap();
    assert_eq!(label(&ls, "namespace"), "team-0");
    assert_eq!(label(&ls, "container"), "");
    let ls = process_labels(&m, &kids[7].pid()).unwrap();
    assert_eq!((label(&ls, "namespace"), label(&ls, "pod")), ("", ""));
    assert!(m
        .value(
            "vram_process_info",
            &[("pid", &kids[7].pid()), ("pod_uid", &pod_uid(7))]
        )
        .is_some());
    assert_eq!(
        m.samples
            .iter()
            .filter(|(n, ls, _)| n == "vram_gpu_allocation_info"
                && ls.iter().any(|(k, v)| k == "gpu" && v == "6"))
            .count(),
        2,
        "both replicas' containers hold GPU 6:\n{}",
        m.text
    );
    // Outside Kubernetes: empty workload labels, no info series.
    let ls = process_labels(&m, &kids[8].pid()).unwrap();
    assert_eq!(label(&ls, "pod"), "");
    assert!(m
        .value("vram_process_info", &[("pid", &kids[8].pid())])
        .is_none());

    // The workload families keep the exposition clean for promtool.
    crate::golden::promtool_check(&m.text);

    // The JSON API and the status page carry the same facts.
    let (status, body) = e.get("/api/v1/gpus");
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let w = &v["gpus"][3]["processes"][0]["workload"];
    assert_eq!(w["namespace"], "team-3");
    assert_eq!(w["pod"], "train-3");
    assert_eq!(w["pod_uid"], pod_uid(3));
    assert_eq!(w["container_id"], container_id(3));
    assert_eq!(v["gpus"][3]["allocations"][0]["container"], "trainer");
    assert!(v["gpus"][7]["processes"][0]["workload"].is_null());
    let (_, page) = e.get("/");
    assert!(page.contains("team-2/train-2/trainer"), "{page}");
}

#[test]
fn socket_gone_keeps_the_last_names_logs_once_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let proc_root = dir.path().join("proc");
    let socket = dir.path().join("kubelet.sock");
    let kid = Kid::spawn();
    write_cgroup(&proc_root, &kid.pid(), &cgroup_file(0, 1));
    let kubelet = Kubelet::default();
    *kubelet.pods.lock().unwrap() = vec![pod("ml", "job-a", &[("main", &[&uuid(0)])])];
    let server = Server::start(&socket, kubelet.clone());
    let e = start(
        &device(0, &[&kid]),
        kid_env(0, &[&kid]),
        &proc_root,
        &socket,
    );
    e.wait_metrics("named", WAIT, |m| has_pod(m, &kid.pid(), "job-a"));

    drop(server);
    assert!(!socket.exists());
    let errors = |m: &Metrics| {
        m.value(
            "vram_exporter_poll_errors_total",
            &[("operation", "pod_resources")],
        )
        .unwrap_or(0.0)
    };
    let m = e.wait_metrics("several failed refreshes", WAIT, |m| errors(m) >= 4.0);
    assert!(
        has_pod(&m, &kid.pid(), "job-a"),
        "last good names kept:\n{}",
        m.text
    );
    let failures = e
        .log()
        .iter()
        .filter(|l| l.contains("pod-resources cannot be listed"))
        .count();
    assert_eq!(failures, 1, "logged once per change, not per refresh");

    // The kubelet comes back (a new socket at the same path) with the pod renamed.
    *kubelet.pods.lock().unwrap() = vec![pod("ml", "job-b", &[("main", &[&uuid(0)])])];
    let _server = Server::start(&socket, kubelet);
    assert!(std::fs::metadata(&socket).unwrap().file_type().is_socket());
    e.wait_metrics("the new list", WAIT, |m| has_pod(m, &kid.pid(), "job-b"));
    let listed = e
        .log()
        .iter()
        .filter(|l| l.contains("pod-resources listed"))
        .count();
    assert_eq!(listed, 2, "once at start, once on recovery");
}

#[test]
fn malformed_cgroup_gives_no_labels_and_a_changed_cgroup_is_reread() {
    let dir = tempfile::tempdir().unwrap();
    let proc_root = dir.path().join("proc");
    let socket = dir.path().join("kubelet.sock");
    let kid = Kid::spawn();
    write_cgroup(
        &proc_root,
        &kid.pid(),
        "\u{0}garbage:::\n0::/kubepods/podnot-a-uid/zz\n",
    );
    let kubelet = Kubelet::default();
    *kubelet.pods.lock().unwrap() = vec![
        pod("ml", "job-a", &[("main", &[&uuid(0)])]),
        pod("ml", "job-b", &[("main", &[&uuid(1)])]),
    ];
    let _server = Server::start(&socket, kubelet);
    let e = start(
        &device(0, &[&kid]),
        kid_env(0, &[&kid]),
        &proc_root,
        &socket,
    );
    let m = e.wait_metrics("the allocation listed", WAIT, |m| {
        m.count("vram_gpu_allocation_info") == 1 && process_labels(m, &kid.pid()).is_some()
    });
    let ls = process_labels(&m, &kid.pid()).unwrap();
    assert_eq!((label(&ls, "pod"), label(&ls, "namespace")), ("", ""));
    assert_eq!(m.count("vram_process_info"), 0);

    // The same pid's cgroup now names a container (as when a pid is reused, or a process moves):
    // the next re-read picks it up.
    write_cgroup(&proc_root, &kid.pid(), &cgroup_file(4, 2));
    let m = e.wait_metrics("the new cgroup", WAIT, |m| has_pod(m, &kid.pid(), "job-a"));
    assert!(m
        .value("vram_process_info", &[("pod_uid", &pod_uid(2))])
        .is_some());
    // And it moves again, to another container.
    write_cgroup(&proc_root, &kid.pid(), &cgroup_file(1, 3));
    let m = e.wait_metrics("the second cgroup", WAIT, |m| {
        m.value("vram_process_info", &[("pod_uid", &pod_uid(3))])
            .is_some()
    });
    assert_eq!(m.count("vram_process_info"), 1);
}

#[test]
fn configuration_refusals_and_attribution_off_at_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such.sock");
    let cases: Vec<(&str, String, Vec<&str>)> =
        vec![
        (
            "explicit socket absent",
            format!("[kubernetes]\npod_resources_socket = \"{}\"\n", missing.display()),
            vec!["kubernetes.pod_resources_socket", "no-such.sock"],
        ),
        (
            "explicit proc root absent",
            "[kubernetes]\nproc_root = \"/no/such/proc\"\n".into(),
            vec!["kubernetes.proc_root", "/no/such/proc"],
        ),
        (
            "required at the default socket",
            "[kubernetes]\nenabled = true\npod_resources_socket = \"/no/such/kubelet.sock\"\n"
                .into(),
            vec!["kubernetes.pod_resources_socket"],
        ),
        (
            "socket path is a file",
            format!(
                "[kubernetes]\npod_resources_socket = \"{}\"\n",
                dir.path().join("file").display()
            ),
            vec!["kubernetes.pod_resources_socket", "not a unix socket"],
        ),
        (
            "bad enabled",
            "[kubernetes]\nenabled = \"maybe\"\n".into(),
            vec!["kubernetes.enabled", "maybe"],
        ),
        (
            "refresh too fast",
            "[kubernetes]\nrefresh_interval = \"1ms\"\n".into(),
            vec!["kubernetes.refresh_interval", "1ms"],
        ),
        (
            "avoid_namespaces entry empty",
            "[cleanup]\nenabled = true\n[[cleanup.actions]]\ntype = \"signal\"\ntarget = \"all\"\n\
             avoid_namespaces = [\"\"]\n"
                .into(),
            vec!["cleanup.actions[0].avoid_namespaces"],
        ),
        (
            "bad namespace regex",
            "[cleanup]\nenabled = true\n[[cleanup.actions]]\ntype = \"signal\"\ntarget = \"all\"\n\
             namespace_regex = \"(\"\n"
                .into(),
            vec!["cleanup.actions[0].namespace_regex"],
        ),
    ];
    std::fs::write(dir.path().join("file"), "").unwrap();
    let mut failures = Vec::new();
    for (i, (what, file, words)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("case{i}.toml"));
        std::fs::write(&path, file).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_vram-exporter"))
            .arg("--config")
            .arg(&path)
            .arg("--check-config")
            .output()
            .unwrap();
        failures.extend(crate::harness::refusal_problem(what, &out, words));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // At the defaults with no kubelet here: the exporter runs and says attribution is off.
    let e = Exporter::start(Options {
        scenario: "[[device]]\nname = \"Sim\"\ntotal = \"10GiB\"\n",
        ..Options::default()
    });
    assert!(e
        .wait_log(|l| l.contains("pod-resources attribution off"), WAIT)
        .is_some());
    assert_eq!(e.get("/-/healthy").0, 200);
}

#[test]
fn cleanup_never_acts_on_inferred_names_says_why_and_reports_pods_in_exec() {
    let dir = tempfile::tempdir().unwrap();
    let proc_root = dir.path().join("proc");
    let socket = dir.path().join("kubelet.sock");
    let out = dir.path().join("exec.out");
    let user = Listener::spawn(dir.path(), "user");
    let system = Listener::spawn(dir.path(), "system");
    write_cgroup(&proc_root, &user.kid.pid(), &cgroup_file(0, 1));
    write_cgroup(&proc_root, &system.kid.pid(), &cgroup_file(2, 2));
    let kubelet = Kubelet::default();
    *kubelet.pods.lock().unwrap() = vec![
        pod("team-a", "train-a", &[("main", &[&uuid(0)])]),
        pod("kube-system", "dns", &[("coredns", &[&uuid(1)])]),
    ];
    let _server = Server::start(&socket, kubelet);
    // Both GPUs above their hard limit (95% of 10GiB), each held by one pod.
    let mut scenario = String::new();
    for (i, l) in [&user, &system].iter().enumerate() {
        scenario += &format!(
            "[[device]]\nname = \"Sim GPU 10G\"\nuuid = \"{}\"\ntotal = \"10GiB\"\nreserved = \"0\"\noverhead = \"0\"\n\
             [[device.process]]\npid = {}\nname = \"python\"\nmemory = \"10035MiB\"\n",
            uuid(i as u32),
            l.kid.pid()
        );
    }
    let config = format!(
        "[poll]\ninterval = \"200ms\"\n[kubernetes]\nenabled = true\nproc_root = \"{}\"\n\
         pod_resources_socket = \"{}\"\nrefresh_interval = \"300ms\"\ntimeout = \"300ms\"\n\
         [cleanup]\nenabled = true\ncooldown = \"1s\"\n\
         [[cleanup.actions]]\ntype = \"signal\"\nsignal = \"SIGUSR1\"\ntarget = \"all\"\n\
         [[cleanup.actions]]\ntype = \"exec\"\nargv = [\"sh\", \"-c\", \"echo \\\"$VRAM_GPU $VRAM_TOP_PODS $VRAM_TOP_POD_SOURCES\\\" >> {}\"]\n",
        proc_root.display(),
        socket.display(),
        out.display()
    );
    let e = Exporter::start(Options {
        scenario: &scenario,
        config: &config,
        time: None,
        ..Options::default()
    });
    // Without the container runtime the names are inferred from the GPU allocation: shown (the
    // exec's VRAM_TOP_PODS) but never acted on, and the audit line says why.
    for (l, ns) in [(&user, "team-a"), (&system, "kube-system")] {
        let want = format!(
            "spared: {} avoid_namespaces ({ns}, inferred: not acted on)",
            l.kid.pid()
        );
        let audit = e
            .wait_log(
                |line| {
                    line.contains("cleanup action")
                        && line.contains("\"action\":\"signal\"")
                        && line.contains(&want)
                },
                WAIT,
            )
            .unwrap_or_else(|| panic!("no audit line with {want:?}; log:\n{}", e.log().join("\n")));
        let audit: serde_json::Value = serde_json::from_str(&audit).unwrap();
        assert_eq!(audit["result"], "skipped", "{audit}");
    }
    assert_eq!(
        user.signals(),
        0,
        "a process with an inferred name was signalled"
    );
    assert_eq!(system.signals(), 0, "a kube-system process was signalled");
    let (status, body) = e.get("/api/v1/gpus");
    assert_eq!(status, 200);
    let api: serde_json::Value = serde_json::from_str(&body).unwrap();
    let p = &api["gpus"][0]["processes"][0];
    assert_eq!(p["workload"]["name_source"], "inferred", "{p}");
    assert_eq!(p["spared"][0]["type"], "signal", "{p}");
    assert_eq!(
        p["spared"][0]["why"], "avoid_namespaces (team-a, inferred: not acted on)",
        "{p}"
    );
    let deadline = std::time::Instant::now() + WAIT;
    let mut exec = String::new();
    while exec.lines().count() < 2 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        exec = std::fs::read_to_string(&out).unwrap_or_default();
    }
    assert!(
        exec.lines().any(|l| l == "0 team-a/train-a inferred"),
        "VRAM_TOP_PODS: {exec}"
    );
    assert!(
        exec.lines().any(|l| l == "1 kube-system/dns inferred"),
        "VRAM_TOP_PODS: {exec}"
    );
}
