#!/usr/bin/env python3
"""Opens the status page in headless Chromium at phone, laptop and wide sizes and checks it.

Drives Chromium through the DevTools protocol on a pipe (--remote-debugging-pipe; Python's
standard library only), because Chromium's --window-size cannot go below 500 px: the viewport is
set with Emulation.setDeviceMetricsOverride. At each size, after the page's script has redrawn
it from the JSON API, it checks that nothing overflows the viewport or its card, that every up
GPU's chart has a drawn line with limit lines, that the timeline lists events and that the
colour scheme follows the system's (the phone also in dark mode); then it saves a screenshot of
the viewport.

Usage: browser_check.py URL OUTDIR [--min-events N] [--want-kind KIND ...]
Exit 1 with one line per problem when a check fails.
"""
import argparse
import base64
import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

# name, width, height, mobile, colour scheme
SIZES = [
    ("phone", 390, 844, True, "light"),
    ("phone-dark", 390, 844, True, "dark"),
    ("laptop", 1366, 900, False, "light"),
    ("wide", 1920, 1080, False, "light"),
]

# Evaluated in the page: what the checks need, as JSON.
PROBE = r"""
(() => {
  const over = [];
  if (document.documentElement.scrollWidth > window.innerWidth) over.push("page");
  document.querySelectorAll(".gpu, .timeline, header, footer, .scroll").forEach((el) => {
    if (el.scrollWidth > el.clientWidth + 1)
      over.push(el.dataset.gpu !== undefined ? "gpu " + el.dataset.gpu
        : el.className === "scroll" ? "process table of gpu " + el.closest(".gpu").dataset.gpu
        : el.tagName.toLowerCase());
  });
  const cards = [...document.querySelectorAll(".gpu")];
  return JSON.stringify({
    width: window.innerWidth,
    updated: !!document.body.dataset.updated,
    overflow: over,
    up: cards.filter((c) => !c.querySelector(".bdown")).length,
    lines: [...document.querySelectorAll(".spark path.line")].filter((p) => (p.getAttribute("d") || "").length > 10).length,
    limits: document.querySelectorAll(".spark path.lim.hard").length,
    bands: document.querySelectorAll(".spark rect.band").length,
    minis: document.querySelectorAll(".mini path.line").length,
    events: [...document.querySelectorAll("#events li[data-kind]")].map((li) => li.dataset.kind),
    height: document.documentElement.scrollHeight,
    background: getComputedStyle(document.body).backgroundColor,
  });
})()
"""


class Browser:
    """Chromium with the DevTools protocol on fds 3 (its input) and 4 (its output)."""

    def __init__(self, binary):
        self.profile = tempfile.mkdtemp(prefix="vram-browser-")
        to_chrome_r, self.to_chrome = os.pipe()
        self.from_chrome, from_chrome_w = os.pipe()
        # Chromium's ends moved above 100 first, so placing them on 3 and 4 never overwrites one
        # with the other and always clears close-on-exec.
        ends = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 100) for fd in (to_chrome_r, from_chrome_w)]
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        to_chrome_r, from_chrome_w = ends

        def fds():
            os.dup2(to_chrome_r, 3)
            os.dup2(from_chrome_w, 4)

        self.proc = subprocess.Popen(
            [binary, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--remote-debugging-pipe", "--user-data-dir=" + self.profile,
             "about:blank"],
            preexec_fn=fds, close_fds=False, stdout=subprocess.DEVNULL,
            stderr=None if os.environ.get("BROWSER_CHECK_DEBUG") else subprocess.DEVNULL)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self.buf = b""
        self.next_id = 0
        self.events = []

    def _read(self):
        while b"\0" not in self.buf:
            chunk = os.read(self.from_chrome, 1 << 20)
            if not chunk:
                raise RuntimeError("chromium closed the DevTools pipe")
            self.buf += chunk
        msg, self.buf = self.buf.split(b"\0", 1)
        return json.loads(msg)

    def call(self, method, session=None, **params):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params}
        if session:
            msg["sessionId"] = session
        os.write(self.to_chrome, json.dumps(msg).encode() + b"\0")
        while True:
            reply = self._read()
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_event(self, method, timeout=20):
        deadline = time.time() + timeout
        while time.time() < deadline:
            for i, e in enumerate(self.events):
                if e.get("method") == method:
                    return self.events.pop(i)
            self.events.append(self._read())
        raise RuntimeError(f"no {method} within {timeout} s")

    def close(self):
        try:
            self.call("Browser.close")
        except Exception:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.profile, ignore_errors=True)


