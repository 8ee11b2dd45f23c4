"""Cores and lifecycle inside one worker: --async interleaving with waits, --threads, graceful and
immediate stops, --max-requests, --reload-on-rss."""

from __future__ import annotations

import json
import signal
import threading
import time

import pytest
from helpers import connect, free_port, raw, read_response, tcp_rx_queue
from http_helpers import STARTED_TEXT, WorkerProc


def parallel(address, paths):
    results = [None] * len(paths)

    def one(i, p):
        results[i] = raw(address, b"GET %b HTTP/1.0\r\n\r\n" % p.encode(), timeout=20)
    threads = [threading.Thread(target=one, args=(i, p)) for i, p in enumerate(paths)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results, time.monotonic() - t0


def body(resp: bytes) -> bytes:
    return resp.split(b"\r\n\r\n", 1)[1]


def test_async_cores_interleave_sleeps():
    port = free_port()
    with WorkerProc({"http-socket": [f"127.0.0.1:{port}"], "async": 4}) as w:
        results, elapsed = parallel(f"127.0.0.1:{port}", ["/sleep?t=1"] * 4)
        assert all(r.startswith(b"HTTP/1.1 200") for r in results), results
        cores = sorted(body(r) for r in results)
        assert cores == [b"slept core=%d timed_out=1" % i for i in range(4)]
        assert elapsed < 3.5   # four 1 s sleeps ran concurrently on one process


def test_async_more_requests_than_cores_queue():
    port = free_port()
    with WorkerProc({"http-socket": [f"127.0.0.1:{port}"], "async": 2}) as w:
        results, elapsed = parallel(f"127.0.0.1:{port}", ["/sleep?t=0.5"] * 6)
        assert all(r.startswith(b"HTTP/1.1 200") for r in results)
        assert elapsed >= 1.2   # at most 2 in progress: 3 rounds of 0.5 s


def test_async_streams_interleave_and_fast_requests_pass():
    port = free_port()
    with WorkerProc({"http-socket": [f"127.0.0.1:{port}"], "async": 4}) as w:
        results, _ = parallel(f"127.0.0.1:{port}", ["/stream?n=200", "/stream?n=200", "/", "/sleep?t=0.2"])
        assert body(results[0]) == b"".join(b"chunk%d\n" % i for i in range(200))
        assert body(results[1]) == body(results[0])
        assert body(results[2]) == b"Hello World"


def test_wait_fd_read():
    port = free_port()
    with WorkerProc({"http-socket": [f"127.0.0.1:{port}"], "async": 2}) as w:
        assert body(raw(f"127.0.0.1:{port}", b"GET /waitfd HTTP/1.0\r\n\r\n")) == b"ready=1"


def test_threads_run_blocking_requests_in_parallel():
    port = free_port()
    with WorkerProc({"http-socket": [f"127.0.0.1:{port}"], "threads": 4}) as w:
        results, elapsed = parallel(f"127.0.0.1:{port}", ["/block?t=1"] * 4)
        assert all(r.startswith(b"HTTP/1.1 200") for r in results)
        assert elapsed < 3.5
        infos = [json.loads(body(raw(f"127.0.0.1:{port}", b"GET /core HTTP/1.0\r\n\r\n"))) for _ in range(8)]
        assert all(i["state"] == {"inited": True} for i in infos)


def test_sync_blocking_serializes():
    port = free_port()
    with WorkerProc({"http-socket": [f"127.0.0.1:{port}"]}) as w:
        results, elapsed = parallel(f"127.0.0.1:{port}", ["/block?t=0.5"] * 3)
        assert all(r.startswith(b"HTTP/1.1 200") for r in results)
        assert elapsed >= 1.3


@pytest.mark.parametrize("opts,path", [({}, "/block?t=1"), ({"async": 4}, "/sleep?t=1"),
                                        ({"threads": 2}, "/block?t=1")])
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_graceful_stop_finishes_in_flight(opts, path, sig):
    port = free_port()
    w = WorkerProc(dict({"http-socket": [f"127.0.0.1:{port}"]}, **opts)).start()
    try:
        idle = connect(f"127.0.0.1:{port}")
        idle.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        f_idle = idle.makefile("rb")
        assert read_response(f_idle)[2] == b"Hello World"   # now an idle keep-alive connection
        s = connect(f"127.0.0.1:{port}")
        s.sendall(b"GET %b HTTP/1.1\r\nHost: x\r\n\r\n" % path.encode())
        w.wait_log(STARTED_TEXT)
        w.send_signal(sig)
        f = s.makefile("rb")
        status, headers, data = read_response(f)
        assert status == 200
        assert headers.get("connection") == "close"
        assert w.wait(10) == 0
        assert f_idle.read() == b""   # the idle connection was closed
        s.close()
        idle.close()
    finally:
        w.stop()


def test_sigint_stops_now():
    port = free_port()
    w = WorkerProc({"http-socket": [f"127.0.0.1:{port}"], "async": 2}).start()
    try:
        s = connect(f"127.0.0.1:{port}")
        s.sendall(b"GET /sleep?t=20 HTTP/1.1\r\nHost: x\r\n\r\n")
        w.wait_log(STARTED_TEXT)
        t0 = time.monotonic()
        w.send_signal(signal.SIGINT)
        w.wait(10)
        assert time.monotonic() - t0 < 5
        s.close()
    finally:
        w.stop()


def test_max_requests_exits_gracefully():
    port = free_port()
    w = WorkerProc({"http-socket": [f"127.0.0.1:{port}"], "max-requests": 3, "min-worker-lifetime": 0}).start()
    try:
        # the harness's readiness probe was request 1
        for _ in range(2):
            assert raw(f"127.0.0.1:{port}", b"GET / HTTP/1.0\r\n\r\n").endswith(b"Hello World")
        assert w.wait(10) == 0
        assert "max requests 3" in w.log()
    finally:
        w.stop()


def test_reload_on_rss():
    port = free_port()
    w = WorkerProc({"http-socket": [f"127.0.0.1:{port}"], "reload-on-rss": 1, "min-worker-lifetime": 0}).start()
    try:
        assert w.wait(10) == 0   # the readiness probe already pushed it over 1 MB
        assert "--reload-on-rss" in w.log()
    finally:
        w.stop()


def test_service_reader_and_call_soon():
    port = free_port()
    with WorkerProc({"http-socket": [f"127.0.0.1:{port}"]}) as w:
        assert body(raw(f"127.0.0.1:{port}", b"GET /svc HTTP/1.0\r\n\r\n")) == b"reads=1 soon=1"


def test_custom_loop_with_serve_connection():
    port = free_port()
    w = WorkerProc({"http-socket": [f"127.0.0.1:{port}"]}, custom_loop=True).start()
    try:
        s = connect(f"127.0.0.1:{port}")
        f = s.makefile("rb")
        for _ in range(3):   # keep-alive through serve_connection
            s.sendall(b"GET /stream?n=2 HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_response(f)[2] == b"chunk0\nchunk1\n"
        s.sendall(b"GET /sleep?t=0.1 HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(f)[2].startswith(b"slept")
        s.sendall(b"GET /svc HTTP/1.1\r\nHost: x\r\n\r\n")   # services still served by loop 0
        assert read_response(f)[2] == b"reads=1 soon=1"
        w.send_signal(signal.SIGTERM)
        assert f.read() == b""   # idle connection closed by the graceful stop
        assert w.wait(10) == 0
        s.close()
    finally:
        w.stop()


def test_graceful_stop_serves_accepted_connection_without_request_yet():
    """A connection accepted just before the stop, whose request arrives just after, is served.
    (Accepted while silent: --no-defer-accept, or a deferred one whose --socket-timeout ran out.
    By default the kernel keeps a silent connection until its request comes: see
    test_master_reload's test for the reload.)"""
    port = free_port()
    w = WorkerProc({"http-socket": [f"127.0.0.1:{port}"], "no-defer-accept": True}).start()
    try:
        s = connect(f"127.0.0.1:{port}")
        deadline = time.monotonic() + 10
        while tcp_rx_queue(port) and time.monotonic() < deadline:
            time.sleep(0.01)    # until accepted by the worker (not 0.3 s: a loaded machine is slower)
        w.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        status, headers, data = read_response(s.makefile("rb"))
        assert status == 200 and data == b"Hello World" and headers["connection"] == "close"
        assert w.wait(10) == 0
        s.close()
    finally:
        w.stop()


def test_graceful_stop_finishes_in_flight_stream():
    port = free_port()
    w = WorkerProc({"http-socket": [f"127.0.0.1:{port}"], "async": 2}).start()
    try:
        s = connect(f"127.0.0.1:{port}")
        s.sendall(b"GET /slowstream?n=15 HTTP/1.1\r\nHost: x\r\n\r\n")
        f = s.makefile("rb")
        assert f.readline().startswith(b"HTTP/1.1 200")
        w.send_signal(signal.SIGTERM)
        rest = f.read()   # the whole stream, then the close
        assert rest.endswith(b"0\r\n\r\n")
        assert b"slow14\n" in rest and b"Transfer-Encoding: chunked" in rest
        assert w.wait(10) == 0
        s.close()
    finally:
        w.stop()


def test_threads_with_async_cores():
    port = free_port()
    with WorkerProc({"http-socket": [f"127.0.0.1:{port}"], "threads": 2, "async": 2}) as w:
        results, elapsed = parallel(f"127.0.0.1:{port}", ["/sleep?t=1"] * 4)
        assert all(r.startswith(b"HTTP/1.1 200") for r in results)
        assert elapsed < 3.5
        # each on a core of its own: a thread whose cores are all busy stops accepting, so the
        # fourth connection is not queued behind one of them while the other thread has a core
        cores = {body(r) for r in results}
        assert len(cores) == 4, cores


def test_uwsgi_protocol_async():
    from helpers import uwsgi_packet
    port = free_port()
    with WorkerProc({"socket": [f"127.0.0.1:{port}"], "http-socket": [f"127.0.0.1:{free_port()}"], "async": 4}):
        results = [None] * 4

        def one(i):
            v = {"REQUEST_METHOD": "GET", "PATH_INFO": "/sleep", "QUERY_STRING": "t=1", "REQUEST_URI": "/sleep?t=1"}
            results[i] = raw(f"127.0.0.1:{port}", uwsgi_packet(v))
        ts = [threading.Thread(target=one, args=(i,)) for i in range(4)]
        t0 = time.monotonic()
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        assert time.monotonic() - t0 < 3.5
        assert all(r.startswith(b"HTTP/1.1 200") for r in results)


def test_wait_on_bad_fd_times_out_instead_of_hanging():
    port = free_port()
    with WorkerProc({"http-socket": [f"127.0.0.1:{port}"], "async": 2}) as w:
        assert body(raw(f"127.0.0.1:{port}", b"GET /badfd HTTP/1.0\r\n\r\n")) == b"timed_out=1"
        assert "wait on fd 987654 failed" in w.log()
        assert body(raw(f"127.0.0.1:{port}", b"GET / HTTP/1.0\r\n\r\n")) == b"Hello World"


def test_threads_keepalive_connections_not_stuck_behind_a_busy_thread():
    port = free_port()
    with WorkerProc({"http-socket": [f"127.0.0.1:{port}"], "threads": 4}) as w:
        conns = []
        for _ in range(4):   # established, used once, now idle keep-alive connections
            c = connect(f"127.0.0.1:{port}")
            c.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            f = c.makefile("rb")
            assert read_response(f)[2] == b"Hello World"
            conns.append((c, f))
        for _ in range(2):
            t0 = time.monotonic()
            for c, f in conns:
                c.sendall(b"GET /block?t=1 HTTP/1.1\r\nHost: x\r\n\r\n")
            for c, f in conns:
                assert read_response(f)[0] == 200
            assert time.monotonic() - t0 < 3.0   # in parallel (4 x 1 s serially would be 4 s)
        for c, f in conns:
            c.close()
