#!/usr/bin/env bash
# scripts/check-conventions.sh — CI checks of the operator conventions that `cargo test` cannot make:
#   1. the old default port appears nowhere but the README's note on the change;
#   2. a build from a source tarball (`git archive`, no .git) prints `revision: unknown` in --version,
#      and `VRAM_EXPORTER_REVISION` set at build time replaces it.
# The tarball is built into this checkout's target/ (its dependencies are already compiled there). Cargo
# sees it as the same package, so the checkout's own binary is rebuilt at the end.
# Exit 0 when all hold, 1 otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
fail=0
ok() { printf 'ok   %s\n' "$*"; }
bad() { printf 'FAIL %s\n' "$*" >&2; fail=1; }

old_port="98""62" # split, so this file does not match itself
if hits=$(git grep -n "$old_port" -- . | grep -v '^README.md:.*used '"$old_port"' before'); then
    bad "the old default port $old_port is still used:"$'\n'"$hits"
else
    ok "old default port $old_port only in the README's note"
fi

tmp=$(mktemp -d)
restore() {
    rm -rf "$tmp"
    # Make cargo build (and link) this checkout's binary again, with its own revision.
    touch "$repo/build.rs"
    (cd "$repo" && cargo build -q -p vram-exporter --bin vram-exporter) || fail=1
}
trap 'rc=$?; restore; [[ $fail -eq 0 ]] || rc=1; exit "$rc"' EXIT
git archive HEAD | tar -x -C "$tmp"
[[ ! -e $tmp/.git ]] || { bad "git archive produced a .git"; exit 1; }

# tarball_revision [VALUE]: the revision --version prints for a tarball build (VALUE in the env).
tarball_revision() {
    (
        cd "$tmp"
        if [[ $# -gt 0 ]]; then export VRAM_EXPORTER_REVISION=$1; else unset VRAM_EXPORTER_REVISION; fi
        # The archive's files carry the commit's time, older than target/'s outputs: without this
        # cargo would take the checkout's build (same package, same fingerprint) as up to date.
        touch build.rs
        CARGO_TARGET_DIR="$repo/target" cargo build -q --locked -p vram-exporter --bin vram-exporter
    )
    "$repo/target/debug/vram-exporter" --version | sed -n 's/^revision: //p'
}

got=$(tarball_revision)
if [[ $got == unknown ]]; then ok "tarball build without .git: revision: unknown"; else bad "tarball build printed revision: $got"; fi
got=$(tarball_revision v0.1.0-ci.1)
if [[ $got == v0.1.0-ci.1 ]]; then ok "VRAM_EXPORTER_REVISION=v0.1.0-ci.1: revision: $got"; else bad "VRAM_EXPORTER_REVISION ignored: revision: $got"; fi

exit "$fail"
