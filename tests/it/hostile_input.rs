//! Hostile input: property tests of configuration loading and validation (TOML, YAML,
//! environment) and of the exporter-toolkit web configuration parser — arbitrary and
//! almost-valid input must give a clear `ConfigError`, never a panic, and whatever is accepted
//! must print (`--check-config`) as a configuration that is accepted again.
//!
//! cargo-fuzz needs a nightly toolchain, which this project's machines cannot fetch; proptest
//! runs on stable. `PROPTEST_CASES` sets the cases per property (256 by default, as in CI); the
//! generators mix known keys and tricky values so most cases get past the syntax into validation.

use std::collections::BTreeMap;

use proptest::prelude::*;
use vram_exporter::base::input::ConfigError;
use vram_exporter::config::{self, FlagOverrides};
use vram_exporter::server::web::{self, WebSettings};

/// Keys of every section (any key may land in any section: unknown keys must be refused).
const CONFIG_KEYS: &[&str] = &[
    "interval",
    "soft",
    "hard",
    "hysteresis",
    "window",
    "floor_window",
    "max_per_gpu",
    "listen",
    "max_concurrent_requests",
    "request_timeout",
    "config_file",
    "library",
    "enabled",
    "dry_run",
    "cooldown",
    "allow_kill",
    "uuid",
    "index",
    "model",
    "type",
    "signal",
    "target",
    "top",
    "name_regex",
    "url",
    "retries",
    "timeout",
    "argv",
    "grace",
    "avoid",
    "prefer",
    "after",
    "bogus",
];

const CONFIG_SECTIONS: &[&str] = &[
    "[poll]",
    "[limits]",
    "[[limits.overrides]]",
    "[leak]",
    "[processes]",
    "[web]",
    "[nvml]",
    "[cleanup]",
    "[[cleanup.actions]]",
    "[bogus]",
    "",
];

/// Values that sit on the edges of what validation accepts, as they would be written.
const TRICKY: &[&str] = &[
    "85%",
    "95%",
    "2%",
    "-5%",
    "0%",
    "100%",
    "100.0000001%",
    "1e309%",
    "NaN%",
    "inf%",
    "%",
    "70GiB",
    "0",
    "0B",
    "18446744073709551615",
    "18446744073709551616",
    "99999999999999999999999PiB",
    "1.5 TB",
    "-1GiB",
    "0s",
    "99ms",
    "100ms",
    "1h",
    "3601s",
    "584942417355y",
    "18446744073709551615s",
    "1 2 3",
    "",
    " ",
    ":18726",
    "[::]:0",
    "127.0.0.1:0",
    "256.0.0.1:80",
    "localhost:99999",
    ":",
    "SIGUSR1",
    "SIGKILL",
    "SIGFOO",
    "9",
    "^(",
    "(a+)+$",
    "[[:alpha:]]{1000000}",
    "signal",
    "exec",
    "webhook",
    "kill",
    "match",
    "top",
    "largest",
    "http://127.0.0.1:9/hook",
    "ftp://x",
    "no-such-web-config.yml",
    "GPU-00000000-0000-0000-0000-000000000000",
    "\u{0}",
    "\u{202e}",
    "💥",
];

fn toml_value() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(TRICKY).prop_map(toml_string),
        2 => any::<String>().prop_map(|s| toml_string(&s)),
        1 => any::<i64>().prop_map(|n| n.to_string()),
        1 => any::<u64>().prop_map(|n| n.to_string()),
        1 => any::<f64>().prop_map(|f| {
            if f.is_finite() { format!("{f:?}") } else { "nan".into() }
        }),
        1 => any::<bool>().prop_map(|b| b.to_string()),
        1 => prop::collection::vec(prop::sample::select(TRICKY), 0..4)
            .prop_map(|v| format!("[{}]", v.iter().map(|s| toml_string(s)).collect::<Vec<_>>().join(", "))),
        1 => Just("{ a = 1 }".to_string()),
    ]
}

fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => prop::sample::select(CONFIG_KEYS).prop_map(str::to_string),
        1 => "[a-z_]{1,12}",
    ]
}

/// Sections with the keys they accept, and values that are plausible for those keys.
/// A section's keys, each with values plausible for it.
type Keys = &'static [(&'static str, &'static [&'static str])];

const SCHEMA: &[(&str, Keys)] = &[
    ("poll", &[("interval", &["1s", "250ms", "100ms", "1h"])]),
    (
        "limits",
        &[
            ("soft", &["85%", "70GiB", "60 GB"]),
            ("hard", &["95%", "76GiB", "80000000000"]),
            ("hysteresis", &["2%", "1GiB", "0"]),
        ],
    ),
    (
        "limits.overrides",
        &[
            ("uuid", &["GPU-00000000-0000-0000-0000-000000000000"]),
            ("index", &["0", "7"]),
            ("model", &["NVIDIA A100-SXM4-40GB"]),
            ("soft", &["30GiB", "80%"]),
            ("hard", &["36GiB", "99%"]),
            ("hysteresis", &["1%"]),
        ],
    ),
    (
        "leak",
        &[("window", &["15m", "4s"]), ("floor_window", &["90s", "1s"])],
    ),
    ("processes", &[("max_per_gpu", &["16", "0", "1"])]),
    (
        "web",
        &[
            ("listen", &["0.0.0.0:18726", ":18726", "[::1]:0"]),
            ("max_concurrent_requests", &["64", "1", "0"]),
            ("request_timeout", &["10s", "1ms"]),
            ("config_file", &["no-such-web-config.yml"]),
        ],
    ),
    (
        "nvml",
        &[("library", &["libnvidia-ml.so.1", "/nonexistent/lib.so"])],
    ),
    (
        "cleanup",
        &[
            ("enabled", &["true", "false"]),
            ("dry_run", &["true", "false"]),
            ("cooldown", &["30s", "0s"]),
            ("allow_kill", &["true", "false"]),
        ],
    ),
    (
        "cleanup.actions",
        &[
            ("type", &["signal", "webhook", "exec", "kill"]),
            ("signal", &["SIGUSR1", "SIGTERM", "SIGKILL", "USR1"]),
            ("target", &["match", "top", "all", "largest"]),
            ("top", &["1", "0"]),
            ("name_regex", &["^python", "("]),
            ("url", &["http://127.0.0.1:9/hook", "not a url"]),
            ("retries", &["3", "0"]),
            ("timeout", &["5s", "0s"]),
            ("grace", &["10s"]),
            ("avoid", &["^sshd$"]),
            ("prefer", &["jupyter"]),
            ("after", &["1s", "1h"]),
        ],
    ),
];

/// A plausible value for `key` most of the time, a tricky one otherwise, as a TOML literal.
fn toml_value_for(plausible: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(plausible).prop_map(toml_literal),
        2 => toml_value(),
    ]
}

/// Numbers and booleans bare, everything else quoted.
fn toml_literal(s: &str) -> String {
    if s.parse::<i64>().is_ok() || s == "true" || s == "false" {
        s.to_string()
    } else {
        toml_string(s)
    }
}

