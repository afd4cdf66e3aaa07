#!/usr/bin/env bash
# Checks that the committed rules, PrometheusRule and dashboards are exactly what the monitoring mixin
# (mixin/) generates, then runs promtool on the generated rules and their unit tests. Needs a Python with
# the packages of deploy/requirements.txt (pass its path as $1 or put it first on PATH) and promtool
# (Debian package prometheus); with VRAM_REQUIRE_TOOLS=1 a missing promtool is a failure, else a loud skip.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-python3}
"$PY" scripts/gen-mixin.py --check
if ! command -v promtool >/dev/null 2>&1; then
    if [ "${VRAM_REQUIRE_TOOLS:-0}" = 1 ]; then
        echo "check-mixin: promtool not found and VRAM_REQUIRE_TOOLS=1 (install Debian package prometheus)" >&2
        exit 1
    fi
    echo "!!! check-mixin: promtool not found; promtool checks SKIPPED" >&2
    exit 0
fi
promtool check rules alerts/vram-exporter.rules.yml
promtool test rules alerts/tests/*.test.yml
echo "check-mixin: generated files are fresh and pass promtool"
