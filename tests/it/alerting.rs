//! Alerting end to end: the exporter on nvml-sim, a real Prometheus with the bundled rules, a real
//! Alertmanager with the example routing, and a webhook receiver owned by the test.
//!
//! The bundled files are used as shipped, with two test-time rewrites: addresses (free ports on
//! loopback), and time compressed by a constant factor (every `for:`, range selector and
//! Alertmanager wait divided by [`COMPRESS`]) so a five-minute `for` fires in seconds. The scenario's
//! phases are stepped with nvml-sim's time file. Where prometheus or alertmanager is missing the
//! test says so loudly and stops; with VRAM_REQUIRE_TOOLS set (as `.ci/run` does) that is a failure.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use regex::Regex;

use vram_testkit::process::{Running, Spawn};
use vram_testkit::wait::Wait;

use crate::harness::{get, repo, Exporter, Options};

/// Rule and routing durations are divided by this.
const COMPRESS: u64 = 30;

const SCENARIO: &str = r#"
driver_version = "550.54.15"

[[device]]
name = "NVIDIA A100-SXM4-80GB"
uuid = "GPU-e2e00000-0000-0000-0000-000000000000"
pci_bus_id = "00000000:07:00.0"
total = "80GiB"
reserved = "512MiB"
overhead = "512MiB"

[[device.process]]
pid = 5000201
name = "finetune"
# Normal until t=100, over hard from t=101 to t=200, back to normal after.
memory = { points = [[0, "40GiB"], [100, "40GiB"], [101, "77GiB"], [200, "77GiB"], [201, "40GiB"]] }

[[device]]
name = "NVIDIA A100-SXM4-80GB"
uuid = "GPU-e2e00000-0000-0000-0000-000000000001"
pci_bus_id = "00000000:0F:00.0"
total = "80GiB"

[[device.process]]
pid = 5000202
name = "notebook"
memory = "20GiB"
"#;

/// A child process killed when the test ends, however it ends (the test kit's process); the end of
/// its output is printed when the test failed.
struct Daemon(Running);

impl Drop for Daemon {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- last lines of {} ---", self.0.name);
            eprintln!("{}", self.0.log_tail(30));
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The binary, or None after saying loudly why the test cannot run.
fn tool(names: &[&str]) -> Option<PathBuf> {
    for n in names {
        if let Ok(out) = Command::new("sh")
            .args(["-c", &format!("command -v {n}")])
            .output()
        {
            let p = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if out.status.success() && !p.is_empty() {
                return Some(PathBuf::from(p));
            }
        }
    }
    let msg = format!(
        "{} not installed (Debian packages prometheus and prometheus-alertmanager)",
        names.join(" / ")
    );
    assert!(
        std::env::var_os("VRAM_REQUIRE_TOOLS").is_none(),
        "{msg}; VRAM_REQUIRE_TOOLS is set"
    );
    eprintln!("!!! alerting end-to-end test SKIPPED: {msg}");
    None
}

fn seconds(text: &str) -> u64 {
    humantime::parse_duration(text)
        .unwrap_or_else(|e| panic!("duration {text:?}: {e}"))
        .as_secs()
}

/// Divides every duration in `for:`, `[range]`, `[range:step]` and Alertmanager waits by COMPRESS.
fn compress_time(text: &str) -> String {
    let scale = |d: &str| format!("{}s", (seconds(d) / COMPRESS).max(2));
    let keyed = Regex::new(r"(?m)^(\s*(?:for|group_wait|group_interval|repeat_interval):\s*)(\d+[smhd](?:\d+[smh])*)\s*$").unwrap();
    let text = keyed.replace_all(text, |c: &regex::Captures| {
        format!("{}{}", &c[1], scale(&c[2]))
    });
    let range = Regex::new(r"\[(\d+[smhd](?:\d+[smh])*)(:\d+[smh]*)?\]").unwrap();
    range
        .replace_all(&text, |c: &regex::Captures| {
            let step = c
                .get(2)
                .map(|s| format!(":{}", scale(&s.as_str()[1..])))
                .unwrap_or_default();
            format!("[{}{}]", scale(&c[1]), step)
        })
        .into_owned()
}

fn replace_once(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "expected {from:?} in the bundled file");
    text.replace(from, to)
}

