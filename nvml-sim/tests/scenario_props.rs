//! Hostile scenario files: property tests of the scenario parser — arbitrary and
//! almost-valid TOML must give a one-line `ScenarioError` naming a key, never a panic, and a
//! scenario that is accepted must evaluate (memory, processes, faults) at any time without
//! panicking or breaking `used + reserved + free = total`.
//!
//! cargo-fuzz needs a nightly toolchain, which this project's machines cannot fetch; proptest
//! runs on stable. `PROPTEST_CASES` sets the cases per property (256 by default, as in CI).

use std::path::Path;

use nvml_sim::faults::CallClass;
use nvml_sim::scenario::{load_str, ScenarioError};
use proptest::prelude::*;

const TRICKY: &[&str] = &[
    "\"80GiB\"",
    "\"0\"",
    "0",
    "-1",
    "1",
    "64",
    "65",
    "4096",
    "5000001",
    "4294967295",
    "4294967296",
    "18446744073709551615",
    "\"18446744073709551615\"",
    "\"18446744073709551616\"",
    "\"1e30GiB\"",
    "\"-2GiB\"",
    "\"2 gigs\"",
    "\"1.5GB\"",
    "1.5",
    "-0.0",
    "nan",
    "inf",
    "-inf",
    "1e308",
    "\"0s\"",
    "\"250ms\"",
    "\"1m30s\"",
    "\"584942417355y\"",
    "\"40MiB/s\"",
    "\"-40MiB/s\"",
    "\"1e400B/s\"",
    "\"\"",
    "true",
    "[]",
    "[[0, \"1GiB\"], [\"60s\", \"5GiB\"]]",
    "[[60, \"1GiB\"], [0, \"5GiB\"]]",
    "[[0]]",
    "{ constant = \"6GiB\" }",
    "{ linear = { start = \"4GiB\", rate = \"40MiB/s\", cap = \"72GiB\" } }",
    "{ linear = { start = \"4GiB\", rate = \"-1e300B/s\" } }",
    "{ points = [[0, \"1GiB\"], [\"60s\", \"5GiB\"], [90, \"2GiB\"]] }",
    "{ points = [] }",
    "{ sawtooth = { low = \"20GiB\", high = \"60GiB\", period = \"60s\" } }",
    "{ sawtooth = { low = \"60GiB\", high = \"20GiB\", period = \"0s\" } }",
    "{ bogus = 1 }",
    "\"compute\"",
    "\"graphics\"",
    "\"both\"",
    "\"mps\"",
    "\"device_lost\"",
    "\"processes_not_supported\"",
    "\"init_failure\"",
    "\"latency\"",
    "\"process_churn\"",
    "\"internal_error\"",
    "\"meteor\"",
    "[\"memory\", \"processes\"]",
    "[\"all\"]",
    "[\"nope\"]",
    "\"NO_SUCH_VAR\"",
    "\"GPU-6e766d6c-5349-4d00-8000-000000000000\"",
    "\"00000000:07:00.0\"",
    "\"zz:zz\"",
    "\"\\u0000\"",
];

const TOP: &[&str] = &[
    "driver_version",
    "nvml_version",
    "cuda_driver_version",
    "speed",
    "loop",
];
const DEVICE: &[&str] = &[
    "name",
    "uuid",
    "pci_bus_id",
    "pci_device_id",
    "pci_subsystem_id",
    "total",
    "reserved",
    "overhead",
    "gpu_utilization",
    "memory_utilization",
    "temperature",
    "mig_capable",
];
const PROCESS: &[&str] = &[
    "pid",
    "live",
    "pid_env",
    "name",
    "type",
    "memory",
    "memory_file",
    "memory_file_env",
    "start",
    "stop",
];
const MIG: &[&str] = &[
    "name",
    "uuid",
    "total",
    "reserved",
    "overhead",
    "gpu_instance_id",
    "compute_instance_id",
];
const FAULT: &[&str] = &[
    "kind", "device", "from", "until", "attempts", "for", "delay", "calls", "extra",
];

fn entries(keys: &'static [&'static str]) -> impl Strategy<Value = String> {
    entries_with(keys, &[])
}

/// Entries for `keys`; each `(key, value)` of `base` is added (when not generated) with
/// probability 0.85, so most tables get past "required key missing" into deeper validation.
fn entries_with(
    keys: &'static [&'static str],
    base: &'static [(&'static str, &'static str)],
) -> impl Strategy<Value = String> {
    let value = prop_oneof![
        8 => prop::sample::select(TRICKY).prop_map(str::to_string),
        1 => any::<String>().prop_map(|s| toml::Value::String(s).to_string()),
        1 => any::<i64>().prop_map(|n| n.to_string()),
    ];
    let key = prop_oneof![
        12 => prop::sample::select(keys).prop_map(str::to_string),
        1 => "[a-z_]{1,10}",
    ];
    (
        prop::collection::btree_map(key, value, 0..4),
        prop::collection::vec(prop::bool::weighted(0.85), base.len()),
    )
        .prop_map(move |(mut m, keep)| {
            for ((k, v), keep) in base.iter().zip(keep) {
                if keep {
                    m.entry(k.to_string()).or_insert_with(|| v.to_string());
                }
            }
            m.iter().map(|(k, v)| format!("{k} = {v}\n")).collect()
        })
}

