//! The status page at `/`: every GPU at a glance — now and over the last ten minutes — and what
//! happened, readable by a person without Grafana.
//!
//! Rendered on the server from the newest snapshot and a copy of the history, so it reads
//! without JavaScript (then a `<noscript>` refresh reloads it). With JavaScript, `page.js`
//! redraws it in place from `/api/v1/gpus` and `/api/v1/history` instead of reloading. Nothing
//! external is loaded; the style and the script are inline and allowed by their hashes in a
//! strict Content-Security-Policy ([`content_security_policy`]).
//!
//! Split by job: this file the layout and the GPU cards, `svg.rs` the charts, `timeline.rs` the
//! events, `page.css` and `page.js` the style and the script.

mod svg;
mod timeline;

use std::fmt::Write as _;
use std::sync::OnceLock;

use base64::Engine as _;
use sha2::Digest as _;

use crate::model::engine::{GpuView, ProcessView, Snapshot};
use crate::model::policy::Level;
use crate::output::history::json::{GpuHistory, HistoryResponse, ProcessHistory};

const CSS: &str = include_str!("status_page/page.css");
const JS: &str = include_str!("status_page/page.js");

/// How many processes each GPU card lists.
const CARD_PROCESSES: usize = 5;

/// How many of a process's latest allocator events its note shows, newest first (`page.js` alike).
const NOTE_EVENTS: usize = 3;

/// The header value that allows exactly this page's inline style and script, requests back to
/// the exporter (the JSON API) and nothing else.
pub fn content_security_policy() -> &'static str {
    static CSP: OnceLock<String> = OnceLock::new();
    CSP.get_or_init(|| {
        let hash = |s: &str| base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(s));
        format!(
            "default-src 'none'; script-src 'sha256-{}'; style-src 'sha256-{}'; connect-src 'self'; \
             img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
            hash(JS),
            hash(CSS)
        )
    })
}

/// Where a person on this machine opens the page: the listening address, or localhost when it
/// listens on every interface.
pub fn url(listen: std::net::SocketAddr, tls: bool) -> String {
    let scheme = if tls { "https" } else { "http" };
    if listen.ip().is_unspecified() {
        format!("{scheme}://localhost:{}/", listen.port())
    } else {
        format!("{scheme}://{listen}/")
    }
}

/// A process table column: its heading, whether it is numeric, and its cell. Add a column here
/// and in `COLUMNS` of `page.js`.
struct Column {
    head: &'static str,
    numeric: bool,
    /// Left out when every listed process's cell is empty (the pod outside Kubernetes).
    optional: bool,
    cell: fn(&ProcessView, &Cell) -> String,
}

/// What a cell may draw besides the process itself.
struct Cell<'a> {
    series: Option<&'a ProcessHistory>,
    now: f64,
    window: f64,
    step: f64,
}

const COLUMNS: &[Column] = &[
    Column {
        head: "process",
        optional: false,
        numeric: false,
        cell: |p, _| format!("{}<small>pid {}</small>", Html(&p.name), p.pid),
    },
    Column {
        head: "pod",
        optional: true,
        numeric: false,
        cell: |p, _| Html(&workload(p)).to_string(),
    },
    Column {
        head: "allocated",
        optional: false,
        numeric: true,
        cell: |p, _| bytes(p.allocated),
    },
    Column {
        head: "trend",
        optional: false,
        numeric: false,
        cell: |_, c| {
            c.series
                .map(|s| svg::process(s, c.now, c.window, c.step))
                .unwrap_or_default()
        },
    },
    Column {
        head: "leak",
        optional: false,
        numeric: true,
        // A dash for "not growing", so the table fits a phone.
        cell: |p, _| match p.leak_rate > 0.0 {
            true => rate(p.leak_rate),
            false => "–".to_string(),
        },
    },
];

