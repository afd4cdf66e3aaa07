// The status page's script (inline, allowed by its hash in the Content-Security-Policy): redraws
// the cards, charts and timeline in place from /api/v1/gpus and /api/v1/history every 5 s,
// with the same markup the server renders (status_page.rs, svg.rs, timeline.rs).
"use strict";
(function () {
  const main = document.getElementById("gpus");
  if (!main || !window.fetch) return;
  const MAX_WINDOW = Number(main.dataset.window) || 600;
  let WINDOW = MAX_WINDOW;
  // As display_window in status_page.rs: the shortest of 2, 5 and 10 minutes holding the history.
  function displayWindow(h) {
    const firsts = h.gpus.filter((g) => g.t.length).map((g) => g.t[0]);
    const span = (h.now || 0) - (firsts.length ? Math.min(...firsts) : h.now || 0) + h.step_seconds;
    return [120, 300].find((w) => span <= w) || h.window_seconds;
  }
  const CARD_PROCESSES = 5, NOTE_EVENTS = 3;
  const W = 600, H = 90, PW = 120, PH = 24;
  const esc = (s) => String(s).replace(/[<>&"']/g, (c) => ({ "<": "&lt;", ">": "&gt;", "&": "&amp;", '"': "&quot;", "'": "&#39;" })[c]);
  const UNITS = ["B", "KiB", "MiB", "GiB", "TiB"];
  function bytes(b) {
    let v = Number(b), u = 0;
    while (v >= 1024 && u < UNITS.length - 1) { v /= 1024; u++; }
    return (u === 0 || v >= 100 ? v.toFixed(0) : v.toFixed(1)) + " " + UNITS[u];
  }
  const rate = (r) => (r > 0 ? "+" + bytes(Math.floor(r)) + "/s" : "not growing");
  function dur(s) {
    if (s < 120) return s.toFixed(0) + " s";
    if (s < 7200) return (s / 60).toFixed(0) + " min";
    return (s / 3600).toFixed(1) + " h";
  }
  const rel = (ago) => (ago < 5 ? "just now" : dur(ago) + " ago");
  function tone(k) {
    if (k === "hard_started" || k === "hard_ended" || k === "gpu_lost") return "t-hard";
    if (k === "soft_started" || k === "soft_ended") return "t-soft";
    if (k === "leak_started" || k === "leak_ended") return "t-leak";
    return k === "cleanup" ? "t-clean" : "t-info";
  }
  function sentence(e) {
    const who = e.pid !== undefined ? "pid " + e.pid + " " + esc(e.name || "") : "";
    const r = e.leak_rate_bytes_per_second || 0;
    switch (e.kind) {
      case "soft_started": return "crossed the soft limit at " + bytes(e.bytes);
      case "soft_ended": return "back under the soft limit (" + bytes(e.bytes) + ")";
      case "hard_started": return "crossed the hard limit at " + bytes(e.bytes);
      case "hard_ended": return "back under the hard limit (" + bytes(e.bytes) + ")";
      case "leak_started": return who ? who + " is leaking " + bytes(Math.floor(r)) + "/s" : "leak detected: +" + bytes(Math.floor(r)) + "/s";
      case "leak_ended": return who ? who + " stopped leaking" : "leak stopped";
      case "process_arrived": return who + " arrived with " + bytes(e.bytes);
      case "process_exited": return who + " exited";
      case "gpu_lost": return "stopped answering NVML";
      case "gpu_back": return "answers NVML again";
      case "cleanup": {
        let s = (e.trigger === "predicted" ? "predicted breach: " : "") + "cleanup <b>" + esc(e.action) + "</b>: " + esc(String(e.result).replace(/_/g, " ")) + " — " + esc(e.detail || "");
        if (e.reclaimed_bytes !== undefined) s += " · reclaimed " + bytes(e.reclaimed_bytes);
        return s;
      }
      default: return esc(e.kind);
    }
  }
  function scale(now, w, h, top) {
    return {
      x: (t) => Math.min(w, Math.max(0, ((t - (now - WINDOW)) / WINDOW) * w)),
      y: (b) => h - Math.min(1, b / top) * (h - 2),
    };
  }
  function line(s, t, v, step) {
    let d = "";
    for (let i = 0; i < t.length; i++) {
      const y = s.y(v[i]).toFixed(1);
      d += (i ? "L" : "M") + s.x(t[i]).toFixed(1) + " " + y + "L" + s.x(t[i] + step).toFixed(1) + " " + y;
    }
    return d;
  }
  function spark(g, events, now, step, total) {
    const s = scale(now, W, H, Math.max(1, total, ...g.allocated));
    let o = '<svg class="spark" viewBox="0 0 ' + W + " " + H + '" preserveAspectRatio="none" role="img" aria-label="GPU ' + g.index + " allocation over the last " + dur(WINDOW) + '">';
    const band = (cls, a, b) => {
      const x0 = s.x(a), x1 = s.x(b);
      o += '<rect class="' + cls + '" x="' + x0.toFixed(1) + '" y="0" width="' + Math.max(1, x1 - x0).toFixed(1) + '" height="' + H + '"/>';
    };
    for (const [floor, cls] of [[1, "band soft"], [2, "band hard"]]) {
      let run = null;
      g.t.forEach((t, i) => {
        const hot = g.level[i] >= floor;
        if (hot && run === null) run = t;
        else if (!hot && run !== null) { band(cls, run, t); run = null; }
      });
      if (run !== null) band(cls, run, g.t[g.t.length - 1] + step);
    }
    if (g.t.length) {
      const d = line(s, g.t, g.allocated, step);
      o += '<path class="area" d="' + d + "L" + s.x(g.t[g.t.length - 1] + step).toFixed(1) + " " + H + "L" + s.x(g.t[0]).toFixed(1) + " " + H + 'Z"/><path class="line" d="' + d + '"/>';
      o += '<path class="lim soft" d="' + line(s, g.t, g.soft, step) + '"/><path class="lim hard" d="' + line(s, g.t, g.hard, step) + '"/>';
    }
    for (const e of events) {
      if (e.gpu !== g.index) continue;
      const x = s.x(e.t).toFixed(1);
      o += '<line class="tick ' + tone(e.kind) + '" x1="' + x + '" x2="' + x + '" y1="0" y2="' + H + '"/>';
    }
    return o + "</svg>";
  }
  function mini(p, now, step) {
    const s = scale(now, PW, PH, Math.max(1, ...p.allocated));
    return '<svg class="mini" viewBox="0 0 ' + PW + " " + PH + '" preserveAspectRatio="none" aria-hidden="true"><path class="line" d="' + line(s, p.t, p.allocated, step) + '"/></svg>';
  }
  function bar(a, soft, hard) {
    let o = '<svg class="bar" viewBox="0 0 100 10" preserveAspectRatio="none" aria-hidden="true"><rect class="track" width="100" height="10"/><rect class="fill" width="' + a.toFixed(1) + '" height="10"/>';
    for (const [cls, x] of [["mark soft", soft], ["mark hard", hard]]) {
      if (x !== null) o += '<line class="' + cls + '" x1="' + x.toFixed(1) + '" x2="' + x.toFixed(1) + '" y1="0" y2="10"/>';
    }
    return o + "</svg>";
  }
  function workload(p) {
    const w = p.workload;
    if (!w) return "";
    if (!w.pod) return "pod " + w.pod_uid;
    return w.container ? w.namespace + "/" + w.pod + "/" + w.container : w.namespace + "/" + w.pod;
  }
  // The process table's columns, as in COLUMNS of status_page.rs.
  // The process table's columns, as in COLUMNS of status_page.rs: heading, numeric, optional
  // (left out when every cell is empty), cell.
  const COLUMNS = [
    ["process", false, false, (p) => esc(p.name) + "<small>pid " + p.pid + "</small>"],
    ["pod", false, true, (p) => esc(workload(p))],
    ["allocated", true, false, (p) => bytes(p.allocated)],
    ["trend", false, false, (p, c) => (c.series ? mini(c.series, c.now, c.step) : "")],
    ["leak", true, false, (p) => (p.leak_rate_bytes_per_second > 0 ? rate(p.leak_rate_bytes_per_second) : "–")],
  ];
  // As allocator_notes in status_page.rs: a line per listed process with an allocator report.
  function allocatorNotes(g) {
    let o = "";
    for (const p of g.processes.slice(0, CARD_PROCESSES)) {
      const a = p.allocator;
      if (!a) continue;
      const events = a.events.slice(-NOTE_EVENTS).reverse()
        .map((e) => [e.event, ...Object.entries(e.fields).map(([k, v]) => k + "=" + v)].join(" "));
      o += '<p class="alloc">pid ' + p.pid + ": allocator reserved " + bytes(a.reserved_bytes) + ", reclaimable " + bytes(a.reclaimable_bytes) + ", outside the allocator " + bytes(a.non_allocator_bytes) + (events.length ? esc(" · last events: " + events.join("; ")) : "") + "</p>\n";
    }
    return o;
  }
  function card(g, hist, h) {
    const lvl = { ok: 0, soft: 1, hard: 2 }[g.level] || 0;
    let o = '<section class="gpu lvl-' + lvl + '" data-gpu="' + g.index + '" data-level="' + lvl + '"><h2>GPU ' + g.index;
    if (!g.uuid) o += '</h2><div class="legend">identity unknown</div>\n';
    else o += " · " + esc(g.model) + '</h2><div class="legend">' + esc(g.uuid) + " · " + esc(g.pci_bus_id) + "</div>\n";
    const m = g.memory;
    if (!m || !g.up) return o + '<p class="down"><span class="badge bdown">lost</span> the GPU does not answer NVML</p></section>\n';
    const total = Math.max(1, m.total), pct = (b) => Math.min(100, (b / total) * 100);
    o += '<p class="now"><span class="badge b' + lvl + '">' + g.level + '</span> <span class="alloc">' + bytes(m.allocated) + "</span> of " + bytes(m.total) + " allocated (" + pct(m.allocated).toFixed(1) + "%)</p>\n";
    o += bar(pct(m.allocated), g.limits ? pct(g.limits.soft) : null, g.limits ? pct(g.limits.hard) : null);
    o += '<p class="figs">';
    if (g.limits) o += "soft " + bytes(g.limits.soft) + " · hard " + bytes(g.limits.hard) + " · ";
    o += 'leak <span class="drift">' + bytes(g.leak_drift_bytes) + '</span>, <span class="rate">' + rate(g.leak_rate_bytes_per_second) + "</span>";
    if (g.hard_limit_eta_seconds !== null) o += ' · hard limit in <span class="eta">' + dur(g.hard_limit_eta_seconds) + "</span>";
    if (g.level !== "hard" && g.cleanup_trigger === "predicted") o += ' · <span class="badge soft predicted">predicted breach</span>';
    o += " · episodes soft " + g.soft_violations + " / hard " + g.hard_violations + "</p>\n";
    const now = h.now || 0;
    if (hist) {
      o += spark(hist, h.events, now, h.step_seconds, m.total);
      o += '<div class="axis"><span>' + dur(WINDOW) + " ago</span><span>now</span></div>\n";
    }
    if (g.processes.length) {
      const rows = g.processes.slice(0, CARD_PROCESSES).map((p) => {
        const c = { now, step: h.process_step_seconds, series: hist && hist.processes.find((s) => s.pid === p.pid && p.name.startsWith(s.name)) };
        return COLUMNS.map(([, , , cell]) => cell(p, c));
      });
      const shown = COLUMNS.map((c, i) => i).filter((i) => !COLUMNS[i][2] || rows.some((r) => r[i] !== ""));
      const cls = (i) => (COLUMNS[i][1] ? ' class="n"' : "");
      o += '<div class="scroll"><table class="procs"><tr>';
      for (const i of shown) o += "<th" + cls(i) + ">" + COLUMNS[i][0] + "</th>";
      o += "</tr>\n";
      for (const r of rows) {
        o += "<tr>";
        for (const i of shown) o += "<td" + cls(i) + ">" + r[i] + "</td>";
        o += "</tr>\n";
      }
      o += "</table></div>\n";
      o += allocatorNotes(g);
    }
    return o + "</section>\n";
  }
  function timeline(events, now) {
    if (!events.length) return '<li class="ev t-info none">Nothing happened in this window yet.</li>\n';
    return events.slice().reverse().map((e) =>
      '<li class="ev ' + tone(e.kind) + '" data-kind="' + esc(e.kind) + '"><time data-t="' + e.t.toFixed(0) + '">' + rel(now - e.t) + "</time> <b>GPU " + e.gpu + "</b> " + sentence(e) + "</li>\n").join("");
  }
  const live = document.getElementById("live");
  async function refresh() {
    try {
      const [g, h] = await Promise.all([
        fetch("/api/v1/gpus", { cache: "no-store" }).then((r) => { if (!r.ok) throw new Error(r.status); return r.json(); }),
        fetch("/api/v1/history?window=" + MAX_WINDOW + "s", { cache: "no-store" }).then((r) => { if (!r.ok) throw new Error(r.status); return r.json(); }),
      ]);
      WINDOW = displayWindow(h);
      let html = g.gpus.length ? "" : '<p id="empty">No GPU seen yet.</p>\n';
      for (const gpu of g.gpus) html += card(gpu, h.gpus.find((x) => x.index === gpu.index && x.uuid === gpu.uuid), h);
      main.innerHTML = html;
      main.dataset.now = (h.now || 0).toFixed(0);
      document.getElementById("events").innerHTML = timeline(h.events, h.now || 0);
      const summary = document.getElementById("summary"), version = document.getElementById("version");
      if (summary && version) summary.innerHTML = g.gpus.length + " GPU(s) · " + (g.nvml_up ? "NVML up" : "NVML down") + " · driver " + esc(g.driver_version || "unknown") + " · " + version.outerHTML;
      if (live) live.textContent = "Live: updated every 5 s.";
      document.body.dataset.updated = String(Date.now());
    } catch (e) {
      if (live) live.textContent = "Cannot reach the exporter (" + e.message + "); retrying.";
    }
  }
  refresh();
  setInterval(refresh, 5000);
})();
