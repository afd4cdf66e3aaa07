#!/usr/bin/env bash
# Verifies the artefacts scripts/release wrote to dist/: layout and tarball contents, ELF facts (arch,
# newest GLIBC symbol version <= 2.17, stripped, nvml-sim's SONAME), the binaries run (natively, or the
# other arch under qemu-user: --version, --check-config, --simulate serving /metrics), and the .deb:
# metadata, then (as root, host arch) dpkg -i, the service started on nvml-sim and dpkg --purge.
#
#   scripts/check-release.sh                 every arch laid out in dist/
#   scripts/check-release.sh --arch aarch64  only these (repeatable); a missing one is a failure
#   scripts/check-release.sh --ci            CI: installs the Debian packages needed, builds the short form
#                                            with scripts/release, then checks it
#
# With VRAM_REQUIRE_TOOLS=1 (CI) a missing tool (readelf, qemu-user, dpkg as root) fails instead of skipping.
# Needs python3 (free ports, HTTP scrapes) and binutils' readelf.
set -uo pipefail

cd "$(dirname "$0")/.." || exit 2
repo=$PWD
MAX_GLIBC=2.17
# What the exporter may link: glibc's libraries only (zig links the unwinder in), so the .deb depends on libc6 alone.
ALLOWED_NEEDED='^(libc\.so\.6|libm\.so\.6|libpthread\.so\.0|libdl\.so\.2|librt\.so\.1|ld-linux[-a-z0-9_.]*\.so\.[0-9]+)$'
require=${VRAM_REQUIRE_TOOLS:-0}
# --ci: what scripts/release builds before the checks; VRAM_RELEASE_CI_ARGS="--arch x86_64" is the short form
# should CI's time budget need it (see README, "Release artefacts").
read -ra CI_RELEASE_ARGS <<<"${VRAM_RELEASE_CI_ARGS:---arch x86_64 --arch aarch64}"

failures=0
skipped=0
tmp=$(mktemp -d)
pids=()
deb_installed=0
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    if [[ $deb_installed -eq 1 ]]; then dpkg --purge vram-exporter >/dev/null 2>&1; fi
    rm -rf "$tmp"
}
trap cleanup EXIT

step() { printf '\n==> %s\n' "$*"; }
ok() { printf '    ok: %s\n' "$*"; }
fail() { printf '    FAIL: %s\n' "$*"; failures=$((failures + 1)); }
skip() {
    if [[ $require == 1 ]]; then
        fail "$* (VRAM_REQUIRE_TOOLS=1)"
    else
        printf '    SKIPPED: %s\n' "$*"; skipped=$((skipped + 1))
    fi
}

arches=()
ci=0
while [[ $# -gt 0 ]]; do
    case $1 in
        --arch) arches+=("$2"); shift 2 ;;
        --arch=*) arches+=("${1#*=}"); shift ;;
        --ci) ci=1; shift ;;
        *) echo "check-release: unknown argument $1" >&2; exit 2 ;;
    esac
done

