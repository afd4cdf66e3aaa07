#!/usr/bin/env bash
# scripts/footprint.sh — where the running exporter's resident memory goes: starts a release binary on
# the simulated 8-GPU × 32-process node (nvml-sim `large-node`), polling every 1 s, warms it up, scrapes
# /metrics, then reads /proc/PID/status (VmRSS, RssAnon, RssFile, threads) and sums /proc/PID/smaps'
# Rss by mapping (the executable, libnvml_sim.so, each C runtime library, heap, thread stacks and
# malloc arenas, the rest). Repeats RUNS times and prints each figure's median, as BENCHMARKS.md
# ("Release profile and footprint") reports them.
#
#   scripts/footprint.sh [BIN_DIR]      BIN_DIR holds vram-exporter and libnvml_sim.so (default target/release)
#
# Environment: RUNS (default 3), WARMUP seconds (default 10), SCRAPES (default 200), SCENARIO (default
# large-node), and any VRAM_EXPORTER__* / MALLOC_ARENA_MAX setting, passed on to the exporter.
# Needs curl and python3 (a free port). Exit status 2 on a missing binary.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=${1:-$repo/target/release}
runs=${RUNS:-3}
warmup=${WARMUP:-10}
scrapes=${SCRAPES:-200}
scenario=${SCENARIO:-large-node}
for f in vram-exporter libnvml_sim.so; do
    [[ -f $bin/$f ]] || { echo "footprint: $bin/$f is missing" >&2; exit 2; }
done

work=$(mktemp -d)
pid=""
cleanup() {
    if [[ -n $pid ]]; then kill "$pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

# One run: prints "name value_kib" lines.
measure() {
    local port addr i
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    addr=127.0.0.1:$port
    VRAM_EXPORTER__POLL__INTERVAL=1s "$bin/vram-exporter" --simulate "$scenario" \
        --web.listen-address "$addr" >"$work/log" 2>&1 &
    pid=$!
    for i in $(seq 100); do
        [[ $(curl -s -o /dev/null -w '%{http_code}' "http://$addr/-/ready" || true) == 200 ]] && break
        sleep 0.1
    done
    sleep "$warmup"
    for i in $(seq "$scrapes"); do curl -sf -o /dev/null "http://$addr/metrics"; done
    sleep 2
    awk '/^(VmRSS|RssAnon|RssFile|Threads):/ { print $1, $2 }' "/proc/$pid/status" | tr -d :
    # smaps: a mapping header is "ADDR PERMS OFFSET DEV INODE [PATH]"; its Rss line follows.
    awk -v exe="$(readlink -f "$bin/vram-exporter")" '
        /^[0-9a-f]+-[0-9a-f]+ / { path = $6; perms = $2; next }
        /^Rss:/ {
            if (path == exe) k = (perms ~ /x/ ? "smaps.exe_code" : "smaps.exe_data")
            else if (path ~ /libnvml_sim/) k = "smaps.libnvml_sim"
            else if (path ~ /\/libc\.so/) k = "smaps.libc"
            else if (path ~ /\/libm\.so/) k = "smaps.libm"
            else if (path ~ /libgcc_s/) k = "smaps.libgcc_s"
            else if (path ~ /\/ld-linux/) k = "smaps.ld_linux"
            else if (path == "[heap]") k = "smaps.heap"
            else if (path == "[stack]") k = "smaps.main_stack"
            else if (path == "") k = "smaps.anon_stacks_arenas"
            else k = "smaps.other"
            rss[k] += $2
        }
        END { for (k in rss) print k, rss[k] }' "/proc/$pid/smaps"
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    pid=""
}

for r in $(seq "$runs"); do measure >"$work/run$r"; done
echo "footprint: $bin on $scenario, median of $runs runs (warm-up ${warmup} s, $scrapes scrapes); KiB and MiB"
cat "$work"/run* | sort -k1,1 -k2,2n | awk '
    { v[$1] = v[$1] " " $2; n[$1]++ }
    END {
        for (k in v) {
            split(substr(v[k], 2), a, " ")
            m = a[int((n[k] + 1) / 2)]
            if (k == "Threads") printf "%-26s %8d\n", k, m
            else printf "%-26s %8d KiB %6.2f MiB\n", k, m, m / 1024
        }
    }' | sort
ls -l "$bin/vram-exporter" | awk '{ printf "%-26s %8.2f MB\n", "binary size", $5 / 1e6 }'
