"""Fixtures for vram_client's tests: the stand-in torch on sys.path and a stand-in exporter socket."""

import json
import os
import socket
import sys
import threading
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "stand_in"))
sys.path.insert(0, os.path.dirname(HERE))


class Listener:
    """A unix-socket server that keeps every line it receives, like the exporter's listener."""

    def __init__(self, path, read=True):
        self.path = path
        self.read = read
        self.lines = []
        self.conns = []
        self._stop = False
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(16)
        self.sock.settimeout(0.05)
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            self.conns.append(conn)
            if self.read:
                threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        buf = b""
        conn.settimeout(0.05)
        while not self._stop:
            try:
                chunk = conn.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            if not chunk:
                return
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                self.lines.append(json.loads(line))

    def wait_for(self, pred, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for m in list(self.lines):
                if pred(m):
                    return m
            time.sleep(0.02)
        raise AssertionError("no matching message; got %r" % self.lines[-5:])

    def close(self):
        self._stop = True
        self.thread.join(1)
        for c in self.conns:
            c.close()
        self.sock.close()
        os.unlink(self.path)


@pytest.fixture
def torch():
    import torch as stand_in

    stand_in.cuda._reset()
    yield stand_in
    stand_in.cuda._reset()


@pytest.fixture
def sock_path(tmp_path):
    return str(tmp_path / "clients.sock")


@pytest.fixture
def client():
    import vram_client

    yield vram_client
    vram_client.uninstall()
