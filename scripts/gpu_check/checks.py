# checks.py: gpu-check's judging logic as pure functions (no GPU, no processes), so it can be unit-tested.
"""Pure parts of gpu-check: parsing sizes and expositions, comparing readings, judging reactions and
leak rates, and rendering the report. Nothing here touches NVML, PyTorch, processes or the clock.
"""

import re

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KiB|MiB|GiB|TiB|KB|MB|GB|TB)?\s*$")
_SIZE_UNITS = {
    None: 1, "B": 1, "KiB": KIB, "MiB": MIB, "GiB": GIB, "TiB": 1024 * GIB,
    "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m)?\s*$")
_DURATION_UNITS = {None: 1.0, "s": 1.0, "ms": 0.001, "m": 60.0}


def parse_size(text):
    """'1GiB', '512MiB', '3GB' or plain bytes → bytes (int). ValueError names the value and why."""
    m = _SIZE.match(str(text))
    if not m:
        raise ValueError(f"{text!r} is not a size (examples: 1GiB, 512MiB, 2000000000)")
    value = int(float(m.group(1)) * _SIZE_UNITS[m.group(2)])
    if value <= 0:
        raise ValueError(f"{text!r} must be more than 0 bytes")
    return value


def parse_duration(text):
    """'250ms', '2s', '1m' or plain seconds → seconds (float)."""
    m = _DURATION.match(str(text))
    if not m:
        raise ValueError(f"{text!r} is not a duration (examples: 250ms, 2s, 1m)")
    value = float(m.group(1)) * _DURATION_UNITS[m.group(2)]
    if value <= 0:
        raise ValueError(f"{text!r} must be longer than 0")
    return value


def fmt_bytes(n):
    """Bytes as MiB/GiB for the report, exact bytes kept for small values."""
    if n is None:
        return "n/a"
    n = float(n)
    if abs(n) >= GIB:
        return f"{n / GIB:.2f} GiB"
    if abs(n) >= MIB:
        return f"{n / MIB:.1f} MiB"
    if abs(n) >= KIB:
        return f"{n / KIB:.0f} KiB"
    return f"{n:.0f} B"


# --- the exporter's exposition -------------------------------------------------------------------

_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\d+)?$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_exposition(text):
    """The Prometheus text format → list of (name, {label: value}, float).

    A small parser rather than prometheus_client's: gpu-check must run with nothing but Python on a
    GPU node, and it only reads the exporter's own (well-formed) output."""
    samples = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if not m:
            continue
        labels = {}
        for k, v in _LABEL.findall(m.group(2) or ""):
            labels[k] = v.replace('\\"', '"').replace("\\n", "\n").replace("\\\\", "\\")
        try:
            value = float(m.group(3))
        except ValueError:
            continue
        samples.append((m.group(1), labels, value))
    return samples


def value(samples, name, **labels):
    """The first sample of `name` whose labels include `labels` (values compared as strings)."""
    want = {k: str(v) for k, v in labels.items()}
    for n, ls, v in samples:
        if n == name and all(ls.get(k) == x for k, x in want.items()):
            return v
    return None


def has_family(samples, name):
    return any(n == name for n, _, _ in samples)


def exported_gpus(samples):
    """Per GPU index (int): total/allocated/reserved/free and {pid: bytes} from an exposition."""
    gpus = {}
    fields = {
        "vram_total_bytes": "total",
        "vram_allocated_bytes": "used",
        "vram_reserved_bytes": "reserved",
        "vram_free_bytes": "free",
    }
    for name, labels, v in samples:
        if name in fields and "gpu" in labels:
            gpus.setdefault(int(labels["gpu"]), {"processes": {}})[fields[name]] = int(v)
        elif name == "vram_process_allocated_bytes" and "gpu" in labels:
            g = gpus.setdefault(int(labels["gpu"]), {"processes": {}})
            g["processes"][int(labels["pid"])] = int(v)
    return gpus


# --- readings against the exporter ----------------------------------------------------------------

MEMORY_FIELDS = ("total", "used", "reserved", "free")


