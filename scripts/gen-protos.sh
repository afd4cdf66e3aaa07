#!/usr/bin/env bash
# Regenerates the Rust code of the vendored kubelet pod-resources proto (proto/podresources/v1) with
# tools/protogen (protox + tonic-prost-build: no protoc needed), then formats it.
# `scripts/gen-protos.sh --check` fails when the committed code is stale.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
outputs=(src/kubernetes/pb/v1.rs tests/it/podresources_server.rs)
cargo run --quiet --release --manifest-path tools/protogen/Cargo.toml -- "$root"
rustfmt --edition 2021 "${outputs[@]}"
if [[ "${1:-}" == "--check" ]]; then
    git diff --exit-code -- "${outputs[@]}" || {
        echo "generated pod-resources code is stale: run scripts/gen-protos.sh and commit" >&2
        exit 1
    }
fi
