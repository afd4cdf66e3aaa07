//! Reload of `--web.config.file` without a restart: certificates and users changed on disk are
//! picked up, a bad edit, an edit that lowers security, a FIFO or a secret file swapped in keep the
//! last good configuration (and log nothing secret). The PKI and HTTPS client are `tls.rs`'s.

use std::time::{Duration, Instant};

use base64::Engine as _;

use crate::harness::Exporter;
use crate::tls::{eventually, hash, https, start, write_atomic, Pki, TLS_ONLY};

#[test]
fn a_certificate_swapped_on_disk_is_served_without_restart() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    pki.write(dir.path());
    let e = start(dir.path(), TLS_ONLY);
    let tls = pki.client_config(None);
    let before = https(&e.addr, "/-/healthy", &tls, None).unwrap();
    assert_eq!(before.server_cert, pki.server.der);

    let renewed = Pki::leaf(&pki.ca, &["localhost", "127.0.0.1"], 99, false);
    // Key first, then certificate: a reload may see the new key with the old certificate, which
    // fails the check and keeps the old pair until the certificate lands.
    write_atomic(&dir.path().join("server.key"), &renewed.key);
    write_atomic(&dir.path().join("server.pem"), &renewed.cert);
    let served = eventually("the renewed certificate", || {
        let r = https(&e.addr, "/-/healthy", &tls, None).ok()?;
        (r.server_cert != pki.server.der).then_some(r)
    });
    assert_eq!(served.server_cert, renewed.der);
    assert_eq!(served.status, 200);
    assert!(e
        .wait_log(
            |l| l.contains("web configuration reloaded"),
            Duration::from_secs(5)
        )
        .is_some());
}

#[test]
fn users_changed_in_the_file_take_effect_and_a_bad_edit_keeps_the_last_good_one() {
    let dir = tempfile::tempdir().unwrap();
    let web = dir.path().join("web.yml");
    let e = start(
        dir.path(),
        &format!("basic_auth_users:\n  alice: '{}'\n", hash("one")),
    );
    let status = |user: &str, password: &str, e: &Exporter| {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        agent
            .get(e.url("/metrics"))
            .header("Authorization", format!("Basic {token}"))
            .call()
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(status("alice", "one", &e), 200);

    write_atomic(&web, "basic_auth_users:\n  alice: not-a-bcrypt-hash\n");
    let line = e
        .wait_log(
            |l| l.contains("keeping the last good one"),
            Duration::from_secs(20),
        )
        .expect("the bad edit is logged");
    assert!(line.contains("basic_auth_users.alice"), "{line}");
    assert_eq!(status("alice", "one", &e), 200, "the last good users stay");

    write_atomic(
        &web,
        &format!("basic_auth_users:\n  bob: '{}'\n", hash("two")),
    );
    eventually("bob to be let in", || {
        (status("bob", "two", &e) == 200).then_some(())
    });
    assert_eq!(status("alice", "one", &e), 401, "alice was removed");
}

#[test]
fn a_reload_that_lowers_security_is_refused_until_a_restart() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    pki.write(dir.path());
    let web = dir.path().join("web.yml");
    let strict = format!(
        "{TLS_ONLY}  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\nbasic_auth_users:\n  alice: '{}'\n",
        hash("wonderland")
    );
    let e = start(dir.path(), &strict);
    let client = pki.client_config(Some(&pki.client));
    let anonymous = pki.client_config(None);
    let status = |auth| https(&e.addr, "/metrics", &client, auth).map(|r| r.status);
    assert_eq!(status(Some(("alice", "wonderland"))), Ok(200));

    let weaker = [
        ("empty", String::new()),
        ("comment-only", "# being rewritten\n".to_string()),
        ("no users", format!("{TLS_ONLY}  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n")),
        ("no client certificates", format!("{TLS_ONLY}basic_auth_users:\n  alice: '{}'\n", hash("wonderland"))),
        ("TLS off", format!("basic_auth_users:\n  alice: '{}'\n", hash("wonderland"))),
    ];
    for (i, (what, text)) in weaker.iter().enumerate() {
        write_atomic(&web, text);
        let seen = e.log().len();
        // The refusal is logged at WARN (or ERROR for TLS), and nothing changes.
        eventually(what, || {
            e.log()[seen..]
                .iter()
                .any(|l| {
                    l.contains("keeping the last good one")
                        || l.contains("keeping the running configuration")
                })
                .then_some(())
        });
        assert_eq!(
            status(None),
            Ok(401),
            "{what}: a password is still required"
        );
        assert!(
            https(
                &e.addr,
                "/metrics",
                &anonymous,
                Some(("alice", "wonderland"))
            )
            .is_err(),
            "{what}: a client certificate is still required"
        );
        assert_eq!(
            status(Some(("alice", "wonderland"))),
            Ok(200),
            "{what} ({i})"
        );
    }
    let warned = e
        .log()
        .into_iter()
        .filter(|l| {
            l.contains("\"level\":\"warn\"") && l.contains("restart the exporter to apply it")
        })
        .count();
    assert!(
        warned >= 4,
        "each refusal is a WARN line; {warned}:\n{}",
        e.log().join("\n")
    );
    assert!(
        e.log()
            .iter()
            .all(|l| !l.contains("web configuration reloaded")),
        "nothing weaker was applied"
    );
    drop(e);
    // Restarted with the weaker file, the exporter applies it.
    let e = start(dir.path(), &weaker[3].1);
    let r = https(
        &e.addr,
        "/metrics",
        &anonymous,
        Some(("alice", "wonderland")),
    )
    .unwrap();
    assert_eq!(r.status, 200);
}

