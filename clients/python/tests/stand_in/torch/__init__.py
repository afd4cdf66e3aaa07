"""A stand-in for `torch` (only the `torch.cuda` calls vram_client makes), for machines without a GPU.

Its "GPU memory" is real to nvml-sim: with $STAND_IN_TORCH_MEM_FILE set, every change writes the
bytes this process would hold on device 0 (context + reserved) to that file, which nvml-sim reads
as the process's used memory, so `empty_cache()` frees NVML-visible memory as on a real GPU.
"""

from . import cuda  # noqa: F401

__version__ = "0.0+stand-in"
uint8 = "uint8"


class _Tensor:
    """A block of stand-in GPU memory; freed (into the cache) when the last reference goes."""

    def __init__(self, nbytes, index):
        self.nbytes, self.index = nbytes, index
        cuda._alloc(nbytes, index)

    def __del__(self):
        cuda._free(self.nbytes, self.index)


def empty(n, dtype=uint8, device="cuda"):
    """`torch.empty(n, dtype=torch.uint8, device="cuda[:i]")`: n bytes on the device."""
    text = str(device)
    index = int(text.split(":", 1)[1]) if ":" in text else cuda.current_device()
    return _Tensor(int(n), index)
