"""--threads: a one-core loop holds at most one connection still to be served, so concurrent
connections spread over the idle threads instead of queueing behind a blocking request (and
timing out there); a held connection that closes or times out gives accepting back."""

from __future__ import annotations

import socket
import threading
import time

import pytest
from helpers import UWSGI, Server, free_port, run_uwsgi

pytestmark = pytest.mark.skipif(not UWSGI.exists(), reason="./uwsgi is not built (make build)")

APP = '''
import time
def application(environ, start_response):
    q = environ.get("QUERY_STRING") or "0"
    if q.startswith("cpu"):             # busy on the CPU for that many seconds of its CPU time
        end = time.thread_time() + float(q[3:])
        while time.thread_time() < end:
            pass
    else:
        time.sleep(float(q))
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"core=%d" % environ["uwsgi.core"]]
'''


def fetch(port: int, path: str, timeout: float = 20.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(b"GET %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n" % path.encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return data
            data += chunk


def app_file(tmp_path) -> str:
    p = tmp_path / "blocking.py"
    p.write_text(APP)
    return str(p)


def test_concurrent_blocking_requests_land_on_distinct_threads(tmp_path):
    port = free_port()
    with Server(["--http-socket", f"127.0.0.1:{port}", "--wsgi-file", app_file(tmp_path),
                 "--threads", "4", "--disable-logging"], port) as s:
        for _ in range(8):
            results = [None] * 4

            def one(i):
                try:
                    results[i] = fetch(port, "/?1")
                except OSError as e:
                    results[i] = repr(e).encode()

            ts = [threading.Thread(target=one, args=(i,)) for i in range(4)]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
            assert all(r.startswith(b"HTTP/1.1 200") for r in results), (results, s.log()[-2000:])
            # 4 requests of 1 s started together: each on its own thread (core), none queued
            cores = sorted(r.rsplit(b"core=", 1)[1] for r in results)
            assert cores == [b"0", b"1", b"2", b"3"], results


@pytest.mark.parametrize("how", ["close", "timeout"])
def test_held_connection_gone_gives_accepting_back(tmp_path, how):
    port = free_port()
    with Server(["--http-socket", f"127.0.0.1:{port}", "--wsgi-file", app_file(tmp_path),
                 "--threads", "1", "--socket-timeout", "2", "--disable-logging"], port) as s:
        assert fetch(port, "/").startswith(b"HTTP/1.1 200")
        # held: never ends its headers (a partial request, so that deferred accept hands it over)
        silent = socket.create_connection(("127.0.0.1", port))
        silent.sendall(b"GET / HTTP/1.1\r\n")
        time.sleep(0.5)
        got = []
        t = threading.Thread(target=lambda: got.append(fetch(port, "/", timeout=15)))
        t.start()
        time.sleep(0.5)
        if how == "close":
            silent.close()
        t.join(15)
        silent.close()
        assert got and got[0].startswith(b"HTTP/1.1 200"), (got, s.log()[-2000:])


# --thread-slots: once requests are CPU-heavy, one thread accepts; others join in when it blocks
# or runs long.
SLOTS = ["--threads", "2", "--thread-slots", "1", "--disable-logging"]


def engage(port: int, s: Server) -> None:
    """Requests of 10 ms on the CPU until the worker logs that its thread slots are on."""
    for _ in range(200):
        assert fetch(port, "/?cpu0.01").startswith(b"HTTP/1.1 200")
        if "thread slots (1 of" in s.log() and ": on (" in s.log():
            return
    raise AssertionError("the thread slots never engaged: " + s.log()[-2000:])


def test_thread_slots_engage_for_cpu_heavy_requests_only(tmp_path):
    port = free_port()
    with Server(["--http-socket", f"127.0.0.1:{port}", "--wsgi-file", app_file(tmp_path), *SLOTS], port) as s:
        for _ in range(50):
            assert fetch(port, "/").startswith(b"HTTP/1.1 200")
        assert "thread slots" not in s.log()          # fast requests: no gate
        engage(port, s)
        for _ in range(100):                          # requests that wait: the gate goes off
            assert fetch(port, "/?0.02").startswith(b"HTTP/1.1 200")
            if ": off (" in s.log():
                break
        assert ": off (" in s.log(), s.log()[-2000:]


def test_thread_slots_a_silent_client_does_not_hold_the_slot(tmp_path):
    """The slot holder waits for a client that never ends its headers (up to --socket-timeout
    30): the gate sees its thread idle and lets the other thread accept."""
    port = free_port()
    with Server(["--http-socket", f"127.0.0.1:{port}", "--wsgi-file", app_file(tmp_path),
                 "--socket-timeout", "30", *SLOTS], port) as s:
        engage(port, s)
        with socket.create_connection(("127.0.0.1", port)) as slow:
            slow.sendall(b"GET / HTTP/1.1\r\n")
            time.sleep(0.3)
            started = time.monotonic()
            reply = fetch(port, "/", timeout=20)
            assert reply.startswith(b"HTTP/1.1 200"), (reply, s.log()[-2000:])
            assert time.monotonic() - started < 15   # not after the silent client's 30 s


def test_thread_slots_a_long_request_does_not_hold_the_others_back(tmp_path):
    """A request busy on the CPU for 3 s keeps its slot only for the grace (0.1 s): a short
    request sent meanwhile is served by the other thread, before the long one ends."""
    port = free_port()
    with Server(["--http-socket", f"127.0.0.1:{port}", "--wsgi-file", app_file(tmp_path),
                 *SLOTS], port) as s:
        engage(port, s)
        done = {}

        def one(name, path):
            reply = fetch(port, path, timeout=30)
            done[name] = (time.monotonic(), reply)

        long_req = threading.Thread(target=one, args=("long", "/?cpu3"))
        long_req.start()
        time.sleep(0.5)
        one("short", "/?0")
        long_req.join(30)
        assert done["short"][1].startswith(b"HTTP/1.1 200") and done["long"][1].startswith(b"HTTP/1.1 200"), \
            (done, s.log()[-2000:])
        assert done["short"][0] < done["long"][0]


def test_thread_slots_blocking_requests_still_run_side_by_side(tmp_path):
    """Four requests sleeping 1 s on four threads with one slot: each holder is seen blocked
    and passes the slot on, so all four run at once (distinct threads, not queued)."""
    port = free_port()
    with Server(["--http-socket", f"127.0.0.1:{port}", "--wsgi-file", app_file(tmp_path),
                 "--threads", "4", "--thread-slots", "1", "--disable-logging"], port) as s:
        engage(port, s)
        results = [None] * 4

        def one(i):
            results[i] = fetch(port, "/?1")

        ts = [threading.Thread(target=one, args=(i,)) for i in range(4)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(30)
        assert all(r and r.startswith(b"HTTP/1.1 200") for r in results), (results, s.log()[-2000:])
        assert sorted(r.rsplit(b"core=", 1)[1] for r in results) == [b"0", b"1", b"2", b"3"], results


def test_thread_slots_negative_is_refused(tmp_path):
    r = run_uwsgi(["--http-socket", f"127.0.0.1:{free_port()}", "--wsgi-file", app_file(tmp_path),
                   "--thread-slots", "-1"])
    assert r.returncode == 1
    assert "--thread-slots -1: must be 0" in r.stdout + r.stderr
