//! The `[cleanup]` section's validation: every refusal names its key, value and reason.

use super::*;

fn parse(text: &str) -> Result<CleanupConfig, ConfigError> {
    #[derive(Deserialize)]
    struct Wrap {
        cleanup: RawCleanup,
    }
    let w: Wrap = toml::from_str(text).expect("toml");
    w.cleanup.validate()
}

fn err(text: &str) -> String {
    parse(text).unwrap_err().to_string()
}

#[test]
fn defaults_are_off_and_valid() {
    let c = RawCleanup::default().validate().unwrap();
    assert!(!c.enabled && !c.dry_run);
    assert_eq!(c.cooldown, Duration::from_secs(30));
    assert!(c.actions.is_empty());
}

#[test]
fn every_action_type_parses_with_defaults() {
    let c = parse(
        r#"[cleanup]
enabled = true
allow_kill = true
[[cleanup.actions]]
type = "signal"
target = "top"
[[cleanup.actions]]
type = "webhook"
url = "https://hooks.example/x"
[[cleanup.actions]]
type = "exec"
argv = ["/bin/true"]
[[cleanup.actions]]
type = "kill"
avoid = "^sshd$"
"#,
    )
    .unwrap();
    let labels: Vec<_> = c.actions.iter().map(Action::as_str).collect();
    assert_eq!(labels, ["signal", "webhook", "exec", "kill"]);
    match &c.actions[0] {
        Action::Signal(s) => {
            assert_eq!(s.signal.number, libc::SIGUSR1);
            assert!(matches!(s.target, Target::Top(1)));
        }
        other => panic!("{other:?}"),
    }
    match &c.actions[1] {
        Action::Webhook(w) => {
            assert_eq!((w.timeout, w.retries), (Duration::from_secs(5), 2));
        }
        other => panic!("{other:?}"),
    }
    match &c.actions[3] {
        Action::Kill(k) => {
            assert_eq!(k.grace, Duration::from_secs(5));
            assert_eq!(k.after, Duration::ZERO);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn signal_names_are_normalised() {
    for w in ["SIGUSR2", "usr2", "SigUsr2"] {
        assert_eq!(parse_signal("k", w).unwrap().number, libc::SIGUSR2);
    }
    assert!(parse_signal("k", "SIGFOO")
        .unwrap_err()
        .to_string()
        .contains("SIGUSR1"));
    assert!(parse_signal("k", "9").is_err());
}

#[test]
fn refusals_name_the_key() {
    let cases = [
        (
            "[cleanup]\nenabled = true\n",
            "cleanup.actions",
        ),
        (
            "[cleanup]\n[[cleanup.actions]]\ntype = \"kill\"\n",
            "cleanup.actions[0].type",
        ),
        (
            "[cleanup]\n[[cleanup.actions]]\ntype = \"signal\"\nsignal = \"SIGKILL\"\ntarget = \"all\"\n",
            "cleanup.actions[0].signal",
        ),
        (
            "[cleanup]\n[[cleanup.actions]]\ntype = \"signal\"\nsignal = \"TERM\"\ntarget = \"all\"\n",
            "allow_kill",
        ),
        (
            "[cleanup]\n[[cleanup.actions]]\ntype = \"signal\"\n",
            "cleanup.actions[0].target",
        ),
        (
            "[cleanup]\n[[cleanup.actions]]\ntype = \"signal\"\ntarget = \"all\"\ntop = 3\n",
            "cleanup.actions[0].top",
        ),
        (
            "[cleanup]\n[[cleanup.actions]]\ntype = \"signal\"\ntarget = \"match\"\n",
            "cleanup.actions[0].name_regex",
        ),
        (
            "[cleanup]\n[[cleanup.actions]]\ntype = \"signal\"\ntarget = \"all\"\nurl = \"http://x\"\n",
            "cleanup.actions[0].url",
        ),
        (
            "[cleanup]\n[[cleanup.actions]]\ntype = \"webhook\"\nurl = \"http://\"\n",
            "cleanup.actions[0].url",
        ),
        (
            "[cleanup]\n[[cleanup.actions]]\ntype = \"webhook\"\nurl = \"http://h\"\nretries = 50\n",
            "cleanup.actions[0].retries",
        ),
        (
            "[cleanup]\n[[cleanup.actions]]\ntype = \"exec\"\nargv = [\"\"]\n",
            "cleanup.actions[0].argv",
        ),
        (
            "[cleanup]\ncooldown = \"0s\"\n",
            "cleanup.cooldown",
        ),
        (
            "[cleanup]\nallow_kill = true\n[[cleanup.actions]]\ntype = \"kill\"\n[[cleanup.actions]]\ntype = \"kill\"\n",
            "two kill actions",
        ),
        (
            "[cleanup]\nallow_kill = true\n[[cleanup.actions]]\ntype = \"kill\"\nafter = \"2d\"\n",
            "cleanup.actions[0].after",
        ),
    ];
    for (text, word) in cases {
        let e = err(text);
        assert!(e.contains(word), "{text}\n→ {e}");
    }
}

#[test]
fn terminating_signals_pass_with_allow_kill() {
    let c = parse(
        "[cleanup]\nallow_kill = true\n[[cleanup.actions]]\ntype = \"signal\"\nsignal = \"SIGTERM\"\ntarget = \"match\"\nname_regex = \"^worker\"\n",
    )
    .unwrap();
    assert!(matches!(&c.actions[0], Action::Signal(s) if s.signal.number == libc::SIGTERM));
}

#[test]
fn shown_urls_hide_credentials_query_values_and_fragments() {
    assert_eq!(
        redacted_url("https://u:p@h:8443/a/b?token=s3&x=1&flag#frag"),
        "https://REDACTED@h:8443/a/b?token=REDACTED&x=REDACTED&REDACTED#REDACTED"
    );
    assert_eq!(redacted_url("http://h/hook"), "http://h/hook");
    assert_eq!(redacted_url("not a url?k=v"), "not a url?k=REDACTED");
    assert_eq!(redacted_url("u:p@h"), "REDACTED@h");
}