def compare_gpus(exported, readings, top_n=16, granularity=1):
    """Compares the exporter's view with NVML readings taken around one scrape.

    `exported`: {gpu: {total, used, reserved, free, processes: {pid: bytes}}} from one scrape.
    `readings`: a list of readings of the same shape taken over the poll before the scrape and
    right after it. A figure matches when it lies within the range the readings span (equal to
    every reading on a quiet GPU); `granularity` is the readings' resolution (1 byte for
    nvidia-ml-py, 1 MiB for nvidia-smi). Per-process figures are checked for every process the
    exporter publishes, and every process among the top `top_n` must be published.
    Returns a list of mismatch descriptions (empty: all match)."""
    problems = []
    if not readings:
        return ["no NVML readings to compare with"]
    all_gpus = sorted(set(exported) | set().union(*[set(r) for r in readings]))
    for gpu in all_gpus:
        seen = [r[gpu] for r in readings if gpu in r]
        if gpu not in exported:
            problems.append(f"GPU {gpu}: NVML reports it, the exporter does not publish it")
            continue
        if not seen:
            problems.append(f"GPU {gpu}: the exporter publishes it, NVML does not report it")
            continue
        e = exported[gpu]
        for field in MEMORY_FIELDS:
            values = [s[field] for s in seen if s.get(field) is not None]
            if not values:
                continue
            if e.get(field) is None:
                problems.append(f"GPU {gpu}: {field} missing from the exporter")
                continue
            if not _within(e[field], values, granularity):
                problems.append(
                    f"GPU {gpu}: {field} exporter {e[field]} B, NVML {_span(values)} B"
                )
        problems.extend(_compare_processes(gpu, e.get("processes", {}), seen, top_n, granularity))
    return problems


def _within(x, values, granularity):
    lo, hi = min(values), max(values)
    return lo - granularity < x < hi + granularity


def _span(values):
    lo, hi = min(values), max(values)
    return str(lo) if lo == hi else f"{lo}..{hi}"


def _compare_processes(gpu, exported, seen, top_n, granularity):
    problems = []
    for pid, b in sorted(exported.items()):
        values = [s["processes"][pid] for s in seen if pid in s.get("processes", {})]
        if not values:
            problems.append(f"GPU {gpu}: process {pid} published ({b} B), NVML does not list it")
        elif not _within(b, values, granularity):
            problems.append(f"GPU {gpu}: process {pid} exporter {b} B, NVML {_span(values)} B")
    # Every process that was in NVML's top N at every reading must be published.
    tops = []
    for s in seen:
        procs = s.get("processes", {})
        ranked = sorted(procs.items(), key=lambda kv: (-kv[1], kv[0]))[:top_n]
        tops.append({pid for pid, _ in ranked})
    always_top = set.intersection(*tops) if tops else set()
    for pid in sorted(always_top - set(exported)):
        problems.append(f"GPU {gpu}: process {pid} is among NVML's top {top_n} but not published")
    return problems


# --- the cleanup loop and the leak ----------------------------------------------------------------

