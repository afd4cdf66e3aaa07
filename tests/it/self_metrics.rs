//! Self-metrics an operator can alert on (issue 23): exact CPU seconds, and every labelled
//! self-counter present at 0 from the start, so `increase()` sees the first error.

use crate::harness::{Exporter, Options};

const TWO_GPUS: &str = r#"
[[device]]
uuid = "GPU-5e1f0000-0000-0000-0000-000000000000"
total = "80GiB"

[[device]]
uuid = "GPU-5e1f1111-1111-1111-1111-111111111111"
total = "80GiB"
"#;

#[test]
fn every_labelled_self_counter_starts_at_zero_and_cpu_seconds_are_exact() {
    let e = Exporter::start(Options {
        scenario: TWO_GPUS,
        config: "[poll]\ninterval = \"100ms\"\n",
        ..Default::default()
    });
    let m = e.next_poll();
    for gpu in ["0", "1"] {
        for op in ["handle", "identity", "memory", "processes", "mig"] {
            assert_eq!(
                m.value(
                    "vram_exporter_poll_errors_total",
                    &[("gpu", gpu), ("operation", op)]
                ),
                Some(0.0),
                "gpu {gpu} {op}"
            );
        }
    }
    for op in ["init", "device_count", "pod_resources"] {
        assert_eq!(
            m.value(
                "vram_exporter_poll_errors_total",
                &[("gpu", ""), ("operation", op)]
            ),
            Some(0.0),
            "{op}"
        );
    }
    for component in [
        "cleanup",
        "pod_resources",
        "runtime",
        "clients",
        "history",
        "web_reload",
    ] {
        assert_eq!(
            m.value(
                "vram_exporter_component_restarts_total",
                &[("component", component)]
            ),
            Some(0.0),
            "{component}"
        );
    }
    assert_eq!(
        m.value("vram_exporter_component_up", &[("component", "poller")]),
        Some(1.0)
    );
    assert_eq!(
        m.value("vram_exporter_log_lines_dropped_total", &[]),
        Some(0.0)
    );
    // Some work, then the exported CPU seconds match /proc's to within a few ticks (the
    // prometheus crate's own collector rounded them down to whole seconds: 0 after a short run).
    for _ in 0..200 {
        e.metrics();
    }
    let cpu = e.metrics().value("process_cpu_seconds_total", &[]).unwrap();
    let own = vram_testkit::procfs::cpu_seconds(e.pid()).unwrap();
    let tick = vram_testkit::procfs::cpu_resolution();
    assert!(cpu > 0.0, "no CPU time counted after 200 scrapes");
    assert!(
        cpu <= own + 2.0 * tick && own - cpu < 0.25,
        "exported {cpu} s, /proc says {own} s"
    );
}