if [[ $ci -eq 1 ]]; then
    # CI: install what the checks run on, build the short form, then check it.
    need=()
    command -v readelf >/dev/null || need+=(binutils)
    command -v qemu-aarch64 >/dev/null || need+=(qemu-user)
    [[ -e /usr/aarch64-linux-gnu/lib/libc.so.6 ]] || need+=(libc6-arm64-cross)
    if [[ ${#need[@]} -gt 0 ]]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null || exit 1
    fi
    rm -rf dist
    start=$SECONDS
    scripts/release "${CI_RELEASE_ARGS[@]}" || exit 1
    echo "check-release: scripts/release ${CI_RELEASE_ARGS[*]} took $((SECONDS - start)) s"
    arches=()
fi

command -v readelf >/dev/null || { echo "check-release: readelf (binutils) is required" >&2; exit 1; }
version=$(cargo pkgid -p vram-exporter) || exit 1
version=${version##*[#@]}
if [[ ${#arches[@]} -eq 0 ]]; then
    for d in dist/vram-exporter-"$version"-linux-*/; do
        [[ -d $d ]] && { d=${d%/}; arches+=("${d##*-linux-}"); }
    done
fi
if [[ ${#arches[@]} -eq 0 ]]; then
    echo "check-release: nothing in dist/ for version $version; run scripts/release first" >&2
    exit 1
fi
host_arch=$(uname -m)

# free_port: an unused TCP port on 127.0.0.1.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# scrape PORT TIMEOUT_S OUT: waits for /-/ready on 127.0.0.1:PORT (200 once a poll has succeeded: the
# server answers before NVML is up), then saves the body of /metrics in OUT.
scrape() {
    python3 - "$1" "$2" "$3" <<'EOF'
import sys, time, urllib.request
port, timeout, out = sys.argv[1], float(sys.argv[2]), sys.argv[3]
deadline = time.monotonic() + timeout
while True:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=5):
            pass
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            open(out, "wb").write(r.read())
            sys.exit(0)
    except Exception as e:
        if time.monotonic() > deadline:
            print(f"not ready on port {port} after {timeout:.0f} s: {e}", file=sys.stderr)
            sys.exit(1)
        time.sleep(0.3)
EOF
}

# check_metrics FILE SCENARIO_FILE: NVML is up and every simulated GPU has a vram_total_bytes sample.
check_metrics() {
    local gpus have
    gpus=$(grep -c '^\[\[device\]\]' "$2")
    have=$(grep -c '^vram_total_bytes{' "$1")
    if grep -q '^vram_nvml_up 1$' "$1" && [[ $have -eq $gpus ]]; then
        return 0
    fi
    echo "expected vram_nvml_up 1 and $gpus vram_total_bytes samples, got $have:" >&2
    grep -E '^vram_(nvml_up|total_bytes)' "$1" | head -n 8 >&2
    return 1
}

# serve_and_scrape WHAT SCENARIO_FILE DIR CMD...: starts CMD (an exporter listening on $port) in DIR, checks
# its /metrics, stops it with SIGTERM and expects a clean exit.
serve_and_scrape() {
    local what=$1 scenario=$2 dir=$3 pid rc
    shift 3
    (cd "$dir" && exec "$@") >"$tmp/serve.log" 2>&1 &
    pid=$!
    pids+=("$pid")
    if scrape "$port" 60 "$tmp/metrics" 2>"$tmp/scrape.err" && check_metrics "$tmp/metrics" "$scenario" 2>>"$tmp/scrape.err"; then
        ok "$what: /metrics answered, $(grep -c '^vram_' "$tmp/metrics") vram_* samples"
    else
        sed 's/^/      /' "$tmp/scrape.err" "$tmp/serve.log" | tail -n 20
        fail "$what: /metrics"
    fi
    kill -TERM "$pid" 2>/dev/null
    rc=0
    wait "$pid" || rc=$?
    if [[ $rc -eq 0 ]]; then ok "$what: exited 0 on SIGTERM"; else fail "$what: exit status $rc after SIGTERM"; fi
}

# runner ARCH: prints the command prefix that runs an ARCH binary here (empty when native).
runner() {
    if [[ $1 == "$host_arch" ]]; then return 0; fi
    local qemu sysroot="/usr/$1-linux-gnu"
    qemu=$(command -v "qemu-$1" || command -v "qemu-$1-static") || return 1
    [[ -e $sysroot/lib/libc.so.6 ]] || return 1
    echo "$qemu -L $sysroot"
}

# glibc_max FILE: the newest GLIBC_x.y version FILE requires (from its version-needs section).
glibc_max() {
    readelf -V -W "$1" | grep -oE 'Name: GLIBC_[0-9.]+' | sed 's/Name: GLIBC_//' | sort -V | tail -n 1
}

declare -A sizes
for arch in "${arches[@]}"; do
    name="vram-exporter-$version-linux-$arch"
    dir="dist/$name"
    case $arch in
        x86_64) machine='Advanced Micro Devices X86-64'; debarch=amd64 ;;
        aarch64) machine='AArch64'; debarch=arm64 ;;
        *) fail "unknown arch $arch"; continue ;;
    esac

    step "$arch: layout of $dir"
    missing=0
    for f in vram-exporter libnvml_sim.so vram-exporter.toml vram-exporter.service cleanup.conf README.md \
        scenarios/demo.toml alerts/vram-exporter.rules.yml alerts/alertmanager.yml; do
        [[ -f $dir/$f ]] || { fail "$dir/$f is missing"; missing=1; }
    done
    for d in scenarios alerts dashboards; do
        src=$d; [[ $d == scenarios ]] && src=nvml-sim/scenarios
        want=$(cd "$src" && find . -maxdepth 1 -type f \( -name '*.toml' -o -name '*.yml' -o -name '*.json' \) | sort)
        have=$(cd "$dir/$d" 2>/dev/null && find . -mindepth 1 | sort)
        [[ "$want" == "$have" ]] || { fail "$dir/$d/ differs from $src/"; missing=1; }
    done
    [[ -x $dir/vram-exporter ]] || { fail "$dir/vram-exporter is not executable"; missing=1; }
    [[ $missing -eq 0 ]] && ok "binary, nvml-sim, scenarios, configuration, unit, alerts, dashboards, README"
    [[ -f $dir/vram-exporter ]] || continue

    step "$arch: ELF checks"
    for f in vram-exporter libnvml_sim.so; do
        path=$dir/$f
        [[ -f $path ]] || continue
        if readelf -h "$path" | grep -q "Machine:[[:space:]]*$machine"; then ok "$f is $machine"; else fail "$f is not $machine"; fi
        g=$(glibc_max "$path")
        if [[ -n $g && $(printf '%s\n%s\n' "$g" "$MAX_GLIBC" | sort -V | tail -n 1) == "$MAX_GLIBC" ]]; then
            ok "$f needs GLIBC_$g at most (limit $MAX_GLIBC)"
        else
            fail "$f needs GLIBC_${g:-?} (limit $MAX_GLIBC)"
        fi
        # .debug_gdb_scripts is a few loaded bytes naming Rust's gdb helpers, not debug information.
        if readelf -S -W "$path" | grep -E '\] \.(symtab|debug_[a-z_]+) ' | grep -qv '\.debug_gdb_scripts '; then
            fail "$f is not stripped (.symtab or .debug_* present)"
        else
            ok "$f is stripped"
        fi
        sizes["$arch $f"]=$(stat -c %s "$path")
    done
    bad_needed=$(readelf -d -W "$dir/vram-exporter" | sed -nE 's/.*\(NEEDED\).*\[(.*)\]/\1/p' | grep -vE "$ALLOWED_NEEDED")
    if [[ -z $bad_needed ]]; then ok "vram-exporter links only glibc's libraries"; else fail "vram-exporter needs $bad_needed"; fi
    if readelf -d -W "$dir/libnvml_sim.so" | grep -q 'SONAME.*\[libnvidia-ml\.so\.1\]'; then ok "libnvml_sim.so SONAME is libnvidia-ml.so.1"; else fail "libnvml_sim.so SONAME"; fi
    if readelf -d -W "$dir/libnvml_sim.so" | grep -qE 'FLAGS_1.*NODELETE'; then ok "libnvml_sim.so is linked -z nodelete"; else fail "libnvml_sim.so lacks -z nodelete"; fi

    step "$arch: tarball"
    tarball="dist/$name.tar.gz"
    if [[ -f $tarball ]]; then
        sizes["$arch tar.gz"]=$(stat -c %s "$tarball")
        if diff <(tar -tzf "$tarball" | sed 's#/$##' | sort) <(cd dist && find "$name" | sort) >"$tmp/diff"; then
            ok "$tarball holds exactly $dir"
        else
            sed 's/^/      /' "$tmp/diff" | head -n 20; fail "$tarball differs from $dir"
        fi
    else
        fail "$tarball is missing"
    fi

    step "$arch: run the binary from the unpacked tarball"
    if ! prefix=$(runner "$arch"); then
        skip "no qemu-$arch or /usr/$arch-linux-gnu sysroot (Debian: qemu-user, libc6-${debarch}-cross, libgcc-s1-${debarch}-cross)"
    elif [[ -f $tarball ]]; then
        rm -rf "$tmp/unpacked" && mkdir -p "$tmp/unpacked" && tar -C "$tmp/unpacked" -xzf "$tarball"
        bin="$tmp/unpacked/$name/vram-exporter"
        read -ra run <<<"$prefix"
        [[ -n $prefix ]] && echo "    (under $prefix)"
        out=$("${run[@]}" "$bin" --version 2>&1)
        if [[ $out == "vram-exporter $version"* ]]; then ok "--version: $(head -n 1 <<<"$out")"; else fail "--version printed: $out"; fi
        if "${run[@]}" "$bin" --config "$tmp/unpacked/$name/vram-exporter.toml" --check-config >"$tmp/check.out" 2>&1; then
            ok "--check-config accepts the bundled vram-exporter.toml"
        else
            sed 's/^/      /' "$tmp/check.out" | tail -n 10; fail "--check-config on the bundled vram-exporter.toml"
        fi
        port=$(free_port)
        # From another directory: the library and the scenario must be found beside the binary.
        serve_and_scrape "--simulate demo" "$repo/nvml-sim/scenarios/demo.toml" "$tmp" \
            "${run[@]}" "$bin" --simulate demo --listen "127.0.0.1:$port"
    fi

    step "$arch: .deb"
    deb=$(find dist -maxdepth 1 -name "vram-exporter_${version}-*_$debarch.deb" | head -n 1)
    if [[ -z $deb ]]; then
        fail "no dist/vram-exporter_${version}-*_$debarch.deb"
        continue
    fi
    if ! command -v dpkg-deb >/dev/null; then skip "dpkg-deb not found"; continue; fi
    sizes["$arch .deb"]=$(stat -c %s "$deb")
    info=$(dpkg-deb -f "$deb" Package Version Architecture Depends)
    if grep -qx "Architecture: $debarch" <<<"$info" && grep -qx 'Depends: libc6 (>= 2.17)' <<<"$info"; then
        ok "$(tr '\n' ';' <<<"$info")"
    else
        fail "control fields: $info"
    fi
    dpkg-deb -c "$deb" | awk '{print $NF}' | sed 's#^\./#/#' >"$tmp/contents"
    for f in /usr/bin/vram-exporter /usr/lib/vram-exporter/libnvml_sim.so /usr/share/vram-exporter/scenarios/demo.toml \
        /usr/share/vram-exporter/alerts/vram-exporter.rules.yml /usr/share/vram-exporter/dashboards/vram-gpu.json \
        /etc/vram-exporter/config.toml; do
        grep -qx "$f" "$tmp/contents" || fail "$deb lacks $f"
    done
    grep -qE '^/(usr/)?lib/systemd/system/vram-exporter\.service$' "$tmp/contents" || fail "$deb lacks the systemd unit"
    if dpkg-deb --ctrl-tarfile "$deb" | tar -xOf - ./conffiles 2>/dev/null | grep -qx /etc/vram-exporter/config.toml; then
        ok "/etc/vram-exporter/config.toml is a conffile"
    else
        fail "/etc/vram-exporter/config.toml is not a conffile"
    fi
    if dpkg-deb --ctrl-tarfile "$deb" | tar -xOf - ./postinst 2>/dev/null | grep -qE 'deb-systemd-invoke +(start|restart)|systemctl .*(start|enable) '; then
        fail "postinst starts the service"
    else
        ok "postinst does not start the service (only try-restart on upgrade)"
    fi

    step "$arch: dpkg -i, the service on nvml-sim, dpkg --purge"
    if [[ $arch != "$host_arch" ]]; then
        echo "    (installed only on a host of its own arch, $arch; this is $host_arch)"
        continue
    fi
    if [[ $(id -u) -ne 0 ]] || ! command -v dpkg >/dev/null; then skip "installing needs root and dpkg"; continue; fi
    if dpkg-query -W -f='${Status}' vram-exporter 2>/dev/null | grep -q 'ok installed'; then
        fail "a vram-exporter package is already installed here; not touching it"
        continue
    fi
    if ! dpkg -i "$deb" >"$tmp/dpkg.out" 2>&1; then
        sed 's/^/      /' "$tmp/dpkg.out" | tail -n 20; fail "dpkg -i $deb"
        dpkg --purge vram-exporter >/dev/null 2>&1
        continue
    fi
    deb_installed=1
    ok "dpkg -i $deb"
    unit=/usr/lib/systemd/system/vram-exporter.service
    [[ -f $unit ]] || unit=/lib/systemd/system/vram-exporter.service
    if ls /etc/systemd/system/*.wants/vram-exporter.service >/dev/null 2>&1; then
        fail "the unit was enabled on install"
    else
        ok "the unit is installed ($unit) and not enabled"
    fi
    systemd_running=0
    [[ -d /run/systemd/system ]] && systemd_running=1
    if [[ $systemd_running -eq 1 ]] && systemctl is-active --quiet vram-exporter; then fail "the service was started on install"; fi
    # ExecStartPre is the unit's --check-config of the packaged default configuration.
    read -ra pre <<<"$(sed -n 's/^ExecStartPre=[-+!@:]*//p' "$unit" | head -n 1)"
    read -ra start <<<"$(sed -n 's/^ExecStart=[-+!@:]*//p' "$unit" | head -n 1)"
    port=$(free_port)
    if [[ $systemd_running -eq 1 ]]; then
        # systemd is PID 1: start the real service, with a runtime drop-in that adds --simulate.
        mkdir -p /run/systemd/system/vram-exporter.service.d
        printf '[Service]\nExecStart=\nExecStart=%s --simulate demo --listen 127.0.0.1:%s\n' "${start[*]}" "$port" \
            >/run/systemd/system/vram-exporter.service.d/check-release.conf
        systemctl daemon-reload
        if systemctl start vram-exporter && scrape "$port" 60 "$tmp/metrics" 2>"$tmp/scrape.err" \
            && check_metrics "$tmp/metrics" /usr/share/vram-exporter/scenarios/demo.toml 2>>"$tmp/scrape.err"; then
            ok "systemctl start vram-exporter (on nvml-sim): /metrics answered"
        else
            journalctl -u vram-exporter --no-pager -n 20 2>/dev/null | sed 's/^/      /'
            sed 's/^/      /' "$tmp/scrape.err"; fail "the service on nvml-sim"
        fi
        systemctl stop vram-exporter
        rm -rf /run/systemd/system/vram-exporter.service.d
        systemctl daemon-reload
    else
        # No systemd as PID 1 here: run ExecStartPre and ExecStart as the unit would — a clean environment
        # (plus the unit's Environment=), an unprivileged user (DynamicUser=), no new privileges, / as cwd.
        echo "    (systemd is not PID 1: running the unit's command lines directly)"
        envs=(PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8)
        while IFS= read -r e; do envs+=("$e"); done < <(sed -n 's/^Environment=//p' "$unit")
        as_unit=(env -i "${envs[@]}" setpriv --reuid=65534 --regid=65534 --clear-groups --no-new-privs)
        if (cd / && "${as_unit[@]}" "${pre[@]}") >"$tmp/pre.out" 2>&1; then
            ok "ExecStartPre (${pre[*]}) accepts the packaged default configuration"
        else
            sed 's/^/      /' "$tmp/pre.out" | tail -n 10; fail "ExecStartPre: ${pre[*]}"
        fi
        serve_and_scrape "ExecStart + --simulate demo" /usr/share/vram-exporter/scenarios/demo.toml / \
            "${as_unit[@]}" "${start[@]}" --simulate demo --listen "127.0.0.1:$port"
    fi
    if dpkg --purge vram-exporter >"$tmp/dpkg.out" 2>&1; then
        deb_installed=0
        leftovers=$(ls -d /usr/bin/vram-exporter /etc/vram-exporter /usr/lib/vram-exporter /usr/share/vram-exporter "$unit" 2>/dev/null)
        if [[ -z $leftovers ]]; then ok "dpkg --purge removed everything"; else fail "left after purge: $leftovers"; fi
    else
        sed 's/^/      /' "$tmp/dpkg.out" | tail -n 10; fail "dpkg --purge vram-exporter"
    fi
done

step "sizes (bytes, MiB)"
for k in "${!sizes[@]}"; do
    printf '    %-28s %10d  %6.2f MiB\n' "$k" "${sizes[$k]}" "$(echo "${sizes[$k]}" | awk '{print $1/1048576}')"
done | sort

echo
if [[ $failures -gt 0 ]]; then
    echo "check-release: $failures check(s) FAILED"
    exit 1
fi
echo "check-release: all checks passed ($skipped skipped)"
