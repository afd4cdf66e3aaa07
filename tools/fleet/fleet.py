#!/usr/bin/env python3
"""Fleet-scale proof of the shipped monitoring: N vram-exporters on nvml-sim under one real Prometheus.

Starts N exporters on 127.0.0.1 (a mix of 8-GPU x 32-process nodes and 1-GPU nodes; some breach their
hard limit, some leak, the rest are normal), split over two `cluster` label values, and one Prometheus
(Debian package `prometheus`) scraping them every 15 s with the shipped alerts/vram-exporter.rules.yml.
After the run it reports:
  - series per node (by kind) and in total, and the series budget per GPU;
  - Prometheus resident memory, head series, and rule group evaluation time;
  - CPU used by the exporters and by Prometheus (cores, from /proc), and the load average;
  - p50/p95 latency of every fleet-dashboard query through the HTTP API, as shipped (reading the
    recording rules) and with every recording rule inlined (what the same panel costs on raw series);
and checks that VramHardLimitBreached fires for exactly the breaching GPUs and that no other alert fires.
Exits 1 when an alert check fails, 2 on bad input or a missing tool.

    python3 tools/fleet/fleet.py --exporter-bin target/release/vram-exporter            # 100 nodes, 4 min
    python3 tools/fleet/fleet.py --exporter-bin target/release/vram-exporter --short    # CI: 12 nodes, ~2 min
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

try:
    import yaml
except ImportError:
    sys.exit("fleet: PyYAML is required (pip install -r deploy/requirements.txt)")

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "alerts" / "vram-exporter.rules.yml"
FLEET_DASHBOARD = REPO / "dashboards" / "vram-fleet.json"
SCRAPE = 15  # seconds, as shipped
CLK_TCK = os.sysconf("SC_CLK_TCK")
GIB = 1 << 30


# ---------------------------------------------------------------------------------------------------
# The simulated fleet


def node_kind(i: int) -> tuple[str, str]:
    """(size, behaviour) of node i: every 4th node is an 8-GPU x 32-process box; nodes with i mod 20 in
    (3, 8) breach their hard limit on GPU 0 (both sizes), every 10th (offset 6) leaks on GPU 0, the rest
    are normal."""
    size = "big" if i % 4 == 0 else "small"
    behaviour = "breach" if i % 20 in (3, 8) else "leak" if i % 10 == 6 else "normal"
    return size, behaviour


def scenario(i: int) -> str:
    """nvml-sim scenario TOML of node i (80 GiB GPUs; hard limit 95% = 76 GiB by default)."""
    size, behaviour = node_kind(i)
    gpus, procs = (8, 32) if size == "big" else (1, 4)
    out = [f"# fleet node {i}: {size}, {behaviour}", 'driver_version = "550.54.15"', ""]
    for g in range(gpus):
        out += [
            "[[device]]",
            'name = "NVIDIA H100 80GB HBM3"',
            f'uuid = "GPU-f1ee7000-{i:04x}-4000-8000-{g:012x}"',
            'total = "80GiB"',
            'reserved = "512MiB"',
            'overhead = "512MiB"',
            "",
        ]
        for p in range(procs):
            pid = 1_000_000 + i * 1000 + g * 50 + p
            if g == 0 and p == 0 and behaviour == "breach":
                # The other processes hold (procs-1) GiB; with the 0.5 GiB overhead the GPU holds 77.5 GiB.
                memory = f'"{77 - (procs - 1)}GiB"'
            elif g == 0 and p == 0 and behaviour == "leak":
                memory = '{ linear = { start = "2GiB", rate = "40MiB/s", cap = "30GiB" } }'
            elif p == 1 and not (g == 0 and behaviour == "breach"):
                memory = '{ sawtooth = { low = "1GiB", high = "6GiB", period = "20s" } }'
            else:
                memory = '"1GiB"'
            out += ["[[device.process]]", f"pid = {pid}", f'name = "job-{p}"', f"memory = {memory}", ""]
    return "\n".join(out)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------------------------------
# HTTP and /proc


def http_get(url: str, timeout: float = 30) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return resp.read()


def prom_api(base: str, path: str, **params: str) -> dict:
    body = json.loads(http_get(f"{base}{path}?{urllib.parse.urlencode(params)}"))
    if body.get("status") != "success":
        raise RuntimeError(f"{path} {params}: {body}")
    return body["data"]


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except (OSError, IndexError):
        return 0.0


def rss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def metric_values(text: str, name: str) -> list[tuple[str, float]]:
    """(labels, value) of every sample of `name` in a Prometheus text exposition."""
    out = []
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            head, _, value = line.rpartition(" ")
            out.append((head[len(name):], float(value)))
    return out


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


# ---------------------------------------------------------------------------------------------------
# Dashboard queries, as shipped and with recording rules inlined


def dashboard_queries(window: int) -> list[dict]:
    dash = json.loads(FLEET_DASHBOARD.read_text())
    subst = {"cluster": ".*", "job": "vram-exporter", "node": ".*", "gpu": ".*", "namespace": ".*",
             "__rate_interval": "1m", "__interval": f"{SCRAPE}s", "__range": f"{window}s"}
    out = []

    def walk(panels):
        for p in panels:
            yield p
            yield from walk(p.get("panels", []))

    for panel in walk(dash["panels"]):
        for t in panel.get("targets", []):
            expr = re.sub(r"\$\{?(\w+)\}?", lambda m: subst[m.group(1)], t["expr"])
            out.append({"panel": f'{panel["id"]} {panel["title"]} {t["refId"]}', "expr": expr, "instant": t.get("instant", False)})
    return out


def inline_recording_rules(expr: str, records: dict[str, str]) -> str:
    """Replaces every recording rule name (and its matchers, no-ops with All selected) by its expression."""
    for _ in range(3):  # rules may read other rules
        for name, rule_expr in records.items():
            expr = re.sub(r"(?<![\w:])" + re.escape(name) + r"(\{[^}]*\})?(?![\w:])", "(" + " ".join(rule_expr.split()) + ")", expr)
    return expr


def time_query(base: str, q: dict, expr: str, window: int, repeats: int) -> tuple[list[float], int]:
    times, series = [], 0
    for _ in range(repeats):
        now = time.time()
        t0 = time.perf_counter()
        if q["instant"]:
            data = prom_api(base, "/api/v1/query", query=expr, time=f"{now:.3f}")
        else:
            data = prom_api(base, "/api/v1/query_range", query=expr, start=f"{now - window:.3f}", end=f"{now:.3f}", step=str(SCRAPE))
        times.append(time.perf_counter() - t0)
        series = len(data["result"])
    return times, series


# ---------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--exporter-bin", default=str(REPO / "target" / "release" / "vram-exporter"))
    ap.add_argument("--prometheus", default=shutil.which("prometheus") or "prometheus")
    ap.add_argument("--exporters", type=int, default=100)
    ap.add_argument("--duration", type=int, default=240, help="seconds of scraping before measuring")
    ap.add_argument("--repeats", type=int, default=20, help="runs of each dashboard query")
    ap.add_argument("--short", action="store_true", help="CI form: 12 exporters, 75 s, 5 repeats")
    ap.add_argument("--json", type=Path, help="also write the report as JSON here")
    ap.add_argument("--benchmarks", type=Path, help="write the report as the fleet section of this BENCHMARKS.md")
    args = ap.parse_args(argv)
    if args.short:
        args.exporters, args.duration, args.repeats = 12, 75, 5
    if args.exporters < 10:
        print("fleet: --exporters must be >= 10 (the mix needs breaching, leaking and normal nodes)", file=sys.stderr)
        return 2
    exporter = Path(args.exporter_bin)
    if not exporter.is_file():
        print(f"fleet: --exporter-bin {exporter}: not a file (cargo build --release --workspace)", file=sys.stderr)
        return 2
    if not shutil.which(args.prometheus):
        print(f"fleet: --prometheus {args.prometheus}: not found (Debian package prometheus)", file=sys.stderr)
        return 2

    work = Path(tempfile.mkdtemp(prefix="vram-fleet-"))
    procs: list[subprocess.Popen] = []
    try:
        return run(args, exporter, work, procs)
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        shutil.rmtree(work, ignore_errors=True)


def run(args, exporter: Path, work: Path, procs: list[subprocess.Popen]) -> int:
    n = args.exporters
    nodes = []
    env = {k: v for k, v in os.environ.items() if not k.startswith("VRAM_EXPORTER__")}
    env["VRAM_EXPORTER__POLL__INTERVAL"] = "1s"
    for i in range(n):
        path = work / f"node-{i:03d}.toml"
        path.write_text(scenario(i))
        port = free_port()
        log = open(work / f"node-{i:03d}.log", "wb")
        p = subprocess.Popen([str(exporter), "--simulate", str(path), "--listen", f"127.0.0.1:{port}"],
                             stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        procs.append(p)
        size, behaviour = node_kind(i)
        nodes.append({"i": i, "port": port, "pid": p.pid, "size": size, "behaviour": behaviour,
                      "instance": f"127.0.0.1:{port}", "cluster": "fleet-a" if i % 2 == 0 else "fleet-b"})
    deadline = time.time() + 60
    for node in nodes:
        while True:
            try:
                http_get(f"http://{node['instance']}/metrics", timeout=5)
                break
            except OSError:
                if time.time() > deadline:
                    log = (work / "node-{:03d}.log".format(node["i"])).read_text()
                    print(f"fleet: exporter {node['i']} did not answer; log:\n{log[-2000:]}", file=sys.stderr)
                    return 2
                time.sleep(0.2)
    print(f"fleet: {n} exporters up ({sum(x['size'] == 'big' for x in nodes)} of 8 GPUs x 32 processes, "
          f"{sum(x['size'] == 'small' for x in nodes)} of 1 GPU; {sum(x['behaviour'] == 'breach' for x in nodes)} breaching, "
          f"{sum(x['behaviour'] == 'leak' for x in nodes)} leaking)")

    prom_port = free_port()
    config = {
        "global": {"scrape_interval": f"{SCRAPE}s", "evaluation_interval": f"{SCRAPE}s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [{
            "job_name": "vram-exporter",
            "static_configs": [
                {"targets": [x["instance"] for x in nodes if x["cluster"] == c], "labels": {"cluster": c}}
                for c in ("fleet-a", "fleet-b")
            ],
        }],
    }
    (work / "prometheus.yml").write_text(yaml.safe_dump(config))
    prom_log = open(work / "prometheus.log", "wb")
    prom = subprocess.Popen([args.prometheus, f"--config.file={work / 'prometheus.yml'}",
                             f"--storage.tsdb.path={work / 'tsdb'}", f"--web.listen-address=127.0.0.1:{prom_port}"],
                            stdout=prom_log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    procs.append(prom)
    base = f"http://127.0.0.1:{prom_port}"
    deadline = time.time() + 60
    while True:
        try:
            http_get(f"{base}/-/ready", timeout=2)
            break
        except OSError:
            if time.time() > deadline or prom.poll() is not None:
                print(f"fleet: prometheus did not become ready:\n{(work / 'prometheus.log').read_text()[-2000:]}", file=sys.stderr)
                return 2
            time.sleep(0.5)

    # Run: sample CPU, memory and rule evaluation time every scrape interval.
    cpu0 = {x["pid"]: cpu_seconds(x["pid"]) for x in nodes}
    prom_cpu0, t0 = cpu_seconds(prom.pid), time.time()
    load0 = os.getloadavg()
    prom_rss, eval_times = [], {}
    print(f"fleet: scraping every {SCRAPE}s for {args.duration}s ...", flush=True)
    while time.time() - t0 < args.duration:
        time.sleep(SCRAPE)
        prom_rss.append(rss_bytes(prom.pid))
        text = http_get(f"{base}/metrics").decode()
        for labels, value in metric_values(text, "prometheus_rule_group_last_duration_seconds"):
            group = re.search(r'rule_group="[^"]*;([^"]*)"', labels).group(1)
            eval_times.setdefault(group, []).append(value)
    elapsed = time.time() - t0
    exporter_cpu = sum(cpu_seconds(x["pid"]) - cpu0[x["pid"]] for x in nodes) / elapsed
    prom_cpu = (cpu_seconds(prom.pid) - prom_cpu0) / elapsed
    load = os.getloadavg()
    exporter_rss = [rss_bytes(x["pid"]) for x in nodes]
    prom_text = http_get(f"{base}/metrics").decode()
    head_series = metric_values(prom_text, "prometheus_tsdb_head_series")[0][1]

    # Series per node.
    per_instance = {r["metric"]["instance"]: int(float(r["value"][1]))
                    for r in prom_api(base, "/api/v1/query", query='count by (instance) ({job="vram-exporter",__name__!~".*:.*"})')["result"]}
    recorded = int(float(prom_api(base, "/api/v1/query", query='count({__name__=~".+:.+"})')["result"][0]["value"][1]))
    report: dict = {"exporters": n, "duration_s": round(elapsed), "repeats": args.repeats, "series": {}}
    for size, gpus in (("big", 8), ("small", 1)):
        counts = [per_instance.get(x["instance"], 0) for x in nodes if x["size"] == size]
        if counts:
            report["series"][size] = {"gpus": gpus, "nodes": len(counts), "median_per_node": statistics.median(counts),
                                      "max_per_node": max(counts), "per_gpu": round(statistics.median(counts) / gpus, 1)}
    report["series"]["scraped_total"] = sum(per_instance.values())
    report["series"]["recorded_total"] = recorded
    report["series"]["head_total"] = int(head_series)
    report["prometheus"] = {
        "rss_mib_median": round(statistics.median(prom_rss) / 2**20, 1),
        "rss_mib_max": round(max(prom_rss) / 2**20, 1),
        "cpu_cores": round(prom_cpu, 3),
        "rule_eval_ms": {g: {"median": round(statistics.median(v) * 1000, 2), "max": round(max(v) * 1000, 2)} for g, v in sorted(eval_times.items())},
    }
    report["exporters_cpu_cores"] = round(exporter_cpu, 3)
    report["exporter_rss_mib_median"] = round(statistics.median(exporter_rss) / 2**20, 1)
    report["loadavg_1m"] = {"start": round(load0[0], 2), "end": round(load[0], 2)}

    # Dashboard query latency, shipped vs recording rules inlined.
    records = {r["record"]: r["expr"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"] if "record" in r}
    window = min(3600, int(elapsed))
    queries = []
    for q in dashboard_queries(window):
        shipped_t, shipped_n = time_query(base, q, q["expr"], window, args.repeats)
        entry = {"panel": q["panel"], "series": shipped_n,
                 "shipped_ms": {"p50": round(pct(shipped_t, 0.5) * 1000, 2), "p95": round(pct(shipped_t, 0.95) * 1000, 2)}}
        raw = inline_recording_rules(q["expr"], records)
        if raw != q["expr"]:
            raw_t, raw_n = time_query(base, q, raw, window, args.repeats)
            entry["raw_ms"] = {"p50": round(pct(raw_t, 0.5) * 1000, 2), "p95": round(pct(raw_t, 0.95) * 1000, 2)}
            entry["raw_series"] = raw_n
        queries.append(entry)
    report["queries"] = queries

    # Alerts: VramHardLimitBreached for exactly GPU 0 of each breaching node; nothing else firing.
    alerts = prom_api(base, "/api/v1/alerts")["alerts"]
    firing = [a for a in alerts if a["state"] == "firing"]
    breached = {(a["labels"]["instance"], a["labels"]["gpu"]) for a in firing if a["labels"]["alertname"] == "VramHardLimitBreached"}
    expected = {(x["instance"], "0") for x in nodes if x["behaviour"] == "breach"}
    others = sorted({f'{a["labels"]["alertname"]} {a["labels"].get("instance", "")}' for a in firing
                     if a["labels"]["alertname"] != "VramHardLimitBreached"})
    clusters_ok = all(a["labels"].get("cluster") in ("fleet-a", "fleet-b") for a in firing)
    pending = sorted({a["labels"]["alertname"] for a in alerts if a["state"] == "pending"})
    report["alerts"] = {"hard_breached_expected": len(expected), "hard_breached_firing": len(breached),
                        "missing": sorted(f"{i} gpu {g}" for i, g in expected - breached),
                        "unexpected": sorted(f"{i} gpu {g}" for i, g in breached - expected),
                        "other_firing": others, "pending": pending}
    print_report(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    if args.benchmarks:
        write_benchmarks(args.benchmarks, report)
    problems = []
    if breached != expected:
        problems.append(f"VramHardLimitBreached fired for {len(breached)} GPUs, expected {len(expected)}")
    if others:
        problems.append(f"other alerts fire: {others}")
    if not clusters_ok:
        problems.append("a firing alert lacks its cluster label")
    for p in problems:
        print(f"fleet: FAIL {p}", file=sys.stderr)
    return 1 if problems else 0


BEGIN, END = "<!-- fleet:begin (tools/fleet/fleet.py --benchmarks) -->", "<!-- fleet:end -->"


def write_benchmarks(path: Path, r: dict) -> None:
    """Replaces (or appends) the fleet section of BENCHMARKS.md, between its markers."""
    s, p, a = r["series"], r["prometheus"], r["alerts"]
    lines = [BEGIN, "## Fleet scale: 100 exporters under one Prometheus (series budget per GPU and per node)", "",
             f"Generated by `tools/fleet/fleet.py` on {time.strftime('%Y-%m-%d')}: {r['exporters']} vram-exporters on nvml-sim "
             f"(poll every 1 s) on 127.0.0.1, one Prometheus (Debian package) scraping them every {SCRAPE} s with the shipped "
             f"rules, {r['duration_s']} s of scraping, then every fleet-dashboard query {r['repeats']} times through the HTTP API "
             f"(range queries over the run, step {SCRAPE} s; variables at All). Same 2-core shared machine as above; "
             f"1-minute load average {r['loadavg_1m']['start']} at the start, {r['loadavg_1m']['end']} at the end.", "",
             "| node | nodes | series per node (median) | series per GPU |", "|---|---|---|---|"]
    for size, label in (("big", "8 GPUs x 32 processes (16 published per GPU)"), ("small", "1 GPU x 4 processes")):
        if size in s:
            lines.append(f"| {label} | {s[size]['nodes']} | {s[size]['median_per_node']:.0f} | {s[size]['per_gpu']} |")
    lines += ["", f"- series: {s['scraped_total']} scraped, {s['recorded_total']} from the recording rules, {s['head_total']} in the head block",
              f"- Prometheus: resident memory median {p['rss_mib_median']} MiB (max {p['rss_mib_max']}), CPU {p['cpu_cores']} cores",
              "- rule group evaluation time (median / max over the run): "
              + "; ".join(f"`{g}` {v['median']} / {v['max']} ms" for g, v in p["rule_eval_ms"].items()),
              f"- the {r['exporters']} exporters together: CPU {r['exporters_cpu_cores']} cores; resident memory median {r['exporter_rss_mib_median']} MiB each",
              f"- alerts: `VramHardLimitBreached` firing for {a['hard_breached_firing']} of {a['hard_breached_expected']} breaching GPUs, "
              f"none for other GPUs; no other alert firing ({', '.join(a['pending']) or 'nothing'} pending, as its `for` had not elapsed)", "",
              "Fleet dashboard queries, ms (p50 / p95). *raw*: the same panel with every recording rule inlined, i.e. what it would cost on raw series.", "",
              "| panel | series | shipped p50 | p95 | raw p50 | p95 |", "|---|---|---|---|---|---|"]
    for q in r["queries"]:
        raw = f"{q['raw_ms']['p50']} | {q['raw_ms']['p95']}" if "raw_ms" in q else "– | –"
        lines.append(f"| {q['panel']} | {q['series']} | {q['shipped_ms']['p50']} | {q['shipped_ms']['p95']} | {raw} |")
    lines.append(END)
    section = "\n".join(lines) + "\n"
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    if BEGIN in text and END in text:
        head, _, rest = text.partition(BEGIN)
        text = head + section + rest.partition(END + "\n")[2]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text, encoding="utf-8")


def print_report(r: dict) -> None:
    print(f"\nfleet report: {r['exporters']} exporters, {r['duration_s']} s of scraping every {SCRAPE} s")
    s = r["series"]
    for size in ("big", "small"):
        if size in s:
            x = s[size]
            print(f"  series, {x['gpus']}-GPU nodes ({x['nodes']}): median {x['median_per_node']:.0f} per node (max {x['max_per_node']}), {x['per_gpu']} per GPU")
    print(f"  series: {s['scraped_total']} scraped, {s['recorded_total']} from recording rules, {s['head_total']} in the head block")
    p = r["prometheus"]
    print(f"  prometheus: RSS median {p['rss_mib_median']} MiB (max {p['rss_mib_max']}), CPU {p['cpu_cores']} cores")
    for g, v in p["rule_eval_ms"].items():
        print(f"  rule group {g}: evaluation median {v['median']} ms, max {v['max']} ms")
    print(f"  exporters: CPU {r['exporters_cpu_cores']} cores together, RSS median {r['exporter_rss_mib_median']} MiB each; "
          f"load average {r['loadavg_1m']['start']} -> {r['loadavg_1m']['end']}")
    print("  fleet dashboard queries (ms, p50/p95; raw = recording rules inlined):")
    for q in r["queries"]:
        raw = f"   raw {q['raw_ms']['p50']}/{q['raw_ms']['p95']}" if "raw_ms" in q else ""
        print(f"    {q['panel'][:58]:58} {q['shipped_ms']['p50']:>8}/{q['shipped_ms']['p95']:<8}{raw}")
    a = r["alerts"]
    print(f"  alerts: VramHardLimitBreached firing for {a['hard_breached_firing']} GPUs (expected {a['hard_breached_expected']}); "
          f"other firing: {a['other_firing'] or 'none'}; pending: {', '.join(a['pending']) or 'none'}")


if __name__ == "__main__":
    sys.exit(main())
