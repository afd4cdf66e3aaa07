#!/usr/bin/env bash
# scripts/screenshots.sh — the status page in a real browser: runs the demo (`--simulate demo`,
# its scenario clock sped up 4x) until it has shown a leak, a hard episode and a cleanup, then
# opens the page in headless Chromium at phone (390 px), laptop (1366) and wide (1920) sizes
# (scripts/browser_check.py): checks that the charts, breach bands and events are drawn and that
# nothing overflows, and writes the screenshots the README shows.
#
# Usage: scripts/screenshots.sh [EXPORTER] [OUTDIR]
#   EXPORTER  the binary (default: target/release/vram-exporter, else target/debug/vram-exporter);
#             libnvml_sim.so must be beside it (cargo build -p nvml-sim)
#   OUTDIR    where the PNGs go (default: docs/img)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-}
if [[ -z $bin ]]; then
    bin=target/release/vram-exporter
    [[ -x $bin ]] || bin=target/debug/vram-exporter
fi
out=${2:-docs/img}
[[ -x $bin ]] || { echo "screenshots: no exporter binary at $bin (cargo build)" >&2; exit 1; }
command -v chromium >/dev/null || { echo "screenshots: chromium is not installed" >&2; exit 1; }

tmp=$(mktemp -d)
pid=
cleanup() {
    [[ -n $pid ]] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT

sed 's/^speed = 1.0$/speed = 4.0/' nvml-sim/scenarios/demo.toml >"$tmp/demo.toml"
grep -q '^speed = 4.0$' "$tmp/demo.toml" || { echo "screenshots: demo.toml has no 'speed = 1.0' line" >&2; exit 1; }
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
VRAM_EXPORTER_SCENARIO_DIR=$tmp "$bin" --simulate demo --web.listen-address "127.0.0.1:$port" \
    >"$tmp/exporter.log" 2>&1 &
pid=$!

# Until the timeline has what the screenshots should show (about 45 s; at most 3 minutes).
python3 - "$port" <<'PY' || { tail -n 20 "$tmp/exporter.log" >&2; exit 1; }
import json, sys, time, urllib.request
want = {"leak_started", "hard_started", "cleanup", "hard_ended"}
deadline = time.time() + 180
while True:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/api/v1/history", timeout=5) as r:
            kinds = {e["kind"] for e in json.load(r)["events"]}
        if want <= kinds:
            break
    except OSError:
        kinds = set()
    if time.time() > deadline:
        sys.exit(f"screenshots: the demo did not show {sorted(want - kinds)} within 3 minutes")
    time.sleep(1)
PY

python3 scripts/browser_check.py "http://127.0.0.1:$port/" "$out" --min-events 4 --want-band \
    --want-kind leak_started --want-kind hard_started --want-kind cleanup
