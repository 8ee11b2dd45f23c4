"""Response framing in-process (uwsgid.net.request.Request over a fake connection): the matrix of
protocol version x body known or streamed x HEAD / no-body statuses x app Content-Length."""

from __future__ import annotations

import pytest

from uwsgid.net.request import SLICE, Request


class FakeConn:
    def __init__(self, http=True, stopping=False):
        self.is_http = http
        self.sent = []
        self.last = None     # the bytes given to send_last (the connection closes after them)
        self.closed = False
        self.fd = -1
        self.stopping = stopping
        self.queue = ()      # no pipelined request behind this one

    def send(self, data):
        assert self.last is None, "bytes after the last ones"
        self.sent.append(bytes(data))

    def send_last(self, data):
        self.send(data)
        self.last = bytes(data)

    def worker_stopping(self):
        return self.stopping

    @property
    def data(self):
        return b"".join(self.sent)


def make(method=b"GET", http11=True, keepalive=True, http=True, stopping=False):
    conn = FakeConn(http, stopping)
    return Request(conn, {b"REQUEST_URI": b"/"}, 0, 0, method, http11, keepalive), conn


def head_of(data: bytes) -> bytes:
    return data.split(b"\r\n\r\n", 1)[0]


def test_sync_body_gets_content_length_one_send():
    req, conn = make()
    req.start_response(b"200 OK", [(b"Content-Type", b"text/plain")])
    req.write(b"hello ")
    req.write(b"world")
    req.flush(True)
    assert len(conn.sent) == 1
    assert conn.data == b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 11\r\n\r\nhello world"
    assert req.keepalive and req.response_size == 11 and req.header_cnt == 1
    assert req.headers_size == len(conn.data) - 11


