//! The status page at `/`: every GPU at a glance, readable by a person without Grafana.
//!
//! Rendered from the newest snapshot on each request; self-contained (inline CSS, no scripts or
//! external assets) and refreshing itself every few seconds.

use std::fmt::Write as _;

use crate::engine::{GpuView, Snapshot};
use crate::policy::Level;

/// How many processes each GPU card lists.
const CARD_PROCESSES: usize = 5;

/// The page for `s`; `metrics_path` is where the metrics are served (`web.telemetry_path`).
pub fn render(s: &Snapshot, metrics_path: &str) -> String {
    let mut h = String::with_capacity(4096 + s.gpus.len() * 2048);
    h.push_str(concat!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">",
        "<meta http-equiv=\"refresh\" content=\"5\">",
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">",
        "<title>vram-exporter</title><style>",
        "body{font-family:system-ui,sans-serif;margin:1.5rem;color:#1d2430;background:#f6f7f9}",
        "h1{font-size:1.4rem;margin:0 0 .3rem}.meta{color:#5b6472;margin-bottom:1rem}",
        ".gpus{display:grid;grid-template-columns:repeat(auto-fill,minmax(22rem,1fr));gap:1rem}",
        ".gpu{background:#fff;border:1px solid #d8dce3;border-radius:8px;padding:1rem}",
        ".gpu h2{font-size:1.05rem;margin:0 0 .5rem}.bar{position:relative;height:1.4rem;background:#e8ebf0;border-radius:4px;overflow:hidden}",
        ".fill{height:100%;background:#3b82f6}.lvl-1 .fill{background:#f59e0b}.lvl-2 .fill{background:#dc2626}",
        ".mark{position:absolute;top:0;bottom:0;width:2px}.mark.soft{background:#b45309}.mark.hard{background:#7f1d1d}",
        ".badge{display:inline-block;padding:0 .5rem;border-radius:1rem;font-size:.8rem;color:#fff}",
        ".b0{background:#16a34a}.b1{background:#d97706}.b2{background:#dc2626}.bdown{background:#6b7280}",
        "table{width:100%;border-collapse:collapse;font-size:.85rem;margin-top:.5rem}td,th{text-align:left;padding:.15rem .3rem}",
        "td.n,th.n{text-align:right}.down{color:#6b7280}.legend{font-size:.8rem;color:#5b6472;margin:.3rem 0}",
        "nav a{margin-right:1rem}</style></head><body>\n",
        "<h1>vram-exporter</h1>\n"
    ));
    let nvml = if s.nvml_up { "NVML up" } else { "NVML down" };
    let driver = if s.driver_version.is_empty() {
        "unknown"
    } else {
        s.driver_version.as_str()
    };
    let _ = writeln!(
        h,
        "<div class=\"meta\" id=\"summary\">{} GPU(s) · {} · driver {} · <span id=\"version\">vram-exporter {} ({})</span> · <nav style=\"display:inline\"><a href=\"{}\">{}</a><a href=\"/api/v1/gpus\">/api/v1/gpus</a><a href=\"/-/healthy\">/-/healthy</a><a href=\"/-/ready\">/-/ready</a></nav></div>",
        s.gpus.len(),
        nvml,
        Html(driver),
        crate::build_info::VERSION,
        Html(crate::build_info::REVISION),
        Html(metrics_path),
        Html(metrics_path)
    );
    if s.gpus.is_empty() {
        h.push_str("<p id=\"empty\">No GPU seen yet.</p>\n");
    }
    h.push_str("<div class=\"gpus\">\n");
    for g in &s.gpus {
        gpu_card(&mut h, g);
    }
    h.push_str("</div>\n</body></html>\n");
    h
}

