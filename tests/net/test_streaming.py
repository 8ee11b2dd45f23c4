"""Streaming that follows the producer: a chunk yielded before the app pauses is on the wire
within milliseconds of its yield (not at the end of the body), in every mode and over every
protocol, while a fast producer is still coalesced and a short body still gets Content-Length.

The client timestamps each chunk's arrival and acknowledges it (a mark file); after each yield
the app waits for that acknowledgement, up to PAUSE s, so a chunk that waited for the next one (or
for the end of the body) would arrive PAUSE s late. The bound checked is generous (a loaded 2-core
machine, where a fixed pause of 0.4 s against a bound of 0.25 s failed): LATE s after the yield.
The server's own figure (flush within ~5 ms) is what bench/ and the flusher's docstring state;
this test proves the behaviour, not the speed.
"""

from __future__ import annotations

import itertools
import os
import socket
import textwrap
import time

import pytest
from helpers import Server, free_port, uwsgi_packet
from nginx import AVAILABLE as NGINX_AVAILABLE
from nginx import Nginx, uwsgi_pass_conf

PAUSE = 10.0    # the app's longest wait for the client's acknowledgement of a chunk
LATE = 5.0      # a chunk must arrive within this of its yield: well under PAUSE
_tags = itertools.count()

WSGI_APP = textwrap.dedent('''
    import os, time
    from uwsgid.net import flusher

    HERE = os.path.dirname(os.path.abspath(__file__))

    def application(environ, start_response):
        path = environ["PATH_INFO"]
        if path == "/flushes":
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"%d" % flusher.flushes()]
        if path == "/declared":     # a framework's shape: Content-Length, the body, then more steps
            start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "10")])
            def declared():
                yield b"whole"
                yield b" body"
                time.sleep(0.4)     # past any flush deadline
            return declared()
        if path == "/fast":
            start_response("200 OK", [("Content-Type", "text/plain")])
            return (b"%d," % i for i in range(20000))
        if path == "/short":
            start_response("200 OK", [("Content-Type", "text/plain")])
            return (c for c in (b"a", b"b", b"c"))
        start_response("200 OK", [("Content-Type", "text/plain")])
        tag = environ["QUERY_STRING"]
        def body():
            for i in range(3):
                yield b"chunk%d@%.6f;" % (i, time.time())
                # until the client got it: a chunk held back would arrive %(pause)s s late
                ack = os.path.join(HERE, "ack-%s-%d" % (tag, i))
                end = time.monotonic() + %(pause)s
                while not os.path.exists(ack) and time.monotonic() < end:
                    time.sleep(0.005)
        return body()
''').replace("%(pause)s", str(PAUSE))

LUA_APP = textwrap.dedent('''
    return function(env)
      local tag = env.QUERY_STRING
      local co = coroutine.wrap(function()
        for i = 0, 2 do
          coroutine.yield(string.format("chunk%d@%.6f;", i, uwsgi.micros() / 1e6))
          -- until the client got it: a chunk held back would arrive %(pause)s s late
          local ack = string.format("%(dir)s/ack-%s-%d", tag, i)
          local give_up = uwsgi.micros() + %(pause)s * 1e6
          while uwsgi.micros() < give_up do
            local f = io.open(ack)
            if f then f:close() break end
            io.popen("sleep 0.01"):close()     -- not os.execute: system() ignores SIGINT (the stop)
          end
        end
      end)
      return 200, {["Content-Type"] = "text/plain"}, co
    end
''').replace("%(pause)s", str(PAUSE))


def _tagged(path: str = "/") -> tuple[str, str]:
    """(path with a fresh tag as its query string, the tag): the tag names the stream's acks."""
    tag = f"{os.getpid()}-{next(_tags)}"
    return f"{path}?{tag}", tag