def plan_limits(gpu_used, step):
    """Soft and hard limits just above the GPU's current use (absolute bytes), and the hysteresis."""
    return {"soft": gpu_used + step, "hard": gpu_used + 2 * step, "hysteresis": step // 4}


def max_reaction(poll):
    """The longest acceptable time from a hard breach to the signal: two polls and a second."""
    return 2 * poll + 1.0


def judge_reaction(breach_at, signal_at, poll, limit=None):
    """(ok, seconds, text). `breach_at`: when the job crossed the hard limit; `signal_at`: when its
    SIGUSR1 handler ran (None: never)."""
    limit = max_reaction(poll) if limit is None else limit
    if signal_at is None:
        return False, None, f"no SIGUSR1 reached the job within {limit:.1f} s of the hard breach"
    took = signal_at - breach_at
    ok = 0 <= took <= limit
    word = "within" if ok else "over"
    return ok, took, f"SIGUSR1 {took * 1000:.0f} ms after the hard breach ({word} {limit:.1f} s)"


def judge_reclaimed(released, reclaimed, tolerance=0.05, slack=4 * MIB):
    """(ok, text): the exporter's `vram_cleanup_reclaimed_bytes` against what the job released."""
    if reclaimed is None:
        return False, "vram_cleanup_reclaimed_bytes is missing"
    if released <= 0:
        return False, f"the job released nothing on the signal (exporter says {fmt_bytes(reclaimed)})"
    ok = abs(reclaimed - released) <= released * tolerance + slack
    rel = "matches" if ok else "does not match"
    return ok, (
        f"reclaimed {fmt_bytes(reclaimed)} ({int(reclaimed)} B) {rel} the "
        f"{fmt_bytes(released)} ({int(released)} B) the job released"
    )


def judge_allocator_reserved(reserved, nvml_bytes, slack=2 * MIB):
    """(ok, text): what the job's allocator reports holding (vram_client) cannot exceed what NVML
    lists for the process (context and other allocators come on top); `slack`: NVML's rounding."""
    if reserved is None or nvml_bytes is None:
        return False, "no allocator report of the job is published"
    ok = reserved <= nvml_bytes + slack
    word = "within" if ok else "above"
    return ok, (f"reported reserved {fmt_bytes(reserved)} is {word} NVML's {fmt_bytes(nvml_bytes)} "
                f"for the process (non-allocator {fmt_bytes(max(0, nvml_bytes - reserved))})")


def judge_release_prediction(predicted, freed, tolerance=0.10, slack=2 * MIB):
    """(ok, text): what SIGUSR1 freed (NVML's drop for the process) against the reclaimable bytes
    the job reported just before it, within `tolerance` of the prediction."""
    if predicted is None:
        return False, "no reclaimable figure was reported before the signal"
    if freed is None:
        return False, "the process's NVML bytes could not be read after the signal"
    ok = predicted > 0 and abs(freed - predicted) <= predicted * tolerance + slack
    rel = "within" if ok else "not within"
    return ok, (f"SIGUSR1 freed {fmt_bytes(freed)}, {rel} {tolerance:.0%} of the "
                f"{fmt_bytes(predicted)} reported reclaimable")


def rate_from_drift(drift, window):
    """A leak rate (bytes/s) from drift over a full leak window: drift = rate × window."""
    if drift is None or window <= 0:
        return None
    return drift / window


def judge_rate(actual, reported, tolerance=0.30):
    """(ok, text): a reported leak rate within ±tolerance of the job's actual rate."""
    if reported is None:
        return False, "no leak rate reported"
    if actual <= 0:
        return False, "the job did not leak"
    err = (reported - actual) / actual
    ok = abs(err) <= tolerance
    return ok, (
        f"{fmt_bytes(reported)}/s reported vs {fmt_bytes(actual)}/s leaked "
        f"({err * 100:+.0f} %, limit ±{tolerance * 100:.0f} %)"
    )


# --- nvidia-smi fallback ------------------------------------------------------------------------

SMI_GPU_FIELDS = "index,memory.total,memory.reserved,memory.used,memory.free"
SMI_APP_FIELDS = "gpu_bus_id,pid,used_memory"


def parse_nvidia_smi(gpu_csv, apps_csv, bus_ids):
    """`nvidia-smi --query-gpu=SMI_GPU_FIELDS` and `--query-compute-apps=SMI_APP_FIELDS`
    (csv,noheader,nounits: MiB) → readings in bytes, like nvidia-ml-py's. `bus_ids` maps a PCI bus
    id (any case, any domain width) to a GPU index. '[N/A]' fields are left out."""
    def mib(field):
        field = field.strip()
        return None if not field or field.startswith("[") else int(float(field)) * MIB

    out = {}
    for line in gpu_csv.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != 5:
            raise ValueError(f"unexpected nvidia-smi line {line!r}")
        out[int(parts[0])] = {
            "total": mib(parts[1]), "reserved": mib(parts[2]), "used": mib(parts[3]),
            "free": mib(parts[4]), "processes": {},
        }
    for line in apps_csv.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != 3:
            continue
        gpu = bus_ids.get(bus_key(parts[0]))
        b = mib(parts[2])
        if gpu in out and b is not None:
            procs = out[gpu]["processes"]
            procs[int(parts[1])] = max(procs.get(int(parts[1]), 0), b)
    return out


def bus_key(bus_id):
    """PCI bus ids as 'BB:DD.F' in lower case: NVML gives an 8-digit domain, nvidia-smi 8 or 4."""
    return bus_id.strip().lower().split(":", 1)[-1] if bus_id.count(":") == 2 else bus_id.lower()


# --- the report -----------------------------------------------------------------------------------

def render_report(result):
    """The short text report from a result dict (see main.py for its keys)."""
    lines = ["gpu-check report", "================"]
    for k in ("host", "driver", "exporter", "readings_from", "nvml_library"):
        if result.get(k):
            lines.append(f"{k.replace('_', ' ')}: {result[k]}")
    for gpu in result.get("gpus", []):
        lines.append(f"GPU {gpu}")
    for section in result.get("sections", []):
        lines.append("")
        lines.append(f"[{section['status']}] {section['title']}")
        for item in section.get("lines", []):
            lines.append(f"  {item}")
    lines.append("")
    failed = [s["title"] for s in result.get("sections", []) if s["status"] == "FAIL"]
    if failed:
        lines.append(f"RESULT: FAIL ({len(failed)} check(s) failed: {', '.join(failed)})")
    else:
        lines.append("RESULT: OK")
    return "\n".join(lines) + "\n"


def section(title, checks, notes=(), skipped=None):
    """A report section from (ok, text) checks and plain notes. `skipped`: a reason to skip."""
    if skipped:
        return {"title": title, "status": "SKIP", "lines": [skipped, *notes]}
    lines = []
    ok = True
    for good, text in checks:
        ok = ok and good
        lines.append(("ok    " if good else "FAIL  ") + text)
    lines.extend(notes)
    return {"title": title, "status": "OK" if ok else "FAIL", "lines": lines}
