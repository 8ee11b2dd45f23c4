"""ASGI request bodies handed to the app as they arrive (uwsgid/net/protocols/stream.py), against
real ./uwsgi processes: chunks before the upload ends (HTTP Content-Length and chunked, the uwsgi
protocol), a 50 MB upload through Starlette's request.stream() at flat RSS, http.disconnect when
the client goes mid-body, pipelined and keep-alive requests after a streamed or an unread body,
and a WSGI app mounted beside an ASGI one keeping its whole body. The apps are
tests/plugins/cffi/asgi_stream_apps.py."""

from __future__ import annotations

import hashlib
import json
import os
import resource
import socket
import struct
import threading
import time
from pathlib import Path

import pytest
from helpers import Server, free_port, read_response

APPS = Path(__file__).resolve().parent
PAGE_KB = resource.getpagesize() // 1024


def wait_mark(marks: Path, name: str, timeout: float = 15.0) -> str:
    path = marks / name
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text():
            return path.read_text().strip()
        time.sleep(0.02)
    raise AssertionError(f"the app never marked {name!r}")


def post_head(path: str, length: int | None, tag: str = "", extra: str = "") -> bytes:
    framing = f"Content-Length: {length}\r\n" if length is not None else "Transfer-Encoding: chunked\r\n"
    return (f"POST {path} HTTP/1.1\r\nHost: t\r\nX-Tag: {tag}\r\n{framing}{extra}\r\n").encode()


def answer(f) -> dict:
    status, _, body = read_response(f)
    assert status == 200, (status, body)
    return json.loads(body)


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


@pytest.fixture(scope="module")
def marks(tmp_path_factory):
    return tmp_path_factory.mktemp("asgi-stream-marks")


@pytest.fixture(scope="module")
def srv(marks):
    http_port, uwsgi_port = free_port(), free_port()
    args = ["--master", "--http-socket", f"127.0.0.1:{http_port}", "--socket", f"127.0.0.1:{uwsgi_port}",
            "--asgi", "asgi_stream_apps:app", "--pythonpath", APPS, "--async", "20"]
    with Server(args, http_port, env={"MARKS": str(marks)}) as s:
        s.uwsgi_port = uwsgi_port
        yield s


def worker_pid(port: int) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET /ignore HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        return answer(s.makefile("rb"))["pid"]


def test_chunks_reach_the_app_before_the_upload_ends(srv, marks):
    first, rest = os.urandom(100_000), os.urandom(150_000)
    with socket.create_connection(("127.0.0.1", srv.port), timeout=15) as s:
        s.sendall(post_head("/read", len(first) + len(rest), "cl") + first)
        # the app has bytes while the client still holds the rest: no timing, an order
        assert int(wait_mark(marks, "first-cl")) > 0
        s.sendall(rest)
        got = answer(s.makefile("rb"))
    assert got["size"] == 250_000 and got["md5"] == md5(first + rest)
    assert got["chunks"] >= 2


def test_chunked_request_body_is_streamed(srv, marks):
    parts = [os.urandom(n) for n in (5000, 70_000, 1, 30_000)]
    with socket.create_connection(("127.0.0.1", srv.port), timeout=15) as s:
        s.sendall(post_head("/read", None, "te") + b"%x\r\n%b\r\n" % (len(parts[0]), parts[0]))
        assert int(wait_mark(marks, "first-te")) == len(parts[0])
        s.sendall(b"".join(b"%x;ext=1\r\n%b\r\n" % (len(p), p) for p in parts[1:]) + b"0\r\n\r\n")
        got = answer(s.makefile("rb"))
    assert got["size"] == sum(map(len, parts)) and got["md5"] == md5(b"".join(parts))


def test_uwsgi_protocol_body_is_streamed(srv, marks):
    first, rest = os.urandom(40_000), os.urandom(60_000)
    pairs = {"REQUEST_METHOD": "POST", "REQUEST_URI": "/read", "PATH_INFO": "/read", "QUERY_STRING": "",
             "SERVER_PROTOCOL": "HTTP/1.1", "SERVER_NAME": "t", "SERVER_PORT": "80", "HTTP_X_TAG": "uw",
             "CONTENT_LENGTH": str(len(first) + len(rest))}
    block = b"".join(struct.pack("<H", len(k)) + k.encode() + struct.pack("<H", len(v)) + v.encode()
                     for k, v in pairs.items())
    with socket.create_connection(("127.0.0.1", srv.uwsgi_port), timeout=15) as s:
        s.sendall(struct.pack("<BHB", 0, len(block), 0) + block + first)
        assert int(wait_mark(marks, "first-uw")) > 0
        s.sendall(rest)
        got = answer(s.makefile("rb"))
    assert got["size"] == 100_000 and got["md5"] == md5(first + rest)