def _read_stamped(sock: socket.socket, acks, tag: str, timeout: float = 3 * PAUSE) -> list[tuple[float, bytes]]:
    """(arrival time, bytes) for every recv until EOF or the last chunk marker; each whole
    chunkN@STAMP; is acknowledged to the app with the mark file acks/ack-TAG-N."""
    sock.settimeout(timeout)
    got = []
    data = b""
    acked = 0
    while True:
        b = sock.recv(65536)
        if not b:
            break
        got.append((time.time(), b))
        data += b
        while acked < 3 and (pos := data.find(b"chunk%d@" % acked)) >= 0 and data.find(b";", pos) >= 0:
            (acks / f"ack-{tag}-{acked}").touch()
            acked += 1
        if b"chunk2@" in data and (data.endswith(b"0\r\n\r\n") or data.count(b";") >= 3):
            break
    return got


def _chunk_delays(got) -> list[float]:
    """For each chunkN@STAMP; the delay between the app's yield and the arrival of its bytes."""
    data = b""
    arrivals = []
    for t, b in got:
        start = len(data)
        data += b
        arrivals.append((start, len(data), t))
    delays = []
    for i in range(3):
        marker = b"chunk%d@" % i
        pos = data.find(marker)
        assert pos >= 0, f"{marker!r} missing from {data!r}"
        stamp = float(data[pos + len(marker):data.index(b";", pos)])
        end = data.index(b";", pos)
        arrived = next(t for s, e, t in arrivals if s <= end < e)
        delays.append(arrived - stamp)
    return delays


def _http_stream(port: int, acks, path: str = "/") -> tuple[list, bytes]:
    path, tag = _tagged(path)
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    got = _read_stamped(s, acks, tag)
    s.close()
    return got, b"".join(b for _, b in got)


@pytest.fixture(scope="module")
def apps(tmp_path_factory):
    d = tmp_path_factory.mktemp("stream")
    (d / "app.py").write_text(WSGI_APP)
    (d / "app.lua").write_text(LUA_APP.replace("%(dir)s", str(d)))
    return d


MODES = {
    "plain": [],
    "async": ["--async", "4"],
    "threads": ["--threads", "4"],
    "master": ["--master", "--processes", "2"],
}


@pytest.mark.parametrize("mode", MODES)
def test_wsgi_chunks_leave_as_yielded_over_http_socket(apps, mode):
    port = free_port()
    with Server(["--http-socket", f"127.0.0.1:{port}", "--wsgi-file", apps / "app.py", *MODES[mode]], port):
        got, data = _http_stream(port, apps)
    assert b"Transfer-Encoding: chunked" in data and b"Content-Length" not in data
    delays = _chunk_delays(got)
    assert max(delays) < LATE, f"chunks arrived {delays} s after their yield"


def test_wsgi_fast_producer_is_still_coalesced_and_short_body_gets_length(apps):
    port = free_port()
    with Server(["--http-socket", f"127.0.0.1:{port}", "--wsgi-file", apps / "app.py"], port) as srv:
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"GET /fast HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        s.settimeout(10)
        data = b""
        while True:
            b = s.recv(1 << 20)
            if not b:
                break
            data += b
        s.close()
        # 20000 chunks in a few slices, not 20000 HTTP chunks
        assert data.count(b"\r\n") < 200
        assert data.endswith(b"19999,\r\n0\r\n\r\n")
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"GET /short HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        head = s.recv(4096)
        s.close()
        assert b"Content-Length: 3\r\n" in head and head.endswith(b"abc")
        assert "Traceback" not in srv.log()


def test_wsgi_declared_body_leaves_once_whole_without_a_deadline_flush(apps):
    """An app that declared its Content-Length (frameworks do): the body goes out as soon as
    that many bytes came, so the steps after it (here a pause) have nothing batched to flush."""
    port = free_port()
    with Server(["--master", "--processes", "1", "--http-socket", f"127.0.0.1:{port}", "--wsgi-file",
                 apps / "app.py"], port):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"GET /declared HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        s.settimeout(10)
        data = b""
        while not data.endswith(b"whole body"):
            b = s.recv(4096)
            assert b, data
            data += b
        rest = s.recv(4096)     # EOF once the app's last step (the pause) ended
        s.close()
        assert b"Content-Length: 10\r\n" in data and rest == b""
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"GET /flushes HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        s.settimeout(10)
        answer = b""
        while b := s.recv(4096):
            answer += b
        s.close()
        assert answer.endswith(b"\r\n\r\n0"), answer


