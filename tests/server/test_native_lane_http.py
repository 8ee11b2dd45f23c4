"""The native lane on an --http-socket (core/cpython/lane_env_http.c reads the head): every request
answers byte for byte as on the Python path (llhttp), the heads the lane does not read included,
over new and kept-alive connections."""

from __future__ import annotations

import os
import re
import socket
import time

import pytest

from tests.helpers import raw, send_paced
from tests.lane_helpers import start_pair
from tests.server.test_native_lane import APP, ITER_SHAPES

native = pytest.importorskip("_uwsgi_native")
if not hasattr(native, "LANE_HTTP"):
    pytest.skip("the native module has no HTTP lane (an old build)", allow_module_level=True)


@pytest.fixture(scope="module", params=[(), ("--threads", "4")], ids=["sync", "threads"])
def pair(tmp_path_factory, request):
    """The lane and the Python path; and both with --threads (the lane under the default
    --thread-slots gate)."""
    app = tmp_path_factory.mktemp("lane_http") / "lane_app.py"
    app.write_text(APP)
    servers = start_pair(lambda port: ["--master", "--processes", "1", "--disable-logging", "--http-socket",
                                       f"127.0.0.1:{port}", "--wsgi-file", app, *request.param])
    yield servers
    for s in servers:
        s.stop()


def exchange(port: int, data: bytes) -> bytes:
    return raw(f"127.0.0.1:{port}", data)


def same(pair, data: bytes) -> bytes:
    lane, python = pair
    a = exchange(lane.port, data)
    b = exchange(python.port, data)
    assert _no_port(a) == _no_port(b), data
    return a


def _no_port(answer: bytes) -> bytes:
    """Without what differs by construction: the client's port, each server's own port (and so
    the /env body's length)."""
    answer = re.sub(rb"\('(REMOTE|SERVER)_PORT', '[0-9]+'\)", b"PORT", answer)
    return re.sub(rb"Content-Length: [0-9]+", b"Content-Length: N", answer)


H = b"Host: example.org\r\n"
HEADS = [
    b"GET / HTTP/1.1\r\n" + H + b"\r\n",
    b"GET /env?a=1&b=%20 HTTP/1.1\r\n" + H + b"User-Agent: t\r\nAccept: */*\r\nX-Pad:   both   \r\n\r\n",
    b"GET /env/%41%zz%2 HTTP/1.1\r\n" + H + b"\r\n",
    b"GET /env HTTP/1.1\r\n" + H + b"Content-Type: text/x\r\nContent-Length: 0\r\n\r\n",
    b"GET /env HTTP/1.0\r\n\r\n",
    b"HEAD / HTTP/1.1\r\n" + H + b"\r\n",
    b"GET / HTTP/1.1\r\n" + H + b"Connection: close\r\n\r\n",
    b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    b"DELETE /x HTTP/1.1\r\n" + H + b"\r\n",
    b"OPTIONS /x HTTP/1.1\r\n" + H + b"\r\n",
    # what the lane leaves to the Python path
    b"POST /env HTTP/1.1\r\n" + H + b"Content-Length: 4\r\n\r\nabcd",
    b"POST /env HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\n\r\n",
    b"GET /env HTTP/1.1\r\n" + H + b"Expect: 100-continue\r\n\r\n",
    b"GET /env HTTP/1.1\r\n" + H + b"Upgrade: websocket\r\nConnection: upgrade\r\n\r\n",
    b"GET /env HTTP/1.1\r\n" + H + b"Accept: a\r\nAccept: b\r\n\r\n",
    b"GET /env HTTP/1.1\r\n" + H + b"Host: other\r\n\r\n",
    b"GET /env HTTP/1.1\r\nHost: [::1]:80\r\n\r\n",
    b"GET /env HTTP/1.1\r\nHost: bad host\r\n\r\n",
    b"GET /env HTTP/1.1\r\n\r\n",
    b"GET /env HTTP/1.1\r\n" + H + b"X_Under: 1\r\n\r\n",
    b"GET /env HTTP/1.1\r\n" + H + b"X-Latin: caf\xe9\r\n\r\n",
    b"GET /env HTTP/1.1\r\n" + H + b"X-Fold: a\r\n b\r\n\r\n",
    b"GET /env HTTP/1.1\n" + H + b"\r\n",
    b"GET /env HTTP/1.1\r\n" + H + b"Connection: keep-alive, close\r\n\r\n",
    b"GET http://example.org/env HTTP/1.1\r\n" + H + b"\r\n",
    b"GET /env#frag HTTP/1.1\r\n" + H + b"\r\n",
    b"GET /e{n}v HTTP/1.1\r\n" + H + b"\r\n",
    b"BREW /env HTTP/1.1\r\n" + H + b"\r\n",
    b"GET /env HTTP/2.0\r\n" + H + b"\r\n",
    b"GET / HTTP/1.1\r\n" + H + b"\r\nGET /second HTTP/1.1\r\n" + H + b"\r\n",
    b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\n" + H + b"\r\n",
    b"GET / HTTP/1.1\r\n" + H + b"".join(b"X-H%d: v\r\n" % i for i in range(80)) + b"\r\n",
    b"\x16\x03\x01\x00\x05hello",
]


