//! The exporter end to end on simulated GPUs: values, episodes, drift, faults, HTTP behaviour.

use std::time::{Duration, Instant};

use crate::harness::{get, Exporter, Options, GIB, MIB};

const TWO_GPUS: &str = include_str!("../fixtures/scenarios/two-h100.toml");

#[test]
fn every_family_reports_the_scenario_values() {
    let e = Exporter::start(Options {
        scenario: TWO_GPUS,
        ..Default::default()
    });
    let m = e.wait_metrics("first poll", Duration::from_secs(10), |m| {
        m.count("vram_total_bytes") == 2
    });
    let g0 = [
        ("gpu", "0"),
        ("uuid", "GPU-00000000-0000-0000-0000-000000000000"),
    ];
    assert_eq!(m.value("vram_total_bytes", &g0), Some(80.0 * GIB));
    assert_eq!(m.value("vram_reserved_bytes", &g0), Some(512.0 * MIB));
    assert_eq!(
        m.value("vram_allocated_bytes", &g0),
        Some(23.0 * GIB + 512.0 * MIB)
    );
    assert_eq!(
        m.value("vram_free_bytes", &g0),
        Some(80.0 * GIB - 24.0 * GIB)
    );
    assert_eq!(m.gpu("vram_allocated_bytes", "1"), Some(0.0));
    assert_eq!(m.value("vram_soft_limit_bytes", &g0), Some(68.0 * GIB));
    assert_eq!(m.value("vram_hard_limit_bytes", &g0), Some(76.0 * GIB));
    assert_eq!(m.value("vram_pressure_level", &g0), Some(0.0));
    assert_eq!(m.value("vram_soft_limit_violations_total", &g0), Some(0.0));
    assert_eq!(m.value("vram_hard_limit_violations_total", &g0), Some(0.0));
    assert_eq!(m.value("vram_leak_drift_bytes", &g0), Some(0.0));
    assert_eq!(m.value("vram_device_up", &g0), Some(1.0));
    assert_eq!(m.value("vram_nvml_up", &[]), Some(1.0));
    assert_eq!(
        m.value(
            "vram_gpu_info",
            &[
                ("gpu", "0"),
                ("model", "NVIDIA H100 80GB HBM3"),
                ("pci_bus_id", "00000000:01:00.0")
            ]
        ),
        Some(1.0)
    );
    assert_eq!(
        m.value(
            "vram_process_allocated_bytes",
            &[("gpu", "0"), ("pid", "5000001"), ("process", "trainer")]
        ),
        Some(20.0 * GIB)
    );
    assert_eq!(
        m.value(
            "vram_process_allocated_bytes",
            &[("gpu", "0"), ("pid", "5000002"), ("process", "notebook")]
        ),
        Some(3.0 * GIB)
    );
    assert_eq!(
        m.value("vram_process_leak_drift_bytes", &[("pid", "5000001")]),
        Some(0.0)
    );
    assert_eq!(
        m.value(
            "vram_exporter_build_info",
            &[("driver_version", "550.54.15")]
        ),
        Some(1.0)
    );
    assert!(
        m.value("vram_exporter_last_poll_timestamp_seconds", &[])
            .unwrap()
            > 1.6e9
    );
    assert!(m.count("vram_exporter_poll_duration_seconds_bucket") > 5);
    assert!(m.value("process_resident_memory_bytes", &[]).unwrap() > 0.0);
    for family in m.text.lines().filter(|l| l.starts_with("# TYPE ")) {
        let name = family.split_whitespace().nth(2).unwrap();
        assert!(
            m.text.contains(&format!("# HELP {name} ")),
            "HELP missing for {name}"
        );
    }

    // The JSON API carries the same poll.
    let (status, body) = e.get("/api/v1/gpus");
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["gpus"][0]["uuid"],
        "GPU-00000000-0000-0000-0000-000000000000"
    );
    assert_eq!(
        v["gpus"][0]["memory"]["allocated"].as_f64(),
        Some(23.0 * GIB + 512.0 * MIB)
    );
    assert_eq!(v["gpus"][0]["limits"]["hard"].as_f64(), Some(76.0 * GIB));
    assert_eq!(v["gpus"][0]["level"], "ok");
    assert_eq!(v["gpus"][0]["processes"][0]["name"], "trainer");
}

