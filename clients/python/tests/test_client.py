"""vram_client against the stand-in torch and a stand-in exporter socket: what is sent, when, and
that nothing blocks or raises into the job."""

import os
import signal
import time

from conftest import Listener

MIB = 1 << 20
UUID0 = "GPU-c1ea0000-0000-4000-8000-000000000000"


def test_report_carries_the_allocator_figures_of_used_devices(torch, client, sock_path):
    srv = Listener(sock_path)
    try:
        torch.cuda._alloc(700 * MIB)
        torch.cuda._free(200 * MIB)
        torch.cuda._retry(n=3)
        torch.cuda._oom()
        client.install(socket_path=sock_path, interval=0.1)
        m = srv.wait_for(lambda m: m["type"] == "report")
        assert m["v"] == 1 and m["pid"] == os.getpid() and m["start_time"] > 0
        assert m["interval_ms"] == 100 and m["reason"] == "periodic"
        (d,) = m["devices"]
        assert d["uuid"] == UUID0
        assert d["allocated_bytes"] == 500 * MIB
        assert d["reserved_bytes"] == 700 * MIB
        assert d["peak_reserved_bytes"] == 700 * MIB
        assert d["active_bytes"] == 500 * MIB
        assert d["alloc_retries"] == 3 and d["ooms"] == 1
        assert "released_bytes" not in d
    finally:
        srv.close()


def test_never_creates_a_context_nor_reports_unused_devices(torch, client, sock_path, monkeypatch):
    srv = Listener(sock_path)
    try:
        client.install(socket_path=sock_path, interval=0.1)
        time.sleep(0.5)
        assert not torch.cuda.is_initialized(), "a report created a CUDA context"
        assert [m for m in srv.lines if m["type"] == "report"] == []
        torch.cuda._alloc(MIB)
        m = srv.wait_for(lambda m: m["type"] == "report")
        assert [d["uuid"] for d in m["devices"]] == [UUID0]
    finally:
        srv.close()


def test_signal_empties_the_cache_reports_the_release_and_chains(torch, client, sock_path):
    srv = Listener(sock_path)
    chained = []
    previous = signal.signal(signal.SIGUSR1, lambda s, f: chained.append(s))
    try:
        torch.cuda._alloc(1024 * MIB)
        torch.cuda._free(600 * MIB)
        client.install(socket_path=sock_path, interval=5.0)
        os.kill(os.getpid(), signal.SIGUSR1)
        m = srv.wait_for(lambda m: m["type"] == "report" and m["reason"] == "release")
        (d,) = m["devices"]
        assert d["released_bytes"] == 600 * MIB
        assert d["reserved_bytes"] == 424 * MIB == torch.cuda.memory_reserved(0)
        assert chained == [signal.SIGUSR1]
    finally:
        client.uninstall()
        signal.signal(signal.SIGUSR1, previous)
        srv.close()


def test_no_exporter_warns_once_then_finds_it_when_it_starts(torch, client, sock_path, capfd):
    torch.cuda._alloc(MIB)
    client.install(socket_path=sock_path, interval=0.1)
    time.sleep(0.5)
    err = capfd.readouterr().err
    assert err.count("no vram-exporter at") == 1, err
    srv = Listener(sock_path)
    try:
        srv.wait_for(lambda m: m["type"] == "report")
        assert "no vram-exporter" not in capfd.readouterr().err
    finally:
        srv.close()


def test_reconnects_after_the_exporter_restarts(torch, client, sock_path):
    torch.cuda._alloc(MIB)
    srv = Listener(sock_path)
    client.install(socket_path=sock_path, interval=0.1)
    srv.wait_for(lambda m: m["type"] == "report")
    srv.close()
    time.sleep(0.3)
    srv = Listener(sock_path)
    try:
        srv.wait_for(lambda m: m["type"] == "report")
    finally:
        srv.close()


def test_annotate_is_bounded_and_sent(torch, client, sock_path):
    from vram_client import _protocol

    srv = Listener(sock_path)
    try:
        client.annotate("before_install")  # a no-op, never an error
        client.install(socket_path=sock_path, interval=0.1)
        fields = {"f%d" % i: "x" * 10000 for i in range(40)}
        client.annotate("model_loaded", name="llama", params=7e9, **fields)
        m = srv.wait_for(lambda m: m["type"] == "event")
        assert m["event"] == "model_loaded"
        assert m["fields"]["name"] == "llama" and m["fields"]["params"] == 7e9
        assert len(m["fields"]) == _protocol.MAX_EVENT_FIELDS
        assert all(len(str(v)) <= _protocol.MAX_STRING for v in m["fields"].values())
        client.annotate("odd", value=float("nan"), obj=object())  # unencodable: dropped quietly
    finally:
        srv.close()


def test_a_silent_exporter_never_blocks_the_job(torch, client, sock_path):
    from vram_client import _transport

    srv = Listener(sock_path, read=False)  # accepts, never reads
    try:
        torch.cuda._alloc(MIB)
        reporter = client.install(socket_path=sock_path, interval=0.1)
        for i in range(20000):
            client.annotate("step", i=i, pad="y" * 200)
        assert len(reporter._queue) <= _transport.MAX_QUEUE
        deadline = time.monotonic() + 10
        while reporter.dropped == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert reporter.dropped > 0
    finally:
        srv.close()


def test_a_failing_allocator_query_never_stops_reporting(torch, client, sock_path, monkeypatch):
    srv = Listener(sock_path)
    calls = {"n": 0}
    real = torch.cuda.memory_stats

    def flaky(index=None):
        calls["n"] += 1
        if calls["n"] <= 3:
            raise RuntimeError("CUDA error: an illegal memory access")
        return real(index)

    try:
        torch.cuda._alloc(MIB)
        monkeypatch.setattr(torch.cuda, "memory_stats", flaky)
        client.install(socket_path=sock_path, interval=0.1)
        srv.wait_for(lambda m: m["type"] == "report")
        assert calls["n"] > 3
    finally:
        srv.close()


def test_a_release_without_torch_frees_nothing_and_does_not_raise(client, monkeypatch):
    import sys

    monkeypatch.delitem(sys.modules, "torch", raising=False)
    assert client.release() == 0


def test_split_blocks_stay_reserved_after_a_release(torch, client):
    torch.cuda._alloc(1024 * MIB)
    torch.cuda._free(600 * MIB)
    torch.cuda._split(100 * MIB)
    assert torch.cuda.memory_stats(0)["inactive_split_bytes.all.current"] == 100 * MIB
    assert client.release() == 500 * MIB  # without install(): freed, nothing reported
    assert torch.cuda.memory_reserved(0) == 524 * MIB
