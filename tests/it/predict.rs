//! Acting before the breach, through the real binary on nvml-sim: the GPU's forecast follows its
//! processes' leaks while jobs come and go (and falls back to the floor rule where NVML lists no
//! processes), a leaking child that releases on SIGUSR1 is cleaned before the hard limit, one
//! that does not still breaches and meets the hard path, the H200 trace's leak phase triggers
//! the prediction (and nothing before it does), and `[cleanup.predict]` refusals.
//!
//! Leaking children are `sh` loops that grow their memory file (nvml-sim reads it) once the test
//! says go, so the leak starts after the exporter has; see `cleanup.rs` for how children reach
//! nvml-sim.

use std::path::Path;
use std::process::Command;

use vram_testkit::wait::{Poll, Wait};

use crate::cleanup::{audit_line, cleanups, device, exporter, live, Kid, UUID0, WAIT};
use crate::harness::{Metrics, GIB, MIB};
use crate::leak::{first, gpu, h200_scenario, replay, Timeline, DEVICE, H200_CONFIG, H200_SPEED};

const GIB_U: u64 = 1 << 30;
const MIB_U: u64 = 1 << 20;

/// `vram_cleanups_total` for one trigger.
fn by_trigger(m: &Metrics, action: &str, result: &str, trigger: &str) -> Option<f64> {
    m.value(
        "vram_cleanups_total",
        &[
            ("gpu", "0"),
            ("action", action),
            ("result", result),
            ("trigger", trigger),
        ],
    )
}

/// A child that holds 1 GiB and, once `$D/go` exists, adds `step` bytes every 0.1 s up to 9 GiB.
/// Each SIGUSR1 is recorded; with `release`, it also drops to 1 GiB and stops growing.
fn leaker(root: &Path, name: &str, step: u64, release: bool) -> Kid {
    let on_signal = if release { "m=$low; step=0; " } else { "" };
    let script = format!(
        "printf \"$C\" > /proc/self/comm\n\
         low={low}; m=$low; step={step}; cap={cap}\n\
         echo $m > \"$D/mem\"\n\
         trap '{on_signal}read up _ < /proc/uptime; echo $up >> \"$D/signals\"' USR1\n\
         touch \"$D/ready\"\n\
         while :; do\n\
           sleep 0.1\n\
           if [ -e \"$D/go\" ] && [ $m -lt $cap ]; then m=$((m + step)); fi\n\
           echo $m > \"$D/mem.tmp\"; mv -f \"$D/mem.tmp\" \"$D/mem\"\n\
         done\n",
        low = GIB_U,
        cap = 9 * GIB_U,
    );
    Kid::from_script(root, name, None, &script)
}

/// Limits of the 10 GiB test GPU (256 MiB overhead) and a prediction 8 s ahead, held 1 s.
const PREDICT: &str = "[limits]\nsoft = \"6GiB\"\nhard = \"8GiB\"\n\
                       [cleanup.predict]\neta_below = \"8s\"\nfor = \"1s\"\n";