fn prom_query(base: &str, expr: &str) -> serde_json::Value {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let mut resp = agent
        .get(&format!("{base}/api/v1/query"))
        .query("query", expr)
        .call()
        .unwrap_or_else(|e| panic!("query {expr}: {e}"));
    let body = resp.body_mut().read_to_string().unwrap();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "success", "query {expr} failed: {body}");
    v
}

/// The kit's wait, looking every 250 ms (each look is a query to a daemon).
fn wait_until<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    Wait::new(what, timeout)
        .every(Duration::from_millis(250))
        .must(|| f().into())
}

/// What the webhook receiver got: (path, alertmanager payload).
type Received = Arc<Mutex<Vec<(String, serde_json::Value)>>>;

fn start_receiver(rt: &tokio::runtime::Runtime) -> (String, Received) {
    use axum::extract::{Path as AxPath, State};
    let received: Received = Arc::default();
    let app = axum::Router::new()
        .route(
            "/{receiver}",
            axum::routing::post(
                |State(r): State<Received>,
                 AxPath(receiver): AxPath<String>,
                 axum::Json(body): axum::Json<serde_json::Value>| async move {
                    r.lock().unwrap().push((receiver, body));
                    "ok"
                },
            ),
        )
        .with_state(received.clone());
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    rt.spawn(async move { axum::serve(listener, app).await });
    (addr, received)
}

/// Alerts delivered to `receiver` with this alertname and gpu, with their status.
fn deliveries(
    r: &Received,
    receiver: &str,
    alertname: &str,
    gpu: &str,
) -> Vec<(String, serde_json::Value)> {
    r.lock()
        .unwrap()
        .iter()
        .filter(|(path, _)| path == receiver)
        .flat_map(|(_, body)| body["alerts"].as_array().cloned().unwrap_or_default())
        .filter(|a| a["labels"]["alertname"] == alertname && a["labels"]["gpu"] == gpu)
        .map(|a| (a["status"].as_str().unwrap_or_default().to_string(), a))
        .collect()
}

