//! Fault survival: the real exporter on nvml-sim's fault schedule — a GPU lost and back,
//! NVML loadable only later, process queries NOT_SUPPORTED, NVML hanging for 5 s, process lists
//! growing between the count and the fill call, a pid reused by another program, a driver reloaded
//! under a running session. In every case
//! the process must not panic and must keep serving.

use std::time::{Duration, Instant};

use crate::harness::{Exporter, Metrics, Options, GIB, MIB};

/// Two GPUs. GPU 0 holds two constant processes; GPU 1's trainer crosses the hard limit
/// (76 GiB of 80) before t = 10, stays there until t = 30, drops to 10 GiB, and breaches again
/// from t = 40.
const TWO_GPUS: &str = r#"
[[device]]
uuid = "GPU-f0000000-0000-0000-0000-000000000000"
total = "80GiB"
reserved = "0"
overhead = "0"

[[device.process]]
pid = 5000201
name = "server"
memory = "20GiB"

[[device.process]]
pid = 5000202
name = "notebook"
memory = "2GiB"

[[device]]
uuid = "GPU-f1111111-1111-1111-1111-111111111111"
total = "80GiB"
reserved = "0"
overhead = "0"

[[device.process]]
pid = 5000211
name = "trainer"
memory = { points = [[0, "77GiB"], [30, "77GiB"], [31, "10GiB"], [39, "10GiB"], [40, "77GiB"]] }
"#;

const FAST_POLL: &str = "[poll]\ninterval = \"100ms\"\n";

fn with_fault(fault: &str) -> String {
    format!("{TWO_GPUS}\n[[fault]]\n{fault}\n")
}

/// No "panicked" line anywhere in the exporter's stderr, and it still answers.
fn assert_survived(e: &mut Exporter) {
    // Waits a moment for log lines still on their way.
    let panic = e.wait_log(|l| l.contains("panicked"), Duration::from_millis(300));
    assert!(panic.is_none(), "the exporter panicked: {panic:?}");
    assert_eq!(e.get("/-/healthy").0, 200, "still serving");
    let m = e.metrics();
    assert!(m.count("vram_nvml_up") == 1, "still renders /metrics");
}

fn errors(m: &Metrics, gpu: &str, operation: &str) -> f64 {
    m.value(
        "vram_exporter_poll_errors_total",
        &[("gpu", gpu), ("operation", operation)],
    )
    .unwrap_or(0.0)
}

#[test]
fn a_lost_gpu_comes_back_with_its_counters() {
    let scenario = with_fault("kind = \"device_lost\"\ndevice = 1\nfrom = 10\nuntil = 20\n");
    let mut e = Exporter::start(Options {
        scenario: &scenario,
        config: FAST_POLL,
        ..Default::default()
    });
    let uuid1 = ("uuid", "GPU-f1111111-1111-1111-1111-111111111111");
    let m = e.next_poll();
    assert_eq!(m.gpu("vram_device_up", "1"), Some(1.0));
    assert_eq!(m.gpu("vram_allocated_bytes", "1"), Some(77.0 * GIB));
    assert_eq!(m.gpu("vram_hard_limit_violations_total", "1"), Some(1.0));

    e.set_time(15.0);
    let m = e.next_poll();
    assert_eq!(m.gpu("vram_device_up", "1"), Some(0.0), "lost");
    assert_eq!(m.gpu("vram_allocated_bytes", "1"), None);
    assert_eq!(m.value("vram_gpu_info", &[("gpu", "1"), uuid1]), Some(1.0));
    assert_eq!(
        m.gpu("vram_hard_limit_violations_total", "1"),
        Some(1.0),
        "counters are kept while the GPU is lost"
    );
    assert_eq!(m.gpu("vram_device_up", "0"), Some(1.0), "GPU 0 unaffected");
    let lost_errors = errors(&m, "1", "identity") + errors(&m, "1", "memory");
    assert!(lost_errors >= 1.0, "the loss is counted:\n{}", m.text);

    e.set_time(25.0);
    let m = e.next_poll();
    assert_eq!(m.gpu("vram_device_up", "1"), Some(1.0), "back");
    assert_eq!(m.value("vram_allocated_bytes", &[uuid1]), Some(77.0 * GIB));
    assert_eq!(m.gpu("vram_pressure_level", "1"), Some(2.0));
    assert_eq!(
        m.gpu("vram_hard_limit_violations_total", "1"),
        Some(1.0),
        "still the same episode: the loss neither reset nor re-counted it"
    );
    assert_eq!(
        m.value("vram_process_allocated_bytes", &[("process", "trainer")]),
        Some(77.0 * GIB)
    );
    let after = errors(&m, "1", "identity") + errors(&m, "1", "memory");
    // Counters continue: a new episode after re-arming counts on top of the old one.
    e.set_time(35.0);
    e.next_poll();
    e.set_time(45.0);
    let m = e.next_poll();
    assert_eq!(m.gpu("vram_hard_limit_violations_total", "1"), Some(2.0));
    assert_eq!(
        errors(&m, "1", "identity") + errors(&m, "1", "memory"),
        after,
        "no errors once the GPU is back"
    );
    assert_survived(&mut e);
}

