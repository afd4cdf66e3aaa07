# test_gpu_check.py: gpu-check's tests without a GPU: pure checks, flags, the no-GPU path, whole runs on nvml-sim.
"""Run with a Python that has nvidia-ml-py (scripts/check-gpu-check.sh makes the venv and builds
the binaries):  python -m unittest scripts/gpu_check/test_gpu_check.py

The end-to-end tests run the real scripts/gpu-check, the real exporter and nvml-baseline binaries
and the real job (workload.py, memory-file backend) on nvml-sim; nvidia-ml-py reads nvml-sim too.
Binaries: $GPU_CHECK_EXPORTER, $GPU_CHECK_BASELINE, $GPU_CHECK_SIM_LIBRARY (default target/release).
"""

import json
import os
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import checks  # noqa: E402
from checks import GIB, MIB  # noqa: E402
from main import leak_section  # noqa: E402

REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
GPU_CHECK = os.path.join(REPO, "scripts", "gpu-check")
RELEASE = os.path.join(REPO, "target", "release")
EXPORTER = os.environ.get("GPU_CHECK_EXPORTER", os.path.join(RELEASE, "vram-exporter"))
BASELINE = os.environ.get("GPU_CHECK_BASELINE", os.path.join(RELEASE, "nvml-baseline"))
SIM = os.environ.get("GPU_CHECK_SIM_LIBRARY", os.path.join(RELEASE, "libnvml_sim.so"))

# Two simulated GPUs; the job (pid and memory from gpu-check's environment) on GPU 0.
SCENARIO = """
driver_version = "580.159.04"
[[device]]
name = "NVIDIA H200 (simulated)"
total = "141GiB"
reserved = "530MiB"
overhead = "0"
[[device.process]]
pid_env = "GPU_CHECK_JOB_PID"
name = "gpu-check-job"
memory_file_env = "GPU_CHECK_JOB_MEM"
[[device.process]]
pid = 5000001
name = "python serve.py"
memory = "6GiB"
[[device]]
name = "NVIDIA H200 (simulated)"
total = "141GiB"
reserved = "530MiB"
[[device.process]]
pid = 5000011
name = "torchrun train.py"
memory = "20GiB"
type = "both"
"""


def gpu(used, reserved=512 * MIB, total=80 * GIB, processes=None):
    return {"total": total, "used": used, "reserved": reserved,
            "free": total - reserved - used, "processes": processes or {}}


