//! The shipped PyTorch example (`examples/`) releases its cache on SIGUSR1 sent by the exporter's
//! cleanup, end to end with the real binary and the stand-in torch.

use std::io::{BufReader, Read as _};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::cleanup::{cleanups, device, exporter, live, GIB_U, UUID0, WAIT};
use crate::harness::GIB;

#[test]
fn the_pytorch_example_releases_on_sigusr1_through_the_exporter() {
    let python = Command::new("python3").arg("--version").output();
    if python.is_err() {
        assert!(
            std::env::var_os("VRAM_REQUIRE_TOOLS").is_none(),
            "python3 is required (VRAM_REQUIRE_TOOLS is set) but cannot run"
        );
        eprintln!("!!! python3 not installed: the example test is SKIPPED");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mem = tmp.path().join("mem");
    // The example job on the stand-in torch (its "GPU memory" is the file nvml-sim reads): 7 GiB
    // of weights, 2 GiB of activations freed into the cache, a 300 MiB context: 9.3 GiB. No
    // clients socket: the client warns once and the handler still releases.
    let repo = crate::harness::repo();
    let mut child = Command::new("python3")
        .arg(repo.join("examples/pytorch_release_on_signal.py"))
        .args([
            "--weights-gib",
            "7",
            "--activations-gib",
            "2",
            "--steps",
            "1",
        ])
        .args(["--step-seconds", "0"])
        .env("PYTHONPATH", repo.join("clients/python/tests/stand_in"))
        .env("STAND_IN_TORCH_MEM_FILE", &mem)
        .env(
            "VRAM_EXPORTER_CLIENT_SOCKET",
            tmp.path().join("absent.sock"),
        )
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    struct Reap(std::process::Child);
    impl Drop for Reap {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let pid = child.id();
    let stderr = child.stderr.take().unwrap();
    let guard = Reap(child);
    let held = (9 * GIB_U + 300 * (1 << 20)).to_string();
    let deadline = Instant::now() + WAIT;
    while std::fs::read_to_string(&mem).unwrap_or_default().trim() != held {
        assert!(
            Instant::now() < deadline,
            "the example never held its memory"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let scenario = format!("{}{}", device(UUID0), live("APP"));
    let e = exporter(
        &scenario,
        "[cleanup]\nenabled = true\n[[cleanup.actions]]\ntype = \"signal\"\ntarget = \"all\"\n",
        vec![
            ("APP".into(), pid.to_string()),
            ("APP_MEM".into(), mem.display().to_string()),
        ],
    );
    let m = e.wait_metrics("the app released its memory", WAIT, |m| {
        m.gpu("vram_pressure_level", "0") == Some(0.0)
            && m.gpu("vram_cleanup_reclaimed_bytes", "0").unwrap_or(0.0) > 0.0
    });
    assert_eq!(cleanups(&m, "0", "signal", "ok"), 1.0);
    assert_eq!(m.gpu("vram_cleanup_reclaimed_bytes", "0"), Some(2.0 * GIB));
    drop(guard);
    let mut text = String::new();
    let _ = BufReader::new(stderr).read_to_string(&mut text);
    assert!(text.contains("idle, SIGUSR1 releases the cache"), "{text}");
    assert_eq!(text.matches("no vram-exporter at").count(), 1, "{text}");
}
