# main.py: gpu-check's flags and the order of its checks (readings, footprint, cleanup loop, leak).
"""gpu-check: does vram-exporter read this node's GPUs right, does the cleanup loop work with its
PyTorch, and what does the exporter cost? See scripts/gpu-check --help and README.md.

Exit status: 0 every check passed, 1 a check failed (a mismatch), 2 no GPU on this host or
invalid arguments. gpu-check never changes GPU settings; its job needs about 4 × --step of free
memory on one GPU (4 GiB with the default) and everything it starts is stopped before it exits.
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import checks
import procs
from checks import GIB, fmt_bytes, section
from readings import NoGpu, open_reader

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
JOB_NAME = "gpu-check-job"
# nvml-sim scenarios put the job on a simulated GPU with these (pid_env / memory_file_env).
JOB_PID_ENV = "GPU_CHECK_JOB_PID"
JOB_MEM_ENV = "GPU_CHECK_JOB_MEM"
# Where the job's vram_client finds the exporter's clients socket.
CLIENT_SOCKET_ENV = "VRAM_EXPORTER_CLIENT_SOCKET"


def _size(text):
    try:
        return checks.parse_size(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from e


def _duration(text):
    try:
        return checks.parse_duration(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from e


def _default_exporter():
    built = os.path.join(REPO, "target", "release", "vram-exporter")
    return built if os.access(built, os.X_OK) else shutil.which("vram-exporter")


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="gpu-check",
        description="Checks vram-exporter on this node's GPUs against nvidia-ml-py (or nvidia-smi), "
        "runs a PyTorch job through soft and hard limits, the SIGUSR1 cleanup and a leak, and "
        "reports the exporter's footprint. Exit 0: all checks passed; 1: a check failed; "
        "2: no GPU or invalid arguments.",
    )
    p.add_argument("--exporter", default=_default_exporter(),
                   help="the vram-exporter binary (default: target/release/vram-exporter, else PATH)")
    p.add_argument("--nvml-library", help="NVML library for the exporter and nvidia-ml-py "
                   "(default: the driver's libnvidia-ml.so.1)")
    p.add_argument("--baseline", help="the nvml-baseline binary (default: nvml-baseline "
                   "next to the exporter; `cargo build --release -p vram-bench`)")
    p.add_argument("--gpu", type=int, help="GPU index for the job (default: the most free memory)")
    p.add_argument("--step", type=_size, default=GIB,
                   help="the job's allocation step; limits are set 1 and 2 steps above the GPU's "
                   "use; needs about 4 steps free (default 1GiB)")
    p.add_argument("--poll", type=_duration, default=0.25,
                   help="the exporter's poll interval during the job (default 250ms)")
    p.add_argument("--window", type=_duration, default=20.0,
                   help="how long CPU is measured in the footprint check (default 20s)")
    p.add_argument("--no-job", action="store_true", help="skip the PyTorch job")
    p.add_argument("--job-backend", choices=("torch", "memfile"), default="torch",
                   help="torch (default) or memfile: a memory-file stand-in for PyTorch on "
                   f"nvml-sim (the scenario's job entry uses pid_env={JOB_PID_ENV}, "
                   f"memory_file_env={JOB_MEM_ENV})")
    p.add_argument("--job-python", default=sys.executable,
                   help="the Python that runs the job (the one with PyTorch; default: this one)")
    p.add_argument("--no-nvitop", action="store_true",
                   help="do not run nvitop-exporter side by side even when it is installed")
    p.add_argument("--json", metavar="FILE", help="also write the result as JSON to FILE")
    args = p.parse_args(argv)
    if not args.exporter:
        p.error("--exporter: no vram-exporter found (build it: cargo build --release)")
    if not os.access(args.exporter, os.X_OK):
        p.error(f"--exporter {args.exporter!r}: not an executable file")
    if args.nvml_library and not os.path.isfile(args.nvml_library):
        p.error(f"--nvml-library {args.nvml_library!r}: no such file")
    if args.poll < 0.1:
        p.error(f"--poll {args.poll}s: the exporter polls at most every 100ms")
    if args.gpu is not None and args.gpu < 0:
        p.error(f"--gpu {args.gpu}: must be a GPU index (0 or more)")
    if args.baseline is None:
        candidate = os.path.join(os.path.dirname(args.exporter), "nvml-baseline")
        args.baseline = candidate if os.access(candidate, os.X_OK) else None
    elif not os.access(args.baseline, os.X_OK):
        p.error(f"--baseline {args.baseline!r}: not an executable file")
    return args


class Run:
    """One gpu-check run: the reader, a scratch directory, and the report's sections."""

    def __init__(self, args, reader):
        self.args = args
        self.reader = reader
        self.tmp = tempfile.mkdtemp(prefix="gpu-check-")
        self.sections = []
        self.env = dict(os.environ)

    def config(self, name, text):
        path = os.path.join(self.tmp, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def exporter(self, config_text, name):
        e = procs.Exporter(self.args.exporter, self.config(name, config_text),
                           self.args.nvml_library, env=self.env)
        if not e.wait_ready():
            raise RuntimeError("vram-exporter never became ready:\n" + "\n".join(e.log.all[-15:]))
        return e

    def compare_round(self, exporter, poll):
        """One scrape against NVML readings spanning the poll before it; returns mismatches."""
        readings = []
        for _ in range(4):
            readings.append(self.reader.read())
            time.sleep(poll / 4)
        readings.append(self.reader.read())
        samples = checks.parse_exposition(exporter.metrics())
        readings.append(self.reader.read())
        return checks.compare_gpus(checks.exported_gpus(samples), readings,
                                   granularity=self.reader.granularity)


# --- readings and footprint -----------------------------------------------------------------------

def footprint(run):
    args = run.args
    exporter = run.exporter('[poll]\ninterval = "1s"\n', "footprint.toml")
    baseline = None
    if args.baseline:
        argv = [args.baseline, "--interval", "1s"]
        if args.nvml_library:
            argv += ["--nvml-library", args.nvml_library]
        baseline = procs.spawn(argv, env=run.env, stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if procs.Lines(baseline.stderr).wait(lambda l: "polling" in l, 30) is None:
            raise RuntimeError("nvml-baseline did not start")
    nvitop = None if args.no_nvitop else start_nvitop(run)
    time.sleep(5)  # warm-up: a few polls, caches filled

    problems, rounds = [], 3
    for _ in range(rounds):
        problems += run.compare_round(exporter, 1.0)
    gpus = run.reader.count
    run.sections.append(section(
        "every GPU's memory against " + run.reader.name,
        [(not problems, f"{rounds} scrapes × {gpus} GPU(s): total, allocated (used), reserved, free "
          "and per-process bytes within the NVML readings of the poll before each scrape")],
        notes=problems[:20]))

    who = [("vram-exporter", exporter.pid)]
    if baseline:
        who.append(("nvml-baseline", baseline.pid))
    if nvitop:
        who.append(("nvitop-exporter", nvitop[0].pid))
    cpu0 = {n: procs.cpu_seconds(pid) for n, pid in who}
    time.sleep(args.window)
    cpu = {n: procs.cpu_seconds(pid) - cpu0[n] for n, pid in who}
    mem = {n: procs.steady_memory(pid) for n, pid in who}
    samples = checks.parse_exposition(exporter.metrics())
    polls = checks.value(samples, "vram_exporter_poll_duration_seconds_count") or 0
    poll_sum = checks.value(samples, "vram_exporter_poll_duration_seconds_sum") or 0
    notes = [f"collection every 1 s; CPU over {args.window:.0f} s, RSS the median of 5 readings"]
    for n, _ in who:
        rss, anon = mem[n]
        notes.append(f"{n}: VmRSS {fmt_bytes(rss)}, RssAnon {fmt_bytes(anon)}, CPU {cpu[n]:.2f} s")
    if baseline:
        d_rss = mem["vram-exporter"][0] - mem["nvml-baseline"][0]
        d_anon = mem["vram-exporter"][1] - mem["nvml-baseline"][1]
        notes.append(f"ours (vram-exporter above the NVML-client baseline): VmRSS {fmt_bytes(d_rss)}, "
                     f"RssAnon {fmt_bytes(d_anon)}")
    else:
        notes.append("no nvml-baseline binary: build it with "
                     "`cargo build --release -p vram-bench` to see what is ours")
    if polls:
        notes.append(f"poll of every GPU (NVML included): mean {poll_sum / polls * 1000:.2f} ms "
                     f"over {polls:.0f} polls")
    notes.append(f"vram-exporter /metrics p50: {procs.p50_latency(exporter.url('/metrics')) * 1000:.2f} ms")
    if nvitop:
        p50 = procs.p50_latency(f"http://127.0.0.1:{nvitop[1]}/metrics", 50)
        notes.append(f"nvitop-exporter /metrics p50: {p50 * 1000:.2f} ms")
    elif not args.no_nvitop:
        notes.append("nvitop-exporter not installed: no side-by-side figures")
    run.sections.append(section("footprint", [], notes=notes))
    exporter.stop()
    for p in [baseline, nvitop[0] if nvitop else None]:
        if p:
            procs.stop(p)


def start_nvitop(run):
    """nvitop-exporter at 1 s collection on a free port, or None when it is not installed."""
    path = shutil.which("nvitop-exporter") or os.path.join(os.path.dirname(run.args.job_python),
                                                           "nvitop-exporter")
    if not os.access(path, os.X_OK):
        return None
    env = dict(run.env, PYTHONUNBUFFERED="1")
    if run.args.nvml_library:
        # nvitop dlopens the bare name: give it a directory holding the library under that name.
        libdir = os.path.join(run.tmp, "nvml")
        os.makedirs(libdir, exist_ok=True)
        os.symlink(os.path.abspath(run.args.nvml_library), os.path.join(libdir, "libnvidia-ml.so.1"))
        env["LD_LIBRARY_PATH"] = libdir + os.pathsep + env.get("LD_LIBRARY_PATH", "")
    port = procs.free_port()
    p = procs.spawn([path, "--bind-address", "127.0.0.1", "--port", str(port), "--interval", "1"],
                    env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and p.poll() is None:
        try:
            status, body = procs.get(f"http://127.0.0.1:{port}/metrics", 5)
            if status == 200 and "gpu_memory_used_MiB{" in body:
                return p, port
        except OSError:
            pass
        time.sleep(0.2)
    procs.stop(p)
    return None


# --- the job: soft, hard, cleanup, leak -----------------------------------------------------------

class Job:
    """The workload child: commands on its stdin, JSON events from its stdout."""

    def __init__(self, run, gpu):
        args = run.args
        env = run.env
        argv = [args.job_python, os.path.join(HERE, "workload.py"), "--backend", args.job_backend,
                "--name", JOB_NAME]
        if args.job_backend == "torch":
            # CUDA numbers devices its own way (fastest first, within CUDA_VISIBLE_DEVICES): name
            # the GPU by its NVML UUID so the job runs on the GPU gpu-check watches.
            uuid = {i: u for i, _, u in run.reader.describe()}[gpu]
            env = dict(env, CUDA_VISIBLE_DEVICES=uuid, CUDA_DEVICE_ORDER="PCI_BUS_ID")
            argv += ["--device", "0"]
        else:
            mem = os.path.join(run.tmp, "job.mem")
            argv += ["--memory-file", mem, "--uuid", {i: u for i, _, u in run.reader.describe()}[gpu]]
            run.env[JOB_MEM_ENV] = os.environ[JOB_MEM_ENV] = mem
        run.env[CLIENT_SOCKET_ENV] = os.path.join(run.tmp, "clients.sock")
        env = dict(env, **{CLIENT_SOCKET_ENV: run.env[CLIENT_SOCKET_ENV]})
        self.p = procs.spawn(argv, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.lines = procs.Lines(self.p.stdout)
        self.pid = self.p.pid
        ready = self.wait("ready", 120)
        if ready is None:
            raise RuntimeError(f"the job ({args.job_backend}) did not start")
        # nvml-sim reads pid_env when NVML is initialised: the exporter and our reader need it.
        run.env[JOB_PID_ENV] = os.environ[JOB_PID_ENV] = str(self.pid)

    def send(self, line):
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()

    def wait(self, event, timeout):
        line = self.lines.wait(lambda l: _event(l) in (event, "error"), timeout)
        if line is None:
            return None
        e = json.loads(line)
        if e["event"] == "error":
            raise RuntimeError(f"the job says: {e['message']}")
        return e

    def stop(self):
        if self.p.poll() is None:
            try:
                self.send("quit")
                self.p.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                pass
        procs.stop(self.p)


def _event(line):
    """The event name of a job's JSON line; None for anything else it printed."""
    try:
        return json.loads(line).get("event")
    except (ValueError, AttributeError):
        return None


def torch_problem(python):
    """Why the torch job cannot run with `python`, or None when it can."""
    code = "import torch,sys; sys.stdout.write(torch.__version__+' '+str(torch.cuda.is_available()))"
    try:
        r = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=120)
    except OSError as e:
        return f"cannot run {python}: {e}"
    if r.returncode != 0:
        return f"PyTorch is not installed for {python} (--job-python selects another Python)"
    version, cuda = r.stdout.split()
    if cuda != "True":
        return f"PyTorch {version} sees no CUDA device"
    return None


def wait_metrics(exporter, pred, timeout, step=0.05):
    """Scrapes until pred(samples) holds; returns (samples, held)."""
    deadline = time.monotonic() + timeout
    while True:
        samples = checks.parse_exposition(exporter.metrics())
        if pred(samples):
            return samples, True
        if time.monotonic() > deadline:
            return samples, False
        time.sleep(step)


def job(run):
    args = run.args
    title = ("cleanup loop with PyTorch" if args.job_backend == "torch"
             else "cleanup loop with the memory-file stand-in for PyTorch (nvml-sim)")
    if args.no_job:
        run.sections.append(section(title, [], skipped="skipped (--no-job)"))
        return
    if args.job_backend == "torch":
        why = torch_problem(args.job_python)
        if why:
            run.sections.append(section(title, [], skipped=f"skipped: {why}"))
            return
    now = run.reader.read()
    need = 4 * args.step
    gpu = args.gpu if args.gpu is not None else max(now, key=lambda g: now[g]["free"])
    if gpu not in now:
        raise NoGpu(f"--gpu {gpu}: this host has GPUs 0..{len(now) - 1}")
    if now[gpu]["free"] < need:
        run.sections.append(section(title, [], skipped=(
            f"skipped: GPU {gpu} has {fmt_bytes(now[gpu]['free'])} free, the job needs "
            f"{fmt_bytes(need)} (a smaller --step needs less)")))
        return
    j = Job(run, gpu)
    exporter = None
    try:
        exporter = cleanup_loop(run, j, gpu, title)
    finally:
        j.stop()
        if exporter:
            exporter.stop()


def cleanup_loop(run, j, gpu, title):
    args, poll, step = run.args, run.args.poll, run.args.step
    run.reader.reopen()
    time.sleep(0.2)
    used0 = run.reader.read()[gpu]["used"]
    limits = checks.plan_limits(used0, step)
    floor_window = max(1.0, 2 * poll)
    window = 8 * floor_window
    config = f"""[poll]
interval = "{int(poll * 1000)}ms"
[leak]
window = "{int(window * 1000)}ms"
floor_window = "{int(floor_window * 1000)}ms"
[[limits.overrides]]
index = {gpu}
soft = "{limits['soft']}"
hard = "{limits['hard']}"
hysteresis = "{limits['hysteresis']}"
[cleanup]
enabled = true
cooldown = "10m"
[[cleanup.actions]]
type = "signal"
signal = "SIGUSR1"
target = "match"
name_regex = "^{JOB_NAME}$"
[clients]
enabled = true
socket = "{run.env[CLIENT_SOCKET_ENV]}"
"""
    exporter = run.exporter(config, "job.toml")
    g, pid = str(gpu), str(j.pid)
    c, notes = [], [f"GPU {gpu}, job pid {j.pid}; GPU use at start {fmt_bytes(used0)}; soft limit "
                    f"{fmt_bytes(limits['soft'])}, hard {fmt_bytes(limits['hard'])} (absolute); "
                    f"poll {poll * 1000:.0f} ms"]
    _, seen = wait_metrics(exporter, lambda s: checks.value(
        s, "vram_process_allocated_bytes", gpu=g, pid=pid) is not None, 10)
    c.append((seen, f"the job (pid {j.pid}) is published on GPU {gpu}"))
    problems = run.compare_round(exporter, poll)
    c.append((not problems, "figures with the job running equal NVML's" +
              ("" if not problems else ": " + "; ".join(problems[:5]))))

    # Soft: 1.5 steps held.
    j.send(f"alloc held {int(1.5 * step)}")
    j.wait("allocated", 60)
    s, ok = wait_metrics(exporter, lambda s: (checks.value(s, "vram_pressure_level", gpu=g) or 0) >= 1
                         and (checks.value(s, "vram_soft_limit_violations_total", gpu=g) or 0) >= 1,
                         checks.max_reaction(poll))
    c.append((ok, "soft limit crossed: vram_pressure_level 1, vram_soft_limit_violations_total "
              f"{checks.value(s, 'vram_soft_limit_violations_total', gpu=g)}"))

    # Hard: one more step allocated and freed at once, so it stays in PyTorch's cache.
    j.send(f"alloc_cached cached {step}")
    breach = j.wait("allocated", 60)
    sig = j.wait("signal", checks.max_reaction(poll) + 5)
    ok, took, text = checks.judge_reaction(breach["t"], sig and sig["t_signal"], poll)
    c.append((ok, text))
    if sig:
        notes.append(f"release (empty_cache) done {1000 * (sig['t_released'] - breach['t']):.0f} ms "
                     f"after the breach; the job released {fmt_bytes(sig['freed'])}")
    # vram_cleanup_reclaimed_bytes settles within five polls of the run.
    time.sleep(6 * poll + 0.5)
    s = checks.parse_exposition(exporter.metrics())
    reclaimed = checks.value(s, "vram_cleanup_reclaimed_bytes", gpu=g)
    c.append(checks.judge_reclaimed(sig["freed"] if sig else 0, reclaimed))
    oks = checks.value(s, "vram_cleanups_total", gpu=g, action="signal", result="ok")
    c.append((oks == 1, f'vram_cleanups_total{{action="signal",result="ok"}} {oks} (one run)'))
    hard = checks.value(s, "vram_hard_limit_violations_total", gpu=g)
    c.append((hard == 1, f"vram_hard_limit_violations_total {hard} (one episode)"))
    problems = run.compare_round(exporter, poll)
    c.append((not problems, "figures after the release equal NVML's" +
              ("" if not problems else ": " + "; ".join(problems[:5]))))
    run.sections.append(section(title, c, notes=notes))

    # Leak: back to the start, then a steady leak for a full leak window (staying below soft).
    j.send("free held")
    j.wait("freed", 60)
    j.send("release")
    j.wait("released", 60)
    rate = step / 24
    seconds = window + floor_window + 3
    j.send(f"leak {rate} {seconds}")
    done = j.wait("leaked", seconds + 60)
    s = checks.parse_exposition(exporter.metrics())
    actual = done["bytes"] / done["seconds"]
    run.sections.append(leak_section(s, g, pid, actual, window, seconds))
    allocator_section(run, j, exporter, gpu)
    return exporter


def allocator_section(run, j, exporter, gpu):
    """The job's vram_client reports: reserved within NVML's bytes for the process, and SIGUSR1
    freeing what the job reported as reclaimable."""
    poll, step = run.args.poll, run.args.step
    g, pid = str(gpu), str(j.pid)
    c = []

    def fig(s, name):
        return checks.value(s, name, gpu=g, pid=pid)

    j.send(f"alloc_cached spare {step}")
    j.wait("allocated", 60)
    # A report taken after the allocation: the cache holds the step.
    s, seen = wait_metrics(exporter, lambda s: (fig(s, "vram_process_allocator_reclaimable_bytes")
                                                or 0) >= 0.9 * step, 10)
    c.append((seen, f"the job's allocator report is published (pid {j.pid}, GPU {gpu})"))
    nvml, predicted = fig(s, "vram_process_allocated_bytes"), fig(
        s, "vram_process_allocator_reclaimable_bytes")
    c.append(checks.judge_allocator_reserved(fig(s, "vram_process_allocator_reserved_bytes"), nvml))
    os.kill(j.pid, signal.SIGUSR1)
    j.wait("signal", 10)
    target = (nvml or 0) - 0.9 * (predicted or 0)
    s, _ = wait_metrics(exporter, lambda s: (fig(s, "vram_process_allocated_bytes") or 0) <= target,
                        checks.max_reaction(poll))
    after = fig(s, "vram_process_allocated_bytes")
    freed = None if nvml is None or after is None else nvml - after
    c.append(checks.judge_release_prediction(predicted, freed))
    run.sections.append(section("allocator reports (vram_client)", c))


def leak_section(samples, gpu, pid, actual, window, seconds):
    """The leak check: the rate metric when the exporter has it, else a rate derived from drift."""
    title = "leak reported"
    for name, labels in (("vram_process_leak_rate_bytes_per_second", {"gpu": gpu, "pid": pid}),
                         ("vram_leak_rate_bytes_per_second", {"gpu": gpu})):
        if checks.has_family(samples, name):
            reported = checks.value(samples, name, **labels)
            return section(title, [checks.judge_rate(actual, reported)],
                           notes=[f"from {name} after {seconds:.0f} s of leaking"])
    drift = checks.value(samples, "vram_process_leak_drift_bytes", gpu=gpu, pid=pid)
    source = "vram_process_leak_drift_bytes"
    if drift is None:
        drift = checks.value(samples, "vram_leak_drift_bytes", gpu=gpu)
        source = "vram_leak_drift_bytes"
    reported = checks.rate_from_drift(drift, window)
    return section(title, [checks.judge_rate(actual, reported)], notes=[
        f"this exporter has no leak-rate metric: rate derived as {source} "
        f"({checks.fmt_bytes(drift)}) / leak.window ({window:.0f} s) after {seconds:.0f} s of leaking"])


# --- entry point ----------------------------------------------------------------------------------

def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        reader = open_reader(args.nvml_library)
    except NoGpu as e:
        print(f"gpu-check: no usable NVIDIA GPU on this host: {e}", file=sys.stderr)
        return 2

    def on_signal(signum, _frame):
        procs.stop_all()
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    run = Run(args, reader)
    result = {
        "host": os.uname().nodename,
        "driver": reader.driver(),
        "exporter": args.exporter,
        "readings_from": reader.name,
        "nvml_library": args.nvml_library or "libnvidia-ml.so.1 (the driver's)",
        "gpus": [f"{i}: {name} {uuid}" for i, name, uuid in reader.describe()],
        "sections": run.sections,
    }
    if args.gpu is not None and args.gpu >= reader.count:
        print(f"gpu-check: --gpu {args.gpu}: this host has GPUs 0..{reader.count - 1}", file=sys.stderr)
        return 2
    try:
        footprint(run)
        job(run)
    except NoGpu as e:
        print(f"gpu-check: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # a failure to measure is a failed check, reported with the rest
        run.sections.append(section("gpu-check itself", [(False, f"{type(e).__name__}: {e}")]))
    finally:
        procs.stop_all()
        shutil.rmtree(run.tmp, ignore_errors=True)
        reader.close()
    text = checks.render_report(result)
    sys.stdout.write(text)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 1 if any(s["status"] == "FAIL" for s in run.sections) else 0
