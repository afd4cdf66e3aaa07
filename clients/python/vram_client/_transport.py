"""The reporter: a daemon thread that sends lines to the exporter's unix socket, never blocking the job.

Everything the job's threads do is append to a bounded queue and set an event; the thread alone
touches the socket, which is non-blocking: a full socket keeps the unsent rest of one line and
sends it later, a queue that overflows drops its oldest lines. A missing exporter is warned about
once; the thread reconnects at most once per interval, so a restarted exporter is found again.
"""

import collections
import os
import socket
import sys
import threading
import time

from . import _protocol, _torch_stats

# Lines waiting while the exporter is away or slow; older ones are dropped first.
MAX_QUEUE = 64
# Never block, never die of SIGPIPE (CPython ignores it anyway; MSG_NOSIGNAL is Linux's).
SEND_FLAGS = socket.MSG_DONTWAIT | getattr(socket, "MSG_NOSIGNAL", 0)


class Reporter:
    """Reports every `interval` seconds and right after a release, from its own daemon thread."""

    def __init__(self, socket_path, interval):
        self.socket_path = socket_path
        self.interval = interval
        self.pid = os.getpid()
        self.start_time = _protocol.start_time()
        self.sent = 0  # lines handed to the socket completely
        self.dropped = 0  # lines dropped: queue full, too long, or cut by a lost connection
        self._queue = collections.deque()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        # Releases waiting to be reported; appended by the signal handler, which must not lock.
        self._releases = collections.deque(maxlen=8)
        self._sock = None
        self._pending = b""
        self._warned = False
        self._next_connect = 0.0
        self._thread = threading.Thread(target=self._run, name="vram-client", daemon=True)

    def start(self):
        self._thread.start()

    def stop(self, timeout=2.0):
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)
        self._close()

    def enqueue(self, message):
        """Queues one message (never blocks, never raises on a bad message)."""
        line = _protocol.encode(message)
        with self._lock:
            if line is None:
                self.dropped += 1
                return
            if len(self._queue) >= MAX_QUEUE:
                self._queue.popleft()
                self.dropped += 1
            self._queue.append(line)
        self._wake.set()

    def released(self, freed):
        """Called after a release: the next report goes now and says what was freed."""
        self._releases.append(freed)
        self._wake.set()

    def report_now(self, reason="periodic", released=None):
        """Reads the allocator and queues a report (nothing without torch or a used device)."""
        torch = _torch_stats.loaded_torch()
        if torch is None:
            return
        figures, _ = _torch_stats.snapshot(torch)
        if not figures:
            return
        self.enqueue(
            _protocol.report(self.pid, self.start_time, self.interval, figures, reason, released)
        )

    def _run(self):
        next_report = 0.0
        while not self._stop.is_set():
            if os.getpid() != self.pid:
                return  # a forked child (a DataLoader worker) never reports as its parent
            try:
                released = None
                while self._releases:
                    released = dict(released or {})
                    for uuid, n in self._releases.popleft().items():
                        released[uuid] = released.get(uuid, 0) + n
                now = time.monotonic()
                if released is not None:
                    self.report_now("release", released)
                    next_report = now + self.interval
                elif now >= next_report:
                    self.report_now()
                    next_report = now + self.interval
                self._flush()
            except Exception:  # noqa: BLE001 - never raise into the job; try again next time
                pass
            wait = max(0.0, next_report - time.monotonic())
            if self._pending or self._queue:
                wait = min(wait, 0.05)
            self._wake.wait(wait)
            self._wake.clear()

    def _connect(self):
        now = time.monotonic()
        if now < self._next_connect:
            return False
        self._next_connect = now + self.interval
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            sock.connect(self.socket_path)
        except OSError as e:
            sock.close()
            if not self._warned:
                self._warned = True
                print(
                    "vram_client: no vram-exporter at %s (%s); reports are dropped until it is"
                    " there, without further warnings" % (self.socket_path, e.strerror or e),
                    file=sys.stderr,
                    flush=True,
                )
            return False
        self._sock = sock
        return True

    def _close(self):
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
        self._sock = None
        if self._pending:
            self._pending = b""
            self.dropped += 1

    def _flush(self):
        if not self._pending and not self._queue:
            return
        if self._sock is None and not self._connect():
            with self._lock:
                # Nobody listens: keep only the newest lines for when the exporter is back.
                while len(self._queue) > MAX_QUEUE // 2:
                    self._queue.popleft()
                    self.dropped += 1
            return
        while True:
            if not self._pending:
                with self._lock:
                    if not self._queue:
                        return
                    self._pending = self._queue.popleft()
            try:
                n = self._sock.send(self._pending, SEND_FLAGS)
            except BlockingIOError:
                return  # the socket is full: the rest goes later
            except OSError:
                self._close()  # the exporter went away (or restarted): reconnect later
                return
            self._pending = self._pending[n:]
            if not self._pending:
                self.sent += 1