#[test]
fn nvml_loadable_only_later_recovers_without_a_restart() {
    // Init fails with DRIVER_NOT_LOADED for the first 5 s after the library was loaded; with a
    // 100 ms poll the exporter's backoff (100 ms doubling) tries again at ~6.3 s.
    let scenario = with_fault("kind = \"init_failure\"\nfor = \"5s\"\n");
    let mut e = Exporter::start(Options {
        scenario: &scenario,
        config: FAST_POLL,
        ..Default::default()
    });
    let m = e.wait_metrics("a failed init", Duration::from_secs(10), |m| {
        // The series exists at 0 from the start: wait for a counted failure.
        m.value("vram_exporter_poll_errors_total", &[("operation", "init")])
            .is_some_and(|v| v >= 1.0)
    });
    assert_eq!(m.value("vram_nvml_up", &[]), Some(0.0));
    assert_eq!(m.count("vram_total_bytes"), 0);
    assert_eq!(e.get("/-/ready").0, 503, "not ready before NVML is up");
    assert_eq!(e.get("/-/healthy").0, 200);

    let m = e.wait_metrics("NVML up", Duration::from_secs(40), |m| {
        m.value("vram_nvml_up", &[]) == Some(1.0) && m.count("vram_total_bytes") == 2
    });
    assert_eq!(m.gpu("vram_allocated_bytes", "0"), Some(22.0 * GIB));
    assert_eq!(e.get("/-/ready").0, 200, "ready once a poll succeeded");
    let failures = m
        .value("vram_exporter_poll_errors_total", &[("operation", "init")])
        .unwrap();
    assert!(
        (2.0..=12.0).contains(&failures),
        "retried with backoff, not every poll: {failures} init failures"
    );
    // Still counting after recovery? No: init errors stop.
    let m = e.next_poll();
    assert_eq!(
        m.value("vram_exporter_poll_errors_total", &[("operation", "init")]),
        Some(failures)
    );
    assert!(e
        .wait_log(|l| l.contains("NVML initialised"), Duration::from_secs(5))
        .is_some());
    let warnings = e
        .log()
        .iter()
        .filter(|l| l.contains("NVML cannot be initialised"))
        .count();
    assert_eq!(warnings, 1, "the reason is logged once per change");
    assert_survived(&mut e);
}

