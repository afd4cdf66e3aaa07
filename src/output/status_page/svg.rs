//! The page's charts as inline SVG, drawn on the server so they read without JavaScript: a
//! sparkline per GPU (allocation over time, soft and hard limit lines, bands where a limit was
//! breached, ticks where events happened), a small one per process, and the usage bar.
//!
//! Coordinates live in a fixed view box stretched to the card's width; strokes do not scale.
//! Colours come from classes (the stylesheet has light and dark variants), never from inline
//! styles, which the Content-Security-Policy forbids. `page.js` draws the same shapes from the
//! JSON API.

use std::fmt::Write as _;

use crate::output::history::json::{EventEntry, GpuHistory, ProcessHistory};

/// The GPU sparkline's view box.
const W: f64 = 600.0;
const H: f64 = 90.0;
/// A process sparkline's view box.
const PW: f64 = 120.0;
const PH: f64 = 24.0;

/// Maps time and bytes onto the view box.
struct Scale {
    from: f64,
    span: f64,
    top: f64,
    w: f64,
    h: f64,
}

impl Scale {
    fn x(&self, t: f64) -> f64 {
        ((t - self.from) / self.span * self.w).clamp(0.0, self.w)
    }
    fn y(&self, bytes: u64) -> f64 {
        self.h - (bytes as f64 / self.top).min(1.0) * (self.h - 2.0)
    }
}

/// A path through `(t, bytes)` points: `M x y L x y ...`, each step held until the next.
fn line(s: &Scale, t: &[u64], v: &[u64], step: f64) -> String {
    let mut d = String::with_capacity(t.len() * 24);
    for (i, (t, v)) in t.iter().zip(v).enumerate() {
        let y = s.y(*v);
        let _ = write!(
            d,
            "{}{:.1} {:.1}L{:.1} {:.1}",
            if i == 0 { "M" } else { "L" },
            s.x(*t as f64),
            y,
            s.x(*t as f64 + step),
            y
        );
    }
    d
}

/// The GPU's sparkline over `[now - window, now]`, scaled to `total` bytes.
pub fn gpu(
    h: &GpuHistory,
    events: &[EventEntry],
    now: f64,
    window: f64,
    step: f64,
    total: u64,
) -> String {
    let top = h
        .allocated
        .iter()
        .copied()
        .max()
        .unwrap_or(0)
        .max(total)
        .max(1) as f64;
    let s = Scale {
        from: now - window,
        span: window,
        top,
        w: W,
        h: H,
    };
    let mut out = String::with_capacity(2048);
    let _ = write!(
        out,
        "<svg class=\"spark\" viewBox=\"0 0 {W} {H}\" preserveAspectRatio=\"none\" role=\"img\" aria-label=\"GPU {} allocation over the last {}\">",
        h.index,
        super::human_duration(window)
    );
    // Breach bands: runs of steps at soft or above, hard drawn over them.
    for (floor, class) in [(1u8, "band soft"), (2u8, "band hard")] {
        let mut run: Option<u64> = None;
        for (i, t) in h.t.iter().enumerate() {
            let hot = h.level[i] >= floor;
            match (hot, run) {
                (true, None) => run = Some(*t),
                (false, Some(start)) => {
                    band(&mut out, &s, class, start as f64, *t as f64);
                    run = None;
                }
                _ => {}
            }
        }
        if let (Some(start), Some(last)) = (run, h.t.last()) {
            band(&mut out, &s, class, start as f64, *last as f64 + step);
        }
    }
    if !h.t.is_empty() {
        let d = line(&s, &h.t, &h.allocated, step);
        let _ = write!(
            out,
            "<path class=\"area\" d=\"{d}L{:.1} {H}L{:.1} {H}Z\"/><path class=\"line\" d=\"{d}\"/>",
            s.x(*h.t.last().unwrap() as f64 + step),
            s.x(h.t[0] as f64),
        );
        for (class, v) in [("lim soft", &h.soft), ("lim hard", &h.hard)] {
            let _ = write!(
                out,
                "<path class=\"{class}\" d=\"{}\"/>",
                line(&s, &h.t, v, step)
            );
        }
    }
    for e in events.iter().filter(|e| e.gpu == h.index) {
        let x = s.x(e.t);
        let _ = write!(
            out,
            "<line class=\"tick {}\" x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"0\" y2=\"{H}\"/>",
            super::timeline::tone(e.kind)
        );
    }
    out.push_str("</svg>");
    out
}

