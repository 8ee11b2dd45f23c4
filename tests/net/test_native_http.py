"""_uwsgi_native.http_vars (core/cpython/native.c) in the HTTP parser: every request of the
conformance corpus, and hypothesis-made heads, parse to exactly the same requests (vars, method,
keep-alive, body length) and the same refusals with the C call as without it."""

import collections

import pytest
from http_corpus import CORPUS
from hypothesis import given, settings
from hypothesis import strategies as st
from native_support import load_native

from uwsgid.net.protocols import Limits
from uwsgid.net.protocols import http as H

N = load_native()


class _Listener:
    modifier1 = 0
    modifier2 = 0
    port = 8080


class _Conn:
    fd = -1
    peer = "127.0.0.1:5000"

    def __init__(self):
        self.queue = collections.deque()
        self.sent = []

    def send(self, data):
        self.sent.append(bytes(data))


def parse(raw: bytes, native: bool, monkeypatch) -> tuple:
    monkeypatch.setattr(H, "_native_http_vars", N.http_vars if native else None)
    conn = _Conn()
    p = H.HttpParser(conn, _Listener, Limits(limit_post=1 << 20, max_vars=40), b"127.0.0.1", b"5000")
    p.feed(raw)
    reqs = [(r.vars, list(r.vars), r.method, r.http11, r.keepalive, r.post_cl, r.input_terminated)
            for r in conn.queue]
    err = None if p.error is None else (p.error.status, p.error.reason)
    return reqs, err, conn.sent


@pytest.mark.parametrize("case", CORPUS, ids=[c.name for c in CORPUS])
def test_corpus_same_with_and_without_c(case, monkeypatch):
    assert parse(case.raw, True, monkeypatch) == parse(case.raw, False, monkeypatch)


def test_common_head_takes_the_c_path(monkeypatch):
    calls = []
    real = N.http_vars

    def spy(*a):
        r = real(*a)
        calls.append(r is not None)
        return r
    raw = b"GET /a%20b/c?x=1&y=%41 HTTP/1.1\r\nHost: h:80\r\nUser-Agent: t\r\nContent-Length: 3\r\n\r\nabc"
    monkeypatch.setattr(H, "_native_http_vars", spy)
    conn = _Conn()
    p = H.HttpParser(conn, _Listener, Limits(), b"127.0.0.1", b"5000")
    p.feed(raw)
    p.feed(raw)                    # the names are cached now: the C call takes it
    assert calls[-1] is True
    r = conn.queue[-1]
    assert r.vars[b"PATH_INFO"] == b"/a b/c" and r.vars[b"QUERY_STRING"] == b"x=1&y=%41"
    assert r.vars[b"REQUEST_URI"] == b"/a%20b/c?x=1&y=%41" and r.post_cl == 3
    assert r.vars[b"HTTP_HOST"] == b"h:80" and r.vars[b"CONTENT_LENGTH"] == b"3"


@pytest.mark.parametrize("url, path", [
    (b"/%", b"/%"), (b"/%4", b"/%4"), (b"/%zz%41", b"/%zzA"), (b"/a%%41", b"/a%A"), (b"/%2f%2F", b"///"),
    (b"/%e9%C3%a9", b"/\xe9\xc3\xa9"), (b"/x%00y", b"/x\x00y"),
])
def test_percent_decoding_as_urllib(url, path):
    r = N.http_vars({}, b"GET", b"HTTP/1.1", url, [], {})
    assert r[0][b"PATH_INFO"] == path == H.unquote_to_bytes(url)


@pytest.mark.parametrize("url, headers, keys", [
    (b"*", [], {}), (b"http://h/x", [], {}), (b"/x#frag", [], {}), (b"", [], {}),
    (b"/", [(b"New-Name", b"v")], {}),                                            # not cached yet
    (b"/", [(b"A", b"1"), (b"a", b"2")], {b"A": b"HTTP_A", b"a": b"HTTP_A"}),    # repeated
    (b"/", [(b"X_Y", b"1")], {b"X_Y": b"SCRIPT_NAME"}),                          # a name with "_"
    (b"/", [(b"Transfer-Encoding", b"chunked")], {b"Transfer-Encoding": b"HTTP_TRANSFER_ENCODING"}),
    (b"/", [(b"Expect", b"100-continue")], {b"Expect": b"HTTP_EXPECT"}),
    (b"/", [(b"Content-Length", b"007")], {b"Content-Length": b"CONTENT_LENGTH"}),
    (b"/", [(b"Content-Length", b"9" * 16)], {b"Content-Length": b"CONTENT_LENGTH"}),
    (b"/", [("str", b"v")], {}), (b"/", [(b"A", b"1", b"2")], {}),
])
def test_declines(url, headers, keys):
    assert N.http_vars({b"SCRIPT_NAME": b""}, b"GET", b"HTTP/1.1", url, headers, keys) is None


def test_bad_arguments():
    with pytest.raises(TypeError):
        N.http_vars({}, b"GET", b"HTTP/1.1", "/", [], {})
    with pytest.raises(TypeError):
        N.http_vars({}, b"GET", b"HTTP/1.1", b"/", (), {})


_name = st.sampled_from([b"Host", b"host", b"User-Agent", b"Accept", b"Content-Length", b"X-A", b"X_A",
                         b"Cookie", b"Transfer-Encoding", b"Expect", b"Content-Type", b"Connection"])
_value = st.sampled_from([b"h", b"example.com:8080", b"0", b"12", b"007", b"chunked", b"100-continue",
                          b"close", b"keep-alive", b"a=1", b" x "])
_target = st.sampled_from([b"/", b"/a?b", b"/%41%zz", b"/x#y", b"*", b"http://h/p", b"/a b", b"/?", b"/\xe9"])


@settings(max_examples=400, deadline=None)
@given(target=_target, fields=st.lists(st.tuples(_name, _value), max_size=6), v11=st.booleans(),
       body=st.binary(max_size=12))
def test_random_heads_same_with_and_without_c(target, fields, v11, body):
    head = b"GET " + target + (b" HTTP/1.1\r\n" if v11 else b" HTTP/1.0\r\n")
    head += b"".join(n + b": " + v + b"\r\n" for n, v in fields) + b"\r\n"
    raw = head + body
    with pytest.MonkeyPatch.context() as mp:
        for _ in range(2):          # the second time every name is in the key cache
            assert parse(raw, True, mp) == parse(raw, False, mp)