fn gpu_card(h: &mut String, g: &GpuView) {
    let id = &g.identity;
    let level = g.level.as_u8();
    let _ = write!(
        h,
        "<section class=\"gpu lvl-{level}\" data-gpu=\"{}\" data-level=\"{level}\"><h2>GPU {}",
        id.index, id.index
    );
    if id.uuid.is_empty() {
        // Lost before its identity could ever be read.
        h.push_str("</h2><div class=\"legend\">identity unknown</div>\n");
    } else {
        let _ = writeln!(
            h,
            " · {}</h2><div class=\"legend\">{} · {}</div>",
            Html(&id.model),
            Html(&id.uuid),
            Html(&id.pci_bus_id)
        );
    }
    let (Some(mem), true) = (g.memory, g.up) else {
        h.push_str("<p class=\"down\"><span class=\"badge bdown\">lost</span> the GPU does not answer NVML</p></section>\n");
        return;
    };
    let total = mem.total.max(1) as f64;
    let pct = |b: u64| (b as f64 / total * 100.0).min(100.0);
    let badge = match g.level {
        Level::Ok => "b0",
        Level::Soft => "b1",
        Level::Hard => "b2",
    };
    let word = g.level.as_str();
    let _ = write!(
        h,
        "<div class=\"bar\" title=\"allocated {} of {}\"><div class=\"fill\" style=\"width:{:.1}%\"></div>",
        gib(mem.allocated),
        gib(mem.total),
        pct(mem.allocated)
    );
    if let Some(l) = g.limits {
        let _ = write!(
            h,
            "<div class=\"mark soft\" style=\"left:{:.1}%\" title=\"soft {}\"></div><div class=\"mark hard\" style=\"left:{:.1}%\" title=\"hard {}\"></div>",
            pct(l.soft),
            gib(l.soft),
            pct(l.hard),
            gib(l.hard)
        );
    }
    h.push_str("</div>\n");
    let _ = writeln!(
        h,
        "<p><span class=\"badge {badge}\">{word}</span> <span class=\"alloc\">{}</span> of {} allocated ({:.1}%)",
        gib(mem.allocated),
        gib(mem.total),
        pct(mem.allocated)
    );
    if let Some(l) = g.limits {
        let _ = write!(h, " · soft {} · hard {}", gib(l.soft), gib(l.hard));
    }
    let _ = write!(
        h,
        "<br>leak <span class=\"drift\">{}</span> at <span class=\"rate\">{}/s</span>",
        gib(g.leak_drift_bytes),
        mib(g.leak_rate)
    );
    if let Some(eta) = g.hard_limit_eta {
        let _ = write!(
            h,
            " · hard limit in <span class=\"eta\">{}</span>",
            duration(eta)
        );
    }
    if g.level != Level::Hard && g.predicted {
        h.push_str(" · <span class=\"badge soft predicted\">predicted breach</span>");
    }
    let _ = writeln!(
        h,
        " · violations soft {} / hard {}</p>",
        g.soft_violations, g.hard_violations
    );
    if !g.processes.is_empty() {
        h.push_str("<table><tr><th>pid</th><th>process</th><th>pod</th><th class=\"n\">allocated</th><th class=\"n\">leak</th><th class=\"n\">rate</th></tr>\n");
        for p in g.processes.iter().take(CARD_PROCESSES) {
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}/s</td></tr>",
                p.pid,
                Html(&p.name),
                Html(&workload(p)),
                gib(p.allocated),
                gib(p.leak_drift_bytes),
                mib(p.leak_rate)
            );
        }
        h.push_str("</table>\n");
        allocator_notes(h, g);
    }
    h.push_str("</section>\n");
}

/// One line per listed process with an allocator report (`vram_client`): its cache, the memory
/// outside its allocator and its latest event.
fn allocator_notes(h: &mut String, g: &crate::engine::GpuView) {
    for p in g.processes.iter().take(CARD_PROCESSES) {
        let Some(a) = p.allocator.as_deref() else {
            continue;
        };
        let event = a.events.last().map_or(String::new(), |e| {
            let fields: Vec<String> = e.fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
            format!(" · last event {} {}", e.event, fields.join(" "))
        });
        let _ = writeln!(
            h,
            "<p class=\"alloc\">pid {}: allocator reserved {}, reclaimable {}, outside the allocator {}{}</p>",
            p.pid,
            gib(a.stats.reserved),
            gib(a.stats.reclaimable()),
            gib(p.allocated.saturating_sub(a.stats.reserved)),
            Html(&event)
        );
    }
}

/// "namespace/pod/container" as far as known, the pod UID when the names are not; empty outside
/// Kubernetes.
fn workload(p: &crate::engine::ProcessView) -> String {
    match p.workload.as_deref() {
        None => String::new(),
        Some(w) if w.pod.is_empty() => format!("pod {}", w.pod_uid),
        Some(w) if w.container.is_empty() => format!("{}/{}", w.namespace, w.pod),
        Some(w) => format!("{}/{}/{}", w.namespace, w.pod, w.container),
    }
}

fn gib(bytes: u64) -> String {
    format!("{:.2} GiB", bytes as f64 / (1u64 << 30) as f64)
}

fn mib(bytes: f64) -> String {
    format!("{:.1} MiB", bytes / (1u64 << 20) as f64)
}

/// A duration for people: seconds, minutes or hours.
fn duration(secs: f64) -> String {
    if secs < 120.0 {
        format!("{secs:.0} s")
    } else if secs < 7200.0 {
        format!("{:.0} min", secs / 60.0)
    } else {
        format!("{:.1} h", secs / 3600.0)
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

    #[test]
    fn escapes_process_names() {
        assert_eq!(Html("<script>&\"").to_string(), "&lt;script&gt;&amp;&quot;");
    }

    #[test]
    fn empty_snapshot_renders() {
        let page = render(&Snapshot::initial(), "/metrics");
        assert!(page.contains("No GPU seen yet"));
        assert!(page.contains("NVML down"));
        assert!(page.contains(&format!("vram-exporter {}", crate::build_info::VERSION)));
        let moved = render(&Snapshot::initial(), "/x/metrics");
        assert!(
            moved.contains("<a href=\"/x/metrics\">/x/metrics</a>"),
            "{moved}"
        );
    }
}
