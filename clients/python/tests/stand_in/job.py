"""A stand-in training job: the real vram_client over the stand-in torch, for end-to-end tests.

It allocates JOB_ALLOC bytes it keeps and JOB_CACHE bytes it frees (left cached by the allocator,
JOB_SPLIT of them in split blocks that empty_cache() cannot release),
counts JOB_RETRIES allocation retries and JOB_OOMS OOMs, annotates a phase, installs the client
(interval JOB_INTERVAL seconds) and then runs "steps" until killed. $JOB_DIR/ready appears once the
memory is in place; each release appends the freed bytes to $JOB_DIR/released.
"""

import os
import sys
import time

import torch
import vram_client

d = os.environ["JOB_DIR"]
alloc = int(os.environ.get("JOB_ALLOC", "0"))
cache = int(os.environ.get("JOB_CACHE", "0"))
torch.cuda._alloc(alloc + cache)
torch.cuda._free(cache)
torch.cuda._split(int(os.environ.get("JOB_SPLIT", "0")))
torch.cuda._retry(n=int(os.environ.get("JOB_RETRIES", "0")))
torch.cuda._oom(n=int(os.environ.get("JOB_OOMS", "0")))


def released(_signum, _frame):
    # Chained after vram_client's handler: records that the release ran.
    with open(os.path.join(d, "released"), "a") as f:
        f.write("%d\n" % torch.cuda.memory_reserved(0))


import signal  # noqa: E402

signal.signal(signal.SIGUSR1, released)
vram_client.install(interval=float(os.environ.get("JOB_INTERVAL", "0.2")))
vram_client.annotate("phase", name="train", step=0)
open(os.path.join(d, "ready"), "w").close()
sys.stdout.flush()
while True:
    time.sleep(0.05)
