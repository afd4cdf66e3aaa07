# pytorch_release_on_signal.py: frees PyTorch's cached GPU memory when vram-exporter sends SIGUSR1 (OOM prevention).
"""Free PyTorch's cached GPU memory when vram-exporter asks (SIGUSR1 from a `signal` cleanup action).

Why this exists: PyTorch's caching allocator keeps freed blocks reserved for reuse, so NVML (and the
exporter) sees them as used. When a GPU crosses its hard limit, vram-exporter's `signal` action sends
SIGUSR1; this module answers with `gc.collect()` (drop unreachable tensors) and
`torch.cuda.empty_cache()` (hand cached blocks back to the driver). Safe without torch: it then only
runs the garbage collector and your callbacks.

Use it by importing it (put this file on PYTHONPATH or copy it next to your script):

    import pytorch_release_on_signal
    pytorch_release_on_signal.install()                 # release right away, from the handler
    # or, to release only at points you choose (e.g. between training steps):
    pytorch_release_on_signal.install(defer=True)
    ...
    pytorch_release_on_signal.release_if_requested()    # call this in your loop

Why running the work in the handler is fine: a Python signal handler is not a C signal handler.
CPython's C-level handler only sets a flag; the Python function runs later, in the main thread,
between two bytecodes. No C call (a CUDA kernel launch, an allocator call) is interrupted half-way, and
the caching allocator is thread-safe against the other threads, so `empty_cache()` is safe there.
The cost: the main thread pauses for the release, and if it is stuck in a long C call (a blocking
collective, a `cuda.synchronize()`), the handler waits until that call returns. `defer=True` moves the
work to a point of your choosing instead: the handler only sets a flag.
"""

import gc
import signal
import sys
import threading

try:  # torch is optional: without it only gc and the callbacks run.
    import torch
except ImportError:  # pragma: no cover - depends on the environment
    torch = None

_requested = threading.Event()
_callbacks = []


def release():
    """Frees what can be freed now; returns the bytes PyTorch handed back to the driver."""
    gc.collect()
    freed = 0
    if torch is not None and torch.cuda.is_available():
        before = torch.cuda.memory_reserved()
        torch.cuda.empty_cache()
        freed = max(0, before - torch.cuda.memory_reserved())
    for callback in list(_callbacks):
        callback()
    print(f"pytorch_release_on_signal: released {freed} bytes", file=sys.stderr, flush=True)
    return freed


def release_if_requested():
    """With install(defer=True): runs release() if a signal arrived since the last call."""
    if _requested.is_set():
        _requested.clear()
        return release()
    return 0


def install(signum=signal.SIGUSR1, defer=False, on_release=None):
    """Installs the handler (call from the main thread). `on_release` runs after each release."""
    if on_release is not None:
        _callbacks.append(on_release)

    def handler(_signum, _frame):
        if defer:
            _requested.set()
        else:
            release()

    signal.signal(signum, handler)


if __name__ == "__main__":
    # A demonstration: wait for SIGUSR1 and release, until interrupted.
    install()
    print("waiting for SIGUSR1; Ctrl-C to stop", file=sys.stderr, flush=True)
    while True:
        signal.pause()