#[test]
fn a_leak_heading_for_the_hard_limit_is_cleaned_before_it_gets_there() {
    let tmp = tempfile::tempdir().unwrap();
    let kid = leaker(tmp.path(), "leaky", 50 * MIB_U, true);
    let env_file = tmp.path().join("env");
    let config = format!(
        "[cleanup]\nenabled = true\n{PREDICT}\
         [[cleanup.actions]]\ntype = \"exec\"\nargv = [\"sh\", \"-c\", \"env > {}\"]\n\
         [[cleanup.actions]]\ntype = \"signal\"\ntarget = \"top\"\n",
        env_file.display()
    );
    let scenario = format!("{}{}", device(UUID0), live("KID_A"));
    let mut e = exporter(&scenario, &config, kid.env("KID_A"));
    e.next_poll();
    std::fs::write(tmp.path().join("leaky/go"), "").unwrap();
    let m = e.wait_metrics("the leak cleaned on its prediction", WAIT, |m| {
        by_trigger(m, "signal", "ok", "predicted") == Some(1.0)
            && gpu(m, "vram_allocated_bytes") < 2.0 * GIB
    });
    assert_eq!(gpu(&m, "vram_hard_limit_violations_total"), 0.0);
    assert_eq!(by_trigger(&m, "signal", "ok", "hard"), Some(0.0));
    assert_eq!(by_trigger(&m, "exec", "ok", "predicted"), Some(1.0));
    assert_eq!(kid.signals().len(), 1);
    let line = audit_line(&mut e, "signal", "ok");
    assert_eq!(line["trigger"], "predicted", "{line}");
    assert_eq!(line["reason"], "predicted_breach");
    assert_eq!(line["pids"], kid.pid().to_string());
    let eta = line["hard_limit_eta_seconds"].as_f64().expect("an ETA");
    assert!(eta > 0.0 && eta < 8.0, "acted at ETA {eta} s");
    eprintln!(
        "predict: signalled at {:.2} GiB allocated, the hard limit (8 GiB) {eta} s away",
        line["allocated_bytes"].as_f64().unwrap() / GIB
    );
    assert!(line["leak_rate_bytes_per_second"].as_f64().unwrap() > 0.0);
    // The command saw the trigger, the rate and the ETA.
    let env = std::fs::read_to_string(&env_file).unwrap();
    let var = |k: &str| {
        env.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .unwrap_or_else(|| panic!("{k} missing:\n{env}"))
            .to_string()
    };
    assert_eq!(var("VRAM_TRIGGER"), "predicted");
    assert_eq!(var("VRAM_REASON"), "predicted_breach");
    let eta: f64 = var("VRAM_HARD_LIMIT_ETA_SECONDS").parse().unwrap();
    assert!(eta > 0.0 && eta < 8.0, "VRAM_HARD_LIMIT_ETA_SECONDS {eta}");
    assert!(
        var("VRAM_LEAK_RATE_BYTES_PER_SECOND")
            .parse::<f64>()
            .unwrap()
            > 0.0
    );
    // The release moved the prediction: judged a few polls later, not counted as unmoved.
    e.wait_log(|l| l.contains("cleanup prediction moved"), WAIT)
        .unwrap_or_else(|| panic!("no judgement; log:\n{}", e.log().join("\n")));
    let m = e.metrics();
    assert_eq!(
        m.gpu("vram_cleanup_predictions_unmoved_total", "0"),
        Some(0.0)
    );
    assert!(m.gpu("vram_cleanup_reclaimed_bytes", "0").unwrap() > 2.0 * GIB);
    // The JSON API says nothing triggers now.
    let (_, body) = e.get("/api/v1/gpus");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(v["gpus"][0]["cleanup_trigger"].is_null(), "{body}");
}

#[test]
fn a_job_that_does_not_release_still_breaches_and_the_hard_path_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let mut kid = leaker(tmp.path(), "stubborn", 50 * MIB_U, false);
    // A kill is configured, but a prediction may not kill (predict.allow_kill is false).
    let config = format!(
        "[cleanup]\nenabled = true\nallow_kill = true\n{PREDICT}\
         [[cleanup.actions]]\ntype = \"signal\"\ntarget = \"top\"\n\
         [[cleanup.actions]]\ntype = \"kill\"\ngrace = \"1s\"\n"
    );
    let scenario = format!("{}{}", device(UUID0), live("KID_A"));
    let e = exporter(&scenario, &config, kid.env("KID_A"));
    e.next_poll();
    std::fs::write(tmp.path().join("stubborn/go"), "").unwrap();
    let m = e.wait_metrics("the prediction acted on", WAIT, |m| {
        by_trigger(m, "signal", "ok", "predicted") == Some(1.0)
    });
    assert_eq!(gpu(&m, "vram_hard_limit_violations_total"), 0.0);
    assert!(kid.alive(), "a prediction never kills without allow_kill");
    Wait::new("a SIGUSR1 before the breach", WAIT)
        .every(std::time::Duration::from_millis(20))
        .must(|| (!kid.signals().is_empty()).then_some(()).into());
    assert_eq!(by_trigger(&m, "kill", "ok", "predicted"), None);
    let m = e.wait_metrics("the hard path after the breach", WAIT, |m| {
        by_trigger(m, "kill", "ok", "hard") == Some(1.0)
            && m.gpu("vram_cleanup_predictions_unmoved_total", "0") == Some(1.0)
    });
    assert_eq!(gpu(&m, "vram_hard_limit_violations_total"), 1.0);
    assert_eq!(by_trigger(&m, "signal", "ok", "hard"), Some(1.0));
    assert_eq!(cleanups(&m, "0", "kill", "failed"), 0.0);
    // Ended by the hard path's kill (its SIGUSR1 may not be handled before SIGTERM arrives).
    kid.wait_exit(WAIT);
    let unmoved = e
        .wait_log(|l| l.contains("cleanup prediction unmoved"), WAIT)
        .expect("the unmoved prediction is logged");
    assert!(unmoved.contains("eta_at_cleanup_seconds"), "{unmoved}");
}

