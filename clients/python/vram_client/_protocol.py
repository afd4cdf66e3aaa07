"""The wire format shared with vram-exporter: version-1 newline-delimited JSON (docs/client-protocol.md).

Kept apart from the transport so the format has one definition and other runtimes (JAX, CuPy,
serving engines) can read exactly what is sent.
"""

import json
import os

VERSION = 1
# The exporter closes a connection whose line (newline included) is longer than this.
MAX_LINE = 16 * 1024
# Fields of one annotate() event kept, and the longest string value sent (longer ones are cut).
MAX_EVENT_FIELDS = 16
MAX_STRING = 256

# The figures of one device, as sent, in the order documented.
DEVICE_FIELDS = (
    "allocated_bytes",
    "reserved_bytes",
    "active_bytes",
    "inactive_split_bytes",
    "peak_reserved_bytes",
    "alloc_retries",
    "ooms",
)


def start_time(pid=None):
    """The process's start time in clock ticks since boot (field 22 of /proc/<pid>/stat), 0 if unknown.

    With the pid it names one process even where the exporter sees another pid namespace.
    """
    try:
        with open("/proc/%s/stat" % ("self" if pid is None else pid), "rb") as f:
            stat = f.read()
        # The name (field 2) may hold spaces and parentheses: fields start after the last ')'.
        fields = stat[stat.rindex(b")") + 2 :].split()
        return int(fields[19])
    except (OSError, ValueError, IndexError):
        return 0


def _clip(value):
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, (int, float)):
        return value
    text = str(value)
    return text[:MAX_STRING]


def encode(message):
    """One message as a line of bytes, or None when it would be longer than MAX_LINE."""
    line = json.dumps(message, separators=(",", ":"), allow_nan=False).encode() + b"\n"
    if len(line) > MAX_LINE:
        return None
    return line


def header(kind, pid, start):
    """The fields every message opens with."""
    return {"v": VERSION, "type": kind, "pid": pid, "start_time": start}


def report(pid, start, interval_s, devices, reason, released=None):
    """A report: `devices` maps a GPU UUID to its figures (DEVICE_FIELDS); `released` maps a UUID
    to the bytes the last release handed back (only after a release)."""
    msg = header("report", pid, start)
    msg["interval_ms"] = int(interval_s * 1000)
    msg["reason"] = reason
    out = []
    for uuid, figures in devices.items():
        d = {"uuid": uuid}
        for k in DEVICE_FIELDS:
            d[k] = int(max(0, figures.get(k, 0)))
        if released is not None and uuid in released:
            d["released_bytes"] = int(max(0, released[uuid]))
        out.append(d)
    msg["devices"] = out
    return msg


def event(pid, start, name, fields):
    """An annotate() event: a name and a few scalar fields (strings cut to MAX_STRING)."""
    msg = header("event", pid, start)
    msg["event"] = str(name)[:MAX_STRING]
    kept = {}
    for k, v in list(fields.items())[:MAX_EVENT_FIELDS]:
        kept[str(k)[:MAX_STRING]] = _clip(v)
    msg["fields"] = kept
    return msg


def default_socket():
    """The socket path: $VRAM_EXPORTER_CLIENT_SOCKET or the exporter's default."""
    return os.environ.get("VRAM_EXPORTER_CLIENT_SOCKET", "/run/vram-exporter/clients.sock")