/// A scenario: top-level keys, devices with processes and MIG devices, faults.
fn scenario() -> impl Strategy<Value = String> {
    const PROCESS_BASE: &[(&str, &str)] = &[
        ("pid", "5000001"),
        ("name", "\"job\""),
        ("memory", "\"1GiB\""),
    ];
    let process =
        entries_with(PROCESS, PROCESS_BASE).prop_map(|e| format!("[[device.process]]\n{e}"));
    let mig_process =
        entries_with(PROCESS, PROCESS_BASE).prop_map(|e| format!("[[device.mig.process]]\n{e}"));
    let mig = (
        entries_with(MIG, &[("total", "\"10GiB\"")]),
        prop::collection::vec(mig_process, 0..2),
    )
        .prop_map(|(e, p)| format!("[[device.mig]]\n{e}{}", p.concat()));
    let device = (
        entries_with(DEVICE, &[("total", "\"80GiB\"")]),
        prop::collection::vec(process, 0..4),
        prop::collection::vec(mig, 0..2),
    )
        .prop_map(|(e, p, m)| format!("[[device]]\n{e}{}{}", p.concat(), m.concat()));
    let fault = entries_with(FAULT, &[("kind", "\"latency\""), ("delay", "\"1ms\"")])
        .prop_map(|e| format!("[[fault]]\n{e}"));
    (
        entries(TOP),
        prop::collection::vec(device, 0..4),
        prop::collection::vec(fault, 0..3),
    )
        .prop_map(|(top, d, f)| format!("{top}{}{}", d.concat(), f.concat()))
}

/// Parses `text`; on success evaluates the scenario at `times`; on failure checks the message.
fn check(text: &str, times: &[f64]) {
    let env = |name: &str| (name == "SIM_PID").then(|| std::process::id().to_string());
    let mut notes = Vec::new();
    match load_str(text, Path::new("fuzz/scenario.toml"), &env, &mut notes) {
        Err(e) => assert_clear(&e),
        Ok(s) => {
            for &t in times {
                for (i, d) in s.devices.iter().enumerate() {
                    let sample = d.sample(t);
                    let m = sample.memory;
                    assert_eq!(
                        m.used as u128 + m.reserved as u128 + m.free as u128,
                        m.total as u128,
                        "used + reserved + free = total at t={t} on device {i}"
                    );
                    for mig in &d.migs {
                        let m = mig.pool.sample(t).memory;
                        assert_eq!(
                            m.used as u128 + m.reserved as u128 + m.free as u128,
                            m.total as u128
                        );
                    }
                    let _ = s.device_lost(i, t);
                    let _ = s.processes_unsupported(i, t);
                    let _ = s.churn(i, t);
                    let _ = s.latency(CallClass::Memory, Some(i), t);
                    let _ = s.internal_error(CallClass::Processes, Some(i), t);
                }
                let _ = s.process_name(5_000_001, t);
            }
            if let Some(f) = &s.init_failure {
                let _ = f.fails(0, 0.0);
                let _ = f.fails(u64::MAX, f64::MAX);
            }
        }
    }
    for n in &notes {
        assert!(!n.contains('\n'), "a note is one line: {n:?}");
    }
}

fn assert_clear(e: &ScenarioError) {
    let line = e.to_string();
    assert!(!line.contains('\n'), "the error is one line: {line:?}");
    assert!(
        !e.problem.trim().is_empty(),
        "the error says what is wrong: {e:?}"
    );
    assert!(
        line.contains("fuzz/scenario.toml"),
        "names the file: {line}"
    );
}

fn times() -> impl Strategy<Value = Vec<f64>> {
    prop::collection::vec(
        prop_oneof![
            4 => 0.0f64..1e4,
            1 => 0.0f64..1e15,
            1 => Just(0.0),
            1 => Just(f64::MAX),
        ],
        1..6,
    )
}

proptest! {
    #[test]
    fn generated_scenarios_never_panic(text in scenario(), at in times()) {
        check(&text, &at);
    }

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,300}") {
        check(&text, &[0.0, 1.0]);
    }

    #[test]
    fn mutated_shipped_scenarios_never_panic(
        which in 0usize..3,
        cut in 0usize..6000,
        len in 0usize..40,
        insert in prop::sample::select(TRICKY),
        at in times(),
    ) {
        let shipped = [
            include_str!("../scenarios/demo.toml"),
            include_str!("../scenarios/mig.toml"),
            include_str!("../scenarios/device-lost.toml"),
        ][which];
        let at_byte = floor_char_boundary(shipped, cut.min(shipped.len()));
        let end = floor_char_boundary(shipped, (at_byte + len).min(shipped.len()));
        let text = format!("{}{insert}{}", &shipped[..at_byte], &shipped[end..]);
        check(&text, &at);
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}