#[test]
fn a_prediction_kills_only_when_allowed_and_then_before_the_breach() {
    let tmp = tempfile::tempdir().unwrap();
    let mut kid = leaker(tmp.path(), "doomed", 50 * MIB_U, false);
    let config = format!(
        "[cleanup]\nenabled = true\nallow_kill = true\n{PREDICT}allow_kill = true\n\
         [[cleanup.actions]]\ntype = \"kill\"\ngrace = \"1s\"\n"
    );
    let scenario = format!("{}{}", device(UUID0), live("KID_A"));
    let mut e = exporter(&scenario, &config, kid.env("KID_A"));
    e.next_poll();
    std::fs::write(tmp.path().join("doomed/go"), "").unwrap();
    let m = e.wait_metrics("the kill on the prediction", WAIT, |m| {
        by_trigger(m, "kill", "ok", "predicted") == Some(1.0)
    });
    kid.wait_exit(WAIT);
    assert_eq!(gpu(&m, "vram_hard_limit_violations_total"), 0.0);
    assert_eq!(by_trigger(&m, "kill", "ok", "hard"), Some(0.0));
    let line = audit_line(&mut e, "kill", "ok");
    assert_eq!(line["trigger"], "predicted", "{line}");
    assert_eq!(line["pids"], kid.pid().to_string());
}

/// Every sample from the first one with a rate on: the GPU's rate within ±30 % of `want` and an
/// ETA present. Returns the time of the first, and the problems.
fn rate_held(tl: &Timeline, gpu_index: &str, want: f64) -> (f64, Vec<String>) {
    let detected = first(tl, 0.0, |m| {
        m.gpu("vram_leak_rate_bytes_per_second", gpu_index)
            .unwrap_or(0.0)
            > 0.0
    })
    .expect("the leak is detected");
    let problems = tl
        .iter()
        .filter(|(t, _)| *t >= detected)
        .filter_map(|(t, m)| {
            let rate = m
                .gpu("vram_leak_rate_bytes_per_second", gpu_index)
                .unwrap_or(0.0);
            let eta = m.gpu("vram_hard_limit_eta_seconds", gpu_index);
            ((rate / want - 1.0).abs() > 0.3 || eta.is_none())
                .then(|| format!("t={t:.1}: rate {:.0} MiB/s, ETA {eta:?}", rate / MIB,))
        })
        .collect();
    (detected, problems)
}

#[test]
fn jobs_arriving_and_leaving_beside_a_leak_keep_the_gpu_rate() {
    // Scenario time at 2× the wall clock with a 20 s window and 2 s floor (scenario): a
    // 128 MiB/s leak beside a steady job that leaves at 60 s, a 5 GiB job alive 14 s and an
    // 8 GiB job alive 12 s.
    let scenario = format!(
        "{DEVICE}[[device.process]]\npid = 5000401\nname = \"leaky\"\n\
         memory = {{ linear = {{ start = \"2GiB\", rate = \"128MiB/s\" }} }}\n\
         [[device.process]]\npid = 5000402\nname = \"steady\"\nmemory = \"10GiB\"\nstop = 60\n\
         [[device.process]]\npid = 5000403\nname = \"five\"\nmemory = \"5GiB\"\nstart = 20\nstop = 34\n\
         [[device.process]]\npid = 5000404\nname = \"eight\"\nmemory = \"8GiB\"\nstart = 40\nstop = 52\n"
    );
    let config = "[poll]\ninterval = \"100ms\"\n[leak]\nwindow = \"10s\"\nfloor_window = \"1s\"\n";
    let tl = replay(&scenario, config, 2.0, 72.0);
    let (detected, problems) = rate_held(&tl, "0", 256.0 * MIB);
    assert!(detected < 20.0, "detected at scenario {detected} s");
    eprintln!(
        "churn: detected at scenario {detected:.1} s; {} of {} samples after it off by more than 30 %",
        problems.len(),
        tl.iter().filter(|(t, _)| *t >= detected).count()
    );
    assert!(
        problems.is_empty(),
        "{} of {} samples after detection (t={detected:.1}) off:\n{}",
        problems.len(),
        tl.iter().filter(|(t, _)| *t >= detected).count(),
        problems.join("\n")
    );
}

