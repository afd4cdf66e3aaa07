#!/usr/bin/env bash
# Runs the nvml-sim cross-client check (pynvml + nvitop-exporter) in a venv it creates or reuses.
# Builds nothing: expects `cargo build -p nvml-sim --examples` to have produced
# <build dir>/libnvml_sim.so and <build dir>/examples/dump (e.g. target/debug).
# Usage: bash nvml-sim/tests/cross_client.sh <venv dir> <build dir>
set -euo pipefail

if [ "$#" -ne 2 ]; then
    echo "usage: $0 <venv dir> <build dir containing libnvml_sim.so>" >&2
    exit 2
fi
venv=$1
build_dir=$2
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check nvidia-ml-py nvitop-exporter
"$venv/bin/python" "$here/cross_client.py" "$build_dir" "$here/../scenarios"
