# procs.py: the processes gpu-check starts (exporter, baseline, job, nvitop-exporter), /proc readings, HTTP.
"""Children and their figures. Every child is registered and stopped by `stop_all()` (SIGTERM,
then SIGKILL), which gpu-check runs at exit and on SIGINT/SIGTERM; children also get
PR_SET_PDEATHSIG so they die with gpu-check even when it is killed outright."""

import ctypes
import json
import os
import queue
import signal
import socket
import subprocess
import threading
import time
import urllib.request

_children = []
_PR_SET_PDEATHSIG = 1


def _die_with_parent():
    try:
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def spawn(argv, env=None, stdin=None, stdout=None, stderr=None):
    p = subprocess.Popen(argv, env=env, stdin=stdin, stdout=stdout, stderr=stderr, text=True,
                         bufsize=1, preexec_fn=_die_with_parent)
    _children.append(p)
    return p


def stop(p, grace=5.0):
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(grace)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    for f in (p.stdin, p.stdout, p.stderr):
        if f:
            try:
                f.close()
            except OSError:
                pass


def stop_all():
    while _children:
        stop(_children.pop())


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url, timeout=10.0):
    """(status, body text); HTTP errors are returned, connection errors raised."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode("utf-8", "replace")
    except urllib.request.HTTPError as e:
        return e.code, e.read().decode("utf-8", "replace")


class Lines:
    """Reads a child's stream line by line on a thread; keeps every line for the report."""

    def __init__(self, stream):
        self.q = queue.Queue()
        self.all = []
        t = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        t.start()

    def _pump(self, stream):
        for line in iter(stream.readline, ""):
            self.q.put(line.rstrip("\n"))
        self.q.put(None)

    def wait(self, pred, timeout):
        """The first new line satisfying pred, or None at timeout / end of stream."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            try:
                line = self.q.get(timeout=left)
            except queue.Empty:
                return None
            if line is None:
                self.q.put(None)
                return None
            self.all.append(line)
            if pred(line):
                return line


class Exporter:
    """vram-exporter on 127.0.0.1, JSON logs on stderr (the address is taken from its log)."""

    def __init__(self, binary, config_path, nvml_library=None, env=None):
        argv = [binary, "--config", config_path, "--web.listen-address", "127.0.0.1:0", "--log.format", "json"]
        if nvml_library:
            argv += ["--nvml-library", nvml_library]
        self.p = spawn(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE)
        self.log = Lines(self.p.stderr)
        line = self.log.wait(lambda l: '"listening"' in l, 30)
        if line is None:
            raise RuntimeError("vram-exporter did not start:\n" + "\n".join(self.log.all[-15:]))
        self.addr = json.loads(line)["address"]
        self.pid = self.p.pid

    def url(self, path):
        return f"http://{self.addr}{path}"

    def wait_ready(self, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if get(self.url("/-/ready"), 2)[0] == 200:
                    return True
            except OSError:
                pass
            time.sleep(0.05)
        return False

    def metrics(self):
        status, body = get(self.url("/metrics"))
        if status != 200:
            raise RuntimeError(f"/metrics answered {status}")
        return body

    def stop(self):
        stop(self.p)


def memory(pid):
    """(VmRSS, RssAnon) in bytes from /proc/<pid>/status, or None when the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            text = f.read()
    except OSError:
        return None
    fields = {}
    for line in text.splitlines():
        k, _, v = line.partition(":")
        if k in ("VmRSS", "RssAnon"):
            fields[k] = int(v.split()[0]) * 1024
    return fields.get("VmRSS"), fields.get("RssAnon")


def steady_memory(pid, n=5, gap=0.2):
    """The median of n (VmRSS, RssAnon) readings."""
    rss, anon = [], []
    for i in range(n):
        if i:
            time.sleep(gap)
        m = memory(pid)
        if m is None:
            return None
        rss.append(m[0])
        anon.append(m[1])
    rss.sort()
    anon.sort()
    return rss[n // 2], anon[n // 2]


def cpu_seconds(pid):
    """utime + stime of a process (all threads), seconds."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def p50_latency(url, n=200):
    """Median seconds of n sequential GETs (a new connection each, as urllib does)."""
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        status, _ = get(url)
        if status != 200:
            raise RuntimeError(f"{url} answered {status}")
        times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2]