#[test]
fn pages_on_hard_breach_inhibits_soft_and_resolves() {
    let (Some(prometheus), Some(alertmanager)) = (
        tool(&["prometheus"]),
        tool(&["prometheus-alertmanager", "alertmanager"]),
    ) else {
        return;
    };
    let started = Instant::now();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (receiver_addr, received) = start_receiver(&rt);

    let exporter = Exporter::start(Options {
        scenario: SCENARIO,
        // A dry-run cleanup action gives the dashboards' cleanup panels real series.
        config: "[poll]\ninterval = \"200ms\"\n[cleanup]\nenabled = true\ndry_run = true\ncooldown = \"5s\"\n\
                 [[cleanup.actions]]\ntype = \"webhook\"\nurl = \"http://127.0.0.1:9/unused-in-dry-run\"\n",
        ..Default::default()
    });
    let work = exporter.dir.path().to_path_buf();
    let instance = exporter.addr.clone();

    // Alertmanager with the example routing, receivers pointed at our webhook server.
    let am_port = free_port();
    let am_cfg = std::fs::read_to_string(repo().join("alerts/alertmanager.yml")).unwrap();
    let am_cfg = replace_once(&am_cfg, "127.0.0.1:5001", &receiver_addr);
    let am_cfg = compress_time(&am_cfg);
    std::fs::write(work.join("alertmanager.yml"), &am_cfg).unwrap();
    let _am = spawn(
        "alertmanager",
        &alertmanager,
        &[
            format!("--config.file={}", work.join("alertmanager.yml").display()),
            format!("--storage.path={}", work.join("am-data").display()),
            format!("--web.listen-address=127.0.0.1:{am_port}"),
            "--cluster.listen-address=".into(),
        ],
        &work,
    );

    // Prometheus with the bundled rules and the compose prometheus.yml, scraping every second.
    let prom_port = free_port();
    let rules = std::fs::read_to_string(repo().join("alerts/vram-exporter.rules.yml")).unwrap();
    std::fs::write(work.join("rules.yml"), compress_time(&rules)).unwrap();
    let prom_cfg = std::fs::read_to_string(repo().join("deploy/compose/prometheus.yml")).unwrap();
    let prom_cfg = replace_once(&prom_cfg, "scrape_interval: 15s", "scrape_interval: 1s");
    let prom_cfg = replace_once(
        &prom_cfg,
        "evaluation_interval: 15s",
        "evaluation_interval: 1s",
    );
    let prom_cfg = replace_once(
        &prom_cfg,
        "../../alerts/vram-exporter.rules.yml",
        "rules.yml",
    );
    let prom_cfg = replace_once(&prom_cfg, "exporter:18726", &instance);
    let prom_cfg = replace_once(
        &prom_cfg,
        "alertmanager:9093",
        &format!("127.0.0.1:{am_port}"),
    );
    std::fs::write(work.join("prometheus.yml"), &prom_cfg).unwrap();
    let _prom = spawn(
        "prometheus",
        &prometheus,
        &[
            format!("--config.file={}", work.join("prometheus.yml").display()),
            format!("--storage.tsdb.path={}", work.join("prom-data").display()),
            format!("--web.listen-address=127.0.0.1:{prom_port}"),
        ],
        &work,
    );
    let prom = format!("http://127.0.0.1:{prom_port}");
    let am = format!("http://127.0.0.1:{am_port}");

    wait_ready(&format!("{prom}/-/ready"));
    wait_ready(&format!("{am}/-/ready"));

    // Phase 1: normal. Prometheus scrapes the exporter and the rules load.
    wait_until(
        "Prometheus to scrape the exporter",
        Duration::from_secs(60),
        || {
            let v = prom_query(
                &prom,
                "vram_allocated_bytes{job=\"vram-exporter\",gpu=\"0\"}",
            );
            (!v["data"]["result"].as_array()?.is_empty()).then_some(())
        },
    );

    // Phase 2: GPU 0 over the hard limit; hold until the page arrives and soft is inhibited.
    exporter.set_time(150.0);
    let page = wait_until("the critical page", Duration::from_secs(60), || {
        deliveries(&received, "pager", "VramHardLimitBreached", "0")
            .into_iter()
            .find(|(status, _)| status == "firing")
    })
    .1;
    assert_eq!(page["labels"]["severity"], "critical");
    assert_eq!(
        page["labels"]["instance"],
        instance.as_str(),
        "the page names the host"
    );
    assert_eq!(
        page["labels"]["uuid"],
        "GPU-e2e00000-0000-0000-0000-000000000000"
    );
    let description = page["annotations"]["description"].as_str().unwrap();
    assert!(
        description.contains("GPU 0") && description.contains(&instance),
        "{description}"
    );
    assert!(page["annotations"]["runbook_url"]
        .as_str()
        .unwrap()
        .contains("runbook.md#vramhardlimitbreached"));
    assert!(
        deliveries(&received, "pager", "VramHardLimitBreached", "1").is_empty(),
        "GPU 1 is fine"
    );

    // The soft alert fires in Prometheus for GPU 0 but Alertmanager inhibits it.
    wait_until(
        "the soft alert to fire in Prometheus",
        Duration::from_secs(60),
        || {
            let v = prom_query(
                &prom,
                "ALERTS{alertname=\"VramSoftLimitExceeded\",alertstate=\"firing\",gpu=\"0\"}",
            );
            (!v["data"]["result"].as_array()?.is_empty()).then_some(())
        },
    );
    wait_until(
        "Alertmanager to mark the soft alert suppressed",
        Duration::from_secs(30),
        || {
            let (status, body) = get(&format!(
                "{am}/api/v2/alerts?filter=alertname%3D%22VramSoftLimitExceeded%22"
            ));
            assert_eq!(status, 200, "{body}");
            let alerts: serde_json::Value = serde_json::from_str(&body).unwrap();
            alerts.as_array()?.iter().find(|a| {
                a["labels"]["gpu"] == "0"
                    && a["status"]["state"] == "suppressed"
                    && !a["status"]["inhibitedBy"]
                        .as_array()
                        .map(|v| v.is_empty())
                        .unwrap_or(true)
            })?;
            Some(())
        },
    );
    assert!(
        deliveries(&received, "chat", "VramSoftLimitExceeded", "0").is_empty(),
        "the inhibited soft alert must not reach the chat receiver"
    );

    // Every dashboard panel expression returns data from this Prometheus.
    check_dashboards(&prom, &instance);

    // Phase 3: memory falls back; the page resolves.
    exporter.set_time(250.0);
    wait_until("the page to resolve", Duration::from_secs(90), || {
        deliveries(&received, "pager", "VramHardLimitBreached", "0")
            .into_iter()
            .find(|(status, _)| status == "resolved")
    });
    eprintln!("alerting end-to-end test took {:?}", started.elapsed());
}

