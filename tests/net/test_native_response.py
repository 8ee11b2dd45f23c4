"""_uwsgi_native.response (core/cpython/native.c) through Request.respond: the bytes sent and
the request's bookkeeping (status, keep-alive, sizes, header count) must be exactly those of the
Python path (start_response + write + flush(True)), on every framing case; anything the C does
not handle returns None and changes nothing."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from native_support import load_native

from uwsgid.net import request as R
from uwsgid.net.request import Request

N = load_native()


class Conn:
    """What a Request uses of its connection; records what was sent and how."""

    def __init__(self, http=True, stopping=False):
        self.fd = -1
        self.is_http = http
        self.closed = False
        self.out = None
        self.queue = []
        self.stopping = stopping
        self.sent = []

    def worker_stopping(self):
        return self.stopping

    def send(self, data):
        self.sent.append(("send", bytes(data)))

    def send_last(self, data):
        self.sent.append(("last", bytes(data)))


def python_path(status, headers, body, http=True, keepalive=True, http11=True, method=b"GET", stopping=False):
    conn = Conn(http, stopping)
    req = Request(conn, {}, method=method, http11=http11, keepalive=keepalive)
    req.start_response(status, list(headers))
    for chunk in ([body] if isinstance(body, bytes) else body):
        req.write(chunk)
    req.flush(True)
    return conn, req


def native_path(status, headers, body, http=True, keepalive=True, http11=True, method=b"GET", stopping=False):
    conn = Conn(http, stopping)
    req = Request(conn, {}, method=method, http11=http11, keepalive=keepalive)
    assert req.respond(status, headers, body) is True
    req.flush(True)          # what the core does next: nothing more may go out
    return conn, req


def same(*args, **kw):
    pc, pr = python_path(*args, **kw)
    nc, nr = native_path(*args, **kw)
    assert b"".join(d for _, d in nc.sent) == b"".join(d for _, d in pc.sent)
    assert [how for how, _ in nc.sent] == [how for how, _ in pc.sent]     # send_last iff closing
    for field in ("status", "keepalive", "headers_size", "header_cnt", "response_size", "status_line"):
        assert getattr(nr, field) == getattr(pr, field), field
    assert nr.headers_sent
    return nc.sent[0][1]


CT = [(b"Content-Type", b"text/html")]


def test_hello_over_http_keepalive_and_close():
    data = same(b"200 OK", CT, [b"Hello World"])
    assert data == b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 11\r\n\r\nHello World"
    data = same(b"200 OK", CT, [b"Hello World"], keepalive=False)
    assert b"Connection: close\r\n" in data


def test_uwsgi_socket_never_keeps_alive():
    data = same(b"200 OK", CT, [b"a", b"", b"bc"], http=False)
    assert data.endswith(b"Content-Length: 3\r\n\r\nabc")


@pytest.mark.parametrize("kw", [
    {}, {"keepalive": False}, {"http11": False}, {"http11": False, "keepalive": False},
    {"method": b"HEAD"}, {"stopping": True}, {"http": False}, {"http": False, "method": b"HEAD"},
])
@pytest.mark.parametrize("status", [b"200 OK", b"204 No Content", b"304 Not Modified", b"101 Switching",
                                    b"404", b"500 Internal Server Error", b"999 X"])
@pytest.mark.parametrize("headers", [
    CT,
    CT + [(b"Content-Length", b"5")],         # the app's length: exact
    CT + [(b"content-length", b"3")],         # shorter than the body: cut there
    CT + [(b"Content-Length", b" 20 ")],      # longer: short body, the connection closes
    CT + [(b"Connection", b"close")],          # honoured on HTTP, kept as a header on uwsgi
    CT + [(b"connection", b"Keep-Alive"), (b"Transfer-Encoding", b"chunked"), (b"Keep-Alive", b"5")],
    [],
])
def test_framing_matches_python(kw, status, headers):
    same(status, headers, [b"hello"], **kw)


@pytest.mark.parametrize("body", [b"", b"single bytes", [], [b""], (b"a", b"b"), [b"x" * 65535]])
def test_body_shapes(body):
    same(b"200 OK", CT, body)


@pytest.mark.parametrize("status, headers, body", [
    ("200 OK", CT, [b"x"]),                              # str status: the Python path's business
    (b"20 OK", CT, [b"x"]), (b"2000 OK", CT, [b"x"]), (b"abc OK", CT, [b"x"]), (b"", CT, [b"x"]),
    (b"099 X", CT, [b"x"]), (b"200 OK\r\nX: y", CT, [b"x"]),
    (b"200 OK", [(b"X", b"a\r\nInjected: 1")], [b"x"]),    # CR/LF in a header
    (b"200 OK", [(b"X\n", b"a")], [b"x"]),
    (b"200 OK", [("X", "a")], [b"x"]),                     # str header
    (b"200 OK", [(b"X", b"a", b"b")], [b"x"]),              # not a pair
    (b"200 OK", [[b"X", b"a"]], [b"x"]),                    # a list, not a tuple
    (b"200 OK", ((b"X", b"a"),), [b"x"]),                   # a tuple of headers is fine ...
    (b"200 OK", CT + [(b"Content-Length", b"-1")], [b"x"]),
    (b"200 OK", CT + [(b"Content-Length", b"1_0")], [b"x"]),
    (b"200 OK", CT + [(b"Content-Length", b"+1")], [b"x"]),
    (b"200 OK", CT + [(b"Content-Length", b"9" * 16)], [b"x"]),
    (b"200 OK", CT, [b"x", "str"]), (b"200 OK", CT, [bytearray(b"x")]), (b"200 OK", CT, "str"),
    (b"200 OK", CT, iter([b"x"])), (b"200 OK", {b"X": b"a"}, [b"x"]),
    (b"200 OK", [(b"X", b"v" * 70000)], [b"x"]),            # a head over HEAD_MAX
    (b"200 OK", CT, [b"x" * 65535, b"y"]),                  # a body of BODY_MAX: sliced, chunked
])
def test_declined_changes_nothing(status, headers, body):
    conn = Conn()
    req = Request(conn, {})
    taken = req.respond(status, headers, body)
    if headers == ((b"X", b"a"),):
        assert taken
        return
    assert taken is False
    assert not conn.sent and not req.headers_sent and req.status == 0 and req.keepalive is False


class _Route:
    """uwsgid.routing's State as Request.respond sees it."""

    def __init__(self, extra):
        self.extra = extra

    def plain_headers(self, status, headers):
        return None if self.extra is None else [*headers, *self.extra]


