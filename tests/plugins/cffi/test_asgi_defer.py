"""ASGI requests the native lane defers (core/cpython/lane_defer.c, asgi_lane.py): answered after
an await, their response is sent from C through the request's token, against real ./uwsgi
processes: over keep-alive, with the same log line and counters as the Python path's
(UWSGI_LANE_NO_DEFER=1), a client gone meanwhile, a graceful stop with deferred requests in
flight, and the shapes that go the Python way later (a streamed body, an error, no response, a
wait for the client to go). The apps are tests/plugins/cffi/asgi_apps.py (/later*)."""

from __future__ import annotations

import json
import signal
import socket
import struct
import threading
import time
from pathlib import Path

import pytest
from helpers import Server, free_port, http_get, read_response, uwsgi_http_get, wait_file

from tests.lane_helpers import log_lines
from tests.master_helpers import read_stats

APPS = Path(__file__).resolve().parent
BASE = ["--pythonpath", APPS, "--async", "20", "--asgi", "asgi_apps:raw"]
NO_DEFER = {"UWSGI_LANE_NO_DEFER": "1"}


@pytest.fixture(scope="module")
def marks(tmp_path_factory):
    return tmp_path_factory.mktemp("asgi-defer-marks")


def _server(marks, *extra, defer=True, stats=None):
    port = free_port()
    args = ["--master", "--processes", "1", "--http-socket", f"127.0.0.1:{port}", *BASE, *extra]
    if stats is not None:
        args += ["--stats", f"127.0.0.1:{stats}"]
    env = {"MARKS": str(marks), **({} if defer else NO_DEFER)}
    return Server(args, port, env=env)


@pytest.fixture(scope="module")
def srv(marks):
    uwsgi_port = free_port()
    with _server(marks, "--socket", f"127.0.0.1:{uwsgi_port}") as s:
        s.uwsgi_port = uwsgi_port
        s.wait_log("lifespan startup complete")
        yield s


def _get(f, s, path: str, close: bool = False):
    s.sendall(b"GET %b HTTP/1.1\r\nHost: x\r\n%b\r\n" % (path.encode(), b"Connection: close\r\n" if close else b""))
    return read_response(f)


def test_deferred_responses_over_keep_alive(srv):
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        f = s.makefile("rb")
        for i in range(5):
            status, headers, body = _get(f, s, f"/later/{i}")
            assert (status, body) == (200, b"later /later/%d" % i)
            assert headers["content-length"] == str(len(body)) and headers["x-app"] == "raw"
            assert _get(f, s, "/now")[2] == b"hello from asgi /now"     # answered at once, same connection
        status, headers, body = _get(f, s, "/later/last", close=True)
        assert body == b"later /later/last" and headers["connection"] == "close"
        assert f.read() == b""      # closed after it


def test_deferred_over_the_uwsgi_protocol(srv):
    """A uwsgi packet (nginx's uwsgi_pass): the lane's own fd, closed after the response."""
    for i in range(3):
        assert uwsgi_http_get(srv.uwsgi_port, f"/later/u{i}", 0) == (200, b"later /later/u%d" % i)