def test_wsgi_chunks_leave_as_yielded_over_uwsgi_protocol(apps):
    port = free_port()
    with Server(["--socket", f"127.0.0.1:{port}", "--wsgi-file", apps / "app.py"], port):
        uri, tag = _tagged()
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(uwsgi_packet({"REQUEST_METHOD": "GET", "PATH_INFO": "/", "REQUEST_URI": uri, "QUERY_STRING": tag,
                                "SERVER_PROTOCOL": "HTTP/1.1", "SERVER_NAME": "x", "SERVER_PORT": "80"}))
        got = _read_stamped(s, apps, tag)
        s.close()
    delays = _chunk_delays(got)
    assert max(delays) < LATE, f"chunks arrived {delays} s after their yield"


def test_wsgi_chunks_leave_as_yielded_through_the_http_router(apps):
    port = free_port()
    with Server(["--master", "--http", f"127.0.0.1:{port}", "--wsgi-file", apps / "app.py"], port):
        got, _ = _http_stream(port, apps)
    delays = _chunk_delays(got)
    assert max(delays) < LATE, f"chunks arrived {delays} s after their yield"


LUA_ARGS = ["--http-socket-modifier1", "6"]


@pytest.mark.parametrize("mode", MODES)
def test_lua_chunks_leave_as_yielded_over_http_socket(apps, mode):
    port = free_port()
    with Server(["--http-socket", f"127.0.0.1:{port}", *LUA_ARGS, "--lua", apps / "app.lua", *MODES[mode]], port):
        got, data = _http_stream(port, apps)
    assert b"Transfer-Encoding: chunked" in data and b"Content-Length" not in data
    delays = _chunk_delays(got)
    assert max(delays) < LATE, f"chunks arrived {delays} s after their yield"


def test_lua_chunks_leave_as_yielded_over_uwsgi_protocol(apps):
    port = free_port()
    with Server(["--socket", f"127.0.0.1:{port}", "--lua", apps / "app.lua"], port):
        uri, tag = _tagged()
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(uwsgi_packet({"REQUEST_METHOD": "GET", "PATH_INFO": "/", "REQUEST_URI": uri, "QUERY_STRING": tag,
                                "SERVER_PROTOCOL": "HTTP/1.1", "SERVER_NAME": "x", "SERVER_PORT": "80"},
                               modifier1=6))
        got = _read_stamped(s, apps, tag)
        s.close()
    delays = _chunk_delays(got)
    assert max(delays) < LATE, f"chunks arrived {delays} s after their yield"


@pytest.mark.skipif(not NGINX_AVAILABLE, reason="nginx is not installed")
def test_both_runtimes_stream_behind_nginx_with_uwsgi_buffering_off(apps, tmp_path):
    port, upstream = free_port(), free_port()
    conf = uwsgi_pass_conf(tmp_path / "nginx", port, upstream, {"/py": 0, "/lua": 6},
                           http_extra="uwsgi_buffering off;")
    with Server(["--socket", f"127.0.0.1:{upstream}", "--wsgi-file", apps / "app.py",
                 "--lua", apps / "app.lua"], upstream), Nginx(tmp_path / "nginx", conf, port):
        for path in ("/py", "/lua"):
            got, data = _http_stream(port, apps, path)
            assert data.startswith(b"HTTP/1.1 200"), data[:200]
            delays = _chunk_delays(got)
            assert max(delays) < LATE, f"{path}: chunks arrived {delays} s after their yield"
