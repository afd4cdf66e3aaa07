//! The event timeline: the history's events, newest first, each with a relative time and a
//! sentence a person reads at a glance (episodes, leaks, processes, cleanups and what they
//! reclaimed). `page.js` writes the same sentences from the JSON API.

use std::fmt::Write as _;

use super::{bytes, relative, Html};
use crate::output::history::json::EventEntry;

/// The colour family of an event kind (a class in the stylesheet).
pub fn tone(kind: &str) -> &'static str {
    match kind {
        "hard_started" | "hard_ended" | "gpu_lost" => "t-hard",
        "soft_started" | "soft_ended" => "t-soft",
        "leak_started" | "leak_ended" => "t-leak",
        "cleanup" => "t-clean",
        _ => "t-info",
    }
}

/// What happened, as a sentence (without the GPU and the time).
fn sentence(e: &EventEntry) -> String {
    let who = match e.pid {
        Some(pid) => format!("pid {pid} {}", Html(&e.name)),
        None => String::new(),
    };
    let rate = e.leak_rate_bytes_per_second.unwrap_or(0.0);
    match e.kind {
        "soft_started" => format!("crossed the soft limit at {}", bytes(e.bytes)),
        "soft_ended" => format!("back under the soft limit ({})", bytes(e.bytes)),
        "hard_started" => format!("crossed the hard limit at {}", bytes(e.bytes)),
        "hard_ended" => format!("back under the hard limit ({})", bytes(e.bytes)),
        "leak_started" if e.pid.is_some() => {
            format!("{who} is leaking {}/s", bytes(rate as u64))
        }
        "leak_started" => format!("leak detected: +{}/s", bytes(rate as u64)),
        "leak_ended" if e.pid.is_some() => format!("{who} stopped leaking"),
        "leak_ended" => "leak stopped".to_string(),
        "process_arrived" => format!("{who} arrived with {}", bytes(e.bytes)),
        "process_exited" => format!("{who} exited"),
        "gpu_lost" => "stopped answering NVML".to_string(),
        "gpu_back" => "answers NVML again".to_string(),
        "cleanup" => {
            let mut s = format!(
                "{}cleanup <b>{}</b>: {} — {}",
                if e.trigger == "predicted" {
                    "predicted breach: "
                } else {
                    ""
                },
                Html(e.action),
                Html(&e.result.replace('_', " ")),
                Html(&e.detail)
            );
            if let Some(r) = e.reclaimed_bytes {
                let _ = write!(s, " · reclaimed {}", bytes(r));
            }
            s
        }
        other => Html(other).to_string(),
    }
}

/// The timeline as an ordered list, newest first; `now` is the newest snapshot's unix time.
pub fn render(out: &mut String, events: &[EventEntry], now: f64) {
    out.push_str(
        "<section class=\"timeline\"><h2>Events</h2><ol class=\"events\" id=\"events\">\n",
    );
    if events.is_empty() {
        out.push_str("<li class=\"ev t-info none\">Nothing happened in this window yet.</li>\n");
    }
    for e in events.iter().rev() {
        let _ = writeln!(
            out,
            "<li class=\"ev {}\" data-kind=\"{}\"><time data-t=\"{:.0}\">{}</time> <b>GPU {}</b> {}</li>",
            tone(e.kind),
            e.kind,
            e.t,
            relative(now - e.t),
            e.gpu,
            sentence(e)
        );
    }
    out.push_str("</ol></section>\n");
}