fn band(out: &mut String, s: &Scale, class: &str, from: f64, to: f64) {
    let (x0, x1) = (s.x(from), s.x(to));
    let _ = write!(
        out,
        "<rect class=\"{class}\" x=\"{x0:.1}\" y=\"0\" width=\"{:.1}\" height=\"{H}\"/>",
        (x1 - x0).max(1.0)
    );
}

/// A process's small sparkline over the same window, scaled to its own peak.
pub fn process(p: &ProcessHistory, now: f64, window: f64, step: f64) -> String {
    let top = p.allocated.iter().copied().max().unwrap_or(0).max(1) as f64;
    let s = Scale {
        from: now - window,
        span: window,
        top,
        w: PW,
        h: PH,
    };
    format!(
        "<svg class=\"mini\" viewBox=\"0 0 {PW} {PH}\" preserveAspectRatio=\"none\" aria-hidden=\"true\"><path class=\"line\" d=\"{}\"/></svg>",
        line(&s, &p.t, &p.allocated, step)
    )
}

/// The usage bar: allocation against total with soft and hard marks (percent of total).
pub fn bar(allocated: f64, soft: Option<f64>, hard: Option<f64>) -> String {
    let mut out = format!(
        "<svg class=\"bar\" viewBox=\"0 0 100 10\" preserveAspectRatio=\"none\" aria-hidden=\"true\"><rect class=\"track\" width=\"100\" height=\"10\"/><rect class=\"fill\" width=\"{allocated:.1}\" height=\"10\"/>"
    );
    for (class, at) in [("mark soft", soft), ("mark hard", hard)] {
        if let Some(x) = at {
            let _ = write!(
                out,
                "<line class=\"{class}\" x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"0\" y2=\"10\"/>"
            );
        }
    }
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history(levels: &[u8]) -> GpuHistory {
        let n = levels.len();
        GpuHistory {
            index: 0,
            uuid: "GPU-x".into(),
            model: "m".into(),
            t: (0..n as u64).map(|i| 1000 + i * 5).collect(),
            allocated: vec![1 << 30; n],
            soft: vec![2 << 30; n],
            hard: vec![3 << 30; n],
            level: levels.to_vec(),
            leak_rate_bytes_per_second: vec![0.0; n],
            hard_limit_eta_seconds: vec![None; n],
            processes: Vec::new(),
        }
    }

    #[test]
    fn breaches_are_bands_hard_over_soft() {
        // Steps at t = 1000, 1005, ...: soft from 1005 to 1025, hard from 1010 to 1020, and a
        // soft run still open at the end.
        let svg = gpu(
            &history(&[0, 1, 2, 2, 1, 0, 1]),
            &[],
            1035.0,
            40.0,
            5.0,
            4 << 30,
        );
        assert_eq!(svg.matches("class=\"band soft\"").count(), 2, "{svg}");
        assert_eq!(svg.matches("class=\"band hard\"").count(), 1, "{svg}");
        // The window is 995 to 1035 over 600 units: the hard band starts at t = 1010 (x = 225) and
        // is 10 s (150 units) wide.
        assert!(
            svg.contains("<rect class=\"band hard\" x=\"225.0\" y=\"0\" width=\"150.0\""),
            "{svg}"
        );
        assert!(svg.contains("class=\"lim soft\"") && svg.contains("class=\"lim hard\""));
        assert!(!svg.contains("style="));
    }

    #[test]
    fn nothing_to_draw_is_an_empty_chart() {
        let svg = gpu(&history(&[]), &[], 1000.0, 600.0, 5.0, 1 << 30);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>") && !svg.contains("<path"));
    }
}
