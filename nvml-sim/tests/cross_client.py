# Cross-client check: nvidia-ml-py (pynvml) and nvitop-exporter against nvml-sim.
#
# pynvml must read the same device count, names, UUIDs, memory (v1 and v2) and process lists as
# nvml-wrapper does (printed as JSON by the `dump` example), and nvitop-exporter must start, serve
# /metrics with the scenario's memory values, and never hit a missing NVML function.
#
# Usage (inside a venv with nvidia-ml-py and nvitop-exporter):
#   python cross_client.py <dir with libnvml_sim.so and examples/dump> <scenarios dir>
# Normally run through cross_client.sh.

import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

MIB = 1 << 20
# Scenario time used for every comparison (deterministic through NVML_SIM_TIME_FILE).
SCENARIO_TIME = "170"
# Symbols nvitop probes for on purpose and that nvml-sim deliberately does not export (exporting
# them would switch nvitop to another process-struct layout, see the nvml-sim README).
EXPECTED_PROBE_MISSES = {
    "nvmlDeviceGetConfComputeMemSizeInfo",
    "nvmlDeviceGetRunningProcessDetailList",
}

failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print(f"FAIL: {what}", file=sys.stderr)


def env_for(libdir, scenario, time_file):
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = libdir + (":" + env["LD_LIBRARY_PATH"] if env.get("LD_LIBRARY_PATH") else "")
    env["NVML_SIM_SCENARIO"] = scenario
    env["NVML_SIM_TIME_FILE"] = time_file
    return env


