//! Cleanup at its edges, against the real binary: hung webhooks and commands time out, a process
//! with a hostile name is still killed, an exec's endless stderr is drained, and secrets in webhook
//! URLs or newlines in NVML strings never reach the log, the environment or a webhook raw. The
//! child processes and webhook receiver are `cleanup.rs`'s.

use std::net::TcpListener;
use std::os::unix::process::ExitStatusExt as _;
use std::path::Path;

use crate::cleanup::{
    audit_line, breached_gpu, cleanups, device, exporter, hook, live, Kid, KidSpec, GIB_U, UUID0,
    WAIT,
};

#[test]
fn a_hung_webhook_and_a_hung_command_time_out_and_count_as_failed() {
    let server = hook(false);
    let mut e = exporter(
        &breached_gpu(),
        &format!(
            "[cleanup]\nenabled = true\n\
             [[cleanup.actions]]\ntype = \"webhook\"\nurl = \"http://127.0.0.1:{}/hook\"\ntimeout = \"500ms\"\nretries = 1\n\
             [[cleanup.actions]]\ntype = \"exec\"\nargv = [\"sleep\", \"60\"]\ntimeout = \"500ms\"\n",
            server.port
        ),
        vec![],
    );
    let m = e.wait_metrics("both failures counted", WAIT, |m| {
        cleanups(m, "0", "webhook", "failed") == 1.0 && cleanups(m, "0", "exec", "failed") == 1.0
    });
    assert_eq!(cleanups(&m, "0", "webhook", "ok"), 0.0);
    // One attempt plus one retry, no more.
    assert_eq!(server.connections.try_iter().count(), 2);
    let line = audit_line(&mut e, "exec", "failed");
    assert!(
        line["detail"].as_str().unwrap().contains("timed out"),
        "{line}"
    );
    let pid: u32 = line["pids"].as_str().unwrap().parse().unwrap();
    assert!(pid > 1);
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "the timed-out command {pid} was not killed and reaped"
    );
    // Polling went on while the actions hung.
    e.next_poll();
}

#[test]
fn a_process_named_with_invalid_utf8_a_parenthesis_and_a_newline_is_still_killed() {
    let tmp = tempfile::tempdir().unwrap();
    // Byte 0xff, ')', a space and a newline: `/proc/<pid>/stat` is no longer UTF-8 and its name
    // field looks closed early. Such a process was "not visible" and never killed.
    let mut hostile = Kid::spawn_as(
        tmp.path(),
        KidSpec {
            name: "hostile",
            bytes: 9 * GIB_U + GIB_U / 2,
            release_to: None,
            ignore_term: false,
        },
        Some("\\377) x\\ny"),
    );
    let comm = std::fs::read(format!("/proc/{}/comm", hostile.pid())).unwrap();
    assert_eq!(comm, b"\xff) x\ny\n", "the child could not set its name");
    let scenario = format!("{}{}", device(UUID0), live("KID_H"));
    let mut e = exporter(
        &scenario,
        "[cleanup]\nenabled = true\nallow_kill = true\n\
         [[cleanup.actions]]\ntype = \"kill\"\ngrace = \"1s\"\n",
        hostile.env("KID_H"),
    );
    let line = audit_line(&mut e, "kill", "ok");
    let status = hostile.wait_exit(WAIT);
    assert_eq!(status.signal(), Some(libc::SIGTERM), "{status:?}");
    assert_eq!(line["pids"], hostile.pid().to_string());
    // Shown sanitised: the invalid byte replaced, the newline dropped.
    let detail = line["detail"].as_str().unwrap();
    assert!(
        detail.contains(&format!("{} (\u{fffd}) xy, ", hostile.pid())),
        "{detail}"
    );
}

