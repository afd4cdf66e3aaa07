//! `/api/v1/history` through the real binary: a GPU walked through a soft and a hard episode and
//! back with the scenario clock, a process arriving and exiting, a dry-run cleanup, each on the
//! event timeline in order; series columns of equal length; bad queries answered 400.

use std::time::Duration;

use serde_json::Value;

use vram_testkit::wait::{Poll, Wait};

use crate::harness::{Exporter, Options, GIB};

const SCENARIO: &str = include_str!("../fixtures/scenarios/history.toml");

const CONFIG: &str = r#"
[poll]
interval = "100ms"

[cleanup]
enabled = true
dry_run = true
cooldown = "1h"

[[cleanup.actions]]
type = "signal"
signal = "SIGUSR1"
target = "all"
"#;

fn history(e: &Exporter, query: &str) -> Value {
    let (status, body) = e.get(&format!("/api/v1/history{query}"));
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

fn kinds(h: &Value) -> Vec<String> {
    h["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_string())
        .collect()
}

/// Moves the scenario clock to `t` and waits until the timeline shows `kind`.
fn step_until(e: &Exporter, t: f64, kind: &str) -> Value {
    e.set_time(t);
    Wait::new(
        format!("a {kind} event at t = {t}"),
        Duration::from_secs(20),
    )
    .every(Duration::from_millis(100))
    .must(|| {
        let h = history(e, "");
        if kinds(&h).iter().any(|k| k == kind) {
            Poll::Ready(h)
        } else {
            Poll::Pending(format!("{h:#}"))
        }
    })
}

#[test]
fn history_records_episodes_processes_and_cleanup() {
    let e = Exporter::start(Options {
        scenario: SCENARIO,
        config: CONFIG,
        ..Default::default()
    });
    e.wait_metrics("first poll", Duration::from_secs(10), |m| {
        m.count("vram_gpu_info") == 2
    });
    let h = history(&e, "");
    assert!(kinds(&h).is_empty(), "a steady start is no event: {h:#}");

    step_until(&e, 6.0, "process_arrived");
    step_until(&e, 12.0, "soft_started");
    step_until(&e, 22.0, "hard_started");
    let h = step_until(&e, 22.0, "cleanup");
    step_until(&e, 26.0, "process_exited");
    let h_end = step_until(&e, 32.0, "soft_ended");

    let all = kinds(&h_end);
    let pos = |k: &str| {
        all.iter()
            .position(|x| x == k)
            .unwrap_or_else(|| panic!("{k} in {all:?}"))
    };
    assert!(pos("process_arrived") < pos("soft_started"), "{all:?}");
    assert!(pos("soft_started") < pos("hard_started"), "{all:?}");
    assert!(pos("hard_started") < pos("cleanup"), "{all:?}");
    assert!(pos("cleanup") < pos("process_exited"), "{all:?}");
    assert!(pos("process_exited") < pos("hard_ended"), "{all:?}");
    assert!(pos("hard_ended") <= pos("soft_ended"), "{all:?}");

    let events = h_end["events"].as_array().unwrap();
    let arrived = &events[pos("process_arrived")];
    assert_eq!(arrived["pid"], 5000402);
    assert_eq!(arrived["name"], "jupyter-kernel");
    assert_eq!(arrived["gpu"], 0);
    let cleanup = h["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "cleanup")
        .unwrap();
    assert_eq!(cleanup["action"], "signal");
    assert_eq!(cleanup["result"], "dry_run");
    assert!(cleanup["bytes"].as_f64().unwrap() > 76.0 * GIB, "{cleanup}");
    assert!(
        cleanup.get("reclaimed_bytes").is_none(),
        "a dry run reclaims nothing: {cleanup}"
    );
    let ids: Vec<u64> = events.iter().map(|e| e["id"].as_u64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");

    // Series: equal columns, the hard episode's peak and level, limits beside them.
    let gpu = &h_end["gpus"][0];
    let n = gpu["t"].as_array().unwrap().len();
    assert!(n >= 1, "{gpu}");
    for col in [
        "allocated",
        "soft",
        "hard",
        "level",
        "leak_rate_bytes_per_second",
        "hard_limit_eta_seconds",
    ] {
        assert_eq!(gpu[col].as_array().unwrap().len(), n, "{col}: {gpu}");
    }
    let peak = gpu["allocated"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_f64)
        .fold(0.0, f64::max);
    assert!(peak > 76.0 * GIB, "{gpu}");
    assert!(
        gpu["level"].as_array().unwrap().iter().any(|l| l == 2),
        "{gpu}"
    );
    assert_eq!(gpu["hard"][0].as_f64().unwrap(), 0.95 * 80.0 * GIB);
    let procs = gpu["processes"].as_array().unwrap();
    assert_eq!(procs[0]["name"], "batch_infer.py", "{gpu}");
    assert_eq!(h_end["step_seconds"], 5);
    assert!(h_end["max_bytes_per_gpu"].as_u64().unwrap() <= 48 * 1024);

    // Filters: one GPU, fewer events, the coarse series for an hour.
    let one = history(&e, "?gpu=1&events=0&window=1h");
    assert_eq!(one["gpus"].as_array().unwrap().len(), 1);
    assert_eq!(one["gpus"][0]["index"], 1);
    assert!(one["events"].as_array().unwrap().is_empty());
    assert_eq!(one["step_seconds"], 30);
    let last2 = history(&e, "?events=2");
    assert_eq!(kinds(&last2), all[all.len() - 2..].to_vec());
}

#[test]
fn bad_history_queries_are_400() {
    let e = Exporter::start(Options {
        scenario: SCENARIO,
        ..Default::default()
    });
    for (query, word) in [
        ("?window=2h", "window"),
        ("?window=soon", "window"),
        ("?gpu=first", "gpu"),
        ("?events=100000", "events"),
        ("?since=1", "unknown query parameter"),
        ("?gpu=0&gpu=1", "more than once"),
    ] {
        let (status, body) = e.get(&format!("/api/v1/history{query}"));
        assert_eq!(status, 400, "{query}: {body}");
        assert!(
            body.contains(word) && body.trim().lines().count() == 1,
            "{query}: {body}"
        );
    }
    let (status, _) = e.get("/api/v1/history?window=90s&gpu=7&events=256");
    assert_eq!(status, 200);
}

/// A real child on a simulated GPU (its pid and memory file reach nvml-sim through the
/// environment) that frees its memory on SIGUSR1; killed when dropped.
struct Releaser {
    child: std::process::Child,
    dir: tempfile::TempDir,
}

impl Releaser {
    fn spawn(bytes: u64, release_to: u64) -> Releaser {
        let dir = tempfile::tempdir().unwrap();
        let child = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "echo {bytes} > \"$D/mem\"\n\
                 trap 'echo {release_to} > \"$D/mem\"' USR1\n\
                 touch \"$D/ready\"\n\
                 while :; do sleep 0.05; done\n"
            ))
            .env("D", dir.path())
            .stdin(std::process::Stdio::null())
            .spawn()
            .expect("spawn sh");
        Wait::new("the child to become ready", Duration::from_secs(10))
            .every(Duration::from_millis(10))
            .must(|| dir.path().join("ready").exists().then_some(()).into());
        Releaser { child, dir }
    }
}

impl Drop for Releaser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_cleanup_that_frees_memory_shows_what_it_reclaimed() {
    const GIB_U: u64 = 1 << 30;
    let kid = Releaser::spawn(9 * GIB_U + GIB_U / 2, GIB_U);
    let scenario = "[[device]]\nname = \"Sim GPU 10G\"\nuuid = \"GPU-hist0000-0000-4000-8000-0000000000aa\"\n\
         total = \"10GiB\"\noverhead = \"256MiB\"\n\
         [[device.process]]\npid_env = \"KID\"\nname = \"releaser\"\nmemory_file_env = \"KID_MEM\"\n";
    let config = "[poll]\ninterval = \"200ms\"\n\
         [cleanup]\nenabled = true\ncooldown = \"1h\"\n\
         [[cleanup.actions]]\ntype = \"signal\"\nsignal = \"SIGUSR1\"\ntarget = \"all\"\n";
    let e = Exporter::start(Options {
        scenario,
        config,
        env: vec![
            ("KID".into(), kid.child.id().to_string()),
            (
                "KID_MEM".into(),
                kid.dir.path().join("mem").display().to_string(),
            ),
        ],
        ..Default::default()
    });
    // Reclaimed memory is measured over the 5 polls after the cleanup; wait for the episode's
    // end, then for the figure to settle.
    let h = step_until(&e, 0.0, "hard_ended");
    // The outcome may reach the history after the poll that shows the memory freed.
    let cleanup = Wait::new(
        "a cleanup event reclaiming over 8 GiB",
        Duration::from_secs(20),
    )
    .every(Duration::from_millis(100))
    .must(|| {
        let h = history(&e, "");
        let reclaimed = h["events"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["kind"] == "cleanup")
            .filter(|c| c["reclaimed_bytes"].as_f64().unwrap_or(0.0) > 8.0 * GIB)
            .cloned();
        reclaimed.map_or_else(|| Poll::Pending(format!("{h:#}")), Poll::Ready)
    });
    assert_eq!(cleanup["action"], "signal", "{cleanup}");
    assert_eq!(cleanup["result"], "ok", "{cleanup}");
    assert!(
        cleanup["bytes"].as_f64().unwrap() > 9.5 * GIB,
        "allocation at the cleanup: {cleanup}"
    );
    // Started in hard breach: the episode is on the timeline from the first poll.
    assert_eq!(kinds(&h)[..2], ["soft_started", "hard_started"], "{h:#}");
    // The page says it in words.
    let (_, page) = e.get("/");
    assert!(page.contains("· reclaimed 8."), "{page}");
}
