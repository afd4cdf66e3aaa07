"""A stand-in for `torch` (only the `torch.cuda` calls vram_client makes), for machines without a GPU.

Its "GPU memory" is real to nvml-sim: with $STAND_IN_TORCH_MEM_FILE set, every change writes the
bytes this process would hold on device 0 (context + reserved) to that file, which nvml-sim reads
as the process's used memory, so `empty_cache()` frees NVML-visible memory as on a real GPU.
"""

from . import cuda  # noqa: F401

__version__ = "0.0+stand-in"