#[test]
fn process_series_are_bounded_by_top_n() {
    let mut scenario = String::from("[[device]]\nuuid = \"GPU-top\"\ntotal = \"80GiB\"\n");
    for i in 0..10 {
        scenario.push_str(&format!(
            "[[device.process]]\npid = {}\nname = \"p{i}\"\nmemory = \"{}MiB\"\n",
            5_000_100 + i,
            100 * (i + 1)
        ));
    }
    let e = Exporter::start(Options {
        scenario: &scenario,
        config: "[processes]\nmax_per_gpu = 3\n",
        ..Default::default()
    });
    let m = e.wait_metrics("first poll", Duration::from_secs(10), |m| {
        m.count("vram_total_bytes") == 1
    });
    assert_eq!(m.count("vram_process_allocated_bytes"), 3);
    for name in ["p9", "p8", "p7"] {
        assert!(
            m.value("vram_process_allocated_bytes", &[("process", name)])
                .is_some(),
            "{name} missing"
        );
    }
}

#[test]
fn the_json_api_lists_the_same_top_n_and_counts_the_rest() {
    // 4,000 processes on one GPU (nvml-sim's most): the API once listed every one of them.
    let mut scenario = String::from("[[device]]\nuuid = \"GPU-many\"\ntotal = \"80GiB\"\n");
    for i in 0..4000u64 {
        scenario.push_str(&format!(
            "[[device.process]]\npid = {}\nname = \"p{i}\"\nmemory = \"{}KiB\"\n",
            5_100_000 + i,
            4 * (i + 1)
        ));
    }
    let e = Exporter::start(Options {
        scenario: &scenario,
        config: "[processes]\nmax_per_gpu = 16\n",
        ..Default::default()
    });
    let m = e.wait_metrics("first poll", Duration::from_secs(20), |m| {
        m.count("vram_total_bytes") == 1
    });
    assert_eq!(m.count("vram_process_allocated_bytes"), 16);
    let (status, body) = e.get("/api/v1/gpus");
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let listed = v["gpus"][0]["processes"].as_array().unwrap();
    assert_eq!(listed.len(), 16, "{}", &body[..body.len().min(2000)]);
    assert_eq!(v["gpus"][0]["processes_omitted"], 3984);
    // Largest first, and exactly the processes that have metric series.
    assert_eq!(listed[0]["name"], "p3999");
    for p in listed {
        let name = p["name"].as_str().unwrap();
        assert!(
            m.value("vram_process_allocated_bytes", &[("process", name)])
                .is_some(),
            "{name} is in the API but has no series"
        );
    }
}

/// A piecewise trace around the soft and hard limits of an 80 GiB GPU (soft 68, hard 76 GiB,
/// hysteresis 1.6 GiB), stepped through with the time file.
const TRACE: &str = r#"
[[device]]
uuid = "GPU-trace"
total = "80GiB"
reserved = "0"
overhead = "0"

[[device.process]]
pid = 5000010
name = "trainer"
memory = { points = [[0, "10GiB"], [10, "10GiB"], [11, "69GiB"], [20, "69GiB"], [21, "67GiB"], [30, "67GiB"], [31, "69GiB"], [40, "69GiB"], [41, "77GiB"], [50, "77GiB"], [51, "75GiB"], [60, "75GiB"], [61, "77GiB"], [70, "77GiB"], [71, "10GiB"], [80, "10GiB"], [81, "77GiB"], [90, "77GiB"], [91, "10GiB"]] }
"#;