/// One known section with its own keys (mostly) and plausible or tricky values.
fn toml_section((name, keys): (&'static str, Keys)) -> impl Strategy<Value = String> {
    let entry = prop_oneof![
        9 => prop::sample::select(keys).prop_flat_map(|(k, plausible)| {
            toml_value_for(plausible).prop_map(move |v| (k.to_string(), v))
        }),
        1 => (key(), toml_value()),
    ];
    prop::collection::vec(entry, 0..6).prop_map(move |entries| {
        let header = if name.contains('.') {
            format!("[[{name}]]")
        } else {
            format!("[{name}]")
        };
        let mut out = format!("{header}\n");
        let mut seen = std::collections::BTreeSet::new();
        for (k, v) in entries {
            if seen.insert(k.clone()) {
                out.push_str(&format!("{k} = {v}\n"));
            }
        }
        out
    })
}

/// A TOML document: a subset of the known sections, sometimes followed by a wild one (any
/// section header, any keys).
fn toml_document() -> impl Strategy<Value = String> {
    let known = prop::sample::subsequence(SCHEMA, 0..=SCHEMA.len()).prop_flat_map(|sections| {
        sections
            .into_iter()
            .map(toml_section)
            .collect::<Vec<_>>()
            .prop_map(|parts| parts.concat())
    });
    let wild = prop::option::weighted(
        0.15,
        (
            prop::sample::select(CONFIG_SECTIONS),
            prop::collection::vec((key(), toml_value()), 0..4),
        )
            .prop_map(|(header, entries)| {
                let body: String = entries
                    .iter()
                    .map(|(k, v)| format!("{k} = {v}\n"))
                    .collect();
                format!("{header}\n{body}")
            }),
    );
    (known, wild).prop_map(|(known, wild)| known + &wild.unwrap_or_default())
}

/// The same shape as YAML (nested maps and lists), plus raw YAML oddities.
fn yaml_document() -> impl Strategy<Value = String> {
    let scalar = |plausible: &'static [&'static str]| {
        prop_oneof![
            6 => prop::sample::select(plausible).prop_map(|s| s.to_string()),
            3 => prop::sample::select(TRICKY).prop_map(yaml_string),
            1 => any::<String>().prop_map(|s| yaml_string(&s)),
            1 => any::<i64>().prop_map(|n| n.to_string()),
            1 => Just("~".to_string()),
            1 => Just("[1, two]".to_string()),
            1 => Just("*anchor".to_string()),
            1 => Just("!!binary aGVsbG8=".to_string()),
        ]
    };
    let section = move |(name, keys): (&'static str, Keys)| {
        let entry = prop::sample::select(keys)
            .prop_flat_map(move |(k, plausible)| scalar(plausible).prop_map(move |v| (k, v)));
        prop::collection::btree_map(entry, Just(()), 0..6).prop_map(move |entries| {
            let mut seen = std::collections::BTreeSet::new();
            let lines: Vec<String> = entries
                .keys()
                .filter(|(k, _)| seen.insert(*k))
                .map(|(k, v)| format!("{k}: {v}"))
                .collect();
            match name.split_once('.') {
                // A list of maps, as overrides and actions are written.
                Some((outer, inner)) => {
                    let item: Vec<String> = lines
                        .iter()
                        .enumerate()
                        .map(|(i, l)| {
                            if i == 0 {
                                format!("    - {l}\n")
                            } else {
                                format!("      {l}\n")
                            }
                        })
                        .collect();
                    format!("{outer}:\n  {inner}:\n{}", item.concat())
                }
                None => {
                    let body: String = lines.iter().map(|l| format!("  {l}\n")).collect();
                    format!("{name}:\n{body}")
                }
            }
        })
    };
    // Top-level tables only (a list section shares its parent's key in YAML).
    let tables: Vec<_> = SCHEMA
        .iter()
        .copied()
        .filter(|(n, _)| !n.contains('.'))
        .collect();
    prop::sample::subsequence(tables, 0..=6).prop_flat_map(move |sections| {
        sections
            .into_iter()
            .map(section)
            .collect::<Vec<_>>()
            .prop_map(|parts| parts.concat())
    })
}

