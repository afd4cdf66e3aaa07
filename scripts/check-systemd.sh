#!/usr/bin/env bash
# Verifies deploy/systemd/vram-exporter.service, alone and with the cleanup.conf drop-in, with
# `systemd-analyze verify`; any warning it prints counts as a failure (verify exits 0 on unknown keys).
# Where systemd-analyze is not installed it prints a loud notice and exits 0, unless VRAM_REQUIRE_TOOLS=1.
#
# verify also insists that ExecStart's program exists. When /usr/local/bin/vram-exporter is not installed
# here, the unit is verified as a copy whose program paths point at a stub; nothing else is changed.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
unit_dir="$repo_root/deploy/systemd"
unit=vram-exporter.service
installed_bin=/usr/local/bin/vram-exporter

if ! command -v systemd-analyze >/dev/null 2>&1; then
    echo "##########################################################################"
    echo "# check-systemd: systemd-analyze NOT FOUND; the unit was NOT verified."
    echo "# Install Debian's 'systemd' package to check it."
    echo "##########################################################################"
    if [[ "${VRAM_REQUIRE_TOOLS:-0}" == "1" ]]; then
        echo "check-systemd: VRAM_REQUIRE_TOOLS=1, failing" >&2
        exit 1
    fi
    exit 0
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

program="$installed_bin"
if [[ ! -x "$installed_bin" ]]; then
    program="$work/bin/vram-exporter"
    mkdir -p "$work/bin"
    printf '#!/bin/sh\nexit 0\n' >"$program"
    chmod +x "$program"
    echo "check-systemd: $installed_bin is not installed; verifying with a stub program"
fi

# verify() UNIT_FILE: runs systemd-analyze verify and fails on a non-zero exit or on any output.
verify() {
    local output status=0
    output="$(systemd-analyze verify "$1" 2>&1)" || status=$?
    if [[ $status -ne 0 || -n "$output" ]]; then
        echo "$output" >&2
        echo "check-systemd: systemd-analyze verify failed for $2 (exit $status)" >&2
        return 1
    fi
    echo "check-systemd: $2 verified"
}

# The unit alone.
mkdir -p "$work/plain"
sed "s#$installed_bin#$program#g" "$unit_dir/$unit" >"$work/plain/$unit"
verify "$work/plain/$unit" "$unit"

# The unit with the cleanup drop-in (picked up from UNIT.d/ beside the unit file).
mkdir -p "$work/cleanup/$unit.d"
cp "$work/plain/$unit" "$work/cleanup/$unit"
cp "$unit_dir/cleanup.conf" "$work/cleanup/$unit.d/cleanup.conf"
verify "$work/cleanup/$unit" "$unit + cleanup.conf"

# The drop-in must grant CAP_KILL, and only that.
if ! grep -qx 'AmbientCapabilities=CAP_KILL' "$unit_dir/cleanup.conf" \
    || ! grep -qx 'CapabilityBoundingSet=CAP_KILL' "$unit_dir/cleanup.conf"; then
    echo "check-systemd: cleanup.conf must set CapabilityBoundingSet=CAP_KILL and AmbientCapabilities=CAP_KILL" >&2
    exit 1
fi

# The unit must raise the open-file limit itself: its seccomp filter (~@resources) keeps the binary from
# raising its soft limit, and the default of 1024 is what a flood of idle connections exhausts.
if ! grep -Eq '^LimitNOFILE=[0-9]+$' "$unit_dir/$unit"; then
    echo "check-systemd: $unit must set LimitNOFILE= (a number)" >&2
    exit 1
fi

# For information: systemd's own exposure score (lower is better), where this systemd can compute it offline.
for variant in plain cleanup; do
    score="$(systemd-analyze security --offline=true "$work/$variant/$unit" 2>/dev/null | grep 'Overall exposure' || true)"
    [[ -n "$score" ]] && echo "check-systemd: $variant: $score"
done
systemd-analyze --version | head -n 1
