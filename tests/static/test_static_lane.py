"""Small static files on the native lane (core/cpython/lane_static.c): a plain GET of a file the
worker's file cache holds this second is answered in C, byte for byte as serve.py answers it
(head, body, log line, counters); everything else under a static mountpoint goes the Python way."""

from __future__ import annotations

import json
import os
import socket
import time

import pytest

from tests.helpers import Server, free_port, raw, uwsgi_packet
from tests.master_helpers import read_stats
from tests.lane_helpers import lane_env, log_lines

native = pytest.importorskip("_uwsgi_native")
if not hasattr(native, "Lane") or not hasattr(native.Lane, "set_static"):
    pytest.skip("the native module has no static lane (an old build)", allow_module_level=True)

APP = ("def application(env, start_response):\n"
       "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
       "    return [b'app ' + env['PATH_INFO'].encode('latin-1')]\n")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("static_lane")
    files = root / "files"
    files.mkdir()
    (files / "a.txt").write_bytes(b"hello static file\n")
    (files / "sp ace.css").write_bytes(b"body{}\n")
    (files / "big.bin").write_bytes(os.urandom(200_000))
    (root / "app.py").write_text(APP)
    # the file cache keeps a file only once its inode is 2 s old (filecache.RACY_SECONDS)
    time.sleep(max(0.0, (files / "a.txt").stat().st_ctime + 2.2 - time.time()))
    return root


def _start(site, sock, lane: bool, *extra):
    port = free_port()
    return Server(["--master", "--processes", "1", sock, f"127.0.0.1:{port}", "--static-map",
                   f"/static={site / 'files'}", *extra], port, env=lane_env(lane)).start()


def http(port, data: bytes) -> bytes:
    return raw(f"127.0.0.1:{port}", data, half_close=False)


REQS = [
    b"GET /static/a.txt HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    b"GET /static/a.txt HTTP/1.0\r\n\r\n",
    b"GET /static/sp%20ace.css HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    b"HEAD /static/a.txt HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    b"GET /static/a.txt HTTP/1.1\r\nHost: h\r\nRange: bytes=0-4\r\nConnection: close\r\n\r\n",
    b"GET /static/a.txt HTTP/1.1\r\nHost: h\r\nIf-Modified-Since: Sun, 06 Nov 2044 08:49:37 GMT\r\n"
    b"Connection: close\r\n\r\n",
    b"GET /static/missing.txt HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    b"GET /static/big.bin HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    b"GET /not-static HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
    b"GET /static/../app.py HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
]


@pytest.mark.parametrize("with_app", [True, False])
def test_http_answers_as_the_python_path(site, with_app):
    extra = ["--wsgi-file", site / "app.py"] if with_app else []
    lane, python = _start(site, "--http-socket", True, *extra), _start(site, "--http-socket", False, *extra)
    try:
        for data in REQS:
            for _ in range(3):      # a miss fills the cache, then hits within the second
                a, b = http(lane.port, data), http(python.port, data)
                assert a == b, data
        marker = "/static/a.txt"
        assert log_lines(lane, marker, 9) == log_lines(python, marker, 9)
    finally:
        lane.stop()
        python.stop()


def test_uwsgi_socket_answers_as_the_python_path(site):
    lane, python = _start(site, "--socket", True), _start(site, "--socket", False)
    v = {"REQUEST_METHOD": "GET", "REQUEST_URI": "/static/a.txt", "PATH_INFO": "/static/a.txt",
         "QUERY_STRING": "", "SERVER_PROTOCOL": "HTTP/1.1", "SERVER_NAME": "h", "SERVER_PORT": "80",
         "REMOTE_ADDR": "127.0.0.1", "HTTP_HOST": "h"}
    try:
        for more in ({}, {"HTTP_RANGE": "bytes=1-2"}, {"REQUEST_METHOD": "HEAD"}):
            data = uwsgi_packet(dict(v, **more), modifier1=6)   # static files whatever the modifier1
            for _ in range(3):
                assert http(lane.port, data) == http(python.port, data)
    finally:
        lane.stop()
        python.stop()


def test_kept_alive_hits_and_the_counters(site):
    stats = free_port()
    srv = _start(site, "--http-socket", True, "--stats", f"127.0.0.1:{stats}")
    try:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
            f = s.makefile("rb")
            for _ in range(50):
                s.sendall(b"GET /static/a.txt HTTP/1.1\r\nHost: h\r\n\r\n")
                head = b""
                while not head.endswith(b"\r\n\r\n"):
                    head += f.read(1)
                assert head.startswith(b"HTTP/1.1 200 OK\r\n") and b"Connection" not in head
                assert f.read(18) == b"hello static file\n"
        deadline = time.monotonic() + 10
        while True:
            w = json.loads(read_stats(stats))["workers"][0]
            if w["requests"] == 50 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert w["requests"] == 50
        assert w["cores"][0]["static_requests"] == 50
    finally:
        srv.stop()


def test_the_lane_answers_a_cached_file_itself():
    """In process: a cached entry of this second is answered by serve() with no hand-off, and a
    stale one is handed to the Python path (LANE_START)."""
    lst = socket.create_server(("127.0.0.1", 0))
    lst.setblocking(False)
    port = lst.getsockname()[1]
    entries = {}
    lane = native.Lane(native.LANE_HTTP, 4096, 100, True, None, b"h", b"80")
    lane.set_core(0, 0)
    lane.set_static(entries, (b"/s",))
    body = b"cached body"
    block = b"Content-Type: text/plain\r\nContent-Length: %d\r\n" % len(body)
    try:
        for second, want in ((int(time.time()), "served"), (int(time.time()) - 5, "start")):
            entries[b"/s/x"] = (second, block, block, 2, body)
            c = socket.create_connection(("127.0.0.1", port))
            c.sendall(b"GET /s/x HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
            time.sleep(0.05)
            r = lane.serve(lst.fileno(), 1, 0)
            if want == "served":
                assert r == (1, native.LANE_FULL)
                assert c.recv(1000) == b"HTTP/1.1 200 OK\r\n" + block + b"Connection: close\r\n\r\n" + body
                assert lane.counts() == (1,)
            else:
                assert r[1] == native.LANE_START
                os.close(r[2])
            c.close()
    finally:
        lst.close()
