# workload.py: the job gpu-check runs on one GPU (PyTorch), or a memory-file stand-in for it on nvml-sim.
"""The gpu-check job: allocates, keeps a freed block cached, releases on SIGUSR1, leaks on demand.

gpu-check starts it as a child, drives it with one command per line on stdin and reads one JSON
event per line on stdout:

    alloc NAME BYTES          hold a block          → {"event": "allocated", ...}
    alloc_cached NAME BYTES   allocate, then free it at once, so it stays cached → "allocated"
    free NAME                 drop a block (PyTorch keeps it cached) → "freed"
    release                   empty the cache now → "released"
    leak RATE SECONDS         allocate RATE bytes/s for SECONDS, keeping it all → "leaked"
    quit

SIGUSR1 goes through vram_client (clients/python, the handler users install): gc +
torch.cuda.empty_cache(); the job then reports {"event": "signal", "t_signal", "t_released",
"freed"}. vram_client also reports the allocator to the exporter's clients socket
($VRAM_EXPORTER_CLIENT_SOCKET). Times are time.monotonic() (CLOCK_MONOTONIC, shared by every process of the host).

Backends: `torch` (a real CUDA device; the default) and `memfile`, which stands in for PyTorch on
nvml-sim: it keeps the same books (context + held blocks + cached blocks) and writes their sum to
the memory file nvml-sim reads for this process (`memory_file_env` in the scenario); a `torch`
module stands in for PyTorch's allocator statistics from those books, so vram_client reports them.
"""

import argparse
import contextlib
import json
import os
import signal
import sys
import time
import types

HERE = os.path.dirname(os.path.abspath(__file__))
CLIENT = os.path.join(HERE, "..", "..", "clients", "python")

MIB = 1 << 20
# PyTorch's caching allocator gives requests of 10 MiB or more their own 2 MiB-rounded segment;
# leaking in chunks of this size makes NVML see each one as it happens.
TORCH_LEAK_CHUNK = 16 * MIB


def emit(event, **fields):
    """One JSON line on stdout. os.write, not print: the signal handler emits too, and a single
    write of a short line is never interleaved with another."""
    fields["event"] = event
    os.write(1, (json.dumps(fields) + "\n").encode())


class MemFileBackend:
    """PyTorch's books on a memory file: NVML (nvml-sim) sees context + held + cached bytes."""

    def __init__(self, path, context):
        self.path = path
        self.context = context
        self.blocks = {}
        self.cached = 0
        self.leaked = 0
        self._write()

    def _write(self):
        total = self.context + sum(self.blocks.values()) + self.cached + self.leaked
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            f.write(str(total))
        os.replace(tmp, self.path)

    def reserved(self):
        return sum(self.blocks.values()) + self.cached + self.leaked

    def alloc(self, name, size):
        self.cached = max(0, self.cached - size)  # reuse cached memory first, like the allocator
        self.blocks[name] = self.blocks.get(name, 0) + size
        self._write()

    def free(self, name):
        self.cached += self.blocks.pop(name, 0)
        self._write()

    def empty_cache(self):
        freed, self.cached = self.cached, 0
        self._write()
        return freed

    def leak_to(self, target):
        self.leaked = max(self.leaked, target)
        self._write()
        return self.leaked


def memfile_torch(backend, uuid):
    """A `torch` module answering vram_client's calls from the memfile books (device 0 = `uuid`)."""
    cuda = types.SimpleNamespace()
    cuda.is_initialized = lambda: True
    cuda.device_count = lambda: 1
    cuda.device = lambda index: contextlib.nullcontext()
    cuda.get_device_properties = lambda index: types.SimpleNamespace(uuid=uuid)
    cuda.empty_cache = backend.empty_cache

    def memory_stats(index=None):
        allocated = backend.reserved() - backend.cached
        return {
            "allocated_bytes.all.current": allocated,
            "active_bytes.all.current": allocated,
            "reserved_bytes.all.current": backend.reserved(),
            "reserved_bytes.all.peak": backend.reserved(),
            "inactive_split_bytes.all.current": 0,
            "allocation.all.allocated": 1,
            "num_alloc_retries": 0,
            "num_ooms": 0,
        }

    cuda.memory_stats = memory_stats
    return types.SimpleNamespace(cuda=cuda, __name__="torch")


