"""What PyTorch's caching allocator holds, read without ever creating a CUDA context.

Only devices the job has already used are read: nothing is read before `torch.cuda.is_initialized()`,
and a device whose allocator never allocated is skipped, so a report never touches a GPU the job
does not use (a context costs hundreds of MiB on each GPU it is made on).
"""

import sys


def loaded_torch():
    """The job's torch module if it has imported it (never imported here), else None."""
    return sys.modules.get("torch")


def _uuid(torch, index):
    """The NVML form of a device's UUID ("GPU-..."), or None when torch cannot tell it."""
    try:
        uuid = getattr(torch.cuda.get_device_properties(index), "uuid", None)
    except Exception:  # noqa: BLE001 - a failed query only skips the device
        return None
    if uuid is None:
        return None
    text = str(uuid)
    return text if text.startswith(("GPU-", "MIG-")) else "GPU-" + text


def used_devices(torch):
    """Indices of the devices whose allocator has allocated at least once."""
    cuda = getattr(torch, "cuda", None)
    if cuda is None or not cuda.is_initialized():
        return []
    used = []
    for index in range(cuda.device_count()):
        stats = cuda.memory_stats(index)
        if stats.get("allocation.all.allocated", 0) > 0 or stats.get("reserved_bytes.all.current", 0) > 0:
            used.append(index)
    return used


def device_figures(stats):
    """The reported figures from one `torch.cuda.memory_stats()` dictionary."""
    return {
        "allocated_bytes": stats.get("allocated_bytes.all.current", 0),
        "reserved_bytes": stats.get("reserved_bytes.all.current", 0),
        "active_bytes": stats.get("active_bytes.all.current", 0),
        "inactive_split_bytes": stats.get("inactive_split_bytes.all.current", 0),
        "peak_reserved_bytes": stats.get("reserved_bytes.all.peak", 0),
        "alloc_retries": stats.get("num_alloc_retries", 0),
        "ooms": stats.get("num_ooms", 0),
    }


def snapshot(torch):
    """UUID -> figures for every used device, and UUID -> index (for releases)."""
    figures, indices = {}, {}
    for index in used_devices(torch):
        uuid = _uuid(torch, index)
        if uuid is None:
            continue
        figures[uuid] = device_figures(torch.cuda.memory_stats(index))
        indices[uuid] = index
    return figures, indices


def release(torch):
    """`empty_cache()` on each used device; UUID -> bytes of reserved memory handed back."""
    freed = {}
    for index in used_devices(torch):
        uuid = _uuid(torch, index)
        before = torch.cuda.memory_stats(index).get("reserved_bytes.all.current", 0)
        with torch.cuda.device(index):
            torch.cuda.empty_cache()
        after = torch.cuda.memory_stats(index).get("reserved_bytes.all.current", 0)
        if uuid is not None:
            freed[uuid] = max(0, before - after)
    return freed