#[test]
fn without_process_lists_the_floor_rule_applies_on_a_gpu_and_a_mig_gpu() {
    // Neither GPU lists its processes (NOT_SUPPORTED): GPU 0 a plain leak beside a steady job,
    // GPU 1 in MIG mode with the leak in one of its instances.
    let scenario = format!(
        "{DEVICE}[[device.process]]\npid = 5000411\nname = \"leaky\"\n\
         memory = {{ linear = {{ start = \"1GiB\", rate = \"100MiB/s\" }} }}\n\
         [[device.process]]\npid = 5000412\nname = \"steady\"\nmemory = \"6GiB\"\n\
         [[device]]\nuuid = \"GPU-mig\"\ntotal = \"80GiB\"\n\
         [[device.mig]]\ntotal = \"40GiB\"\n[[device.mig.process]]\npid = 5000413\nname = \"mig-leaky\"\n\
         memory = {{ linear = {{ start = \"1GiB\", rate = \"100MiB/s\" }} }}\n\
         [[device.mig]]\ntotal = \"20GiB\"\n[[device.mig.process]]\npid = 5000414\nname = \"mig-steady\"\nmemory = \"4GiB\"\n\
         [[fault]]\nkind = \"processes_not_supported\"\n"
    );
    let config = "[poll]\ninterval = \"100ms\"\n[leak]\nwindow = \"4s\"\nfloor_window = \"1s\"\n";
    let tl = replay(&scenario, config, 10.0, 70.0);
    let (_, end) = tl.last().unwrap();
    assert_eq!(end.count("vram_process_allocated_bytes"), 0, "no lists");
    for g in ["0", "1"] {
        let rate = end.gpu("vram_leak_rate_bytes_per_second", g).unwrap();
        assert!(
            (rate / (1000.0 * MIB) - 1.0).abs() <= 0.3,
            "GPU {g}: rate {} MiB/s, want 1000",
            rate / MIB
        );
        assert!(end.gpu("vram_hard_limit_eta_seconds", g).is_some());
    }
}

#[test]
fn the_h200_trace_triggers_the_prediction_in_its_leak_phase_and_not_before() {
    // A prediction 60 s (scenario) ahead, acted on in dry run: the first predicted count is when
    // the prediction would have fired. The leak runs from t=21 s at 0.5 GiB/s and stops at 38 s.
    let eta_below = 60.0 / H200_SPEED;
    let config = format!(
        "{H200_CONFIG}[cleanup]\nenabled = true\ndry_run = true\n\
         [[cleanup.actions]]\ntype = \"exec\"\nargv = [\"true\"]\n\
         [cleanup.predict]\neta_below = \"{}ms\"\nfor = \"500ms\"\n",
        (eta_below * 1000.0) as u64
    );
    let tl = replay(&h200_scenario(), &config, H200_SPEED, 38.5);
    let fired = |m: &Metrics| by_trigger(m, "exec", "dry_run", "predicted").unwrap_or(0.0) >= 1.0;
    let at = first(&tl, 0.0, fired).unwrap_or_else(|| {
        let seen: Vec<String> = tl
            .iter()
            .map(|(t, m)| {
                format!(
                    "t={t:.1} rate={:.0}MiB/s eta={:?} level={}",
                    gpu(m, "vram_leak_rate_bytes_per_second") / MIB,
                    m.gpu("vram_hard_limit_eta_seconds", "0"),
                    gpu(m, "vram_pressure_level")
                )
            })
            .collect();
        panic!("the prediction never fired:\n{}", seen.join("\n"))
    });
    let (_, m) = tl.iter().find(|(t, _)| *t >= at).unwrap();
    let eta = gpu(m, "vram_hard_limit_eta_seconds") * H200_SPEED;
    let allocated = gpu(m, "vram_allocated_bytes") / GIB;
    eprintln!(
        "h200: the prediction fired at t={at:.1} s (scenario), {allocated:.2} GiB allocated, \
         hard limit (30 GiB) predicted in {eta:.1} s"
    );
    assert!(
        (21.0..38.0).contains(&at),
        "fired at t={at:.1} s, outside the leak phase (21–38 s)"
    );
    assert!(eta > 0.0 && eta < 60.0, "ETA {eta} s");
    // Dry run: nothing was touched, so nothing is judged.
    let (_, end) = tl.last().unwrap();
    assert_eq!(
        end.gpu("vram_cleanup_predictions_unmoved_total", "0"),
        Some(0.0)
    );
}

