"""The stand-in's `torch.cuda`: a caching allocator per device that keeps freed blocks until empty_cache().

Configured by the environment: STAND_IN_TORCH_UUIDS (comma-separated device UUIDs, as torch
gives them: without "GPU-"), STAND_IN_TORCH_CONTEXT_BYTES (what a context costs, default 300 MiB),
STAND_IN_TORCH_MEM_FILE (where device 0's total is written for nvml-sim). Test helpers start with
an underscore: `_alloc`, `_free`, `_split`, `_retry`, `_oom`, `_reset`.
"""

import os
import threading
import uuid as _uuid_mod

_lock = threading.RLock()
_uuids = [u for u in os.environ.get("STAND_IN_TORCH_UUIDS", "c1ea0000-0000-4000-8000-000000000000").split(",") if u]
_context = int(os.environ.get("STAND_IN_TORCH_CONTEXT_BYTES", str(300 << 20)))
_mem_file = os.environ.get("STAND_IN_TORCH_MEM_FILE")
_current = 0
_devices = {}
memory_stats_calls = 0


class _Device:
    def __init__(self):
        self.allocated = 0
        self.reserved = 0
        self.peak_reserved = 0
        self.num_alloc = 0
        self.retries = 0
        self.ooms = 0
        self.split = 0


class _Properties:
    def __init__(self, index):
        self.name = "Stand-in GPU %d" % index
        self.uuid = _uuid_mod.UUID(_uuids[index])


def _reset():
    """Forgets every device (no context anywhere), for tests."""
    global _current
    with _lock:
        _devices.clear()
        _current = 0
        _write()


def _write():
    if _mem_file is None:
        return
    d = _devices.get(0)
    total = 0 if d is None else _context + d.reserved
    tmp = _mem_file + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d\n" % total)
    os.replace(tmp, _mem_file)


def _dev(index):
    # Using a device creates its context, as in torch.
    with _lock:
        d = _devices.get(index)
        if d is None:
            d = _devices[index] = _Device()
        return d


def _alloc(nbytes, device=0):
    """Allocates: from the cache when it has room, else by growing the reservation."""
    with _lock:
        d = _dev(device)
        d.allocated += nbytes
        d.num_alloc += 1
        if d.allocated > d.reserved:
            d.reserved = d.allocated
        d.peak_reserved = max(d.peak_reserved, d.reserved)
        _write()


def _free(nbytes, device=0):
    """Frees tensors: their blocks stay reserved (cached) until empty_cache()."""
    with _lock:
        d = _dev(device)
        d.allocated = max(0, d.allocated - nbytes)


def _split(nbytes, device=0):
    """Marks cached bytes as pieces of split blocks: reported inactive-split, never released."""
    with _lock:
        _dev(device).split = nbytes


def _retry(device=0, n=1):
    with _lock:
        _dev(device).retries += n


def _oom(device=0, n=1):
    with _lock:
        _dev(device).ooms += n


def is_available():
    return bool(_uuids)


def is_initialized():
    return bool(_devices)


def device_count():
    return len(_uuids)


def current_device():
    return _current


def set_device(index):
    global _current
    _current = index


class device:
    """`with torch.cuda.device(i):` makes i current for the block."""

    def __init__(self, index):
        self.index = index
        self.prev = None

    def __enter__(self):
        global _current
        self.prev, _current = _current, self.index
        return self

    def __exit__(self, *exc):
        global _current
        _current = self.prev
        return False


def get_device_properties(index):
    return _Properties(index)


def memory_stats(index=None):
    """The keys vram_client reads, as torch names them; {} for a device never used."""
    global memory_stats_calls
    memory_stats_calls += 1
    with _lock:
        d = _devices.get(_current if index is None else index)
        if d is None:
            return {}
        return {
            "allocated_bytes.all.current": d.allocated,
            "reserved_bytes.all.current": d.reserved,
            "reserved_bytes.all.peak": d.peak_reserved,
            "active_bytes.all.current": d.allocated,
            "inactive_split_bytes.all.current": min(d.split, d.reserved - d.allocated),
            "allocation.all.allocated": d.num_alloc,
            "num_alloc_retries": d.retries,
            "num_ooms": d.ooms,
        }


def memory_reserved(index=None):
    return memory_stats(index).get("reserved_bytes.all.current", 0)


def memory_allocated(index=None):
    return memory_stats(index).get("allocated_bytes.all.current", 0)


def empty_cache():
    """Hands the current device's unused cached blocks back to the driver."""
    with _lock:
        d = _devices.get(_current)
        if d is not None:
            d.reserved = d.allocated + min(d.split, d.reserved - d.allocated)
            _write()