@pytest.mark.parametrize("data", HEADS, ids=range(len(HEADS)))
def test_each_head_answers_as_on_the_python_path(pair, data):
    same(pair, data)


@pytest.mark.parametrize("path", ["/", "/gen", "/write", "/raise", "/badheader", "/twice", "/excinfo", "/str",
                                  "/listheaders", "/big", "/file", "/empty", "/api", *ITER_SHAPES])
def test_each_app_shape_on_a_kept_alive_connection(pair, path):
    """Two requests on one connection (the second through handle()), then close. A body cut
    short (shorter than declared, or an error once it went out) closes the connection."""
    req = b"GET %b HTTP/1.1\r\n" % path.encode() + H + b"\r\n"
    last = b"GET /last HTTP/1.1\r\n" + H + b"Connection: close\r\n\r\n"
    cut = path in ("/it-short", "/it-missing", "/it-raise-after")
    answers = [send_paced(srv.port, (req,) if cut else (req, req, last)) for srv in pair]
    assert answers[0] == answers[1]
    assert answers[0].startswith(b"HTTP/1.1 ")
    if not cut:
        assert answers[0].endswith(b"hello /last")


def test_a_head_in_pieces(pair):
    lane, _ = pair
    out = send_paced(lane.port, (b"GET /pieces HTTP/1.1\r\nHo", b"st: x\r\nConnection: close\r\n\r\n"), 0.2)
    assert out.endswith(b"hello /pieces")


def test_many_keepalive_requests_then_close(pair):
    lane, _ = pair
    with socket.create_connection(("127.0.0.1", lane.port), timeout=10) as s:
        f = s.makefile("rb")
        for i in range(200):
            s.sendall(b"GET /k%d HTTP/1.1\r\n" % i + H + b"\r\n")
            head = b""
            while not head.endswith(b"\r\n\r\n"):
                head += f.read(1)
            n = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            assert f.read(n) == b"hello /k%d" % i


def test_a_declared_body_in_paced_chunks_follows_its_producer(pair):
    """The lane steps a declared body once; a first chunk shorter than the length goes on in the
    Python path, whose flush deadline sends it while the app sleeps before the next one."""
    for srv in pair:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=20) as s:
            tag = f"{srv.port}-{time.monotonic_ns()}"
            t0 = time.monotonic()
            s.sendall(b"GET /it-paced?%s HTTP/1.1\r\n" % tag.encode() + H + b"Connection: close\r\n\r\n")
            got = b""
            while not got.endswith(b"first "):
                got += s.recv(65536)
            # the app waits for this mark up to 10 s: a first chunk that waited for the second
            # would come that late (a loaded machine failed a bound of 0.4 s against a 0.5 s pause)
            assert time.monotonic() - t0 < 5, "the first chunk waited for the second"
            app_dir = os.path.dirname(srv.argv[srv.argv.index("--wsgi-file") + 1])
            open(os.path.join(app_dir, f"ack-{tag}"), "w").close()
            while chunk := s.recv(65536):
                got += chunk
        assert got.endswith(b"\r\n\r\nfirst second")