#[test]
fn a_fifo_swapped_in_for_a_certificate_neither_hangs_reload_nor_shutdown() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    pki.write(dir.path());
    let e = start(dir.path(), TLS_ONLY);
    // Made beside it and renamed over it, so no reload sees the certificate missing.
    let fifo = dir.path().join("fifo.tmp");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    std::fs::rename(&fifo, dir.path().join("server.pem")).unwrap();
    let line = e.wait_log(
        |l| l.contains("keeping the last good one") && l.contains("FIFO"),
        Duration::from_secs(20),
    );
    assert!(
        line.is_some(),
        "the FIFO is refused:\n{}",
        e.log().join("\n")
    );
    let tls = pki.client_config(None);
    assert_eq!(
        https(&e.addr, "/-/healthy", &tls, None).unwrap().status,
        200
    );
    let t = Instant::now();
    assert!(e.terminate().success());
    assert!(
        t.elapsed() < Duration::from_secs(8),
        "shutdown took {:?}",
        t.elapsed()
    );
}

#[test]
fn a_secret_file_swapped_in_for_web_yml_is_not_logged() {
    let dir = tempfile::tempdir().unwrap();
    let web = dir.path().join("web.yml");
    let e = start(
        dir.path(),
        &format!("basic_auth_users:\n  alice: '{}'\n", hash("one")),
    );
    write_atomic(
        &web,
        "root:$6$s4ltS4lt$H4shOfTheRootPassw0rd:19700:0:99999:7:::\n",
    );
    e.wait_log(
        |l| l.contains("keeping the last good one"),
        Duration::from_secs(20),
    )
    .expect("the swapped file is refused");
    let pasted = "tls_server_config:\n  cert_file: server.pem\n  key_file: \"-----BEGIN PRIVATE KEY-----\\nMIIEvQIBADANBgkqhkiG9w0BSECRET\\n-----END PRIVATE KEY-----\"\n";
    write_atomic(&web, pasted);
    eventually("the pasted key to be refused", || {
        (e.log()
            .iter()
            .filter(|l| l.contains("keeping the last good one"))
            .count()
            >= 2)
            .then_some(())
    });
    for l in e.log() {
        assert!(
            !l.contains("H4sh") && !l.contains("s4lt") && !l.contains("MIIEvQ"),
            "{l}"
        );
    }
}