#[test]
fn episodes_are_counted_once_with_hysteresis() {
    let e = Exporter::start(Options {
        scenario: TRACE,
        config: "[poll]\ninterval = \"100ms\"\n",
        ..Default::default()
    });
    // (scenario time, expected level, expected soft episodes, expected hard episodes)
    let steps = [
        (5.0, 0.0, 0.0, 0.0),
        (15.0, 1.0, 1.0, 0.0), // over soft
        (25.0, 1.0, 1.0, 0.0), // 67 GiB: inside the hysteresis band, same episode
        (35.0, 1.0, 1.0, 0.0), // back over soft: still the same episode
        (45.0, 2.0, 1.0, 1.0), // over hard
        (55.0, 2.0, 1.0, 1.0), // 75 GiB: inside hard's band
        (65.0, 2.0, 1.0, 1.0), // over hard again: same episode
        (75.0, 0.0, 1.0, 1.0), // far below: both re-armed
        (85.0, 2.0, 2.0, 2.0), // a new episode of each
        (95.0, 0.0, 2.0, 2.0),
    ];
    for (t, level, soft, hard) in steps {
        e.set_time(t);
        let m = e.next_poll();
        assert_eq!(
            m.gpu("vram_pressure_level", "0"),
            Some(level),
            "level at t={t}"
        );
        assert_eq!(
            m.gpu("vram_soft_limit_violations_total", "0"),
            Some(soft),
            "soft at t={t}"
        );
        assert_eq!(
            m.gpu("vram_hard_limit_violations_total", "0"),
            Some(hard),
            "hard at t={t}"
        );
    }
}

#[test]
fn limits_follow_overrides_and_clamp() {
    let e = Exporter::start(Options {
        scenario: TWO_GPUS,
        config: r#"
[limits]
soft = "70%"
hard = "90%"

[[limits.overrides]]
uuid = "GPU-11111111-1111-1111-1111-111111111111"
soft = "40GiB"
hard = "200GiB"
"#,
        ..Default::default()
    });
    let m = e.wait_metrics("first poll", Duration::from_secs(10), |m| {
        m.count("vram_hard_limit_bytes") == 2
    });
    assert_eq!(m.gpu("vram_soft_limit_bytes", "0"), Some(56.0 * GIB));
    assert_eq!(m.gpu("vram_hard_limit_bytes", "0"), Some(72.0 * GIB));
    assert_eq!(m.gpu("vram_soft_limit_bytes", "1"), Some(40.0 * GIB));
    assert_eq!(
        m.gpu("vram_hard_limit_bytes", "1"),
        Some(80.0 * GIB),
        "clamped to total"
    );
    assert!(e
        .wait_log(
            |l| l.contains("limits adjusted") && l.contains("hard_clamped\":true"),
            Duration::from_secs(5)
        )
        .is_some());
}

#[test]
fn a_lost_gpu_reports_down_while_the_other_keeps_reporting() {
    let scenario =
        format!("{TWO_GPUS}\n[[fault]]\nkind = \"device_lost\"\ndevice = 1\nfrom = 10\n");
    let e = Exporter::start(Options {
        scenario: &scenario,
        config: "[poll]\ninterval = \"100ms\"\n",
        ..Default::default()
    });
    let m = e.next_poll();
    assert_eq!(m.gpu("vram_device_up", "1"), Some(1.0));
    e.set_time(20.0);
    let m = e.next_poll();
    assert_eq!(m.gpu("vram_device_up", "1"), Some(0.0));
    assert_eq!(m.gpu("vram_device_up", "0"), Some(1.0));
    assert_eq!(
        m.gpu("vram_allocated_bytes", "0"),
        Some(23.0 * GIB + 512.0 * MIB)
    );
    assert_eq!(
        m.gpu("vram_allocated_bytes", "1"),
        None,
        "no memory series for a lost GPU"
    );
    assert_eq!(
        m.value(
            "vram_gpu_info",
            &[
                ("gpu", "1"),
                ("uuid", "GPU-11111111-1111-1111-1111-111111111111")
            ]
        ),
        Some(1.0),
        "a lost GPU keeps its identity"
    );
    // Every operation's series exists at 0: the lost GPU's errors are in some of them.
    let gpu1_errors: f64 = m
        .samples
        .iter()
        .filter(|(n, ls, _)| {
            n == "vram_exporter_poll_errors_total" && ls.iter().any(|(k, v)| k == "gpu" && v == "1")
        })
        .map(|(_, _, v)| v)
        .sum();
    assert!(gpu1_errors >= 1.0, "{gpu1_errors}");
}