def test_client_gone_mid_upload_is_http_disconnect(srv, marks):
    pid = worker_pid(srv.port)
    with socket.create_connection(("127.0.0.1", srv.port), timeout=15) as s:
        s.sendall(post_head("/wait-gone", 5_000_000, "gone") + b"x" * 20_000)
        wait_mark(marks, "first-gone")
    assert 0 < int(wait_mark(marks, "gone-gone")) < 5_000_000
    assert not (marks / "complete-gone").exists()
    assert worker_pid(srv.port) == pid          # the same worker goes on serving
    assert "Traceback" not in srv.log()


def test_pipelined_requests_after_streamed_and_unread_bodies(srv):
    big, small = os.urandom(700_000), os.urandom(3000)
    unread = os.urandom(900_000)
    burst = (post_head("/read", len(big)) + big
             + b"GET /read HTTP/1.1\r\nHost: t\r\n\r\n"
             + post_head("/ignore", len(unread)) + unread
             + post_head("/read", None) + b"%x\r\n%b\r\n0\r\n\r\n" % (len(small), small)
             + post_head("/read", len(small), extra="Connection: close\r\n") + small)
    with socket.create_connection(("127.0.0.1", srv.port), timeout=20) as s:
        sender = threading.Thread(target=s.sendall, args=(burst,))
        sender.start()          # the server stops reading while the app lags: send meanwhile
        f = s.makefile("rb")
        got = [answer(f) for _ in range(5)]
        sender.join(20)
        assert f.read() == b""      # then the close the last one asked for
    assert (got[0]["size"], got[0]["md5"]) == (len(big), md5(big))
    assert got[1]["size"] == 0
    assert got[2]["ignored"] is True
    assert (got[3]["size"], got[3]["md5"]) == (len(small), md5(small))
    assert (got[4]["size"], got[4]["md5"]) == (len(small), md5(small))


def test_unread_body_then_keepalive_request(srv):
    with socket.create_connection(("127.0.0.1", srv.port), timeout=20) as s:
        f = s.makefile("rb")
        s.sendall(post_head("/ignore", 3_000_000))
        assert answer(f)["ignored"] is True       # answered before the body is sent
        s.sendall(b"y" * 3_000_000 + post_head("/read", 5) + b"hello")
        got = answer(f)
    assert (got["size"], got["md5"]) == (5, md5(b"hello"))


def test_the_connection_is_read_only_as_the_app_takes_the_body(srv, marks):
    pid = worker_pid(srv.port)
    before = rss_kb(pid)
    total, piece = 64 * 1024 * 1024, b"z" * (256 * 1024)
    sent = 0
    with socket.create_connection(("127.0.0.1", srv.port), timeout=30) as s:
        s.sendall(post_head("/lazy", total, "lazy"))
        s.setblocking(False)
        stalled = None
        while sent < total:         # send until the server stops taking bytes for 0.5 s
            try:
                sent += s.send(piece[:total - sent])
                stalled = None
            except BlockingIOError:
                stalled = stalled or time.monotonic()
                if time.monotonic() - stalled > 0.5:
                    break
                time.sleep(0.01)
        held = sent
        grown = rss_kb(pid) - before
        (marks / "go-lazy").write_text("go")
        s.setblocking(True)
        while sent < total:
            s.sendall(piece[:min(len(piece), total - sent)])
            sent += min(len(piece), total - sent)
        got = answer(s.makefile("rb"))
    assert got["size"] == total
    # what the kernel's socket buffers hold plus the stream's window, not the whole body
    assert held < total // 2, f"{held} of {total} bytes taken while the app read nothing"
    assert grown < 4 * 1024, f"the worker's RSS grew by {grown} kB while the app read nothing"