def test_deferred_requests_run_side_by_side(srv):
    got = []
    threads = [threading.Thread(target=lambda i=i: got.append(http_get(srv.port, f"/later/c{i}")))
               for i in range(15)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert sorted(b for _, _, b in got) == sorted(b"later /later/c%d" % i for i in range(15))
    assert time.monotonic() - t0 < 2.0      # 15 x 50 ms side by side, not in a row


@pytest.mark.parametrize("path,status,body", [
    ("/later-stream", 200, b"one,two"),
    ("/later-boom", 500, b"Internal Server Error\n"),
    ("/later-none", 500, b"Internal Server Error\n"),
])
def test_shapes_taken_by_the_python_path_after_defer(srv, path, status, body):
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        f = s.makefile("rb")
        got = _get(f, s, path)
        assert (got[0], got[2]) == (status, body)
        assert _get(f, s, "/later/after")[2] == b"later /later/after"    # the connection goes on
    if path == "/later-boom":
        srv.wait_log("RuntimeError: boom after an await")


def test_a_deferred_request_waiting_for_the_client_to_go(srv, marks):
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    s.sendall(b"GET /later-disconnect HTTP/1.1\r\nHost: x\r\n\r\n")
    time.sleep(0.3)
    s.close()
    assert wait_file(marks / "later-disconnect").strip() == "http.disconnect"


@pytest.mark.parametrize("reset", [False, True])
def test_a_client_gone_while_deferred(srv, reset):
    before = len(srv.log())
    for _ in range(3):
        s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
        s.sendall(b"GET /later/gone HTTP/1.1\r\nHost: x\r\n\r\n")
        if reset:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
    time.sleep(0.3)
    assert http_get(srv.port, "/later/next")[2] == b"later /later/next"
    assert "Traceback" not in srv.log()[before:]


def test_the_log_line_and_counters_are_the_python_paths(marks):
    """Deferred (the default) against UWSGI_LANE_NO_DEFER=1: the same request log lines and the
    same worker, app and core counters."""
    docs, lines = [], []
    paths = [f"/later/logged{i}" for i in range(6)] + ["/logged-now"]
    for defer in (True, False):
        stats = free_port()
        with _server(marks, stats=stats, defer=defer) as s:
            with socket.create_connection(("127.0.0.1", s.port), timeout=10) as c:
                f = c.makefile("rb")
                for p in paths:
                    assert _get(f, c, p)[0] == 200
            lines.append(log_lines(s, "logged", len(paths)))
            deadline = time.monotonic() + 10
            while True:
                w = json.loads(read_stats(stats))["workers"][0]
                if w["requests"] == len(paths) or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            docs.append((w["requests"], w["apps"][0]["requests"], sum(c["requests"] for c in w["cores"]),
                         w["exceptions"]))
    assert lines[0] == lines[1] and len(lines[0]) == len(paths)
    assert docs[0] == docs[1] == (len(paths), len(paths), len(paths), 0)


def test_max_requests_counts_deferred_requests_exactly(marks):
    with _server(marks, "--max-requests", "3", "--min-worker-lifetime", "0") as s:
        pids = []
        for _ in range(7):
            for _attempt in range(50):
                try:
                    status, _, body = http_get(s.port, "/later-pid", timeout=5)
                    break
                except OSError:
                    time.sleep(0.1)     # between the old worker and the new one
            assert status == 200
            pids.append(body)
        assert len(set(pids[:3])) == 1 and pids[3] != pids[0] and len(set(pids[3:6])) == 1 and pids[6] != pids[3]


def test_graceful_stop_answers_the_deferred_requests(marks):
    port = free_port()
    with Server(["--master", "--http-socket", f"127.0.0.1:{port}", *BASE], port, env={"MARKS": str(marks)},
                stop_signal=signal.SIGTERM) as s:
        s.wait_log("lifespan startup complete")
        got = []
        sleeping = marks / "sleeping"
        before = sleeping.read_text().count("\n") if sleeping.exists() else 0
        threads = [threading.Thread(target=lambda i=i: got.append(http_get(port, f"/sleep?{i}")))
                   for i in range(8)]
        for t in threads:
            t.start()
        wait_file(sleeping, "\n", count=before + 8)     # all in the app's asyncio.sleep(0.2): deferred
        s.signal(signal.SIGTERM)
        for t in threads:
            t.join(20)
        assert [(st, b) for st, _, b in got] == [(200, b"slept")] * 8
        assert s.proc.wait(20) == 0


def test_a_routed_request_is_not_deferred_and_keeps_the_routes_headers(marks):
    """Routes on the lane (uwsgid/routing/lane.py) add their headers to the lane's answer and
    run the final chain after it; a deferred answer would miss both, so beside routes the app's
    later answer goes the Python way, with the route's header and its log line."""
    with _server(marks, "--route", "^/later addheader:X-Routed: yes",
                 "--final-route", "^/later log:final ${PATH_INFO}") as s:
        s.wait_log("lifespan startup complete")
        with socket.create_connection(("127.0.0.1", s.port), timeout=10) as c:
            f = c.makefile("rb")
            status, headers, body = _get(f, c, "/later/routed")
        assert (status, body) == (200, b"later /later/routed")
        assert headers["x-routed"] == "yes" and headers["x-app"] == "raw"
        s.wait_log("final /later/routed")
