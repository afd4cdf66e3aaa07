//! MPS through the real binary on nvml-sim: the MPS clients (listed only by NVML's MPS process
//! query) are published with their memory, and the MPS server (a real process named
//! `nvidia-cuda-mps-server`, listed as a compute process) is never a cleanup target: the kill
//! (in a dry run, so that every process stays listed) picks the largest client although the server
//! holds more.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::harness::{Exporter, Metrics, Options};
use crate::kube_fakes::Kid;

const WAIT: Duration = Duration::from_secs(15);

/// A live process whose name (`comm`) is the MPS server's: a copy of `sleep` under that name.
struct Server(std::process::Child);

impl Server {
    fn spawn(dir: &std::path::Path) -> Server {
        let exe = dir.join("nvidia-cuda-mps-server");
        let sleep = ["/bin/sleep", "/usr/bin/sleep"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .expect("sleep");
        std::fs::copy(sleep, &exe).unwrap();
        Server(
            Command::new(&exe)
                .arg("300")
                .stdin(Stdio::null())
                .spawn()
                .expect("spawn the stand-in server"),
        )
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn mps_clients_are_attributed_and_the_server_is_never_a_target() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::spawn(dir.path());
    let (big, small) = (Kid::spawn(), Kid::spawn());
    let scenario = format!(
        "[[device]]\nname = \"Sim GPU 10G\"\ntotal = \"10GiB\"\nreserved = \"0\"\noverhead = \"0\"\n\
         [[device.process]]\npid = {}\nlive = true\nname = \"nvidia-cuda-mps-server\"\nmemory = \"6GiB\"\n\
         [[device.process]]\npid = {}\nlive = true\nname = \"python\"\ntype = \"mps\"\nmemory = \"3GiB\"\n\
         [[device.process]]\npid = {}\nlive = true\nname = \"python\"\ntype = \"mps\"\nmemory = \"1GiB\"\n",
        server.0.id(),
        big.pid(),
        small.pid()
    );
    let e = Exporter::start(Options {
        scenario: &scenario,
        config: "[poll]\ninterval = \"200ms\"\n[cleanup]\nenabled = true\ndry_run = true\nallow_kill = true\n\
                 [[cleanup.actions]]\ntype = \"kill\"\ngrace = \"1s\"\n",
        time: None,
        ..Options::default()
    });
    let bytes = |m: &Metrics, pid: &str| m.value("vram_process_allocated_bytes", &[("pid", pid)]);
    let m = e.next_poll();
    let gib = crate::harness::GIB;
    assert_eq!(bytes(&m, &big.pid()), Some(3.0 * gib), "{}", m.text);
    assert_eq!(bytes(&m, &small.pid()), Some(gib), "{}", m.text);
    let audit = e
        .wait_log(
            |l| l.contains("cleanup action") && l.contains("\"action\":\"kill\""),
            WAIT,
        )
        .unwrap_or_else(|| panic!("no kill; log:\n{}", e.log().join("\n")));
    let audit: serde_json::Value = serde_json::from_str(&audit).unwrap();
    assert_eq!(
        audit["pids"],
        big.pid(),
        "the largest client, not the server: {audit}"
    );
    assert_eq!(audit["result"], "dry_run", "{audit}");
    assert!(
        std::path::Path::new(&format!("/proc/{}", server.0.id())).exists(),
        "the MPS server lives"
    );
    let name = std::fs::read_to_string(format!("/proc/{}/comm", server.0.id())).unwrap();
    assert_eq!(
        name.trim(),
        "nvidia-cuda-mps",
        "the server's comm as the exporter reads it"
    );
}