def test_unread_body_with_connection_close(srv):
    with socket.create_connection(("127.0.0.1", srv.port), timeout=20) as s:
        s.sendall(post_head("/ignore", 2_000_000, "", "Connection: close\r\n") + b"c" * 100_000)
        f = s.makefile("rb")
        assert answer(f)["ignored"] is True
        try:
            s.sendall(b"c" * 500_000)   # the server drains what still comes, then closes
        except OSError:
            pass
        assert f.read() == b""
    assert "pipelined request" not in srv.log()


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * PAGE_KB


def test_50mb_upload_through_starlette_at_flat_rss(srv, marks):
    pid = worker_pid(srv.port)
    with socket.create_connection(("127.0.0.1", srv.port), timeout=15) as s:
        s.sendall(post_head("/s/upload", 3) + b"abc")       # Starlette imported before measuring
        assert answer(s.makefile("rb"))["size"] == 3
    total = 50 * 1024 * 1024
    piece = os.urandom(1024 * 1024)
    before = rss_kb(pid)
    peak = [before]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], rss_kb(pid))
            time.sleep(0.02)
    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=60) as s:
            s.sendall(post_head("/s/upload", total, "big"))
            for i in range(total // len(piece)):
                s.sendall(piece)
                if i == 9:      # 10 MB in: the app is already reading it
                    wait_mark(marks, "first-big")
            got = answer(s.makefile("rb"))
    finally:
        done.set()
        sampler.join(5)
    assert got["size"] == total
    assert got["chunks"] > 50        # handed over as it came, not as one body
    # the worker held a bounded window of it (stream.HIGH_WATER plus a read), not 50 MB
    grown = max(peak[0], got["rss_peak_kb"] - got["rss_start_kb"] + before) - before
    assert grown < 4 * 1024, f"the worker's RSS grew by {grown} kB during a 50 MB upload"


@pytest.fixture(scope="module")
def mixed(marks):
    port = free_port()
    args = ["--master", "--http-socket", f"127.0.0.1:{port}", "--pythonpath", APPS, "--async", "8",
            "--socket-timeout", "2", "--limit-post", "1000000", "--manage-script-name", "--mount", "/a=asgi_stream_apps:app", "--mount", "/w=asgi_stream_apps:wsgi"]
    with Server(args, port, env={"MARKS": str(marks)}) as s:
        yield s


def test_mounts_decide_which_bodies_stream(mixed, marks):
    first, rest = os.urandom(50_000), os.urandom(50_000)
    with socket.create_connection(("127.0.0.1", mixed.port), timeout=15) as s:
        f = s.makefile("rb")
        s.sendall(post_head("/a/read", 100_000, "mixed") + first)
        wait_mark(marks, "first-mixed")
        s.sendall(rest)
        got = answer(f)
        assert (got["size"], got["md5"], got["path"]) == (100_000, md5(first + rest), "/read")
        # the WSGI app next to it still gets its whole body before it runs
        s.sendall(post_head("/w/x", 100_000) + first)
        time.sleep(0.3)
        s.sendall(rest)
        got = answer(f)
    assert got == {"size": 100_000, "md5": md5(first + rest), "wsgi": True}


def test_a_stalled_upload_gets_the_socket_timeout(mixed, marks):
    with socket.create_connection(("127.0.0.1", mixed.port), timeout=15) as s:
        s.sendall(post_head("/a/wait-gone", 100_000, "stall") + b"s" * 1000)
        wait_mark(marks, "first-stall")
        # the client sends nothing more and keeps the connection: after --socket-timeout 2
        # the server drops it and the app sees http.disconnect
        assert int(wait_mark(marks, "gone-stall", timeout=15)) == 1000
        mixed.wait_log("stopped sending the request body for 2s, dropped")
        assert s.recv(100) == b""


def test_a_chunked_body_over_limit_post_is_one_413(mixed, marks):
    piece = b"%x\r\n%b\r\n" % (300_000, b"p" * 300_000)
    with socket.create_connection(("127.0.0.1", mixed.port), timeout=15) as s:
        s.sendall(post_head("/a/read", None, "limit") + piece)
        wait_mark(marks, "first-limit")
        try:
            s.sendall(piece * 3)
        except OSError:
            pass        # the server may close first
        f = s.makefile("rb")
        status, headers, _ = read_response(f)
        assert (status, headers["connection"]) == (413, "close")
        assert f.read() == b""      # that one answer, no 500 from the app before it
    assert int(wait_mark(marks, "gone-limit")) <= 1_000_000