fn yaml_string(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

/// Environment overrides: mostly known section/key pairs, sometimes wrong ones; tricky values.
fn env_map() -> impl Strategy<Value = BTreeMap<String, String>> {
    let known = prop::sample::select(SCHEMA)
        .prop_filter("tables only", |(name, _)| !name.contains('.'))
        .prop_flat_map(|(name, keys)| {
            prop::sample::select(keys).prop_map(move |(k, _)| {
                format!(
                    "VRAM_EXPORTER__{}__{}",
                    name.to_uppercase(),
                    k.to_uppercase()
                )
            })
        });
    let wrong = (
        prop::sample::select(&["POLL", "WEB", "BOGUS", ""][..]),
        prop::sample::select(CONFIG_KEYS),
    )
        .prop_map(|(section, key)| {
            if section.is_empty() {
                format!("VRAM_EXPORTER__{}", key.to_uppercase())
            } else {
                format!("VRAM_EXPORTER__{section}__{}", key.to_uppercase())
            }
        });
    let name = prop_oneof![6 => known, 1 => wrong];
    let value = prop_oneof![
        4 => prop::sample::select(TRICKY).prop_map(str::to_string),
        1 => "\\PC{0,20}",
    ];
    prop::collection::btree_map(name, value, 0..3)
}

/// Loads `text` as a configuration file with `env`, validates it, and checks the contract:
/// no panic; every error says something; an accepted configuration prints as one that is
/// accepted again with the same effective values.
fn check_config(text: &str, extension: &str, env: BTreeMap<String, String>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(format!("config.{extension}"));
    std::fs::write(&path, text).unwrap();
    let flags = FlagOverrides::default();
    let raw = match config::load(Some(&path), Some(env), &flags) {
        Ok(raw) => raw,
        Err(e) => return assert_clear(&e),
    };
    match raw.validate() {
        Err(e) => assert_clear(&e),
        Ok(_) => {
            let printed = raw.to_toml();
            let again = dir.path().join("printed.toml");
            std::fs::write(&again, &printed).unwrap();
            let reloaded = config::load(Some(&again), Some(BTreeMap::new()), &flags)
                .unwrap_or_else(|e| panic!("--check-config output does not load: {e}\n{printed}"));
            reloaded
                .validate()
                .unwrap_or_else(|e| panic!("--check-config output is refused: {e}\n{printed}"));
            assert_eq!(reloaded.to_toml(), printed, "printing is stable");
        }
    }
}

fn assert_clear(e: &ConfigError) {
    let message = e.to_string();
    assert!(!message.trim().is_empty(), "empty error message: {e:?}");
    if let ConfigError::Invalid { key, reason, .. } = e {
        assert!(!key.is_empty(), "an Invalid error without a key: {e:?}");
        assert!(
            !reason.is_empty(),
            "an Invalid error without a reason: {e:?}"
        );
    }
}

proptest! {
    #[test]
    fn toml_configurations_never_panic(text in toml_document(), env in env_map()) {
        check_config(&text, "toml", env);
    }

    #[test]
    fn yaml_configurations_never_panic(text in yaml_document(), env in env_map()) {
        check_config(&text, "yaml", env);
    }

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,200}", yaml in any::<bool>()) {
        check_config(&text, if yaml { "yml" } else { "toml" }, BTreeMap::new());
    }

    #[test]
    fn mutated_example_configurations_never_panic(
        cut in 0usize..4000,
        len in 0usize..40,
        insert in prop::sample::select(TRICKY),
        yaml in any::<bool>(),
    ) {
        let example = if yaml {
            include_str!("../../examples/vram-exporter.yaml")
        } else {
            include_str!("../../examples/vram-exporter.toml")
        };
        let at = floor_char_boundary(example, cut.min(example.len()));
        let end = floor_char_boundary(example, (at + len).min(example.len()));
        let text = format!("{}{insert}{}", &example[..at], &example[end..]);
        check_config(&text, if yaml { "yaml" } else { "toml" }, BTreeMap::new());
    }

    #[test]
    fn web_configuration_files_never_panic(text in web_document()) {
        check_web(&text);
    }

    #[test]
    fn arbitrary_web_configuration_text_never_panics(text in "\\PC{0,200}") {
        check_web(&text);
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Parses and, when the syntax is accepted, fully loads a web configuration file.
fn check_web(text: &str) {
    match web::parse(text) {
        Err(e) => assert_clear(&e),
        Ok(_) => {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("web.yml");
            std::fs::write(&path, text).unwrap();
            if let Err(e) = WebSettings::load(&path) {
                assert_clear(&e);
            }
        }
    }
}

/// Cheap bcrypt hashes (cost 4) and broken ones; costs stay low so a case never spends seconds
/// hashing (the exporter computes a dummy hash at the highest cost in the file).
const WEB_VALUES: &[&str] = &[
    "$2y$04$qjuC1zDJ1tKmE1aQGbW5WOsB5D7PeBtqL0uNHrOWSOakb6hAjvH3y",
    "$2b$04$qjuC1zDJ1tKmE1aQGbW5WOsB5D7PeBtqL0uNHrOWSOakb6hAjvH3y",
    "$2y$04$short",
    "$1$md5$nope",
    "plain-password",
    "TLS12",
    "TLS13",
    "TLS10",
    "RequireAndVerifyClientCert",
    "VerifyClientCertIfGiven",
    "NoClientCert",
    "Bogus",
    "TLS_AES_128_GCM_SHA256",
    "TLS_RSA_WITH_RC4_128_SHA",
    "X25519",
    "CurveP256",
    "no-such-cert.pem",
    "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n",
    "deny",
    "nosniff",
    "max-age=31536000",
    "evil\r\nheader",
    "1s",
    "0s",
    "-1s",
    "1ms",
    "0",
    "10",
    "4294967296",
    "",
];

fn web_document() -> impl Strategy<Value = String> {
    let value = prop_oneof![
        6 => prop::sample::select(WEB_VALUES).prop_map(yaml_string),
        1 => any::<String>().prop_map(|s| yaml_string(&s)),
        1 => any::<i64>().prop_map(|n| n.to_string()),
        1 => any::<bool>().prop_map(|b| b.to_string()),
        1 => prop::collection::vec(prop::sample::select(WEB_VALUES), 0..3)
            .prop_map(|v| format!("[{}]", v.iter().map(|s| yaml_string(s)).collect::<Vec<_>>().join(", "))),
    ];
    const WEB_SCHEMA: &[(&str, &[&str])] = &[
        (
            "tls_server_config",
            &[
                "cert",
                "key",
                "client_ca",
                "cert_file",
                "key_file",
                "client_auth_type",
                "client_ca_file",
                "client_allowed_sans",
                "min_version",
                "max_version",
                "cipher_suites",
                "prefer_server_cipher_suites",
                "curve_preferences",
            ],
        ),
        ("http_server_config", &["http2", "headers"]),
        (
            "headers",
            &[
                "Strict-Transport-Security",
                "X-Frame-Options",
                "X-Content-Type-Options",
                "X-XSS-Protection",
                "Content-Security-Policy",
                "Set-Cookie",
            ],
        ),
        ("basic_auth_users", &["alice", "bob", ""]),
        ("rate_limit", &["interval", "burst"]),
        ("vram_exporter", &["unauthenticated_health"]),
        ("bogus", &["bogus"]),
    ];
    let section = (
        prop::sample::select(WEB_SCHEMA),
        prop::collection::vec((0usize..16, value), 0..4),
    )
        .prop_map(|((name, keys), entries)| {
            let mut seen = std::collections::BTreeSet::new();
            let body: String = entries
                .into_iter()
                .map(|(i, v)| (keys[i % keys.len()], v))
                .filter(|(k, _)| seen.insert(*k))
                .map(|(k, v)| format!("  {k}: {v}\n"))
                .collect();
            if name == "headers" {
                let inner: String = body.lines().map(|l| format!("  {l}\n")).collect();
                format!("http_server_config:\n  headers:\n{inner}")
            } else {
                format!("{name}:\n{body}")
            }
        });
    prop::collection::vec(section, 0..4).prop_map(|s| s.concat())
}