#[test]
fn a_reloaded_driver_is_initialised_again_without_a_restart() {
    // At t = 10 the driver is reloaded: the exporter's NVML session answers UNINITIALIZED to every
    // call from then on, until it shuts down and initialises again.
    let scenario = with_fault("kind = \"driver_reset\"\nfrom = 10\n");
    let mut e = Exporter::start(Options {
        scenario: &scenario,
        config: FAST_POLL,
        ..Default::default()
    });
    let m = e.next_poll();
    assert_eq!(m.gpu("vram_device_up", "0"), Some(1.0));
    e.set_time(20.0);
    let reinit = e.wait_log(
        |l| l.contains("initialising it again"),
        Duration::from_secs(10),
    );
    assert!(reinit.is_some(), "the stuck session is not re-initialised");
    let m = e.wait_metrics(
        "the GPUs back after re-initialisation",
        Duration::from_secs(10),
        |m| {
            m.value("vram_nvml_up", &[]) == Some(1.0)
                && m.gpu("vram_device_up", "0") == Some(1.0)
                && m.gpu("vram_allocated_bytes", "0").is_some()
        },
    );
    assert_eq!(m.gpu("vram_allocated_bytes", "0"), Some(22.0 * GIB));
    assert!(
        errors(&m, "", "device_count") >= 3.0,
        "the failed counts are on record"
    );
    // Identities were kept while the session was being replaced.
    assert!(m
        .value(
            "vram_gpu_info",
            &[
                ("gpu", "1"),
                ("uuid", "GPU-f1111111-1111-1111-1111-111111111111")
            ]
        )
        .is_some());
    assert_survived(&mut e);
}

#[test]
fn process_queries_not_supported_keep_memory_and_drop_process_series() {
    let scenario = with_fault("kind = \"processes_not_supported\"\ndevice = 0\nfrom = 10\n");
    let mut e = Exporter::start(Options {
        scenario: &scenario,
        config: FAST_POLL,
        ..Default::default()
    });
    let m = e.next_poll();
    assert!(m
        .value("vram_process_allocated_bytes", &[("gpu", "0")])
        .is_some());

    e.set_time(20.0);
    let m = e.next_poll();
    // Let many polls run into the fault.
    std::thread::sleep(Duration::from_secs(1));
    let m2 = e.next_poll();
    for m in [&m, &m2] {
        assert_eq!(
            m.gpu("vram_allocated_bytes", "0"),
            Some(22.0 * GIB),
            "device memory still reported"
        );
        assert_eq!(m.gpu("vram_device_up", "0"), Some(1.0));
        assert!(
            m.value("vram_process_allocated_bytes", &[("gpu", "0")])
                .is_none(),
            "no process series where processes cannot be listed"
        );
        assert!(m
            .value("vram_process_leak_drift_bytes", &[("gpu", "0")])
            .is_none());
        assert_eq!(
            m.value("vram_process_allocated_bytes", &[("gpu", "1")]),
            Some(77.0 * GIB),
            "the other GPU still lists its processes"
        );
        // NOT_SUPPORTED is a property of the node, not an error: not counted every poll.
        assert_eq!(errors(m, "0", "processes"), 0.0, "{}", m.text);
    }
    let (status, body) = e.get("/api/v1/gpus");
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["gpus"][0]["processes"].as_array().map(Vec::len), Some(0));
    assert_survived(&mut e);
    let warnings = e
        .log()
        .iter()
        .filter(|l| l.contains("\"level\":\"warn\""))
        .count();
    assert!(warnings <= 1, "no warning per poll: {warnings}");
}