def test_streamed_http11_is_chunked():
    req, conn = make()
    req.start_response(b"200 OK", [])
    req.write(b"abc")
    req.flush()
    req.write(b"de")
    req.flush(True)
    assert conn.data.endswith(b"\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
    assert b"Transfer-Encoding: chunked" in conn.data
    assert req.response_size == 5 and req.keepalive


def test_streamed_http10_is_close_delimited():
    req, conn = make(http11=False, keepalive=True)
    req.start_response(b"200 OK", [])
    req.write(b"abc")
    req.flush()
    req.flush(True)
    assert conn.data.endswith(b"\r\n\r\nabc")
    assert b"chunked" not in conn.data and b"Content-Length" not in conn.data
    assert not req.keepalive


def test_http10_keepalive_header():
    req, conn = make(http11=False, keepalive=True)
    req.start_response(b"200 OK", [])
    req.write(b"x")
    req.flush(True)
    assert b"Connection: keep-alive\r\n" in conn.data


def test_http11_close_header_when_not_keepalive():
    req, conn = make(keepalive=False)
    req.start_response(b"200 OK", [])
    req.flush(True)
    assert b"Connection: close\r\n" in conn.data and b"Content-Length: 0\r\n" in conn.data


@pytest.mark.parametrize("http", [True, False])
def test_last_bytes_of_a_closing_response_go_with_the_fin(http):
    # the connection closes after them: send_last lets the kernel add the FIN to their segment
    req, conn = make(keepalive=False, http=http)
    req.start_response(b"200 OK", [])
    req.write(b"a" * 10)
    req.flush()
    assert conn.last is None
    req.write(b"b" * 10)
    req.flush(True)
    assert conn.last is not None and b"b" * 10 in conn.last and not req.keepalive


def test_keepalive_response_is_not_sent_as_last():
    req, conn = make(keepalive=True)
    req.start_response(b"200 OK", [])
    req.write(b"body")
    req.flush(True)
    assert conn.last is None and conn.data.endswith(b"body") and req.keepalive


def test_stopping_worker_closes_connection():
    req, conn = make(stopping=True)
    req.start_response(b"200 OK", [])
    req.flush(True)
    assert b"Connection: close" in conn.data and not req.keepalive


def test_head_known_length_no_body():
    req, conn = make(method=b"HEAD")
    req.start_response(b"200 OK", [])
    req.write(b"body!")
    req.flush(True)
    assert conn.data.endswith(b"Content-Length: 5\r\n\r\n") and req.response_size == 0


def test_head_streamed_no_chunking():
    req, conn = make(method=b"HEAD")
    req.start_response(b"200 OK", [])
    req.write(b"body!")
    req.flush()
    req.write(b"more")
    req.flush(True)
    assert b"chunked" not in conn.data and conn.data.endswith(b"\r\n\r\n") and req.keepalive


@pytest.mark.parametrize("code", [204, 304, 101])
def test_no_body_statuses(code):
    req, conn = make()
    req.start_response(b"%d X" % code, [])
    req.write(b"ignored")
    req.flush(True)
    assert conn.data == b"HTTP/1.1 %d X\r\n\r\n" % code


def test_app_content_length_streamed_and_overrun_clipped():
    req, conn = make()
    req.start_response(b"200 OK", [(b"Content-Length", b"4")])
    req.write(b"ab")
    req.flush()
    req.write(b"cdEXTRA")
    req.flush(True)
    assert conn.data.endswith(b"Content-Length: 4\r\n\r\nabcd")
    assert b"chunked" not in conn.data and req.keepalive


def test_app_content_length_short_body_closes():
    req, conn = make()
    req.start_response(b"200 OK", [(b"Content-Length", b"10")])
    req.write(b"ab")
    req.flush(True)
    assert not req.keepalive


def test_broken_stream_has_no_last_chunk():
    req, conn = make()
    req.start_response(b"200 OK", [])
    req.write(b"abc")
    req.flush()
    req.broken = True
    req.flush(True)
    assert not conn.data.endswith(b"0\r\n\r\n")


def test_hop_by_hop_headers_dropped_and_app_close_honoured():
    req, conn = make()
    req.start_response(b"200 OK", [(b"Transfer-Encoding", b"chunked"), (b"Connection", b"close"), (b"X", b"1")])
    req.write(b"a")
    req.flush(True)
    head = head_of(conn.data)
    assert head.count(b"Transfer-Encoding") == 0 and b"X: 1" in head
    assert b"Connection: close" in head and not req.keepalive


def test_uwsgi_protocol_raw_response():
    req, conn = make(http=False, keepalive=True)
    req.start_response(b"200 OK", [(b"Connection", b"keep-alive")])
    req.write(b"abc")
    req.flush()
    req.flush(True)
    assert conn.data == b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\n\r\nabc"
    assert not req.keepalive


def test_slice_flushes_early():
    req, conn = make()
    req.start_response(b"200 OK", [])
    req.write(b"x" * (SLICE - 1))
    assert conn.sent == []
    req.write(b"yy")
    assert len(conn.sent) == 1 and b"chunked" in conn.sent[0]


@pytest.mark.parametrize("status", [b"20 OK", b"abc", b"200OK", b"200 OK\r\nX: y", b""])
def test_bad_status_rejected(status):
    req, conn = make()
    with pytest.raises(ValueError):
        req.start_response(status, [])


@pytest.mark.parametrize("headers", [[(b"Content-Length", b"-3")], [(b"Content-Length", b"abc")]])
def test_bad_content_length_rejected(headers):
    req, conn = make()
    with pytest.raises(ValueError):
        req.start_response(b"200 OK", headers)


@pytest.mark.parametrize("headers", [[(b"X", b"a\r\nInjected: 1")], [(b"X\nY", b"1")], [(b"X", b"a\rb")],
                                     [(b"A", b"1"), (b"X", b"\n")]])
def test_crlf_in_headers_never_reaches_the_wire(headers):
    req, conn = make()
    req.start_response(b"200 OK", headers)
    req.write(b"x")
    with pytest.raises(ValueError, match="CR/LF"):
        req.flush(True)   # the core answers 500 instead
    assert conn.sent == [] and not req.headers_sent


def test_write_rules():
    req, conn = make()
    with pytest.raises(RuntimeError):
        req.write(b"x")
    req.start_response(b"200 OK", [])
    req.flush()   # an explicit flush sends the head (the core only flushes when a body is pending)
    assert conn.sent == [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"]
    req.write(b"x")
    req.flush()
    with pytest.raises(RuntimeError):
        req.start_response(b"500 X", [])
    req.finished = True
    with pytest.raises(RuntimeError):
        req.write(b"late")


def test_restart_before_headers_sent_drops_body():
    req, conn = make()
    req.start_response(b"200 OK", [])
    req.write(b"partial")
    req.error_response(500, b"Internal Server Error", b"oops")
    req.flush(True)
    assert conn.data.startswith(b"HTTP/1.1 500") and conn.data.endswith(b"\r\n\r\noops")


def test_input_bytes_and_file():
    import tempfile
    req, _ = make()
    req.set_body(b"line1\nline2\n")
    assert req.input.readline() == b"line1\n" and list(req.input) == [b"line2\n"]
    f = tempfile.TemporaryFile()
    f.write(b"abc")
    f.seek(0)
    req.set_body(f)
    assert req.input.read() == b"abc"
    req2, _ = make()
    assert req2.input.read() == b""


def test_var_stats_as_uwsgi():
    req, _ = make()
    req.vars = {b"A": b"1", b"BB": b"22"}
    assert req.var_cnt == 4 and req.pktsize == 4 + 2 + 4 + 4