/// The page for `s` with its history `h`; `metrics_path` is where the metrics are served.
pub fn render(s: &Snapshot, h: &HistoryResponse, metrics_path: &str) -> String {
    let mut out = String::with_capacity(CSS.len() + JS.len() + 4096 + s.gpus.len() * 6144);
    out.push_str(concat!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">",
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">",
        "<meta name=\"color-scheme\" content=\"light dark\">",
        "<noscript><meta http-equiv=\"refresh\" content=\"10\"></noscript>",
        "<title>vram-exporter</title><style>"
    ));
    out.push_str(CSS);
    out.push_str("</style></head><body>\n<header><h1>vram-exporter</h1>\n");
    let nvml = if s.nvml_up { "NVML up" } else { "NVML down" };
    let driver = if s.driver_version.is_empty() {
        "unknown"
    } else {
        s.driver_version.as_str()
    };
    let _ = writeln!(
        out,
        "<div class=\"meta\" id=\"summary\">{} GPU(s) · {} · driver {} · <span id=\"version\">vram-exporter {} ({})</span></div><nav><a href=\"{}\">{}</a><a href=\"/api/v1/gpus\">/api/v1/gpus</a><a href=\"/api/v1/history\">/api/v1/history</a><a href=\"/-/healthy\">/-/healthy</a><a href=\"/-/ready\">/-/ready</a></nav></header>",
        s.gpus.len(),
        nvml,
        Html(driver),
        crate::base::build_info::VERSION,
        Html(crate::base::build_info::REVISION),
        Html(metrics_path),
        Html(metrics_path)
    );
    let now = h.now.unwrap_or(0.0);
    let _ = writeln!(
        out,
        "<main class=\"gpus\" id=\"gpus\" data-window=\"{}\" data-now=\"{now:.0}\">",
        h.window_seconds
    );
    if s.gpus.is_empty() {
        out.push_str("<p id=\"empty\">No GPU seen yet.</p>\n");
    }
    for g in &s.gpus {
        let hist = h
            .gpus
            .iter()
            .find(|x| x.index == g.identity.index && x.uuid == g.identity.uuid);
        gpu_card(&mut out, g, hist, h);
    }
    out.push_str("</main>\n");
    timeline::render(&mut out, &h.events, now);
    let _ = writeln!(
        out,
        "<footer class=\"meta\">History: the last {} in {} s steps, at most {} per GPU in memory. <span id=\"live\">Reloads every 10 s.</span></footer>",
        human_duration(h.window_seconds as f64),
        h.step_seconds,
        bytes(h.max_bytes_per_gpu as u64)
    );
    out.push_str("<script>");
    out.push_str(JS);
    out.push_str("</script>\n</body></html>\n");
    out
}