#[test]
fn hanging_nvml_serves_the_last_good_poll_and_shows_the_slow_poll() {
    // GPU 0's memory query sleeps 5 s while scenario time is in [10, 30).
    let scenario = with_fault(
        "kind = \"latency\"\ndelay = \"5s\"\ncalls = [\"memory\"]\ndevice = 0\nfrom = 10\nuntil = 30\n",
    );
    let mut e = Exporter::start(Options {
        scenario: &scenario,
        config: FAST_POLL,
        ..Default::default()
    });
    let m = e.next_poll();
    let slow_before = slow_polls(&m);
    assert_eq!(slow_before, 0.0);

    e.set_time(20.0);
    // Wait until a poll is stuck: the timestamp stops moving while polls are due every 100 ms.
    std::thread::sleep(Duration::from_millis(500));
    let stuck_at = e
        .metrics()
        .value("vram_exporter_last_poll_timestamp_seconds", &[])
        .unwrap();
    let mut slowest = Duration::ZERO;
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        let started = Instant::now();
        let m = e.metrics();
        slowest = slowest.max(started.elapsed());
        assert_eq!(
            m.gpu("vram_allocated_bytes", "0"),
            Some(22.0 * GIB),
            "served from the last good poll"
        );
        let (status, _) = e.get("/api/v1/gpus");
        assert_eq!(status, 200);
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        slowest < Duration::from_secs(2),
        "a scrape waited {slowest:?} for NVML"
    );
    let m = e.metrics();
    let now = m
        .value("vram_exporter_last_poll_timestamp_seconds", &[])
        .unwrap();
    assert_eq!(now, stuck_at, "the timestamp is stale while NVML hangs");
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(wall - now >= 1.5, "stale by {}s", wall - now);

    // The fault ends; the stuck call returns after its 5 s and polling resumes.
    e.set_time(40.0);
    let m = e.wait_metrics("polling resumed", Duration::from_secs(30), |m| {
        m.value("vram_exporter_last_poll_timestamp_seconds", &[])
            .unwrap_or(0.0)
            > now + 1.0
    });
    assert!(
        slow_polls(&m) >= 1.0,
        "the poll-duration histogram shows the slow poll:\n{}",
        m.text
    );
    assert!(
        m.value("vram_exporter_poll_duration_seconds_sum", &[])
            .unwrap()
            >= 5.0
    );
    assert_eq!(m.gpu("vram_device_up", "0"), Some(1.0));
    assert_survived(&mut e);
}

/// Polls that took longer than 2.5 s, from the histogram.
fn slow_polls(m: &Metrics) -> f64 {
    let count = m
        .value("vram_exporter_poll_duration_seconds_count", &[])
        .unwrap();
    let fast = m
        .value(
            "vram_exporter_poll_duration_seconds_bucket",
            &[("le", "2.5")],
        )
        .unwrap();
    count - fast
}

#[test]
fn process_lists_growing_between_count_and_fill_are_an_error_then_recover() {
    // nvml-wrapper pads its fill call by 5 entries; 8 extra processes overflow it.
    let scenario =
        with_fault("kind = \"process_churn\"\nextra = 8\ndevice = 0\nfrom = 10\nuntil = 20\n");
    // 250 ms polls: the last good list is held for 10 failed polls (2.5 s).
    let mut e = Exporter::start(Options {
        scenario: &scenario,
        config: "[poll]\ninterval = \"250ms\"\n",
        ..Default::default()
    });
    let m = e.next_poll();
    assert_eq!(errors(&m, "0", "processes"), 0.0);

    e.set_time(15.0);
    let m = e.next_poll();
    assert!(
        errors(&m, "0", "processes") >= 1.0,
        "counted as a processes error:\n{}",
        m.text
    );
    assert_eq!(
        m.value(
            "vram_process_allocated_bytes",
            &[("gpu", "0"), ("process", "server")]
        ),
        Some(20.0 * GIB),
        "a transient failure republishes the last good list (no flapping series, drift kept)"
    );
    // A lasting failure drops the list rather than freezing it.
    std::thread::sleep(Duration::from_secs(3));
    let m = e.next_poll();
    assert!(
        m.value("vram_process_allocated_bytes", &[("gpu", "0")])
            .is_none(),
        "{}",
        m.text
    );
    assert!(errors(&m, "0", "processes") >= 10.0);
    assert_eq!(
        m.gpu("vram_allocated_bytes", "0"),
        Some(22.0 * GIB),
        "memory still reported"
    );
    assert_eq!(m.gpu("vram_device_up", "0"), Some(1.0));
    assert_eq!(
        m.value("vram_process_allocated_bytes", &[("gpu", "1")]),
        Some(77.0 * GIB)
    );
    assert_eq!(errors(&m, "1", "processes"), 0.0, "GPU 1 unaffected");
    assert_eq!(e.get("/api/v1/gpus").0, 200);

    e.set_time(25.0);
    let m = e.next_poll();
    let settled = errors(&m, "0", "processes");
    assert_eq!(
        m.value(
            "vram_process_allocated_bytes",
            &[("gpu", "0"), ("process", "server")]
        ),
        Some(20.0 * GIB),
        "process series back once the fault ends"
    );
    // No transient pids leaked into the series.
    assert_eq!(
        m.samples
            .iter()
            .filter(|(n, ls, _)| n == "vram_process_allocated_bytes"
                && ls.iter().any(|(k, v)| k == "gpu" && v == "0"))
            .count(),
        2
    );
    let m = e.next_poll();
    assert_eq!(errors(&m, "0", "processes"), settled, "errors stop");
    assert_survived(&mut e);
}

