"""The worker's hot-path shortcuts give the same results as the plain code: the scoreboard's C
updates vs its Python ones, the cached response header blocks, the WSGI header pair cache."""

import sys
import time

import pytest

from uwsgid.net import request as R
from uwsgid.observe import scoreboard as S


def _boards():
    if S._ffi is None:
        pytest.skip("_uwsgi (the C core) is not importable here")
    plugins = {0: object(), 6: object()}
    c, py = S.Scoreboard(2, 2, plugins), S.Scoreboard(2, 2, plugins)
    py._cmem = None                      # the Python path
    return c, py, list(plugins.values())


def test_scoreboard_c_and_python_agree():
    c, py, plugins = _boards()
    try:
        long_uri = b"/x" * 300           # longer than URI_MAX: cut the same way
        for sb in (c, py):
            before = time.time_ns() // 1000
            sb.begin(1, 1, long_uri)
            sb.begin(2, 0, b"/short")
            (core, start, uri), = sb.busy_cores(1)
            assert core == 1 and uri == long_uri[:S.URI_MAX] and before <= start <= time.time_ns() // 1000 + 1
            assert sb.busy_cores(2)[0][2] == b"/short"
            sb.end(1, 1, 200, 100, 50, False, 0, 0)
            sb.end(1, 1, 500, 7, -3, True, 6, 1)    # a negative time is not added
            sb.end(2, 0, 200, 1, 1, False, 0, -1)   # no app
            sb.end(2, 0, 200, 1, 1, True, 99, 0)    # unknown modifier1
            sb.end(9, 0, 200, 1, 1, True, 0, 0)     # unknown worker: ignored
        for wid in (1, 2):
            assert c.worker(wid) == py.worker(wid)
            assert c.busy_cores(wid) == py.busy_cores(wid) == []
        assert c.worker(1)["requests"] == 2 and c.worker(1)["exceptions"] == 1
        assert c.worker(1)["tx"] == 107 and c.worker(1)["running_time"] == 50
        assert c.total_requests() == py.total_requests() == 4
        for plugin in plugins:
            for app in (0, 1):
                assert c.app_counts(1, plugin, app) == py.app_counts(1, plugin, app)
        assert c.app_counts(1, plugins[0], 0) == (1, 0) and c.app_counts(1, plugins[1], 1) == (1, 1)
    finally:
        c.close()
        py.close()


class _Conn:
    fd = 5
    closed = False

    def __init__(self, http):
        self.is_http = http
        self.sent = []
        self.send = self.send_last = self.sent.append

    def worker_stopping(self):
        return False


def _respond(headers, http=True, body=b"hi"):
    conn = _Conn(http)
    req = R.Request(conn, {b"REQUEST_URI": b"/"}, 0, 0, b"GET", True, True)
    req.start_response(b"200 OK", headers)
    req.write(body)
    req.flush(True)
    return req, b"".join(conn.sent)


def test_header_block_cache_keeps_every_check():
    headers = [(b"Content-Type", b"text/plain"), (b"X-A", b"1")]
    for _ in range(3):                            # first built, then from the cache
        req, out = _respond(list(headers))
        assert out == b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-A: 1\r\nContent-Length: 2\r\n\r\nhi"
        assert req.header_cnt == 2 and req.keepalive
    for _ in range(2):                            # an app's Connection: close, cached or not
        req, out = _respond([(b"Connection", b"close"), (b"X-A", b"1")])
        assert not req.keepalive and b"Connection: close\r\n" in out and out.count(b"Connection") == 1
    # on a uwsgi socket the app's headers go through untouched (nginx handles them)
    req, out = _respond([(b"Connection", b"close")], http=False)
    assert out.startswith(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\n")
    for _ in range(2):                            # CR/LF smuggling is refused every time
        with pytest.raises(ValueError, match="CR/LF"):
            _respond([(b"X-Evil", b"a\r\nSet-Cookie: x=1")])
    # unhashable header items still work (built every time)
    req, out = _respond([[b"X-List", b"1"]])
    assert b"X-List: 1\r\n" in out


def test_wsgi_header_pairs_cache_keeps_every_check():
    from helpers import ROOT
    sys.path.insert(0, str(ROOT / "plugins" / "cffi"))
    from cffi_plugin.response import ResponseError, check_headers
    for _ in range(3):
        assert check_headers([("Content-Type", "text/html"), ("X-N", "v\xe9")]) == \
            [(b"Content-Type", b"text/html"), (b"X-N", b"v\xe9")]
    for bad in ([("X", "a\nb")], [("X", 1)], [("Bad Name", "v")], [("X", ["unhashable"])],
                [("X", "\u20ac")], [("Keep-Alive", "5")], [("X",)]):
        for _ in range(2):
            with pytest.raises(ResponseError):
                check_headers(bad)