fn gpu_card(out: &mut String, g: &GpuView, hist: Option<&GpuHistory>, h: &HistoryResponse) {
    let id = &g.identity;
    let level = g.level.as_u8();
    let _ = write!(
        out,
        "<section class=\"gpu lvl-{level}\" data-gpu=\"{}\" data-level=\"{level}\"><h2>GPU {}",
        id.index, id.index
    );
    if id.uuid.is_empty() {
        // Lost before its identity could ever be read.
        out.push_str("</h2><div class=\"legend\">identity unknown</div>\n");
    } else {
        let _ = writeln!(
            out,
            " · {}</h2><div class=\"legend\">{} · {}</div>",
            Html(&id.model),
            Html(&id.uuid),
            Html(&id.pci_bus_id)
        );
    }
    let (Some(mem), true) = (g.memory, g.up) else {
        out.push_str("<p class=\"down\"><span class=\"badge bdown\">lost</span> the GPU does not answer NVML</p></section>\n");
        return;
    };
    let total = mem.total.max(1) as f64;
    let pct = |b: u64| (b as f64 / total * 100.0).min(100.0);
    let badge = match g.level {
        Level::Ok => "b0",
        Level::Soft => "b1",
        Level::Hard => "b2",
    };
    let _ = writeln!(
        out,
        "<p class=\"now\"><span class=\"badge {badge}\">{}</span> <span class=\"alloc\">{}</span> of {} allocated ({:.1}%)</p>",
        g.level.as_str(),
        bytes(mem.allocated),
        bytes(mem.total),
        pct(mem.allocated)
    );
    out.push_str(&svg::bar(
        pct(mem.allocated),
        g.limits.map(|l| pct(l.soft)),
        g.limits.map(|l| pct(l.hard)),
    ));
    out.push_str("<p class=\"figs\">");
    if let Some(l) = g.limits {
        let _ = write!(out, "soft {} · hard {} · ", bytes(l.soft), bytes(l.hard));
    }
    let _ = write!(
        out,
        "leak <span class=\"drift\">{}</span>, <span class=\"rate\">{}</span>",
        bytes(g.leak_drift_bytes),
        rate(g.leak_rate)
    );
    if let Some(eta) = g.hard_limit_eta {
        let _ = write!(
            out,
            " · hard limit in <span class=\"eta\">{}</span>",
            human_duration(eta)
        );
    }
    if g.level != Level::Hard && g.predicted {
        out.push_str(" · <span class=\"badge soft predicted\">predicted breach</span>");
    }
    let _ = writeln!(
        out,
        " · episodes soft {} / hard {}</p>",
        g.soft_violations, g.hard_violations
    );
    let (now, window) = (h.now.unwrap_or(0.0), display_window(h));
    if let Some(hist) = hist {
        out.push_str(&svg::gpu(
            hist,
            &h.events,
            now,
            window,
            h.step_seconds as f64,
            mem.total,
        ));
        let _ = writeln!(
            out,
            "<div class=\"axis\"><span>{} ago</span><span>now</span></div>",
            human_duration(window)
        );
    }
    if !g.processes.is_empty() {
        let listed = &g.processes[..g.processes.len().min(CARD_PROCESSES)];
        let rows: Vec<Vec<String>> = listed
            .iter()
            .map(|p| {
                let cell = Cell {
                    series: hist.and_then(|x| {
                        x.processes
                            .iter()
                            .find(|s| s.pid == p.pid && p.name.starts_with(&s.name))
                    }),
                    now,
                    window,
                    step: h.process_step_seconds as f64,
                };
                COLUMNS.iter().map(|c| (c.cell)(p, &cell)).collect()
            })
            .collect();
        let shown: Vec<usize> = (0..COLUMNS.len())
            .filter(|i| !COLUMNS[*i].optional || rows.iter().any(|r| !r[*i].is_empty()))
            .collect();
        let class = |i: usize| {
            if COLUMNS[i].numeric {
                " class=\"n\""
            } else {
                ""
            }
        };
        out.push_str("<div class=\"scroll\"><table class=\"procs\"><tr>");
        for &i in &shown {
            let _ = write!(out, "<th{}>{}</th>", class(i), COLUMNS[i].head);
        }
        out.push_str("</tr>\n");
        for row in &rows {
            out.push_str("<tr>");
            for &i in &shown {
                let _ = write!(out, "<td{}>{}</td>", class(i), row[i]);
            }
            out.push_str("</tr>\n");
        }
        out.push_str("</table></div>\n");
        allocator_notes(out, g);
    }
    out.push_str("</section>\n");
}

/// The span the charts show: the shortest of 2, 5 and 10 minutes that holds all the history
/// there is, so a young exporter's charts are not mostly empty (`page.js` chooses alike).
fn display_window(h: &HistoryResponse) -> f64 {
    let now = h.now.unwrap_or(0.0);
    let oldest = h
        .gpus
        .iter()
        .filter_map(|g| g.t.first())
        .min()
        .map_or(now, |t| *t as f64);
    let span = now - oldest + h.step_seconds as f64;
    [120.0, 300.0]
        .into_iter()
        .find(|w| span <= *w)
        .unwrap_or(h.window_seconds as f64)
}

/// One line per listed process with an allocator report (`vram_client`): its cache, the memory
/// outside its allocator and its latest few events (`allocatorNotes` in `page.js` alike).
fn allocator_notes(h: &mut String, g: &crate::model::engine::GpuView) {
    for p in g.processes.iter().take(CARD_PROCESSES) {
        let Some(a) = p.allocator.as_deref() else {
            continue;
        };
        let events: Vec<String> = a
            .events
            .iter()
            .rev()
            .take(NOTE_EVENTS)
            .map(|e| {
                let mut s = e.event.clone();
                for (k, v) in &e.fields {
                    let _ = write!(s, " {k}={v}");
                }
                s
            })
            .collect();
        let event = if events.is_empty() {
            String::new()
        } else {
            format!(" · last events: {}", events.join("; "))
        };
        let _ = writeln!(
            h,
            "<p class=\"alloc\">pid {}: allocator reserved {}, reclaimable {}, outside the allocator {}{}</p>",
            p.pid,
            bytes(a.stats.reserved),
            bytes(a.stats.reclaimable()),
            bytes(p.allocated.saturating_sub(a.stats.reserved)),
            Html(&event)
        );
    }
}

