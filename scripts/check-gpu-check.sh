#!/usr/bin/env bash
# check-gpu-check.sh: CI for scripts/gpu-check without a GPU: its unit tests and whole runs on nvml-sim.
# Builds what the tests run (release exporter, nvml-sim, the nvml-baseline example), makes or reuses
# a venv with nvidia-ml-py and nvitop-exporter, then runs scripts/gpu_check/test_gpu_check.py.
# Usage: bash scripts/check-gpu-check.sh [VENV_DIR]   (default .venv-nvml, shared with the cross-client check)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
venv=${1:-.venv-nvml}

cargo build --release --quiet -p vram-exporter -p vram-bench --bin vram-exporter --bin nvml-baseline
cargo build --release --quiet -p nvml-sim --lib
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check nvidia-ml-py nvitop-exporter

# A missing binary would skip the end-to-end tests: in CI that is a failure.
for f in target/release/vram-exporter target/release/libnvml_sim.so target/release/nvml-baseline; do
    [ -x "$f" ] || [ -f "$f" ] || { echo "check-gpu-check: $f was not built" >&2; exit 1; }
done
"$venv/bin/python" -m unittest -v scripts/gpu_check/test_gpu_check.py 2>&1