/// Waits until a daemon answers 200 on its readiness endpoint.
fn wait_ready(url: &str) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(2)))
        .build()
        .into();
    wait_until(url, Duration::from_secs(60), || {
        agent.get(url).call().ok().map(|_| ())
    });
}

fn spawn(name: &'static str, bin: &Path, args: &[String], dir: &Path) -> Daemon {
    let mut cmd = Command::new(bin);
    cmd.args(args).current_dir(dir);
    let keep = Spawn {
        log_file: Some(dir.join(format!("{name}.log"))),
        ..Spawn::default()
    };
    Daemon(Running::spawn(name, cmd, &keep).unwrap_or_else(|e| panic!("start {name}: {e}")))
}

/// Substitutes the dashboard variables and runs every panel target against Prometheus.
fn check_dashboards(prom: &str, instance: &str) {
    let vars: BTreeMap<&str, &str> = [
        ("$__rate_interval", "1m"),
        ("$__interval", "15s"),
        ("$__range", "5m"),
        // No cluster label here: the All value (.*) matches series without one.
        ("$cluster", ".*"),
        ("$job", "vram-exporter"),
        ("$node", instance),
        ("$gpu", "0"),
        ("$namespace", ".*"),
    ]
    .into_iter()
    .collect();
    let mut checked = 0;
    let mut empty = Vec::new();
    for file in ["dashboards/vram-fleet.json", "dashboards/vram-gpu.json"] {
        let dash: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(repo().join(file)).unwrap()).unwrap();
        let mut panels: Vec<serde_json::Value> =
            dash["panels"].as_array().cloned().unwrap_or_default();
        // Panels nested in collapsed rows.
        let nested: Vec<serde_json::Value> = panels
            .iter()
            .flat_map(|p| p["panels"].as_array().cloned().unwrap_or_default())
            .collect();
        panels.extend(nested);
        for panel in &panels {
            for target in panel["targets"].as_array().cloned().unwrap_or_default() {
                let Some(expr) = target["expr"].as_str() else {
                    continue;
                };
                let mut e = expr.to_string();
                // Longest names first, so $__rate_interval is not eaten by a shorter variable.
                let mut keys: Vec<&&str> = vars.keys().collect();
                keys.sort_by_key(|k| std::cmp::Reverse(k.len()));
                for k in keys {
                    e = e
                        .replace(&format!("${{{}}}", &k[1..]), vars[*k])
                        .replace(*k, vars[*k]);
                }
                let v = prom_query(prom, &e);
                checked += 1;
                if v["data"]["result"]
                    .as_array()
                    .map(|r| r.is_empty())
                    .unwrap_or(true)
                {
                    empty.push(format!(
                        "{file} panel {} ({}): {e}",
                        panel["id"], panel["title"]
                    ));
                }
            }
        }
    }
    assert!(checked >= 20, "only {checked} panel expressions found");
    assert!(
        empty.is_empty(),
        "panel expressions without data:\n{}",
        empty.join("\n")
    );
}
