"""vram_client: tells vram-exporter what PyTorch's caching allocator holds, and frees its cache on request.

NVML sees only a process's total; the figures PyTorch users debug OOMs with (allocated versus
reserved, the cache that `empty_cache()` can give back, allocation retries, OOMs) live inside the
job. Two lines put them beside the node's limits and alerts:

    import vram_client
    vram_client.install()

`install()` starts a daemon thread that reports every second (and right after a release), for each
GPU the job already uses, over the exporter's unix socket (docs/client-protocol.md), and installs a
SIGUSR1 handler that runs `torch.cuda.empty_cache()` on those GPUs, chaining any handler installed
before. Nothing here blocks the job or raises into it: a missing exporter is one warning on stderr,
then silence until it is back. Standard library only; torch is read only when the job imported it.
"""

import gc
import signal
import sys
import threading

from . import _protocol, _torch_stats
from ._transport import Reporter

__all__ = ["install", "uninstall", "annotate", "release", "release_if_requested", "PROTOCOL_VERSION"]
__version__ = "0.1.0"
PROTOCOL_VERSION = _protocol.VERSION

_state_lock = threading.Lock()
_reporter = None
_signal = None
_previous = None
_requested = threading.Event()
_defer = False


def install(socket_path=None, interval=1.0, signum=signal.SIGUSR1, defer=False):
    """Starts reporting and installs the release handler; returns the reporter (idempotent).

    socket_path: the exporter's socket (default: $VRAM_EXPORTER_CLIENT_SOCKET or
    /run/vram-exporter/clients.sock). interval: seconds between reports (0.1 to 30).
    signum: the release signal (None: no handler). defer: the handler only records the request
    and `release_if_requested()` does the work where the job calls it (between steps).
    """
    global _reporter, _signal, _previous, _defer
    with _state_lock:
        if _reporter is not None:
            return _reporter
        interval = min(30.0, max(0.1, float(interval)))
        reporter = Reporter(socket_path or _protocol.default_socket(), interval)
        _defer = bool(defer)
        if signum is not None:
            try:
                _previous = signal.signal(signum, _handler)
                _signal = signum
            except (ValueError, OSError) as e:  # not the main thread, or a signal we may not catch
                print("vram_client: release handler not installed: %s" % e, file=sys.stderr, flush=True)
        reporter.start()
        _reporter = reporter
        return reporter


def uninstall():
    """Stops reporting and puts back the signal handler found at install()."""
    global _reporter, _signal, _previous
    with _state_lock:
        if _signal is not None:
            try:
                signal.signal(_signal, _previous if _previous is not None else signal.SIG_DFL)
            except (ValueError, OSError):
                pass
        _signal, _previous = None, None
        if _reporter is not None:
            _reporter.stop()
        _reporter = None


def annotate(event, **fields):
    """Records an event (a phase, a model loaded) for the exporter's JSON API; never a label.

    Fields are scalars (strings are cut to 256 characters, at most 16 fields); a no-op before
    install(). Never raises.
    """
    reporter = _reporter
    if reporter is None:
        return
    try:
        reporter.enqueue(_protocol.event(reporter.pid, reporter.start_time, event, fields))
    except Exception:  # noqa: BLE001 - never raise into the job
        pass


def release():
    """Frees what can be freed now (gc, then empty_cache on the used GPUs) and reports it.

    Returns the bytes handed back to the driver, summed over the GPUs.
    """
    try:
        gc.collect()
        torch = _torch_stats.loaded_torch()
        freed = _torch_stats.release(torch) if torch is not None else {}
    except Exception:  # noqa: BLE001 - never raise into the job
        return 0
    reporter = _reporter
    if reporter is not None:
        reporter.released(freed)
    return sum(freed.values())


def release_if_requested():
    """With install(defer=True): runs release() if a signal arrived since the last call."""
    if _requested.is_set():
        _requested.clear()
        return release()
    return 0


def _handler(signum, frame):
    # A Python handler runs in the main thread between two bytecodes, never inside a C call, so
    # empty_cache() is safe here; defer=True moves the work to a point the job chooses.
    if _defer:
        _requested.set()
    else:
        release()
    previous = _previous
    if callable(previous):
        previous(signum, frame)
