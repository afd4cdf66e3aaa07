#!/usr/bin/env bash
# scripts/check-image.sh — builds the container image with no registry (scripts/build-image, from
# target/release) and smoke-tests it under podman the way a cluster runs it: non-root, read-only root
# filesystem with no writable tmpfs, every capability dropped, the port published to the host.
#
#   1. `--simulate demo`: /-/ready turns 200 and /metrics, scraped from the host through the published
#      port, has the GPU families and `vram_nvml_up 1` (promtool check metrics clean); /-/healthy
#      answers 200 (the image has no shell, so no HEALTHCHECK: the orchestrator probes); PID 1 runs as
#      UID 65532; its root filesystem is mounted read-only; the image's own dynamic loader (`ld.so
#      --list`, what ldd runs, chrooted into the image's filesystem from the host) finds every library
#      of the exporter and nvml-sim; the image holds no shell; `--check-config` passes on the shipped
#      example configuration.
#   2. no nvml-sim (its directory hidden by an empty tmpfs) and no driver library: the exporter serves
#      `vram_nvml_up 0`, stays up, stays healthy and not ready.
#   Both containers must stop cleanly on SIGTERM (exit status 0) and log no panic.
#   The containers' files and state are read from the host (/proc/PID of their PID 1, `podman image
#   mount`): the image has no shell or tools to run inside it.
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
# pid_of NAME: the host PID of the container's PID 1 (its /proc/PID/root is the container's filesystem).
pid_of() { "${podman[@]}" inspect --format '{{.State.Pid}}' "$1"; }
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
wait_status "http://127.0.0.1:$port/-/healthy" 200 5
[[ $("${podman[@]}" image inspect --format '{{.Config.Healthcheck}}' "$image") == "<nil>" ]] ||
    fail "run 1: the image declares a HEALTHCHECK, which needs a shell it does not have"
pid=$(pid_of "$sim")
# shellcheck disable=SC2016 # awk's $2, not the shell's
uid=$(awk '/^Uid:/ { print $2 }' "/proc/$pid/status")
[[ $uid == 65532 ]] || fail "run 1: PID 1 runs as UID $uid, not 65532"
# The container's root mount as its own mount namespace sees it (mountinfo: field 5 the mount point,
# field 6 the per-mount options).
# shellcheck disable=SC2016 # awk's fields, not the shell's
root_opts=$(awk '$5 == "/" { print $6 }' "/proc/$pid/mountinfo" | tail -1)
[[ ,$root_opts, == *,ro,* ]] || fail "run 1: the root filesystem is mounted '$root_opts', not read-only"
rootfs=$("${podman[@]}" image mount "$image") || fail "podman image mount $image failed"
loader=$(readelf -l "$rootfs/usr/local/bin/vram-exporter" | sed -n 's/.*Requesting program interpreter: \(.*\)]/\1/p')
[[ -n $loader ]] || fail "the exporter names no program interpreter"
for object in /usr/local/bin/vram-exporter /usr/local/lib/vram-exporter/libnvml_sim.so; do
    libs=$(chroot "$rootfs" "$loader" --list "$object" 2>&1) || fail "$loader --list $object in the image failed: $libs"
    if grep -q 'not found' <<<"$libs"; then fail "$object in the image: $(grep 'not found' <<<"$libs")"; fi
done
for shell in bin/sh bin/bash usr/bin/sh usr/bin/bash; do
    [[ ! -e $rootfs/$shell ]] || fail "the image holds /$shell"
done
"${podman[@]}" image unmount "$image" >/dev/null
"${podman[@]}" run --rm "${hardening[@]}" "${limits[@]}" --network none "$image" \
    --config /usr/share/vram-exporter/vram-exporter.toml --check-config >"$work/check-config.out" 2>&1 ||
    fail "--check-config on the shipped example configuration: $(tail -5 "$work/check-config.out")"
stop_cleanly "$sim"
step "run 1 passed: ready, scraped, healthy, UID 65532, read-only, libraries found, no shell, example config valid"

# --- 2: neither nvml-sim nor a driver library
port=$(free_port)
step "run 2: no NVML library at all, published on 127.0.0.1:$port"
start "$nodrv" "$port" --mount type=tmpfs,destination=/usr/local/lib/vram-exporter,notmpcopyup "$image"
wait_status "http://127.0.0.1:$port/-/healthy" 200 30
root=/proc/$(pid_of "$nodrv")/root
listing=$(ls -A "$root/usr/local/lib/vram-exporter") || fail "run 2: cannot list nvml-sim's directory"
[[ -z $listing ]] || fail "run 2: nvml-sim still visible: $listing"
# No ld.so.cache in the image: the loader searches its default directories, so no libnvidia-ml may lie anywhere.
found=$(find "$root/" -xdev -name 'libnvidia-ml*' -print 2>/dev/null || true)
[[ -z $found ]] || fail "run 2: a libnvidia-ml is installed: ${found//$root/}"
sleep 3 # a few poll and retry cycles
curl -sf --max-time 5 "http://127.0.0.1:$port/metrics" >"$work/nodrv.metrics" || fail "run 2: scrape failed"
grep -qx 'vram_nvml_up 0' "$work/nodrv.metrics" || fail "run 2: no 'vram_nvml_up 0' in /metrics"
ready=$(status_of "http://127.0.0.1:$port/-/ready")
[[ $ready != 200 ]] || fail "run 2: /-/ready answered 200 without NVML"
[[ $("${podman[@]}" inspect --format '{{.State.Running}}' "$nodrv") == true ]] || fail "run 2: the exporter exited"
[[ $(status_of "http://127.0.0.1:$port/-/healthy") == 200 ]] || fail "run 2: /-/healthy stopped answering 200"
stop_cleanly "$nodrv"
step "run 2 passed: vram_nvml_up 0, /-/ready $ready, healthy, stopped cleanly"
if [[ $build -eq 1 ]]; then cat "${VRAM_IMAGE_CACHE:-$repo/target/image-cache}/image-size.txt"; fi
echo "check-image: image smoke tests passed"