#[test]
fn a_reused_pid_restarts_drift_and_is_relabelled() {
    // pid 5000240 runs "old-job" (leaking 100 MiB per scenario second) until t = 30, then
    // "new-job" (4 GiB).
    let scenario = r#"
[[device]]
uuid = "GPU-reuse"
total = "80GiB"
reserved = "0"
overhead = "0"

[[device.process]]
pid = 5000240
name = "old-job"
memory = { linear = { start = "1GiB", rate = "100MiB/s" } }
stop = 30

[[device.process]]
pid = 5000240
name = "new-job"
memory = "4GiB"
start = 30
"#;
    let mut e = Exporter::start(Options {
        scenario,
        config: "[poll]\ninterval = \"100ms\"\n[leak]\nwindow = \"4s\"\nfloor_window = \"1s\"\n",
        ..Default::default()
    });
    e.next_poll();
    // Scenario time advances 1 s every 200 ms: the old process leaks 500 MiB per real second.
    let mut leaking = None;
    for t in 0..=28 {
        e.set_time(f64::from(t));
        std::thread::sleep(Duration::from_millis(200));
        let m = e.metrics();
        let drift = m
            .value(
                "vram_process_leak_drift_bytes",
                &[("pid", "5000240"), ("process", "old-job")],
            )
            .unwrap_or(0.0);
        if drift >= 256.0 * MIB {
            leaking = Some(m);
            break;
        }
    }
    let m = leaking.expect("the old process's leak is reported");
    assert!(
        m.value(
            "vram_process_leak_rate_bytes_per_second",
            &[("pid", "5000240"), ("process", "old-job")]
        )
        .unwrap_or(0.0)
            > 0.0
    );

    e.set_time(40.0);
    let m = e.next_poll();
    let series: Vec<_> = m
        .samples
        .iter()
        .filter(|(n, ls, _)| {
            n == "vram_process_allocated_bytes"
                && ls.iter().any(|(k, v)| k == "pid" && v == "5000240")
        })
        .collect();
    assert_eq!(series.len(), 1, "one series for the pid:\n{}", m.text);
    assert!(
        series[0]
            .1
            .iter()
            .any(|(k, v)| k == "process" && v == "new-job"),
        "relabelled with the new name: {series:?}"
    );
    assert_eq!(series[0].2, 4.0 * GIB);
    assert_eq!(
        m.value(
            "vram_process_leak_drift_bytes",
            &[("pid", "5000240"), ("process", "new-job")]
        ),
        Some(0.0),
        "drift restarts for the new process (it must not inherit the old floor)"
    );
    assert!(m
        .value("vram_process_leak_drift_bytes", &[("process", "old-job")])
        .is_none());
    assert_survived(&mut e);
}