#[test]
fn exec_stderr_is_drained_to_the_end_and_its_first_2kib_kept() {
    // 1 MiB on stderr: a reader that stopped after 2 KiB closed the pipe and the writer died of
    // SIGPIPE, so a successful command counted as failed.
    let mib = "head -c 1048576 /dev/zero | tr '\\\\0' x >&2";
    let cleanup = format!(
        "[cleanup]\nenabled = true\n\
         [[cleanup.actions]]\ntype = \"exec\"\nargv = [\"sh\", \"-c\", \"{mib}\"]\n\
         [[cleanup.actions]]\ntype = \"exec\"\nargv = [\"sh\", \"-c\", \"{mib}; exit 4\"]\n"
    );
    let mut e = exporter(&breached_gpu(), &cleanup, vec![]);
    let m = e.wait_metrics("both commands counted", WAIT, |m| {
        cleanups(m, "0", "exec", "ok") + cleanups(m, "0", "exec", "failed") >= 2.0
    });
    assert_eq!(
        cleanups(&m, "0", "exec", "ok"),
        1.0,
        "{}",
        e.log().join("\n")
    );
    assert_eq!(cleanups(&m, "0", "exec", "failed"), 1.0);
    let ok = audit_line(&mut e, "exec", "ok");
    assert!(ok["detail"].as_str().unwrap().ends_with("exited 0"), "{ok}");
    let failed = audit_line(&mut e, "exec", "failed");
    let detail = failed["detail"].as_str().unwrap();
    assert!(detail.contains("exit status: 4"), "{detail}");
    assert!(
        detail.contains(&format!(
            "stderr: {} [first 2048 of 1048576 bytes]",
            "x".repeat(2048)
        )),
        "{detail}"
    );
}

#[test]
fn webhook_secrets_in_the_url_never_reach_the_log() {
    let server = hook(true);
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut e = exporter(
        &breached_gpu(),
        &format!(
            "[cleanup]\nenabled = true\n\
             [[cleanup.actions]]\ntype = \"webhook\"\nurl = \"http://127.0.0.1:{}/hook?token=s3cr3t-ok&team=gpu#frag-s3cr3t\"\n\
             [[cleanup.actions]]\ntype = \"webhook\"\nurl = \"http://127.0.0.1:{closed}/hook?token=s3cr3t-refused\"\nretries = 0\n",
            server.port
        ),
        vec![],
    );
    server
        .bodies
        .recv_timeout(WAIT)
        .expect("the webhook never arrived");
    let ok = audit_line(&mut e, "webhook", "ok");
    let failed = audit_line(&mut e, "webhook", "failed");
    assert!(
        ok["detail"].as_str().unwrap().starts_with(&format!(
            "POST http://127.0.0.1:{}/hook?token=REDACTED&team=REDACTED#REDACTED: 200",
            server.port
        )),
        "{ok}"
    );
    assert!(
        failed["detail"].as_str().unwrap().starts_with(&format!(
            "POST http://127.0.0.1:{closed}/hook?token=REDACTED: "
        )),
        "{failed}"
    );
    let log = e.log().join("\n");
    assert!(!log.contains("s3cr3t"), "a secret reached the log:\n{log}");
}

#[test]
fn newlines_in_nvml_strings_never_reach_the_environment_or_the_webhook_raw() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().display().to_string();
    let server = hook(true);
    // A driver string with a newline would otherwise add lines (here, forged variables) to what
    // the command and the receiver see.
    let scenario = "[[device]]\nname = \"Sim GPU\\nINJECTED_MODEL=1\"\nuuid = \"GPU-c1ea\\r\\nINJECTED_UUID=1\"\n\
         total = \"10GiB\"\nreserved = \"0\"\noverhead = \"256MiB\"\n\
         [[device.process]]\npid = 4000001\nname = \"python big.py\"\nmemory = \"9.5GiB\"\n";
    let cleanup = format!(
        "[cleanup]\nenabled = true\n\
         [[cleanup.actions]]\ntype = \"exec\"\nargv = [\"sh\", \"-c\", \"env > \\\"$0/env\\\"\", \"{out}\"]\n\
         [[cleanup.actions]]\ntype = \"webhook\"\nurl = \"http://127.0.0.1:{}/hook\"\n",
        server.port
    );
    let e = exporter(scenario, &cleanup, vec![]);
    let body = server
        .bodies
        .recv_timeout(WAIT)
        .expect("the webhook never arrived");
    e.wait_metrics("the command counted", WAIT, |m| {
        cleanups(m, "0", "exec", "ok") == 1.0
    });
    let env = std::fs::read_to_string(tmp.path().join("env")).unwrap();
    assert!(
        !env.lines().any(|l| l.starts_with("INJECTED")),
        "a newline reached the environment:\n{env}"
    );
    let has = |kv: &str| env.lines().any(|l| l == kv);
    assert!(has("VRAM_MODEL=Sim GPUINJECTED_MODEL=1"), "{env}");
    assert!(has("VRAM_UUID=GPU-c1eaINJECTED_UUID=1"), "{env}");
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["model"], "Sim GPUINJECTED_MODEL=1");
    assert_eq!(v["uuid"], "GPU-c1eaINJECTED_UUID=1");
}