class TorchBackend:
    """Real allocations with PyTorch on one CUDA device."""

    def __init__(self, device):
        import torch  # imported here: the memfile backend must work without torch

        self.torch = torch
        self.device = torch.device(f"cuda:{device}")
        torch.cuda.set_device(self.device)
        # Create the context and the allocator's first segment.
        self.blocks = {"context": torch.ones(1, device=self.device)}
        self.leaks = []
        torch.cuda.synchronize(self.device)

    def reserved(self):
        return self.torch.cuda.memory_reserved(self.device)

    def alloc(self, name, size):
        self.blocks[name] = self.torch.empty(size, dtype=self.torch.uint8, device=self.device)
        self.torch.cuda.synchronize(self.device)

    def free(self, name):
        self.blocks.pop(name, None)

    def empty_cache(self):
        before = self.reserved()
        self.torch.cuda.empty_cache()
        return max(0, before - self.reserved())

    def leak_to(self, target):
        leaked = len(self.leaks) * TORCH_LEAK_CHUNK
        while leaked + TORCH_LEAK_CHUNK <= target:
            self.leaks.append(
                self.torch.empty(TORCH_LEAK_CHUNK, dtype=self.torch.uint8, device=self.device)
            )
            leaked += TORCH_LEAK_CHUNK
        self.torch.cuda.synchronize(self.device)
        return leaked


def install_release(backend, uuid=None):
    """SIGUSR1 → vram_client's handler (reporting every 250 ms), timed and reported."""
    sys.path.insert(0, os.path.abspath(CLIENT))
    import vram_client

    if isinstance(backend, MemFileBackend):
        sys.modules["torch"] = memfile_torch(backend, uuid)
    vram_client.install(interval=0.25)
    inner = signal.getsignal(signal.SIGUSR1)

    def timed(signum, frame):
        t_signal = time.monotonic()
        before = backend.reserved()
        inner(signum, frame)
        t_released = time.monotonic()
        freed = max(0, before - backend.reserved())
        emit("signal", t_signal=t_signal, t_released=t_released, freed=freed)

    signal.signal(signal.SIGUSR1, timed)


def leak(backend, rate, seconds, tick):
    """Allocates `rate` bytes/s for `seconds`, keeping everything; returns (bytes, elapsed)."""
    start_bytes = backend.leak_to(0)
    t0 = time.monotonic()
    while True:
        elapsed = time.monotonic() - t0
        if elapsed >= seconds:
            break
        backend.leak_to(start_bytes + int(rate * elapsed))
        time.sleep(tick)
    final = backend.leak_to(start_bytes + int(rate * seconds))
    return final - start_bytes, time.monotonic() - t0


def serve(backend, tick):
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        cmd, args = words[0], words[1:]
        t = time.monotonic()
        if cmd in ("alloc", "alloc_cached"):
            name, size = args[0], int(args[1])
            backend.alloc(name, size)
            if cmd == "alloc_cached":
                backend.free(name)
            emit("allocated", name=name, bytes=size, cached=cmd == "alloc_cached", t=time.monotonic(),
                 reserved=backend.reserved())
        elif cmd == "free":
            backend.free(args[0])
            emit("freed", name=args[0], t=time.monotonic(), reserved=backend.reserved())
        elif cmd == "release":
            freed = backend.empty_cache()
            emit("released", freed=freed, t=time.monotonic(), reserved=backend.reserved())
        elif cmd == "leak":
            rate, seconds = float(args[0]), float(args[1])
            emit("leak_started", t=t, rate=rate)
            leaked, elapsed = leak(backend, rate, seconds, tick)
            emit("leaked", bytes=leaked, seconds=elapsed, t=time.monotonic())
        elif cmd == "quit":
            break
        else:
            emit("error", message=f"unknown command {cmd!r}")


def main(argv=None):
    p = argparse.ArgumentParser(description="gpu-check's job (started by scripts/gpu-check)")
    p.add_argument("--backend", choices=("torch", "memfile"), default="torch")
    p.add_argument("--device", type=int, default=0, help="CUDA device index (torch backend)")
    p.add_argument("--memory-file", help="memfile backend: the file nvml-sim reads")
    p.add_argument("--context", type=int, default=300 * MIB,
                   help="memfile backend: bytes standing in for the CUDA context")
    p.add_argument("--name", default="gpu-check-job", help="process name (comm) to take")
    p.add_argument("--uuid", help="memfile backend: the simulated GPU's NVML UUID, for reports")
    args = p.parse_args(argv)
    # The exporter's signal action matches this name; set it before anything is visible on a GPU.
    try:
        with open("/proc/self/comm", "w") as f:
            f.write(args.name[:15])
    except OSError:
        pass
    if args.backend == "memfile":
        if not args.memory_file:
            p.error("--memory-file is required with --backend memfile")
        backend = MemFileBackend(args.memory_file, args.context)
        tick = 0.05
    else:
        backend = TorchBackend(args.device)
        tick = 0.02
    install_release(backend, args.uuid)
    # gpu-check going away (stdin closed) ends the job too: serve() returns at end of input.
    emit("ready", pid=os.getpid(), backend=args.backend, reserved=backend.reserved(), t=time.monotonic())
    serve(backend, tick)


if __name__ == "__main__":
    main()