class PureChecks(unittest.TestCase):
    def test_sizes_and_durations(self):
        self.assertEqual(checks.parse_size("1GiB"), GIB)
        self.assertEqual(checks.parse_size("512 MiB"), 512 * MIB)
        self.assertEqual(checks.parse_size("2GB"), 2 * 10**9)
        self.assertEqual(checks.parse_size("4096"), 4096)
        for bad in ("2 gigs", "-1GiB", "0", ""):
            with self.assertRaises(ValueError):
                checks.parse_size(bad)
        self.assertEqual(checks.parse_duration("250ms"), 0.25)
        self.assertEqual(checks.parse_duration("1m"), 60.0)
        with self.assertRaises(ValueError):
            checks.parse_duration("soon")

    def test_exposition_is_parsed_with_escapes(self):
        text = ('# HELP vram_total_bytes x\n# TYPE vram_total_bytes gauge\n'
                'vram_total_bytes{gpu="0",uuid="GPU-1"} 8.589934592e+10\n'
                'vram_process_allocated_bytes{gpu="0",uuid="GPU-1",pid="42",process="a \\"b\\""} 1024\n'
                'vram_nvml_up 1\n')
        s = checks.parse_exposition(text)
        self.assertEqual(checks.value(s, "vram_total_bytes", gpu=0), 80 * GIB)
        self.assertEqual(checks.value(s, "vram_process_allocated_bytes", pid=42), 1024)
        self.assertEqual(s[1][1]["process"], 'a "b"')
        self.assertEqual(checks.value(s, "vram_nvml_up"), 1)
        self.assertIsNone(checks.value(s, "vram_total_bytes", gpu=1))
        g = checks.exported_gpus(s)
        self.assertEqual(g[0]["total"], 80 * GIB)
        self.assertEqual(g[0]["processes"], {42: 1024})

    def test_equal_readings_match_and_any_difference_is_named(self):
        r = {0: gpu(10 * GIB, processes={7: 10 * GIB})}
        self.assertEqual(checks.compare_gpus(r, [r, r]), [])
        off = {0: gpu(10 * GIB + 1, processes={7: 10 * GIB})}
        problems = checks.compare_gpus(off, [r, r])
        self.assertTrue(any("used" in p and str(10 * GIB + 1) in p for p in problems), problems)
        self.assertTrue(any("free" in p for p in problems), problems)

    def test_a_changing_gpu_matches_within_the_readings_of_one_poll(self):
        a, b = gpu(10 * GIB, processes={7: 10 * GIB}), gpu(12 * GIB, processes={7: 12 * GIB})
        mid = gpu(11 * GIB, processes={7: 11 * GIB})
        self.assertEqual(checks.compare_gpus({0: mid}, [{0: a}, {0: b}]), [])
        late = gpu(13 * GIB, processes={7: 13 * GIB})
        self.assertNotEqual(checks.compare_gpus({0: late}, [{0: a}, {0: b}]), [])

    def test_gpus_and_processes_missing_on_either_side(self):
        r = {0: gpu(GIB), 1: gpu(GIB)}
        self.assertIn("GPU 1: NVML reports it, the exporter does not publish it",
                      checks.compare_gpus({0: gpu(GIB)}, [r]))
        ghost = {0: gpu(GIB, processes={99: GIB})}
        self.assertTrue(any("99" in p and "does not list" in p
                            for p in checks.compare_gpus(ghost, [{0: gpu(GIB)}])))
        many = {0: gpu(GIB, processes={p: p * MIB for p in range(1, 21)})}
        top = {0: gpu(GIB, processes={p: p * MIB for p in range(5, 21)})}
        self.assertEqual(checks.compare_gpus(top, [many]), [])
        missing = {0: gpu(GIB, processes={p: p * MIB for p in range(4, 20)})}
        self.assertTrue(any("20" in p and "top 16" in p
                            for p in checks.compare_gpus(missing, [many])))

    def test_nvidia_smi_readings_are_bytes_and_mib_granular(self):
        gpus = "0, 81559, 512, 10240, 70807\n1, 81559, [N/A], 0, 81047\n"
        apps = "00000000:07:00.0, 4242, 10240\n0000:08:00.0, 4343, 0\n"
        r = checks.parse_nvidia_smi(gpus, apps, {checks.bus_key("00000000:07:00.0"): 0,
                                                 checks.bus_key("00000000:08:00.0"): 1})
        self.assertEqual(r[0]["used"], 10 * GIB)
        self.assertEqual(r[0]["processes"], {4242: 10 * GIB})
        self.assertIsNone(r[1]["reserved"])
        self.assertEqual(r[1]["processes"], {4343: 0})
        exported = {0: dict(r[0], used=10 * GIB + 300 * 1024)}
        self.assertEqual(checks.compare_gpus(exported, [{0: r[0]}], granularity=MIB), [])

    def test_reaction_reclaimed_and_rate_are_judged(self):
        self.assertTrue(checks.judge_reaction(10.0, 10.18, 0.25)[0])
        ok, took, text = checks.judge_reaction(10.0, 12.0, 0.25)
        self.assertFalse(ok)
        self.assertIn("over 1.5 s", text)
        self.assertFalse(checks.judge_reaction(10.0, None, 0.25)[0])
        self.assertTrue(checks.judge_reclaimed(10 * GIB, 10 * GIB)[0])
        self.assertFalse(checks.judge_reclaimed(10 * GIB, 5 * GIB)[0])
        self.assertFalse(checks.judge_reclaimed(0, 0)[0])
        self.assertFalse(checks.judge_reclaimed(GIB, None)[0])
        self.assertTrue(checks.judge_rate(100.0, 129.0)[0])
        self.assertTrue(checks.judge_rate(100.0, 71.0)[0])
        self.assertFalse(checks.judge_rate(100.0, 131.0)[0])
        self.assertFalse(checks.judge_rate(100.0, None)[0])
        self.assertEqual(checks.rate_from_drift(800 * MIB, 8.0), 100 * MIB)
        self.assertEqual(checks.plan_limits(10 * GIB, GIB),
                         {"soft": 11 * GIB, "hard": 12 * GIB, "hysteresis": GIB // 4})

    def test_leak_uses_the_rate_metric_when_present_and_drift_otherwise(self):
        drift_only = checks.parse_exposition(
            'vram_process_leak_drift_bytes{gpu="0",pid="7"} 838860800\n'
            'vram_leak_drift_bytes{gpu="0"} 1\n')
        s = leak_section(drift_only, "0", "7", 100 * MIB, 8.0, 12.0)
        self.assertEqual(s["status"], "OK")
        self.assertIn("derived", " ".join(s["lines"]))
        with_rate = checks.parse_exposition(
            'vram_process_leak_rate_bytes_per_second{gpu="0",pid="7"} 52428800\n'
            'vram_process_leak_drift_bytes{gpu="0",pid="7"} 838860800\n')
        s = leak_section(with_rate, "0", "7", 100 * MIB, 8.0, 12.0)
        self.assertEqual(s["status"], "FAIL")  # 50 MiB/s reported for 100 MiB/s: -50 %
        self.assertIn("vram_process_leak_rate_bytes_per_second", " ".join(s["lines"]))

    def test_reported_reserved_must_fit_in_nvml_bytes(self):
        ok, text = checks.judge_allocator_reserved(3 * GIB, 3 * GIB + 300 * MIB)
        self.assertTrue(ok, text)
        self.assertIn("non-allocator 300.0 MiB", text)
        self.assertTrue(checks.judge_allocator_reserved(3 * GIB + MIB, 3 * GIB)[0])  # NVML rounding
        ok, text = checks.judge_allocator_reserved(4 * GIB, 3 * GIB)
        self.assertFalse(ok)
        self.assertIn("above NVML's", text)
        self.assertFalse(checks.judge_allocator_reserved(None, 3 * GIB)[0])

    def test_a_release_must_free_within_ten_percent_of_the_reported_reclaimable(self):
        self.assertTrue(checks.judge_release_prediction(GIB, GIB)[0])
        self.assertTrue(checks.judge_release_prediction(GIB, int(0.91 * GIB))[0])
        ok, text = checks.judge_release_prediction(GIB, int(0.8 * GIB))
        self.assertFalse(ok)
        self.assertIn("not within 10%", text)
        self.assertFalse(checks.judge_release_prediction(GIB, int(1.2 * GIB))[0])
        self.assertFalse(checks.judge_release_prediction(0, 0)[0])  # nothing predicted: no evidence
        self.assertFalse(checks.judge_release_prediction(None, GIB)[0])
        self.assertFalse(checks.judge_release_prediction(GIB, None)[0])

    def test_report_says_fail_when_any_section_fails(self):
        good = checks.section("a", [(True, "fine")])
        bad = checks.section("b", [(True, "fine"), (False, "broken")])
        skip = checks.section("c", [], skipped="skipped: no torch")
        text = checks.render_report({"host": "h", "sections": [good, skip]})
        self.assertTrue(text.endswith("RESULT: OK\n"))
        self.assertIn("[SKIP] c", text)
        text = checks.render_report({"host": "h", "sections": [good, bad]})
        self.assertIn("FAIL  broken", text)
        self.assertIn("RESULT: FAIL (1 check(s) failed: b)", text)


def run_gpu_check(args, env_extra=None, timeout=300, python=None):
    env = dict(os.environ)
    for k in ("NVML_SIM_SCENARIO", "NVML_SIM_TIME_FILE", "GPU_CHECK_JOB_PID", "GPU_CHECK_JOB_MEM"):
        env.pop(k, None)
    env.update(env_extra or {})
    return subprocess.run([python or sys.executable, GPU_CHECK, *args], env=env,
                          capture_output=True, text=True, timeout=timeout)


def needs_binaries(test):
    missing = [p for p in (EXPORTER, BASELINE, SIM) if not os.path.exists(p)]
    return unittest.skipIf(missing, f"not built: {missing} (scripts/check-gpu-check.sh builds them)")(test)


class Flags(unittest.TestCase):
    def test_bad_values_exit_2_naming_flag_and_value(self):
        for args, words in [
            (["--step", "2 gigs"], ["--step", "2 gigs", "not a size"]),
            (["--poll", "10ms"], ["--poll", "100ms"]),
            (["--poll", "soon"], ["--poll", "soon"]),
            (["--exporter", "/nonexistent/vram-exporter"], ["--exporter", "/nonexistent/vram-exporter"]),
            (["--nvml-library", "/nonexistent/lib.so"], ["--nvml-library", "no such file"]),
            (["--gpu", "-1"], ["--gpu", "-1"]),
            (["--bogus"], ["unrecognized", "--bogus"]),
        ]:
            r = run_gpu_check(["--exporter", sys.executable, *args] if args[0] != "--exporter" else args)
            self.assertEqual(r.returncode, 2, (args, r.stderr))
            for w in words:
                self.assertIn(w, r.stderr, (args, r.stderr))

    def test_help_names_the_exit_codes(self):
        r = run_gpu_check(["--help"])
        self.assertEqual(r.returncode, 0)
        self.assertIn("2: no GPU", r.stdout.replace("\n", " ").replace("  ", " "))


class NoGpu(unittest.TestCase):
    @needs_binaries
    def test_no_driver_exits_2_with_a_clear_message(self):
        # nvml-sim without a scenario behaves like a host whose driver is not loaded.
        r = run_gpu_check(["--exporter", EXPORTER, "--nvml-library", SIM])
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("no usable NVIDIA GPU on this host", r.stderr)
        self.assertIn("NVML cannot be initialised", r.stderr)
        self.assertEqual(r.stdout, "")

    @needs_binaries
    def test_a_driver_without_gpus_exits_2(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "empty.toml")
            with open(path, "w") as f:
                f.write('driver_version = "580.159.04"\n')
            r = run_gpu_check(["--exporter", EXPORTER, "--nvml-library", SIM],
                              {"NVML_SIM_SCENARIO": path})
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("NVML reports no GPU", r.stderr)

    @unittest.skipIf(os.path.exists("/dev/nvidiactl"), "this host has an NVIDIA driver")
    @needs_binaries
    def test_this_host_without_a_driver_exits_2(self):
        r = run_gpu_check(["--exporter", EXPORTER])
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("no usable NVIDIA GPU on this host", r.stderr)


@needs_binaries
class OnNvmlSim(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.scenario = os.path.join(self.dir.name, "node.toml")
        self.json = os.path.join(self.dir.name, "result.json")

    def tearDown(self):
        self.dir.cleanup()

    def write(self, text):
        with open(self.scenario, "w") as f:
            f.write(text)

    def run_check(self, *extra, env=None):
        r = run_gpu_check(["--exporter", EXPORTER, "--baseline", BASELINE, "--nvml-library", SIM,
                           "--window", "3s", "--json", self.json, *extra],
                          dict(env or {}, NVML_SIM_SCENARIO=self.scenario))
        result = None
        if os.path.exists(self.json):
            with open(self.json) as f:
                result = json.load(f)
        return r, result

    def test_the_whole_check_passes_with_the_memfile_job(self):
        self.write(SCENARIO)
        r, result = self.run_check("--job-backend", "memfile", "--gpu", "0")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        status = {s["title"]: s["status"] for s in result["sections"]}
        self.assertEqual(set(status.values()), {"OK"}, r.stdout)
        self.assertEqual(len(status), 5, r.stdout)
        out = r.stdout
        self.assertIn("driver: 580.159.04", out)
        self.assertIn("ok    3 scrapes × 2 GPU(s)", out)
        self.assertIn("ours (vram-exporter above the NVML-client baseline): VmRSS", out)
        self.assertIn("nvml-baseline: VmRSS", out)
        if os.environ.get("VRAM_REQUIRE_TOOLS") == "1" or "nvitop-exporter: VmRSS" in out:
            self.assertIn("nvitop-exporter /metrics p50", out)
        self.assertIn("soft limit crossed", out)
        self.assertRegex(out, r"ok    SIGUSR1 \d+ ms after the hard breach")
        self.assertIn("ok    reclaimed 1.00 GiB (1073741824 B) matches", out)
        self.assertIn('vram_cleanups_total{action="signal",result="ok"} 1.0 (one run)', out)
        self.assertRegex(out, r"ok    \S+ MiB/s reported vs \S+ MiB/s leaked")
        self.assertIn("ok    the job's allocator report is published", out)
        self.assertRegex(out, r"ok    reported reserved \S+ GiB is within NVML's")
        self.assertRegex(out, r"ok    SIGUSR1 freed \S+ GiB, within 10% of the \S+ GiB reported reclaimable")
        self.assertTrue(out.endswith("RESULT: OK\n"), out)
        if os.environ.get("GPU_CHECK_SHOW"):
            print(out)
        # Nothing left running: no child of ours survives.
        self.assertEqual(subprocess.run(["pgrep", "-f", self.scenario], capture_output=True).stdout, b"")

    def test_a_process_nvml_lists_but_the_exporter_hides_fails_the_check(self):
        # An environment override makes the exporter publish one process per GPU; NVML lists two
        # on GPU 1, both within gpu-check's top 16: a disagreement the report must name.
        self.write(SCENARIO + '[[device.process]]\npid = 5000012\nname = "small"\nmemory = "1GiB"\n')
        r, result = self.run_check("--no-job", "--no-nvitop",
                                   env={"VRAM_EXPORTER__PROCESSES__MAX_PER_GPU": "1"})
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("[FAIL] every GPU's memory against nvidia-ml-py", r.stdout)
        self.assertIn("GPU 1: process 5000012 is among NVML's top 16 but not published", r.stdout)
        self.assertIn("[SKIP] cleanup loop with PyTorch", r.stdout)
        self.assertEqual([s["status"] for s in result["sections"]], ["FAIL", "OK", "SKIP"])
        self.assertIn("RESULT: FAIL (1 check(s) failed: every GPU's memory against nvidia-ml-py)",
                      r.stdout)


if __name__ == "__main__":
    unittest.main()