#[test]
fn nvml_absent_serves_nvml_down_and_is_not_ready() {
    let e = Exporter::start(Options {
        scenario: TWO_GPUS,
        library: Some(std::path::PathBuf::from("/nonexistent/libnvidia-ml.so.1")),
        ..Default::default()
    });
    let m = e.wait_metrics("first poll", Duration::from_secs(10), |m| {
        // The series exists at 0 from the start: wait for a counted failure.
        m.value("vram_exporter_poll_errors_total", &[("operation", "init")])
            .is_some_and(|v| v >= 1.0)
    });
    assert_eq!(m.value("vram_nvml_up", &[]), Some(0.0));
    assert_eq!(m.count("vram_total_bytes"), 0);
    assert_eq!(e.get("/-/ready").0, 503);
    assert_eq!(e.get("/-/healthy").0, 200);
}

#[test]
fn ready_after_the_first_successful_poll() {
    let e = Exporter::start(Options {
        scenario: TWO_GPUS,
        ..Default::default()
    });
    e.wait_metrics("first poll", Duration::from_secs(10), |m| {
        m.count("vram_total_bytes") == 2
    });
    assert_eq!(e.get("/-/ready").0, 200);
}

#[test]
fn scrapes_stay_prompt_while_nvml_hangs() {
    let scenario =
        format!("{TWO_GPUS}\n[[fault]]\nkind = \"latency\"\ndelay = \"3s\"\nfrom = 10\n");
    let e = Exporter::start(Options {
        scenario: &scenario,
        config: "[poll]\ninterval = \"100ms\"\n",
        ..Default::default()
    });
    let before = e.next_poll();
    let last = before
        .value("vram_exporter_last_poll_timestamp_seconds", &[])
        .unwrap();
    e.set_time(20.0);
    // Every NVML call now takes 3 s; a poll takes many seconds. Scrapes must not wait for it.
    std::thread::sleep(Duration::from_millis(500));
    let mut slowest = Duration::ZERO;
    for _ in 0..10 {
        let started = Instant::now();
        let m = e.metrics();
        slowest = slowest.max(started.elapsed());
        assert_eq!(
            m.gpu("vram_total_bytes", "0"),
            Some(80.0 * GIB),
            "served from the last good poll"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        slowest < Duration::from_secs(2),
        "a scrape waited {slowest:?} for NVML"
    );
    let m = e.metrics();
    let stale = m
        .value("vram_exporter_last_poll_timestamp_seconds", &[])
        .unwrap();
    assert!(
        stale - last < 1.5,
        "the last poll timestamp shows the hang ({last} → {stale})"
    );
}

#[test]
fn vanished_processes_drop_out() {
    let scenario = r#"
[[device]]
uuid = "GPU-v"
total = "16GiB"

[[device.process]]
pid = 5000030
name = "short"
memory = "1GiB"
stop = 10

[[device.process]]
pid = 5000031
name = "long"
memory = "2GiB"
"#;
    let e = Exporter::start(Options {
        scenario,
        config: "[poll]\ninterval = \"100ms\"\n",
        ..Default::default()
    });
    let m = e.next_poll();
    assert_eq!(m.count("vram_process_allocated_bytes"), 2);
    e.set_time(20.0);
    let m = e.next_poll();
    assert_eq!(m.count("vram_process_allocated_bytes"), 1);
    assert_eq!(m.count("vram_process_leak_drift_bytes"), 1);
    assert!(m
        .value("vram_process_allocated_bytes", &[("process", "short")])
        .is_none());
}

#[test]
fn http_surface() {
    let e = Exporter::start(Options {
        scenario: TWO_GPUS,
        ..Default::default()
    });
    e.wait_metrics("first poll", Duration::from_secs(10), |m| {
        m.count("vram_total_bytes") == 2
    });
    let (status, page) = e.get("/");
    assert_eq!(status, 200);
    assert!(page.contains("GPU-00000000-0000-0000-0000-000000000000") && page.contains("/metrics"));
    assert_eq!(e.get("/nope").0, 404);
    assert_eq!(e.get("/metrics/../etc").0, 404);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let resp = agent.post(&e.url("/metrics")).send("x").unwrap();
    assert_eq!(resp.status().as_u16(), 405);
    let (status, _) = get(&e.url("/-/healthy"));
    assert_eq!(status, 200);
}

#[test]
fn sigterm_shuts_down_gracefully() {
    let e = Exporter::start(Options {
        scenario: TWO_GPUS,
        ..Default::default()
    });
    e.wait_metrics("first poll", Duration::from_secs(10), |m| {
        m.count("vram_total_bytes") == 2
    });
    let status = e.terminate();
    assert!(status.success(), "exit status {status:?}");
}

#[test]
fn mig_instances_are_published_in_their_own_families() {
    let scenario = r#"
[[device]]
name = "NVIDIA A100-SXM4-80GB"
uuid = "GPU-m0000000-0000-0000-0000-000000000000"
total = "80GiB"
reserved = "512MiB"
overhead = "0"

[[device.mig]]
name = "NVIDIA A100-SXM4-80GB MIG 3g.40gb"
uuid = "MIG-m0000000-0000-0000-0000-000000000001"
total = "39GiB"
reserved = "128MiB"
overhead = "0"
gpu_instance_id = 1
compute_instance_id = 0

[[device.mig.process]]
pid = 5000501
name = "trainer"
memory = "30GiB"

[[device.mig]]
name = "NVIDIA A100-SXM4-80GB MIG 1g.10gb"
uuid = "MIG-m0000000-0000-0000-0000-000000000002"
total = "9GiB"
reserved = "64MiB"
overhead = "0"
gpu_instance_id = 13
compute_instance_id = 0

[[device.mig.process]]
pid = 5000502
name = "notebook"
memory = "2GiB"

[[device]]
name = "NVIDIA A100-SXM4-80GB"
uuid = "GPU-m1111111-1111-1111-1111-111111111111"
total = "80GiB"
"#;
    let e = Exporter::start(Options {
        scenario,
        ..Default::default()
    });
    let m = e.wait_metrics("first poll", Duration::from_secs(10), |m| {
        m.count("vram_total_bytes") == 2
    });
    assert_eq!(m.count("vram_mig_info"), 2, "only GPU 0 is in MIG mode");
    assert_eq!(
        m.value(
            "vram_mig_info",
            &[
                ("gpu", "0"),
                ("uuid", "GPU-m0000000-0000-0000-0000-000000000000"),
                ("mig_uuid", "MIG-m0000000-0000-0000-0000-000000000001"),
                ("profile", "3g.40gb")
            ]
        ),
        Some(1.0)
    );
    let mig1 = [("mig_uuid", "MIG-m0000000-0000-0000-0000-000000000002")];
    assert_eq!(m.value("vram_mig_total_bytes", &mig1), Some(9.0 * GIB));
    assert_eq!(m.value("vram_mig_allocated_bytes", &mig1), Some(2.0 * GIB));
    assert_eq!(m.value("vram_mig_reserved_bytes", &mig1), Some(64.0 * MIB));
    assert_eq!(
        m.value("vram_mig_free_bytes", &mig1),
        Some(7.0 * GIB - 64.0 * MIB)
    );
    // The parent still reports the whole GPU, with every MIG instance's processes.
    assert_eq!(m.gpu("vram_total_bytes", "0"), Some(80.0 * GIB));
    assert!(m
        .value("vram_process_allocated_bytes", &[("pid", "5000501")])
        .is_some());
    let (_, body) = e.get("/api/v1/gpus");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["gpus"][0]["migs"][1]["profile"], "1g.10gb");
    crate::golden::promtool_check(&m.text);
}
