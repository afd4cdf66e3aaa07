#!/usr/bin/env bash
# scripts/check-image.sh — builds the container image with no registry (scripts/build-image, from
# target/release) and smoke-tests it under podman the way a cluster runs it: non-root, read-only root
# filesystem with no writable tmpfs, every capability dropped, the port published to the host.
#
#   1. `--simulate demo`: /-/ready turns 200 and /metrics, scraped from the host through the published
#      port, has the GPU families and `vram_nvml_up 1` (promtool check metrics clean); the image's own
#      HEALTHCHECK passes; PID 1 runs as UID 65532; the root filesystem refuses writes; `ldd` finds every
#      library of the exporter and nvml-sim; `--check-config` passes on the shipped example configuration.
#   2. no nvml-sim (its directory hidden by an empty tmpfs) and no driver library: the exporter serves
#      `vram_nvml_up 0`, stays up, stays healthy and not ready.
#   Both containers must stop cleanly on SIGTERM (exit status 0) and log no panic.
#
#   scripts/check-image.sh                 build localhost/vram-exporter:check, then test it
#   scripts/check-image.sh --image NAME    test an image already in the local containers storage
#                                          (e.g. one built with `podman build --format docker`)
#
# Runs as root. Installs the Debian packages it needs (buildah, mmdebstrap, podman, runc, curl) when
# missing. Podman runs with runc (Debian's crun refuses hybrid cgroup v1/v2 hosts) and with
# RLIMIT_NOFILE/NPROC lowered to 4096 (setting podman's defaults, or even the limits podman itself runs
# under, needs CAP_SYS_RESOURCE, which sandboxed machines lack; the exporter needs a few dozen).
# Expects target/release/{vram-exporter,libnvml_sim.so} to be built.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
fail() { echo "check-image: FAIL: $*" >&2; exit 1; }
usage_error() { echo "check-image: $* (usage: scripts/check-image.sh [--image NAME])" >&2; exit 2; }
step() { printf 'check-image: [%3d s] %s\n' "$SECONDS" "$*"; }

image=localhost/vram-exporter:check
build=1
case ${1:-} in
    --image) [[ $# -eq 2 ]] || usage_error "--image needs exactly one image name"; image=$2; build=0 ;;
    "") ;;
    *) usage_error "unknown argument $1" ;;
esac

[[ $(id -u) -eq 0 ]] || fail "must run as root (buildah and podman with the vfs storage driver)"

need=()
for tool in buildah mmdebstrap podman runc curl; do # each the name of its Debian package too
    command -v "$tool" >/dev/null || need+=("$tool")