#[test]
fn the_prediction_shows_in_the_json_api_and_on_the_status_page_without_cleanup() {
    // 1 GiB/s from 56 GiB on an 80 GiB GPU (hard limit 76 GiB): the limit is 20 s away at start.
    let scenario = format!(
        "{DEVICE}[[device.process]]\npid = 5000421\nname = \"leaky\"\n\
         memory = {{ linear = {{ start = \"56GiB\", rate = \"1GiB/s\" }} }}\n"
    );
    let e = crate::harness::Exporter::start(crate::harness::Options {
        scenario: &scenario,
        config: "[poll]\ninterval = \"100ms\"\n[leak]\nwindow = \"10s\"\nfloor_window = \"1s\"\n\
                 [cleanup.predict]\neta_below = \"1h\"\n",
        time: None,
        ..Default::default()
    });
    let gpu0 = Wait::new("a predicted trigger in /api/v1/gpus", WAIT).must(|| {
        let (_, body) = e.get("/api/v1/gpus");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        if v["gpus"][0]["cleanup_trigger"] == "predicted" {
            Poll::Ready(v["gpus"][0].clone())
        } else {
            Poll::Pending(body)
        }
    });
    let eta = gpu0["hard_limit_eta_seconds"].as_f64().unwrap();
    assert!(eta > 0.0 && eta < 3600.0, "{gpu0}");
    let (_, page) = e.get("/");
    assert!(page.contains("predicted breach"), "{page}");
    // Cleanup is off: no cleanup series at all.
    assert_eq!(e.metrics().count("vram_cleanups_total"), 0);
}

/// `--check-config` on `file`: exit 2 and one line naming every word, or the problem.
fn refused(file: &str, words: &[&str]) -> Option<String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, file).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_vram-exporter"))
        .arg("--config")
        .arg(&path)
        .arg("--check-config")
        .output()
        .unwrap();
    crate::harness::refusal_problem(file, &out, words)
}

#[test]
fn predict_settings_are_checked_and_refused_with_key_value_and_why() {
    let base =
        "[cleanup]\nenabled = true\n[[cleanup.actions]]\ntype = \"exec\"\nargv = [\"true\"]\n\
                [cleanup.predict]\n";
    let cases: &[(&str, &[&str])] = &[
        (
            "eta_below = \"0s\"\n",
            &["cleanup.predict.eta_below", "0s", "between"],
        ),
        (
            "eta_below = \"2d\"\n",
            &["cleanup.predict.eta_below", "2d", "1day"],
        ),
        (
            "eta_below = \"soon\"\n",
            &["cleanup.predict.eta_below", "soon"],
        ),
        (
            "for = \"1m\"\n",
            &["cleanup.predict.eta_below", "(missing)"],
        ),
        (
            "eta_below = \"5m\"\nfor = \"2h\"\n",
            &["cleanup.predict.for", "2h", "1h"],
        ),
        (
            "eta_below = \"1m\"\nfor = \"1m\"\n",
            &[
                "cleanup.predict.for",
                "1m",
                "shorter than cleanup.predict.eta_below",
            ],
        ),
        (
            "eta_below = \"1m\"\nallow_kill = true\n",
            &["cleanup.predict.allow_kill", "true", "cleanup.allow_kill"],
        ),
        ("eta_below = \"1m\"\nbefore = \"1m\"\n", &["before"]),
    ];
    let kill_only =
        "[cleanup]\nenabled = true\nallow_kill = true\n[[cleanup.actions]]\ntype = \"kill\"\n\
                     [cleanup.predict]\neta_below = \"1m\"\n";
    let kill_only_words = [
        "cleanup.predict.allow_kill",
        "false",
        "a prediction would run none",
    ];
    let problems: Vec<String> = cases
        .iter()
        .filter_map(|(tail, words)| refused(&format!("{base}{tail}"), words))
        .chain(refused(kill_only, &kill_only_words))
        .collect();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // A valid section passes.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ok.toml");
    std::fs::write(&path, format!("{base}eta_below = \"5m\"\nfor = \"30s\"\n")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_vram-exporter"))
        .args(["--check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
