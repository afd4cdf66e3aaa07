"""Measures what reporting costs the job, with the stand-in torch: one memory_stats() read and one
whole report (read, encode, queue). Prints the medians; run `python clients/python/tests/measure_cost.py`.

The stand-in's memory_stats() is cheaper than torch's (a C++ walk of the allocator's counters, a few
tens of microseconds), so on a GPU add torch's own figure; the client's share is what is printed.
"""

import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "stand_in"))
sys.path.insert(0, os.path.dirname(HERE))

import torch  # noqa: E402  (the stand-in)

from vram_client import _transport  # noqa: E402


def median_us(fn, n=2000, rounds=5):
    out = []
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(n):
            fn()
        out.append((time.perf_counter() - t) / n * 1e6)
    return statistics.median(out)


def main():
    torch.cuda._alloc(1 << 30)
    reporter = _transport.Reporter("/nonexistent/clients.sock", 1.0)

    def report():
        reporter.report_now()
        reporter._queue.clear()

    stats = median_us(lambda: torch.cuda.memory_stats(0))
    whole = median_us(report)
    print("memory_stats() (stand-in): %.1f us" % stats)
    print("one report, 1 GPU (read + encode + queue): %.1f us" % whole)
    print("share of the job's time at one report per second: %.4f %%" % (whole / 1e6 * 100))


if __name__ == "__main__":
    main()
