#!/usr/bin/env bash
# Regenerates the Rust code of the vendored protos (proto/podresources/v1: the kubelet pod-resources
# API; proto/cri/v1: our subset of the CRI runtime service) with
# tools/protogen (protox + tonic-prost-build: no protoc needed), then formats it.
# `scripts/gen-protos.sh --check` fails when the committed code is stale.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
outputs=(src/source/kubernetes/pb/v1.rs tests/it/podresources_server.rs src/source/kubernetes/pb/cri.rs tests/it/cri_server.rs)
cargo run --quiet --release --manifest-path tools/protogen/Cargo.toml -- "$root"
rustfmt --edition 2021 "${outputs[@]}"
if [[ "${1:-}" == "--check" ]]; then
    git diff --exit-code -- "${outputs[@]}" || {
        echo "generated gRPC code is stale: run scripts/gen-protos.sh and commit" >&2
        exit 1
    }
fi
