//! Bounded expansion of the Kubernetes sources, through the real binary: a pod-resources answer
//! with a 1 MB pod name, a GPU with thousands of allocations, and answers whose decoded form would
//! pass the stated bounds (the kubelet's 20,000 and 50,000 allocations, a runtime answer of tiny
//! annotations).
//! Labels stay within Kubernetes' lengths, a GPU publishes at most 64 allocations with the rest
//! counted, an answer past the bound is refused (last good kept); peak memory is printed.

use std::collections::HashMap;

use vram_exporter::source::kubernetes::pb::cri::{PodSandbox, PodSandboxMetadata};

use crate::attribution::{gpu, kubernetes, runtime_pod, serve_runtime, Runtime};
use crate::harness::{Exporter, Metrics, Options};
use crate::kube_fakes::{pod, uuid, write_cgroup, Kid, Kubelet, Server, WAIT};

/// The exporter's peak and current resident memory, in MiB.
fn memory(e: &Exporter) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{}/status", e.pid())).unwrap();
    let kib = |key: &str| -> f64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    (kib("VmHWM:") / 1024.0, kib("VmRSS:") / 1024.0)
}

fn allocations(m: &Metrics, gpu: &str) -> usize {
    m.samples
        .iter()
        .filter(|(n, ls, _)| {
            n == "vram_gpu_allocation_info" && ls.iter().any(|(k, v)| k == "gpu" && v == gpu)
        })
        .count()
}

/// The section with time for the fake servers to encode large answers (a debug build).
fn slow(section: String) -> String {
    section
        .replace("refresh_interval = \"300ms\"", "refresh_interval = \"3s\"")
        .replace("timeout = \"300ms\"", "timeout = \"3s\"")
}

/// `n` pods of one container each, all on replicas of GPU 0.
fn crowd(n: usize) -> Vec<vram_exporter::source::kubernetes::pb::v1::PodResources> {
    (0..n)
        .map(|i| {
            let id = format!("{}::{i}", uuid(0));
            pod("ml", &format!("p-{i:05}"), &[("main", &[id.as_str()])])
        })
        .collect()
}

#[test]
fn long_names_and_crowded_gpus_stay_within_their_bounds() {
    let dir = tempfile::tempdir().unwrap();
    let proc_root = dir.path().join("proc");
    std::fs::create_dir_all(&proc_root).unwrap();
    let kubelet_sock = dir.path().join("k.sock");
    let kubelet = Kubelet::default();
    // The first answer: a 1 MB pod name holding 100 device IDs, beside a normal pod.
    let huge = "x".repeat(1 << 20);
    let ids: Vec<String> = (0..100).map(|i| format!("{}::{i}", uuid(0))).collect();
    let id_refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    *kubelet.pods.lock().unwrap() = vec![
        pod("ml", &huge, &[("main", &id_refs)]),
        pod("ml", "normal", &[("main", &[&uuid(1)])]),
    ];
    let _k = Server::start(&kubelet_sock, kubelet.clone());
    let kid = Kid::spawn();
    write_cgroup(&proc_root, &kid.pid(), "0::/user.slice\n");
    let e = Exporter::start(Options {
        scenario: &(gpu(0, &[(kid.pid(), 512)]) + &gpu(1, &[])),
        config: &slow(kubernetes(&proc_root, &kubelet_sock, None)),
        time: None,
        ..Options::default()
    });
    let m = e.wait_metrics("the normal pod", WAIT, |m| allocations(m, "1") == 1);
    assert_eq!(
        allocations(&m, "0"),
        0,
        "the 1 MB name is no name:\n{}",
        &m.text[..2000.min(m.text.len())]
    );
    let longest = m.text.lines().map(str::len).max().unwrap();
    assert!(longest < 1024, "a line of {longest} bytes");
    let long_name = memory(&e);

    // A GPU allocated to 5,000 containers: 64 published, the rest counted.
    *kubelet.pods.lock().unwrap() = crowd(5_000);
    let m = e.wait_metrics("the crowd", WAIT, |m| {
        m.value("vram_gpu_allocations_omitted", &[("gpu", "0")]) == Some(4_936.0)
    });
    assert_eq!(allocations(&m, "0"), 64);
    assert!(
        m.text.len() < 64 * 1024,
        "/metrics is {} bytes",
        m.text.len()
    );
    let (_, body) = e.get("/api/v1/gpus");
    let api: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(api["gpus"][0]["allocations"].as_array().unwrap().len(), 64);
    assert_eq!(api["gpus"][0]["allocations_omitted"], 4_936);
    assert_eq!(api["gpus"][0]["allocations"][0]["pod"], "p-00000");
    let crowded = memory(&e);

    // 20,000 allocations: under the wire cap, but decoded they would pass the bound: refused,
    // the last good list kept, the error counted and said.
    *kubelet.pods.lock().unwrap() = crowd(20_000);
    let line = e
        .wait_log(|l| l.contains("answer too large"), WAIT)
        .unwrap_or_else(|| panic!("no refusal; log:\n{}", e.log().join("\n")));
    assert!(line.contains("pod-resources cannot be listed"), "{line}");
    let m = e.next_poll();
    assert_eq!(allocations(&m, "0"), 64, "the last good list stays");
    assert!(
        m.value(
            "vram_exporter_poll_errors_total",
            &[("operation", "pod_resources")]
        )
        .unwrap_or(0.0)
            >= 1.0
    );
    // The second answer: 50,000 allocations of one GPU, past the 4 MiB wire cap.
    *kubelet.pods.lock().unwrap() = crowd(50_000);
    e.wait_log(
        |l| l.contains("pod-resources cannot be listed") && !l.contains("answer too large"),
        WAIT,
    )
    .unwrap_or_else(|| panic!("no refusal; log:\n{}", e.log().join("\n")));
    assert_eq!(
        allocations(&e.next_poll(), "0"),
        64,
        "the last good list stays"
    );
    let refused = memory(&e);
    println!(
        "peak/current RSS MiB: 1 MB pod name {:.1}/{:.1}; 5,000 allocations {:.1}/{:.1}; \
         20,000 and 50,000 allocations refused {:.1}/{:.1}",
        long_name.0, long_name.1, crowded.0, crowded.1, refused.0, refused.1
    );
}

