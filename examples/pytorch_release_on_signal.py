# pytorch_release_on_signal.py: a PyTorch job that reports its allocator to vram-exporter and frees its cache on SIGUSR1.
"""A training-shaped PyTorch job with vram_client: the two lines every job adds, in context.

    import vram_client
    vram_client.install()

`install()` reports what PyTorch's caching allocator holds (allocated, reserved, reclaimable
cache, retries, OOMs) to vram-exporter's clients socket every second, for the GPUs this process
already uses, and installs a SIGUSR1 handler: `gc.collect()` and `torch.cuda.empty_cache()` on
those GPUs, then a report of what was released. vram-exporter's `signal` cleanup action sends
SIGUSR1 when a GPU crosses its hard limit, to the processes with the most reclaimable cache
first. `vram_client.annotate()` records phases for the exporter's JSON API.

Why running the release in the handler is fine: a Python signal handler is not a C signal
handler. CPython's C-level handler only sets a flag; the Python function runs later, in the main
thread, between two bytecodes, so no CUDA call is interrupted half-way. If the main thread sits
in a long C call (a blocking collective), the release waits for it; `install(defer=True)` plus
`vram_client.release_if_requested()` once per step moves the work to a point you choose.

Run it (a GPU and torch needed; `pip install ./clients/python`, or run from a checkout):

    python examples/pytorch_release_on_signal.py --weights-gib 2 --activations-gib 1 --steps 100

It keeps `--weights-gib` of "weights", allocates and frees `--activations-gib` of "activations"
each step (PyTorch keeps them cached: reserved but reclaimable), then idles until interrupted,
releasing its cache whenever SIGUSR1 arrives.
"""

import argparse
import os
import sys
import time

try:
    import vram_client
except ImportError:  # run from a checkout without `pip install ./clients/python`
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path.insert(0, os.path.join(here, "..", "clients", "python"))
    import vram_client

import torch

CHUNK = 64 << 20  # allocate in 64 MiB tensors


def tensors(gib, device):
    return [torch.empty(CHUNK, dtype=torch.uint8, device=device) for _ in range(int(gib * (1 << 30)) // CHUNK)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights-gib", type=float, default=2.0)
    ap.add_argument("--activations-gib", type=float, default=1.0)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--step-seconds", type=float, default=0.1)
    args = ap.parse_args()

    vram_client.install()  # report every second; SIGUSR1 → empty_cache() on the GPUs in use
    device = "cuda"
    vram_client.annotate("phase", name="load", weights_gib=args.weights_gib)
    weights = tensors(args.weights_gib, device)
    vram_client.annotate("phase", name="train", steps=args.steps)
    for _ in range(args.steps):
        activations = tensors(args.activations_gib, device)
        del activations  # freed tensors stay cached: reserved, reclaimable
        time.sleep(args.step_seconds)
    vram_client.annotate("phase", name="idle")
    print("pytorch_release_on_signal: %d weight tensors held; idle, SIGUSR1 releases the cache"
          % len(weights), file=sys.stderr, flush=True)
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
