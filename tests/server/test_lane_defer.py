"""The native lane's deferred requests (core/cpython/lane_defer.c), in process: a block app that
calls lane.defer() gets a token; complete() answers as the lane answers at once (framing, log
line, counters), take() hands the request to the Python path, and a token is answered once
whatever the order (a RuntimeError, never a crash), also after the client went away."""

from __future__ import annotations

import errno
import os
import re
import socket
import struct
import time

import pytest

from tests.net.native_support import load_native

native = load_native()
if not hasattr(native, "LANE_DEFER"):
    pytest.skip("_uwsgi_native without the lane's deferred requests", allow_module_level=True)


class _Lane:
    """A lane on a loopback listener whose block app defers every request (or as `app` says)."""

    def __init__(self, app=None):
        """app(lane, block): the block app (default: defer, keep the token)."""
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.setblocking(False)
        self.port = self.listener.getsockname()[1]
        self.lines = []
        self.lane = native.Lane(native.LANE_HTTP, 4096, 100, True, None, b"h", b"80", log=self.lines.append,
                                log_pid=1234)
        self.lane.set_core(0, 7)
        self.tokens = []
        self.lane.add_app(0, (lambda block: app(self, block)) if app else self._defer, app_id=3)

    def _defer(self, block):
        self.tokens.append(self.lane.defer("owner"))
        return None

    def request(self, path: str = "/d", close: bool = False):
        c = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        c.sendall(b"GET %b HTTP/1.1\r\nHost: h\r\n%b\r\n" % (path.encode(), b"Connection: close\r\n" if close else b""))
        time.sleep(0.05)
        return c, self.lane.serve(self.listener.fileno(), 1, 0)

    def close(self):
        self.listener.close()


@pytest.fixture
def lane():
    ln = _Lane()
    yield ln
    ln.close()


def test_a_deferred_request_is_answered_by_complete(lane):
    c, r = lane.request("/d?x=1")
    assert r[:2] == (0, native.LANE_DEFER)
    token = r[2]
    assert token is lane.tokens[0] and token.state == "pending" and token.core == 0 and token.owner == "owner"
    assert lane.lane.counts() == (0, 0)     # not served yet
    answer = token.complete(b"200 OK", [(b"Content-Type", b"text/plain")], b"later")
    assert answer[:3] == (1, native.LANE_KEEP, token.fd)
    assert c.recv(1000) == b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nlater"
    assert token.state == "done"
    assert lane.lane.counts() == (1, 0)
    (line,) = lane.lines
    assert re.fullmatch(rb"\[pid: 1234\|app: 3\|req: 1/1\] 127\.0\.0\.1 \(\) \{\d+ vars in \d+ bytes\} \[.+\] "
                        rb"GET /d\?x=1 => generated 5 bytes in \d+ msecs \(HTTP/1\.1 200\) 1 headers in \d+ bytes "
                        rb"\(2 switches on core 7\)\n", line), line
    os.close(token.fd)
    c.close()


def test_connection_close_is_sent_and_the_fd_closed(lane):
    c, r = lane.request(close=True)
    assert r[2].complete(b"404 Not Found", [], b"no") is None    # sent and closed by the lane
    assert c.recv(1000).startswith(b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\nConnection: close\r\n\r\nno")
    assert c.recv(10) == b""
    c.close()


def test_a_token_is_answered_once(lane):
    c, r = lane.request()
    token = r[2]
    token.complete(b"200 OK", [], b"a")
    with pytest.raises(RuntimeError, match="already completed"):
        token.complete(b"200 OK", [], b"b")
    with pytest.raises(RuntimeError, match="already completed"):
        token.take()
    os.close(token.fd)
    c.close()


def test_take_then_complete_is_refused(lane):
    c, r = lane.request("/t")
    token = r[2]
    fd, addr, modifier1, block, raw, keepalive = token.take()
    assert fd == token.fd and modifier1 == 0 and b"/t" in block and raw is None and keepalive
    with pytest.raises(RuntimeError, match="the Python path took it"):
        token.complete(b"200 OK", [], b"x")
    with pytest.raises(RuntimeError, match="the Python path took it"):
        token.take()
    del token, r
    lane.tokens.clear()
    os.write(fd, b"still ours")     # the fd is the Python path's: a taken token never closes it
    assert c.recv(100) == b"still ours"
    os.close(fd)
    c.close()


def test_complete_after_the_client_went_away(lane):
    c, r = lane.request("/gone")
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close()       # a reset
    time.sleep(0.05)
    answer = r[2].complete(b"200 OK", [], b"late")
    assert answer[:2] == (1, native.LANE_GONE)
    assert answer[2] in (errno.ECONNRESET, errno.EPIPE) and answer[3] == b"/gone"
    with pytest.raises(RuntimeError):
        r[2].complete(b"200 OK", [], b"late")


def test_complete_after_its_connection_closed_writes_nothing(lane):
    class Conn:
        closed = True
    c, r = lane.request("/closed")
    token = r[2]
    token.conn = Conn()
    assert token.complete(b"200 OK", [], b"x")[:2] == (1, native.LANE_GONE)
    c.settimeout(0.2)
    with pytest.raises(socket.timeout):
        c.recv(10)      # nothing was written to the fd (it may be another connection's by now)
    os.close(token.fd)
    c.close()


def test_a_shape_the_lane_does_not_send_is_left_to_take(lane):
    c, r = lane.request()
    token = r[2]
    assert token.complete(b"bad status", [], b"x") is False
    assert token.state == "pending"
    token.take()
    os.close(token.fd)
    c.close()


def test_bad_arguments_are_a_type_error(lane):
    c, r = lane.request()
    token = r[2]
    with pytest.raises(TypeError):
        token.complete("200 OK", [], b"x")
    with pytest.raises(TypeError):
        token.complete(b"200 OK", 5, b"x")
    assert token.state == "pending"
    token.take()
    os.close(token.fd)
    c.close()


def test_a_token_dropped_unanswered_closes_its_connection(lane, capfd):
    c, r = lane.request("/dropped")
    del r
    lane.tokens.clear()
    assert c.recv(100) == b""
    assert "a deferred request (/dropped) was dropped unanswered" in capfd.readouterr().err
    c.close()


def test_defer_outside_the_app_or_twice_is_refused(lane):
    with pytest.raises(RuntimeError, match="no lane request is inside the app"):
        lane.lane.defer(None)
    errors = []

    def twice(ln, block):
        ln.tokens.append(ln.lane.defer(None))
        try:
            ln.lane.defer(None)
        except RuntimeError as e:
            errors.append(str(e))
        return None
    ln = _Lane(twice)
    try:
        c, r = ln.request()
        assert r[1] == native.LANE_DEFER and "already taken or deferred" in errors[0]
        r[2].take()
        os.close(r[2].fd)
        c.close()
    finally:
        ln.close()


def test_an_app_failing_after_defer_goes_the_python_way():
    def failing(ln, block):
        ln.tokens.append(ln.lane.defer(None))
        raise ValueError("after defer")
    ln = _Lane(failing)
    try:
        c, r = ln.request()
        assert r[1] == native.LANE_RESUME and isinstance(r[11], ValueError)   # as without defer()
        with pytest.raises(RuntimeError, match="its app failed"):
            ln.tokens[0].complete(b"200 OK", [], b"x")
        os.close(r[2])
        c.close()
    finally:
        ln.close()