def test_not_taken_when_started_routed_or_edited(monkeypatch):
    req = Request(Conn(), {})
    req.start_response(b"200 OK", CT)
    req.write(b"x")
    req.flush()
    assert req.respond(b"200 OK", CT, [b"y"]) is False        # head already out
    req = Request(Conn(), {})
    req.route = _Route(None)                  # the routing has more to do: the Python path
    assert req.respond(b"200 OK", CT, [b"y"]) is False and not req.conn.sent
    req = Request(Conn(), {})
    req.route = _Route([(b"X-Route", b"1")])  # only the routes' headers: taken, with them
    assert req.respond(b"200 OK", CT, [b"y"]) is True
    assert b"\r\nX-Route: 1\r\n" in req.conn.sent[0][1] and req.header_cnt == 2
    monkeypatch.setattr(R, "_edit_headers", lambda h: h)
    assert Request(Conn(), {}).respond(b"200 OK", CT, [b"y"]) is False
    monkeypatch.setattr(R, "_edit_headers", None)
    monkeypatch.setattr(R, "_native_response", None)             # a build without the module
    assert Request(Conn(), {}).respond(b"200 OK", CT, [b"y"]) is False


def test_module_bad_arguments():
    with pytest.raises(TypeError):
        N.response(b"200 OK", CT, [b"x"])
    with pytest.raises(TypeError):
        N.response(b"200 OK", CT, [b"x"], "flags")


_token = st.binary(min_size=1, max_size=12).filter(lambda b: b"\r" not in b and b"\n" not in b)
_value = st.binary(max_size=30).filter(lambda b: b"\r" not in b and b"\n" not in b)
_names = st.one_of(_token, st.sampled_from([b"Content-Length", b"connection", b"Transfer-Encoding",
                                            b"keep-alive", b"Content-Type"]))


@settings(max_examples=400, deadline=None)
@given(code=st.integers(100, 999), reason=st.binary(max_size=20).filter(lambda b: b"\r" not in b and b"\n" not in b),
       headers=st.lists(st.tuples(_names, _value), max_size=6), body=st.lists(st.binary(max_size=50), max_size=5),
       http=st.booleans(), keepalive=st.booleans(), http11=st.booleans(), head=st.booleans(), cl=st.integers(0, 300))
def test_random_responses_match_python(code, reason, headers, body, http, keepalive, http11, head, cl):
    headers = [(n, b"%d" % cl) if n.lower() == b"content-length" else (n, v) for n, v in headers]
    status = b"%d %b" % (code, reason) if reason else b"%d" % code
    same(status, headers, body, http=http, keepalive=keepalive, http11=http11,
         method=b"HEAD" if head else b"GET")