done
if [[ ${#need[@]} -gt 0 ]]; then
    step "installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

driver=${STORAGE_DRIVER:-vfs}
export STORAGE_DRIVER=$driver
if [[ $build -eq 1 ]]; then
    step "building $image"
    scripts/build-image --tag "$image"
fi

podman=(podman --storage-driver "$driver" --runtime runc)
limits=(--ulimit nofile=4096:4096 --ulimit nproc=4096:4096)
hardening=(--read-only --read-only-tmpfs=false --cap-drop ALL --security-opt no-new-privileges)
sim=vram-image-check-sim-$$
nodrv=vram-image-check-nodriver-$$
work=$(mktemp -d)
cleanup() {
    "${podman[@]}" rm --force --ignore "$sim" "$nodrv" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
status_of() { curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$1" || true; }
# wait_status URL CODE SECONDS: polls until URL answers CODE.
wait_status() {
    local deadline=$((SECONDS + $3)) got
    while :; do
        got=$(status_of "$1")
        [[ $got == "$2" ]] && return 0
        [[ $SECONDS -lt $deadline ]] || fail "$1 answered ${got:-nothing}, not $2, within $3 s"
        sleep 0.2
    done
}
# start NAME PORT ARGS...: runs the image detached with the cluster's restrictions, port published.
start() {
    local name=$1 port=$2
    shift 2
    "${podman[@]}" run --detach --name "$name" "${hardening[@]}" "${limits[@]}" \
        --publish "127.0.0.1:$port:18726" "$@" >/dev/null 2>"$work/$name.run.err" ||
        fail "podman run $name: $(cat "$work/$name.run.err")"
}
in_ctr() { "${podman[@]}" exec "$@"; }
# healthcheck NAME: runs the image's HEALTHCHECK command inside NAME.
healthcheck() {
    local out
    out=$("${podman[@]}" healthcheck run "$1" 2>&1) || fail "HEALTHCHECK in $1 failed: $out"
}
# stop_cleanly NAME: SIGTERM, then the exit status must be 0 and the log free of panics.
stop_cleanly() {
    # podman's stderr (its notes about systemd health-check timers, absent here) goes to a file.
    "${podman[@]}" stop --time 10 "$1" >/dev/null 2>"$work/$1.stop.err" || fail "podman stop $1: $(cat "$work/$1.stop.err")"
    local code
    code=$("${podman[@]}" inspect --format '{{.State.ExitCode}}' "$1")
    "${podman[@]}" logs "$1" >"$work/$1.log" 2>&1
    [[ $code == 0 ]] || fail "$1 exited $code after SIGTERM; log: $(tail -5 "$work/$1.log")"
    if grep -qi 'panicked' "$work/$1.log"; then fail "$1 logged a panic: $(grep -i panicked "$work/$1.log")"; fi
}

# --- 1: simulated GPUs
port=$(free_port)
step "run 1: --simulate demo, read-only, published on 127.0.0.1:$port"
start "$sim" "$port" "$image" --simulate demo
wait_status "http://127.0.0.1:$port/-/ready" 200 30
curl -sf --max-time 5 "http://127.0.0.1:$port/metrics" >"$work/sim.metrics" || fail "scrape of /metrics failed"
grep -qx 'vram_nvml_up 1' "$work/sim.metrics" || fail "run 1: no 'vram_nvml_up 1' in /metrics"
for family in vram_total_bytes vram_allocated_bytes vram_free_bytes vram_gpu_info vram_exporter_build_info; do
    grep -q "^$family{" "$work/sim.metrics" || fail "run 1: family $family missing from /metrics"
done
if command -v promtool >/dev/null; then
    promtool check metrics <"$work/sim.metrics" || fail "run 1: promtool check metrics"
elif [[ ${VRAM_REQUIRE_TOOLS:-0} == 1 ]]; then
    fail "promtool not found (VRAM_REQUIRE_TOOLS=1)"
else
    echo "check-image: promtool not found; exposition not linted"
fi
echo "check-image: scraped $(grep -c '^vram_' "$work/sim.metrics") vram_* samples from the host"
healthcheck "$sim"
# shellcheck disable=SC2016 # awk's $2, not the shell's
uid=$(in_ctr "$sim" awk '/^Uid:/ { print $2 }' /proc/1/status)
[[ $uid == 65532 ]] || fail "run 1: PID 1 runs as UID $uid, not 65532"
if err=$(in_ctr "$sim" touch /probe 2>&1); then fail "run 1: the root filesystem accepted a write"; fi
[[ $err == *"Read-only file system"* ]] || fail "run 1: write refused for another reason: $err"
for object in /usr/local/bin/vram-exporter /usr/local/lib/vram-exporter/libnvml_sim.so; do
    libs=$(in_ctr "$sim" ldd "$object") || fail "ldd $object failed: $libs"
    if grep -q 'not found' <<<"$libs"; then fail "ldd $object: $(grep 'not found' <<<"$libs")"; fi
done
"${podman[@]}" run --rm "${hardening[@]}" "${limits[@]}" --network none "$image" \
    --config /usr/share/vram-exporter/vram-exporter.toml --check-config >"$work/check-config.out" 2>&1 ||
    fail "--check-config on the shipped example configuration: $(tail -5 "$work/check-config.out")"
stop_cleanly "$sim"
step "run 1 passed: ready, scraped, healthy, UID 65532, read-only, ldd clean, example config valid"

# --- 2: neither nvml-sim nor a driver library
port=$(free_port)
step "run 2: no NVML library at all, published on 127.0.0.1:$port"
start "$nodrv" "$port" --mount type=tmpfs,destination=/usr/local/lib/vram-exporter,notmpcopyup "$image"
listing=$(in_ctr "$nodrv" ls -A /usr/local/lib/vram-exporter) || fail "run 2: cannot list nvml-sim's directory"
[[ -z $listing ]] || fail "run 2: nvml-sim still visible: $listing"
ld_cache=$(in_ctr "$nodrv" ldconfig -p) || fail "run 2: ldconfig -p failed"
if grep -q libnvidia-ml <<<"$ld_cache"; then fail "run 2: a libnvidia-ml is installed: $(grep libnvidia-ml <<<"$ld_cache")"; fi
wait_status "http://127.0.0.1:$port/-/healthy" 200 30
sleep 3 # a few poll and retry cycles
curl -sf --max-time 5 "http://127.0.0.1:$port/metrics" >"$work/nodrv.metrics" || fail "run 2: scrape failed"
grep -qx 'vram_nvml_up 0' "$work/nodrv.metrics" || fail "run 2: no 'vram_nvml_up 0' in /metrics"
ready=$(status_of "http://127.0.0.1:$port/-/ready")
[[ $ready != 200 ]] || fail "run 2: /-/ready answered 200 without NVML"
[[ $("${podman[@]}" inspect --format '{{.State.Running}}' "$nodrv") == true ]] || fail "run 2: the exporter exited"
healthcheck "$nodrv"
stop_cleanly "$nodrv"
step "run 2 passed: vram_nvml_up 0, /-/ready $ready, healthy, stopped cleanly"
if [[ $build -eq 1 ]]; then cat "${VRAM_IMAGE_CACHE:-$repo/target/image-cache}/image-size.txt"; fi
echo "check-image: image smoke tests passed"