#[test]
fn a_runtime_answer_past_the_decode_bound_is_refused_and_the_last_names_kept() {
    let dir = tempfile::tempdir().unwrap();
    let proc_root = dir.path().join("proc");
    let (kubelet_sock, runtime_sock) = (dir.path().join("k.sock"), dir.path().join("r.sock"));
    let kid = Kid::spawn();
    write_cgroup(
        &proc_root,
        &kid.pid(),
        &format!(
            "0::/kubepods/besteffort/pod{}/{}\n",
            crate::kube_fakes::pod_uid(7),
            crate::kube_fakes::container_id(7)
        ),
    );
    let _k = Server::start(&kubelet_sock, Kubelet::default());
    let runtime = Runtime::default();
    *runtime.pods.lock().unwrap() = vec![runtime_pod(7, "ml", "named-7", "main")];
    let _r = serve_runtime(&runtime_sock, runtime.clone());
    let e = Exporter::start(Options {
        scenario: &gpu(0, &[(kid.pid(), 512)]),
        config: &slow(kubernetes(&proc_root, &kubelet_sock, Some(&runtime_sock))),
        time: None,
        ..Options::default()
    });
    let named = |m: &Metrics| {
        m.value("vram_process_allocated_bytes", &[("pod", "named-7")])
            .is_some()
    };
    e.wait_metrics("named by the runtime", WAIT, named);
    let before = memory(&e);
    // About 1.5 MB on the wire (under the 4 MiB wire cap) of tiny annotations: each a few bytes
    // there, a hash-map entry of two strings decoded.
    let annotations: HashMap<String, String> = (0..120_000)
        .map(|i| (format!("{i:x}"), String::new()))
        .collect();
    *runtime.padding.lock().unwrap() = vec![PodSandbox {
        id: "flood".into(),
        metadata: Some(PodSandboxMetadata {
            name: "flood".into(),
            uid: crate::kube_fakes::pod_uid(8),
            namespace: "ml".into(),
            attempt: 0,
        }),
        annotations,
        ..Default::default()
    }];
    let flood = prost::Message::encoded_len(&runtime.padding.lock().unwrap()[0]);
    let line = e
        .wait_log(|l| l.contains("answer too large"), WAIT)
        .unwrap_or_else(|| panic!("no refusal; log:\n{}", e.log().join("\n")));
    assert!(
        line.contains("container runtime cannot be listed"),
        "{line}"
    );
    let m = e.next_poll();
    assert!(named(&m), "the last good names stay:\n{}", m.text);
    let after = memory(&e);
    println!(
        "runtime flood of {flood} bytes: peak/current RSS MiB before {:.1}/{:.1}, after {:.1}/{:.1}",
        before.0, before.1, after.0, after.1
    );
}
