#!/usr/bin/env bash
# Proves a refactor changed no behaviour: runs two builds of the exporter (each a folder holding
# `vram-exporter` and `libnvml_sim.so`) on the same nvml-sim scenarios at pinned scenario time and
# compares `/metrics`, `/api/v1/gpus` and the status page byte for byte. Only what varies between
# any two runs is dropped, the same way for both: the process collector's `process_*` families, the
# poll-duration histogram, the last-poll timestamp, wall-clock times in the JSON and the page, and
# the page's chart geometry (`d="…"`, placed by wall-clock time since start; values and labels stay).
# Build both with the same VRAM_EXPORTER_REVISION and SOURCE_DATE_EPOCH so build_info matches.
#
# Usage: scripts/compare-builds.sh BEFORE_DIR AFTER_DIR [scenario-time-seconds]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
before=$1 after=$2 at=${3:-600}
scenarios=(demo hard-breach leak mig device-lost large-node h200-trace)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Drops the lines (and JSON/HTML fields) that differ between any two runs of one binary.
normalise() {
    sed -E \
        -e '/^(# (HELP|TYPE) )?process_/d' \
        -e '/^(# (HELP|TYPE) )?vram_exporter_poll_duration_seconds/d' \
        -e 's/^(vram_exporter_last_poll_timestamp_seconds) .*/\1 T/' \
        -e 's/"(taken_at|updated_at|at|time|timestamp|started_at)(_unix|_seconds)?":[0-9.]+/"\1\2":T/g' \
        -e 's/[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+Z/T/g' \
        -e 's/data-(now|taken|at)="[0-9.]+"/data-\1="T"/g' \
        -e 's/ d="[^"]*"/ d="D"/g'
}

# run DIR NAME SCENARIO: one exporter, its three answers written to $work/NAME/SCENARIO.*
run() {
    local dir=$1 name=$2 scenario=$3 out=$work/$2
    mkdir -p "$out"
    echo "$at" >"$work/time"
    : >"$out/$scenario.log"
    NVML_SIM_SCENARIO="$root/nvml-sim/scenarios/$scenario.toml" NVML_SIM_TIME_FILE="$work/time" \
        "$dir/vram-exporter" --nvml-library "$dir/libnvml_sim.so" \
        --web.listen-address 127.0.0.1:0 --log.format json 2>"$out/$scenario.log" &
    local pid=$! addr=""
    for _ in $(seq 100); do
        addr=$(grep -o '"address":"[^"]*"' "$out/$scenario.log" | head -1 | cut -d'"' -f4 || true)
        [[ -n $addr ]] && break
        sleep 0.1
    done
    [[ -n $addr ]] || { echo "$name: $scenario did not start" >&2; cat "$out/$scenario.log" >&2; exit 1; }
    # Wait for a poll (and a second, so every poll-derived state has settled at the pinned time).
    for _ in $(seq 100); do
        curl -fsS "http://$addr/metrics" 2>/dev/null | grep -q '^vram_nvml_up 1' && break
        sleep 0.1
    done
    sleep 2
    curl -fsS "http://$addr/metrics" | normalise >"$out/$scenario.metrics"
    curl -fsS "http://$addr/api/v1/gpus" | normalise >"$out/$scenario.gpus.json"
    curl -fsS "http://$addr/" | normalise >"$out/$scenario.page.html"
    kill "$pid"
    wait "$pid" || true
}

status=0
for s in "${scenarios[@]}"; do
    run "$before" before "$s"
    run "$after" after "$s"
    for kind in metrics gpus.json page.html; do
        if cmp -s "$work/before/$s.$kind" "$work/after/$s.$kind"; then
            echo "same      $s $kind ($(wc -c <"$work/after/$s.$kind") bytes)"
        else
            echo "DIFFERENT $s $kind"
            diff "$work/before/$s.$kind" "$work/after/$s.$kind" | head -20
            status=1
        fi
    done
done
exit $status