def check_size(b, url, name, width, height, mobile, scheme, outdir, args):
    target = b.call("Target.createTarget", url="about:blank")["targetId"]
    session = b.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
    b.call("Emulation.setDeviceMetricsOverride", session, width=width, height=height,
           deviceScaleFactor=1, mobile=mobile)
    b.call("Emulation.setEmulatedMedia", session,
           features=[{"name": "prefers-color-scheme", "value": scheme}])
    b.call("Page.enable", session)
    b.call("Page.navigate", session, url=url)
    b.wait_event("Page.loadEventFired")
    state = {}
    deadline = time.time() + 15
    while time.time() < deadline:
        value = b.call("Runtime.evaluate", session, expression=PROBE, returnByValue=True)
        state = json.loads(value["result"]["value"])
        if state["updated"]:
            break
        time.sleep(0.2)
    problems = []
    if not state.get("updated"):
        problems.append("the page's script did not redraw it from the JSON API")
    if state.get("width") != width:
        problems.append(f"viewport {state.get('width')} px, not {width}")
    if state.get("overflow"):
        problems.append("overflows: " + ", ".join(state["overflow"]))
    if state.get("lines", 0) < state.get("up", 0) or state.get("up", 0) == 0:
        problems.append(f"{state.get('lines')} charts drawn for {state.get('up')} GPUs up")
    if state.get("limits", 0) < state.get("up", 0):
        problems.append(f"{state.get('limits')} hard-limit lines for {state.get('up')} GPUs up")
    if state.get("minis", 0) == 0:
        problems.append("no process sparkline drawn")
    if len(state.get("events", [])) < args.min_events:
        problems.append(f"{len(state.get('events', []))} events listed, wanted {args.min_events}")
    for kind in args.want_kind:
        if kind not in state.get("events", []):
            problems.append(f"no {kind} event on the timeline")
    dark = state.get("background", "") not in ("rgb(246, 247, 249)", "")
    if dark != (scheme == "dark"):
        problems.append(f"background {state.get('background')} in the {scheme} scheme")
    if args.want_band and state.get("bands", 0) == 0:
        problems.append("no breach band drawn")
    shot = b.call("Page.captureScreenshot", session, format="png")
    path = os.path.join(outdir, f"status-page-{name}.png")
    with open(path, "wb") as f:
        f.write(base64.b64decode(shot["data"]))
    b.call("Target.closeTarget", targetId=target)
    print(f"{name} ({width}x{height}): {len(state.get('events', []))} events, "
          f"{state.get('lines')} charts, {state.get('bands')} bands, page {state.get('height')} px tall "
          f"-> {path}" + ("" if not problems else " PROBLEMS: " + "; ".join(problems)))
    return [f"{name}: {p}" for p in problems]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("url")
    p.add_argument("outdir")
    p.add_argument("--browser", default=shutil.which("chromium") or "chromium")
    p.add_argument("--min-events", type=int, default=0)
    p.add_argument("--want-kind", action="append", default=[])
    p.add_argument("--want-band", action="store_true")
    args = p.parse_args()
    os.makedirs(args.outdir, exist_ok=True)
    b = Browser(args.browser)
    problems = []
    try:
        for name, width, height, mobile, scheme in SIZES:
            problems += check_size(b, args.url, name, width, height, mobile, scheme, args.outdir, args)
    finally:
        b.close()
    for line in problems:
        print("FAIL " + line, file=sys.stderr)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