def run_dump(build_dir, lib, env):
    exe = os.path.join(build_dir, "examples", "dump")
    if not os.path.exists(exe):
        sys.exit(f"{exe} not found: build it first with `cargo build -p nvml-sim --examples`")
    out = subprocess.run([exe, lib], env=env, check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


PYNVML_PROBE = r"""
import json, sys
import pynvml as n

def procs(fn, h):
    try:
        return [{"pid": p.pid, "used_bytes": p.usedGpuMemory} for p in fn(h)]
    except n.NVMLError as e:
        return {"error": str(e)}

def device(h):
    m1 = n.nvmlDeviceGetMemoryInfo(h)
    m2 = n.nvmlDeviceGetMemoryInfo(h, version=n.nvmlMemory_v2)
    return {
        "name": n.nvmlDeviceGetName(h),
        "uuid": n.nvmlDeviceGetUUID(h),
        "pci_bus_id": n.nvmlDeviceGetPciInfo(h).busId,
        "memory_v1": {"total": m1.total, "free": m1.free, "used": m1.used},
        "memory_v2": {"total": m2.total, "reserved": m2.reserved, "free": m2.free, "used": m2.used},
        "compute_processes": procs(n.nvmlDeviceGetComputeRunningProcesses, h),
        "compute_processes_v2": procs(n.nvmlDeviceGetComputeRunningProcesses_v2, h),
        "graphics_processes": procs(n.nvmlDeviceGetGraphicsRunningProcesses, h),
    }

n.nvmlInit()
out = {"driver_version": n.nvmlSystemGetDriverVersion(),
       "cuda_driver_version": n.nvmlSystemGetCudaDriverVersion(),
       "devices": []}
for i in range(n.nvmlDeviceGetCount()):
    h = n.nvmlDeviceGetHandleByIndex(i)
    d = device(h)
    d["mig_devices"] = []
    try:
        current, _ = n.nvmlDeviceGetMigMode(h)
    except n.NVMLError_NotSupported:
        current = 0
    if current == 1:
        for m in range(n.nvmlDeviceGetMaxMigDeviceCount(h)):
            try:
                mh = n.nvmlDeviceGetMigDeviceHandleByIndex(h, m)
            except n.NVMLError_NotFound:
                continue
            d["mig_devices"].append(device(mh))
    names = {}
    for p in d["compute_processes"] if isinstance(d["compute_processes"], list) else []:
        names[str(p["pid"])] = n.nvmlSystemGetProcessName(p["pid"])
    d["process_names"] = names
    out["devices"].append(d)
n.nvmlShutdown()
print(json.dumps(out))
"""


def run_pynvml(env):
    out = subprocess.run([sys.executable, "-c", PYNVML_PROBE], env=env, check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout)


def compare_device(tag, want, got):
    check(got["name"] == want["name"], f"{tag} name {got['name']!r} != {want['name']!r}")
    check(got["uuid"] == want["uuid"], f"{tag} uuid {got['uuid']!r} != {want['uuid']!r}")
    check(got["pci_bus_id"] == want["pci_bus_id"], f"{tag} pci bus id differs")
    w2, g2 = want["memory_v2"], got["memory_v2"]
    check(g2 == w2, f"{tag} memory v2 {g2} != {w2}")
    g1 = got["memory_v1"]
    check(g1 == {"total": w2["total"], "free": w2["free"], "used": w2["used"] + w2["reserved"]},
          f"{tag} memory v1 {g1} inconsistent with v2 {w2}")
    check(g2["used"] + g2["reserved"] + g2["free"] == g2["total"], f"{tag} v2 does not add up")
    want_procs = [(p["pid"], p["used_bytes"]) for p in want["compute_processes"]]
    for key in ("compute_processes", "compute_processes_v2"):
        got_procs = [(p["pid"], p["used_bytes"]) for p in got[key]]
        check(got_procs == want_procs, f"{tag} {key} {got_procs} != {want_procs}")
    want_g = [(p["pid"], p["used_bytes"]) for p in want["graphics_processes"]]
    got_g = [(p["pid"], p["used_bytes"]) for p in got["graphics_processes"]]
    check(got_g == want_g, f"{tag} graphics processes {got_g} != {want_g}")
    for p in want["compute_processes"]:
        if "process_names" in got:
            check(got["process_names"].get(str(p["pid"])) == p["name"], f"{tag} name of pid {p['pid']}")


def compare(tag, want, got):
    check(len(got["devices"]) == want["device_count"], f"{tag}: device count differs")
    check(got["driver_version"] == want["driver_version"], f"{tag}: driver version differs")
    check(got["cuda_driver_version"] == want["cuda_driver_version"], f"{tag}: CUDA version differs")
    for i, (w, g) in enumerate(zip(want["devices"], got["devices"])):
        compare_device(f"{tag} gpu {i}", w, g)
        check(len(w["mig_devices"]) == len(g["mig_devices"]), f"{tag} gpu {i}: MIG device count")
        for m, (wm, gm) in enumerate(zip(w["mig_devices"], g["mig_devices"])):
            compare_device(f"{tag} gpu {i} mig {m}", wm, gm)


EXPORTER_WRAPPER = r"""
import sys
import pynvml
_orig = pynvml._nvmlGetFunctionPointer
def _traced(name):
    try:
        return _orig(name)
    except pynvml.NVMLError as e:
        if e.value == pynvml.NVML_ERROR_FUNCTION_NOT_FOUND:
            print("nvml-lookup-miss: " + name, file=sys.stderr, flush=True)
        raise
pynvml._nvmlGetFunctionPointer = _traced
from nvitop_exporter.cli import main
sys.exit(main())
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_exporter(env, want):
    port = free_port()
    log = tempfile.TemporaryFile(mode="w+")
    proc = subprocess.Popen(
        [sys.executable, "-c", EXPORTER_WRAPPER, "--bind-address", "127.0.0.1", "--port", str(port),
         "--interval", "1"],
        env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
    body = None
    try:
        deadline = time.time() + 60
        while time.time() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                    text = r.read().decode()
                if "gpu_memory_used_MiB{" in text:
                    body = text
                    # Let it run a few more collections to surface late failures.
                    time.sleep(3)
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                        body = r.read().decode()
                    break
            except OSError:
                pass
            time.sleep(0.5)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    log.seek(0)
    output = log.read()
    check(body is not None, "nvitop-exporter served no gpu_memory_used_MiB metrics; output:\n" + output[-3000:])
    check("FunctionNotFound" not in output and "Function Not Found" not in output,
          "nvitop-exporter output mentions FunctionNotFound:\n" + output[-3000:])
    misses = set(re.findall(r"nvml-lookup-miss: (\w+)", output))
    check(misses <= EXPECTED_PROBE_MISSES, f"nvitop looked up missing NVML functions: {sorted(misses - EXPECTED_PROBE_MISSES)}")
    if body is None:
        return
    for d in want["devices"]:
        for metric, value in (("gpu_memory_used_MiB", d["memory_v2"]["used"]),
                              ("gpu_memory_total_MiB", d["memory_v2"]["total"]),
                              ("gpu_memory_free_MiB", d["memory_v2"]["free"])):
            pat = re.compile(r"^" + metric + r"\{[^}]*uuid=\"" + re.escape(d["uuid"]) + r"\"[^}]*\} (\S+)$", re.M)
            m = pat.search(body)
            check(m is not None, f"nvitop-exporter: no {metric} for {d['uuid']}")
            if m:
                got = float(m.group(1))
                check(abs(got - value / MIB) < 0.01, f"nvitop-exporter: {metric} {d['uuid']} = {got}, want {value / MIB}")
    n_proc = len(re.findall(r"^process_gpu_memory_MiB\{", body, re.M))
    want_proc = sum(len(d["compute_processes"]) for d in want["devices"])
    check(n_proc >= want_proc, f"nvitop-exporter: {n_proc} process series, want at least {want_proc}")
    print(f"nvitop-exporter: {len(want['devices'])} GPUs and {n_proc} process series served; "
          f"probed-but-absent functions: {sorted(misses) or 'none'}")


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: cross_client.py <build dir with libnvml_sim.so> <scenarios dir>")
    build_dir, scenarios = (os.path.abspath(a) for a in sys.argv[1:])
    so = os.path.join(build_dir, "libnvml_sim.so")
    if not os.path.exists(so):
        sys.exit(f"{so} not found: build it first with `cargo build -p nvml-sim --examples`")
    with tempfile.TemporaryDirectory() as tmp:
        # pynvml dlopens the bare name libnvidia-ml.so.1, found through LD_LIBRARY_PATH.
        libdir = os.path.join(tmp, "lib")
        os.mkdir(libdir)
        lib = os.path.join(libdir, "libnvidia-ml.so.1")
        os.symlink(so, lib)
        time_file = os.path.join(tmp, "time")
        with open(time_file, "w") as f:
            f.write(SCENARIO_TIME)
        for name in ("demo.toml", "mig.toml"):
            env = env_for(libdir, os.path.join(scenarios, name), time_file)
            want = run_dump(build_dir, lib, env)
            got = run_pynvml(env)
            compare(name, want, got)
            print(f"pynvml vs nvml-wrapper on {name}: {want['device_count']} GPUs compared")
        env = env_for(libdir, os.path.join(scenarios, "demo.toml"), time_file)
        run_exporter(env, run_dump(build_dir, lib, env))
    if failures:
        print(f"{len(failures)} cross-client check(s) failed", file=sys.stderr)
        return 1
    print("cross-client checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
