//! The `[clients]` section and the allocator families at their edges, without client processes:
//! configuration refusals through the real binary, an "auto" socket that cannot be made, and
//! claimed figures so large that sums would overflow. The live-client tests are in `clients.rs`;
//! refusals that need no live path (`min_reclaimable`, a missing socket directory) are fixtures.

use std::process::Command;
use std::time::Duration;

use crate::clients::{scenario, REFUSED};
use crate::harness::{Exporter, Metrics, Options};

const GIB_U: u64 = 1 << 30;
const WAIT: Duration = Duration::from_secs(30);

#[test]
fn a_bad_clients_section_exits_2_naming_the_key_value_and_why() {
    let tmp = tempfile::tempdir().unwrap();
    let sock = tmp.path().join("c.sock");
    let not_socket = tmp.path().join("plain");
    std::fs::write(&not_socket, "x").unwrap();
    let cases = [
        (
            format!("socket = \"{}\"\nmode = \"0066\"", sock.display()),
            "clients.mode: invalid value \"0066\"",
        ),
        (
            format!("socket = \"{}\"\nidentity = \"trusted\"", sock.display()),
            "clients.identity: invalid value \"trusted\"",
        ),
        (
            format!("socket = \"{}\"", not_socket.display()),
            "exists and is not a socket",
        ),
        (
            format!(
                "socket = \"{}\"\ngroup = \"no-such-group-vram\"",
                sock.display()
            ),
            "clients.group: invalid value \"no-such-group-vram\": is not a known group",
        ),
    ];
    for (section, expect) in cases {
        refused(tmp.path(), &format!("[clients]\n{section}\n"), expect);
        assert!(!sock.exists(), "a refused configuration made the socket");
    }
}

/// Checks `config` with the real binary: exit 2 and one line containing `expect`.
fn refused(dir: &std::path::Path, config: &str, expect: &str) {
    use std::ffi::OsStr;
    let path = dir.join("c.toml");
    std::fs::write(&path, config).unwrap();
    let args = [
        OsStr::new("--config"),
        path.as_os_str(),
        OsStr::new("--check-config"),
    ];
    let out = Command::new(env!("CARGO_BIN_EXE_vram-exporter"))
        .args(args)
        .output();
    let out = out.unwrap();
    if let Some(problem) = crate::harness::refusal_problem(config, &out, &[expect]) {
        panic!("{problem}");
    }
}

#[test]
fn huge_claims_saturate_and_a_top_n_of_zero_publishes_only_the_gpu_sum() {
    use std::sync::Arc;
    use vram_exporter::source::sample::{AllocatorStats, ProcessAllocator};
    use vram_testkit::builders::{device, engine, poll, process};

    let claim = |reserved: u64| {
        Some(Arc::new(ProcessAllocator {
            stats: AllocatorStats {
                reserved,
                ..AllocatorStats::default()
            },
            released: None,
            reported_at: std::time::SystemTime::UNIX_EPOCH,
            events: Arc::new([]),
        }))
    };
    let mut a = process(4001, "a", GIB_U);
    a.allocator = claim(u64::MAX);
    let mut b = process(4002, "b", GIB_U);
    b.allocator = claim(u64::MAX - 1);
    let snapshot = engine().apply(&poll(0, vec![device(0, vec![a, b])]));
    let text = String::from_utf8(vram_exporter::output::exposition::render(&snapshot, 16).to_vec())
        .unwrap();
    let m = Metrics::parse(&text);
    assert_eq!(m.count("vram_process_allocator_reclaimable_bytes"), 2);
    assert!(
        text.contains(&format!(
            "vram_allocator_reclaimable_bytes{{gpu=\"0\",uuid=\"{}\"}} {}",
            snapshot.gpus[0].identity.uuid,
            u64::MAX
        )),
        "{text}"
    );
    let api = serde_json::to_value(vram_exporter::output::api::GpusResponse::new(
        &snapshot,
        16,
        &Default::default(),
    ))
    .unwrap();
    assert_eq!(
        api["gpus"][0]["processes"][0]["allocator"]["non_allocator_bytes"],
        0
    );
    // With no per-process series allowed, the per-GPU sum is still there; the families are not.
    let text = String::from_utf8(vram_exporter::output::exposition::render(&snapshot, 0).to_vec())
        .unwrap();
    assert!(!text.contains("vram_process_allocator_"), "{text}");
    assert!(text.contains("vram_allocator_reclaimable_bytes{"), "{text}");
}

#[test]
fn with_auto_a_socket_that_cannot_be_made_is_logged_and_the_exporter_runs_on() {
    let tmp = tempfile::tempdir().unwrap();
    let socket = tmp.path().join("clients.sock");
    // Another process listens on the path: the exporter must not take it over.
    let _other = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let config = format!(
        "[poll]\ninterval = \"200ms\"\n[clients]\nenabled = \"auto\"\nsocket = \"{}\"\n",
        socket.display()
    );
    let e = Exporter::start(Options {
        scenario: &scenario(&[]),
        config: &config,
        ..Options::default()
    });
    let line = e
        .wait_log(|l| l.contains("allocator reports off"), WAIT)
        .expect("the reason is logged");
    assert!(line.contains("another process listens"), "{line}");
    let m = e.next_poll();
    assert_eq!(m.gpu("vram_device_up", "0"), Some(1.0));
    assert_eq!(m.count(REFUSED), 0, "client metrics without a listener");
    assert!(socket.exists());
}
