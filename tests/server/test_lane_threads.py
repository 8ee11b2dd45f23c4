"""The native lane in threaded workers (--threads N, under the default --thread-slots gate,
uwsgid.server.lane_gate): their requests are served by the lane, and the gate still engages for
CPU-heavy requests, hands the slot on when a request blocks or runs past its grace, and
disengages for sleeping ones."""

from __future__ import annotations

import socket
import textwrap
import threading
import time

import pytest

from tests.helpers import Server, free_port

native = pytest.importorskip("_uwsgi_native")
if not hasattr(native, "Lane"):
    pytest.skip("the native module has no lane (an old build)", allow_module_level=True)

# who called the app: the lane's C is no Python frame, so on the lane its caller is the driver
# (native_lane.py, or under a gate its wrapper lane_gate.py); on the Python path, the plugin
APP = textwrap.dedent('''
    import sys, time
    def application(environ, start_response):
        caller = sys._getframe(1).f_code.co_filename
        q = environ.get("QUERY_STRING") or "0"
        if q.startswith("cpu"):             # busy on the CPU for that many seconds
            end = time.thread_time() + float(q[3:])
            while time.thread_time() < end:
                pass
        else:
            time.sleep(float(q))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"core=%d caller=%s" % (environ["uwsgi.core"], caller.encode())]
''')

LANE_CALLERS = (b"native_lane.py", b"lane_gate.py")


def on_lane(reply: bytes) -> bool:
    return reply.startswith(b"HTTP/1.1 200") and reply.rpartition(b"/")[2] in LANE_CALLERS


@pytest.fixture
def app(tmp_path):
    p = tmp_path / "lane_threads.py"
    p.write_text(APP)
    return str(p)


def _server(app, *extra):
    port = free_port()
    return Server(["--master", "--processes", "1", "--http-socket", f"127.0.0.1:{port}", "--wsgi-file", app,
                   "--disable-logging", *extra], port)


def fetch(port: int, path: str = "/", timeout: float = 20.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(b"GET %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n" % path.encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return data
            data += chunk


def engage(srv: Server) -> None:
    """CPU-heavy requests (10 ms each) until the worker logs that its thread slots are on."""
    for _ in range(300):
        reply = fetch(srv.port, "/?cpu0.01")
        assert on_lane(reply), reply
        if ": on (" in srv.log():
            return
    raise AssertionError("the thread slots never engaged: " + srv.log()[-2000:])


def test_a_threaded_workers_requests_are_served_by_the_lane(app):
    with _server(app, "--threads", "4") as srv:
        for _ in range(20):
            reply = fetch(srv.port)
            assert on_lane(reply), reply
        # a kept-alive connection's next requests too (the lane's handle)
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
            f = s.makefile("rb")
            for _ in range(5):
                s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
                assert f.readline().startswith(b"HTTP/1.1 200")
                length = 0
                while (line := f.readline()) != b"\r\n":
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                assert f.read(length).rpartition(b"/")[2] in LANE_CALLERS
        assert "thread slots" not in srv.log()     # short requests: the gate stays off


def test_the_python_path_is_told_apart(app):
    """UWSGI_NO_LANE=1: the same worker on the Python path, which the callers above are not."""
    port = free_port()
    with Server(["--master", "--processes", "1", "--http-socket", f"127.0.0.1:{port}", "--wsgi-file", app,
                 "--disable-logging", "--threads", "4"], port, env={"UWSGI_NO_LANE": "1"}) as srv:
        reply = fetch(srv.port)
        assert reply.startswith(b"HTTP/1.1 200") and not on_lane(reply), reply


def test_the_gate_engages_on_the_lane_and_goes_off_for_sleeping_requests(app):
    with _server(app, "--threads", "2", "--thread-slots", "1") as srv:
        engage(srv)
        assert "thread slots (1 of" in srv.log()
        for _ in range(100):
            reply = fetch(srv.port, "/?0.02")
            assert on_lane(reply), reply
            if ": off (" in srv.log():
                break
        assert ": off (" in srv.log(), srv.log()[-2000:]


def test_a_long_request_on_the_lane_keeps_its_slot_only_for_the_grace(app):
    """Engaged with one slot: a request on the CPU for 3 s does not keep the other thread from
    accepting past the grace (0.1 s), so a short request is answered before it ends."""
    with _server(app, "--threads", "2", "--thread-slots", "1") as srv:
        engage(srv)
        done = {}

        def one(name, path):
            reply = fetch(srv.port, path, timeout=30)
            done[name] = (time.monotonic(), reply)

        long_req = threading.Thread(target=one, args=("long", "/?cpu3"))
        long_req.start()
        time.sleep(0.5)
        one("short", "/?0")
        long_req.join(30)
        assert on_lane(done["short"][1]) and on_lane(done["long"][1]), (done, srv.log()[-2000:])
        assert done["short"][0] < done["long"][0]


def test_blocked_requests_on_the_lane_pass_the_slot_on(app):
    """Engaged with one slot, four requests sleeping 1 s: each holder is seen blocked inside the
    lane and passes the slot on, so the four run at once on the four threads."""
    with _server(app, "--threads", "4", "--thread-slots", "1") as srv:
        engage(srv)
        results = [None] * 4

        def one(i):
            results[i] = fetch(srv.port, "/?1")

        ts = [threading.Thread(target=one, args=(i,)) for i in range(4)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(30)
        assert all(r and on_lane(r) for r in results), (results, srv.log()[-2000:])
        assert sorted(r.split(b"core=")[1][:1] for r in results) == [b"0", b"1", b"2", b"3"], results


def test_engaged_one_thread_takes_concurrent_cpu_heavy_requests(app):
    """Engaged with one slot, four clients at once with requests that compute: the slot's
    holder keeps it (each request ends within the grace) and serves most of them, where
    without a gate each idle thread would take one (a loaded machine may pass the slot on now
    and then: the holder preempted long enough to look blocked)."""
    with _server(app, "--threads", "4", "--thread-slots", "1") as srv:
        engage(srv)
        replies = []

        def client():
            for _ in range(6):
                replies.append(fetch(srv.port, "/?cpu0.005"))

        ts = [threading.Thread(target=client) for _ in range(4)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(60)
        assert len(replies) == 24 and all(on_lane(r) for r in replies), replies
        cores = [r.split(b"core=")[1][:1] for r in replies]
        assert max(cores.count(c) for c in set(cores)) >= 16, cores
