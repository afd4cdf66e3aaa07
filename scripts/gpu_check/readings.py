# readings.py: gpu-check's second opinion on GPU memory: nvidia-ml-py, or nvidia-smi when the binding is missing.
"""Reads every GPU's memory and processes independently of the exporter.

nvidia-ml-py (`pynvml`) is preferred: the same NVML calls, byte-exact. Without it, `nvidia-smi`
gives the same figures in MiB. `--nvml-library` makes nvidia-ml-py use that library: it is loaded
first by path, and as its SONAME is libnvidia-ml.so.1, pynvml's own dlopen of that bare name then
finds it already loaded (this is how tests point gpu-check at nvml-sim).
"""

import ctypes
import shutil
import subprocess

from checks import SMI_APP_FIELDS, SMI_GPU_FIELDS, bus_key, parse_nvidia_smi


class NoGpu(Exception):
    """No NVIDIA driver, library or GPU on this host: gpu-check exits 2."""


class PynvmlReader:
    name = "nvidia-ml-py"
    granularity = 1

    def __init__(self, pynvml, library=None):
        self.nvml = pynvml
        self.library = library
        self._keep = None
        self.open()

    def open(self):
        if self.library and self._keep is None:
            try:
                self._keep = ctypes.CDLL(self.library, mode=ctypes.RTLD_GLOBAL)
            except OSError as e:
                raise NoGpu(f"cannot load --nvml-library {self.library}: {e}") from e
        try:
            self.nvml.nvmlInit()
        except self.nvml.NVMLError as e:
            raise NoGpu(f"NVML cannot be initialised: {e}") from e
        self.count = self.nvml.nvmlDeviceGetCount()
        if self.count == 0:
            self.close()
            raise NoGpu("NVML reports no GPU")

    def reopen(self):
        """Shuts NVML down and initialises it again (nvml-sim reads its scenario's environment then)."""
        self.close()
        self.open()

    def close(self):
        try:
            self.nvml.nvmlShutdown()
        except self.nvml.NVMLError:
            pass

    def driver(self):
        v = self.nvml.nvmlSystemGetDriverVersion()
        return v.decode() if isinstance(v, bytes) else v

    def describe(self):
        """[(index, name, uuid)] of every GPU."""
        out = []
        for i in range(self.count):
            h = self.nvml.nvmlDeviceGetHandleByIndex(i)
            name = self.nvml.nvmlDeviceGetName(h)
            uuid = self.nvml.nvmlDeviceGetUUID(h)
            out.append((i, _text(name), _text(uuid)))
        return out

    def read(self):
        """{index: {total, used, reserved, free, processes: {pid: bytes}}}, memory v2 like the exporter."""
        out = {}
        n = self.nvml
        for i in range(self.count):
            h = n.nvmlDeviceGetHandleByIndex(i)
            m = n.nvmlDeviceGetMemoryInfo(h, version=n.nvmlMemory_v2)
            procs = {}
            for getter in (n.nvmlDeviceGetComputeRunningProcesses,
                           n.nvmlDeviceGetGraphicsRunningProcesses):
                try:
                    infos = getter(h)
                except n.NVMLError_NotSupported:
                    continue
                for p in infos:
                    b = p.usedGpuMemory or 0
                    procs[p.pid] = max(procs.get(p.pid, 0), b)
            out[i] = {"total": m.total, "used": m.used, "reserved": m.reserved, "free": m.free,
                      "processes": procs}
        return out


class SmiReader:
    name = "nvidia-smi"
    granularity = 1 << 20

    def __init__(self, path):
        self.path = path
        self.bus_ids = {}
        try:
            listing = self._query("--query-gpu=index,name,uuid,pci.bus_id,driver_version")
        except (OSError, subprocess.CalledProcessError) as e:
            raise NoGpu(f"nvidia-smi failed: {e}") from e
        self.gpus = []
        for line in listing.strip().splitlines():
            idx, name, uuid, bus, driver = [p.strip() for p in line.split(",")]
            self.gpus.append((int(idx), name, uuid))
            self.bus_ids[bus_key(bus)] = int(idx)
            self._driver = driver
        if not self.gpus:
            raise NoGpu("nvidia-smi lists no GPU")
        self.count = len(self.gpus)

    def _query(self, *args):
        return subprocess.run([self.path, *args, "--format=csv,noheader,nounits"], check=True,
                              capture_output=True, text=True, timeout=30).stdout

    def reopen(self):
        pass

    def close(self):
        pass

    def driver(self):
        return self._driver

    def describe(self):
        return list(self.gpus)

    def read(self):
        try:
            gpus = self._query(f"--query-gpu={SMI_GPU_FIELDS}")
        except subprocess.CalledProcessError:
            # Older drivers lack memory.reserved: read the rest, reserved left out of the comparison.
            plain = self._query("--query-gpu=index,memory.total,memory.used,memory.free")
            gpus = "\n".join(",".join([*l.split(",")[:2], "[N/A]", *l.split(",")[2:]])
                             for l in plain.strip().splitlines())
        return parse_nvidia_smi(gpus, self._query(f"--query-compute-apps={SMI_APP_FIELDS}"),
                                self.bus_ids)


def _text(v):
    return v.decode() if isinstance(v, bytes) else v


def open_reader(library=None):
    """nvidia-ml-py if importable, else nvidia-smi (real driver only). Raises NoGpu."""
    try:
        import pynvml
    except ImportError:
        pynvml = None
    if pynvml is not None:
        return PynvmlReader(pynvml, library)
    if library:
        raise NoGpu("--nvml-library needs nvidia-ml-py (pip install nvidia-ml-py): "
                    "nvidia-smi always uses the driver's own library")
    smi = shutil.which("nvidia-smi")
    if smi is None:
        raise NoGpu("no NVIDIA driver found: nvidia-ml-py is not installed and nvidia-smi is not on PATH")
    return SmiReader(smi)