/// "namespace/pod/container" as far as known, the pod UID when the names are not; empty outside
/// Kubernetes.
fn workload(p: &ProcessView) -> String {
    match p.workload.as_deref() {
        None => String::new(),
        Some(w) if w.pod.is_empty() => format!("pod {}", w.pod_uid),
        Some(w) if w.container.is_empty() => format!("{}/{}", w.namespace, w.pod),
        Some(w) => format!("{}/{}/{}", w.namespace, w.pod, w.container),
    }
}

/// Bytes for people: "78.0 GiB", "512 MiB", "3.5 KiB", "12 B".
fn bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 || v >= 100.0 {
        format!("{v:.0} {}", UNITS[unit])
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// A rate for people: "+40.0 MiB/s", or "not growing".
fn rate(bytes_per_second: f64) -> String {
    if bytes_per_second <= 0.0 {
        "not growing".to_string()
    } else {
        format!("+{}/s", bytes(bytes_per_second as u64))
    }
}

/// A duration for people: seconds, minutes or hours.
fn human_duration(secs: f64) -> String {
    if secs < 120.0 {
        format!("{secs:.0} s")
    } else if secs < 7200.0 {
        format!("{:.0} min", secs / 60.0)
    } else {
        format!("{:.1} h", secs / 3600.0)
    }
}

/// How long ago, for people: "just now", "40 s ago", "3 min ago".
fn relative(ago: f64) -> String {
    if ago < 5.0 {
        "just now".to_string()
    } else {
        format!("{} ago", human_duration(ago))
    }
}

/// Text escaped for HTML element content and attribute values.
struct Html<'a>(&'a str);

impl std::fmt::Display for Html<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for c in self.0.chars() {
            match c {
                '<' => f.write_str("&lt;")?,
                '>' => f.write_str("&gt;")?,
                '&' => f.write_str("&amp;")?,
                '"' => f.write_str("&quot;")?,
                '\'' => f.write_str("&#39;")?,
                c => std::fmt::Write::write_char(f, c)?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::history::{json::Query, History};

    #[test]
    fn escapes_process_names() {
        assert_eq!(Html("<script>&\"").to_string(), "&lt;script&gt;&amp;&quot;");
    }

    #[test]
    fn page_url() {
        assert_eq!(
            url("0.0.0.0:18726".parse().unwrap(), false),
            "http://localhost:18726/"
        );
        assert_eq!(url("[::1]:9".parse().unwrap(), true), "https://[::1]:9/");
    }

    #[test]
    fn people_units() {
        assert_eq!(bytes(78 << 30), "78.0 GiB");
        assert_eq!(bytes(512 << 20), "512 MiB");
        assert_eq!(bytes(12), "12 B");
        assert_eq!(rate(40.0 * (1 << 20) as f64), "+40.0 MiB/s");
        assert_eq!(rate(0.0), "not growing");
        assert_eq!(relative(2.0), "just now");
        assert_eq!(relative(300.0), "5 min ago");
    }

    #[test]
    fn empty_snapshot_renders() {
        let h = History::new().query(&Query::default());
        let page = render(&Snapshot::initial(), &h, "/metrics");
        assert!(page.contains("No GPU seen yet"));
        assert!(page.contains("NVML down"));
        assert!(page.contains(&format!(
            "vram-exporter {}",
            crate::base::build_info::VERSION
        )));
        let moved = render(&Snapshot::initial(), &h, "/x/metrics");
        assert!(
            moved.contains("<a href=\"/x/metrics\">/x/metrics</a>"),
            "{moved}"
        );
    }

    #[test]
    fn the_policy_allows_exactly_the_inline_style_and_script() {
        let csp = content_security_policy();
        assert!(
            csp.starts_with("default-src 'none'; script-src 'sha256-"),
            "{csp}"
        );
        assert!(!csp.contains("unsafe"), "{csp}");
        let h = History::new().query(&Query::default());
        let page = render(&Snapshot::initial(), &h, "/metrics");
        assert!(
            !page.contains(" style=\""),
            "inline style attributes are refused by the CSP"
        );
        assert!(!page.contains(" onclick="), "no inline handlers");
    }
}
