"""HTTP data plane against a real worker process (tests/http_helpers.py harness):
socket kinds, framing, keep-alive, pipelining, chunked in/out, 100-continue, dispatch, errors."""

from __future__ import annotations

import http.client
import json
import os
import socket
import tempfile
import time
import uuid

import pytest
from helpers import connect, free_port, raw, read_response
from http_helpers import WorkerProc


@pytest.fixture(scope="module")
def server():
    port = free_port()
    with WorkerProc({"http-socket": [f"127.0.0.1:{port}"]}) as w:
        yield w


def request(address, method, path, body=None, headers=None):
    host, port = address.rsplit(":", 1)
    c = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        c.close()


def test_hello_content_length(server):
    status, headers, body = request(server.address(), "GET", "/")
    assert status == 200
    assert body == b"Hello World"
    assert headers["content-length"] == "11"
    assert "transfer-encoding" not in headers


def test_cgi_vars(server):
    status, _, body = request(server.address(), "GET", "/vars/a%20b?x=1&y=%41",
                              headers={"X-Dashed-Name": "v", "Accept": "a"})
    v = json.loads(body)
    port = server.address().rsplit(":", 1)[1]
    assert v["REQUEST_METHOD"] == "GET"
    assert v["REQUEST_URI"] == "/vars/a%20b?x=1&y=%41"
    assert v["PATH_INFO"] == "/vars/a b"
    assert v["QUERY_STRING"] == "x=1&y=%41"
    assert v["SCRIPT_NAME"] == ""
    assert v["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert v["SERVER_NAME"] == socket.gethostname() and v["SERVER_PORT"] == port   # as uWSGI
    assert v["REMOTE_ADDR"] == "127.0.0.1" and int(v["REMOTE_PORT"]) > 0
    assert v["HTTP_X_DASHED_NAME"] == "v"
    assert v["HTTP_HOST"] == f"127.0.0.1:{port}"
    assert "CONTENT_LENGTH" not in v


def test_repeated_headers_joined(server):
    data = raw(server.address(), b"GET /vars HTTP/1.0\r\nX-A: 1\r\nX-A: 2\r\nContent-Type: text/x\r\n\r\n")
    body = data.split(b"\r\n\r\n", 1)[1]
    v = json.loads(body)
    assert v["HTTP_X_A"] == "1, 2"
    assert v["CONTENT_TYPE"] == "text/x"
    assert "HTTP_CONTENT_TYPE" not in v


def test_post_body_and_content_length_var(server):
    status, headers, body = request(server.address(), "POST", "/echo", body=b"x" * 10000)
    assert status == 200 and body == b"x" * 10000
    assert headers["x-terminated"] == "0"


def test_chunked_request_body(server):
    s = connect(server.address())
    s.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
              b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
    status, headers, body = read_response(s.makefile("rb"))
    s.close()
    assert status == 200 and body == b"hello world"
    assert headers["x-terminated"] == "1"


def test_input_readline_iteration(server):
    status, _, body = request(server.address(), "POST", "/lines", body=b"a\nb\nc")
    assert body == b"3"


def test_chunked_response_stream(server):
    s = connect(server.address())
    s.sendall(b"GET /stream?n=5 HTTP/1.1\r\nHost: x\r\n\r\n")
    f = s.makefile("rb")
    status, headers, body = read_response(f)
    assert headers["transfer-encoding"] == "chunked"
    assert body == b"".join(b"chunk%d\n" % i for i in range(5))
    # keep-alive after a chunked response
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert read_response(f)[2] == b"Hello World"
    s.close()


def test_http10_stream_is_close_delimited(server):
    data = raw(server.address(), b"GET /stream?n=3 HTTP/1.0\r\n\r\n")
    head, body = data.split(b"\r\n\r\n", 1)
    assert b"Transfer-Encoding" not in head and b"Content-Length" not in head
    assert body == b"chunk0\nchunk1\nchunk2\n"


def test_http10_keepalive(server):
    s = connect(server.address())
    f = s.makefile("rb")
    for _ in range(3):
        s.sendall(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        status, headers, body = read_response(f)
        assert body == b"Hello World"
        assert headers["connection"].lower() == "keep-alive"
    s.close()


def test_http10_closes_by_default(server):
    data = raw(server.address(), b"GET / HTTP/1.0\r\n\r\n")
    assert data.endswith(b"Hello World")


def test_keepalive_many_requests_one_connection(server):
    s = connect(server.address())
    f = s.makefile("rb")
    pids = set()
    for i in range(20):
        s.sendall(b"GET /pid HTTP/1.1\r\nHost: x\r\n\r\n")
        status, headers, body = read_response(f)
        assert status == 200
        pids.add(body)
    assert len(pids) == 1
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    status, headers, body = read_response(f)
    assert headers["connection"] == "close"
    assert f.read() == b""   # server closed
    s.close()


def test_pipelined_requests_in_order(server):
    reqs = b"".join(b"GET /vars?i=%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(10))
    reqs += b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
    reqs += b"GET /stream?n=2 HTTP/1.1\r\nHost: x\r\n\r\n"
    reqs += b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    s = connect(server.address())
    s.sendall(reqs)
    f = s.makefile("rb")
    for i in range(10):
        status, _, body = read_response(f)
        assert json.loads(body)["QUERY_STRING"] == f"i={i}"
    assert read_response(f)[2] == b"abc"
    assert read_response(f)[2] == b"chunk0\nchunk1\n"
    assert read_response(f)[2] == b"Hello World"
    assert f.read() == b""
    s.close()


def test_expect_100_continue(server):
    s = connect(server.address())
    s.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
    f = s.makefile("rb")
    assert f.readline() == b"HTTP/1.1 100 Continue\r\n"
    assert f.readline() == b"\r\n"
    s.sendall(b"data")
    status, _, body = read_response(f)
    assert status == 200 and body == b"data"
    s.close()


def test_head_has_no_body(server):
    s = connect(server.address())
    s.sendall(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
    f = s.makefile("rb")
    line = f.readline()
    assert line.startswith(b"HTTP/1.1 200")
    head = b""
    while True:
        h = f.readline()
        if h == b"\r\n":
            break
        head += h
    assert b"Content-Length: 11" in head
    # the next response follows immediately: no body was sent for HEAD
    assert read_response(f)[2] == b"Hello World"
    s.close()


@pytest.mark.parametrize("code", [204, 304])
def test_no_body_statuses(server, code):
    s = connect(server.address())
    s.sendall(b"GET /status?code=%d HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n" % code)
    f = s.makefile("rb")
    status, headers, body = read_response(f)
    assert status == code and body == b""
    assert "content-length" not in headers and "transfer-encoding" not in headers
    assert read_response(f)[2] == b"Hello World"
    s.close()


def test_app_content_length_respected(server):
    status, headers, body = request(server.address(), "GET", "/cl")
    assert headers["content-length"] == "5" and body == b"hello"
    assert "transfer-encoding" not in headers


def test_big_body_sync(server):
    status, headers, body = request(server.address(), "GET", "/big?n=3000000")
    assert len(body) == 3000000 and status == 200


def test_sendfile(server):
    with tempfile.NamedTemporaryFile(delete=False) as f:
        data = os.urandom(300000)
        f.write(data)
    try:
        status, headers, body = request(server.address(), "GET", f"/sendfile?path={f.name}")
        assert body == data and headers["content-length"] == str(len(data))
    finally:
        os.unlink(f.name)


def test_exception_gives_500_and_keeps_worker(server):
    status, _, body = request(server.address(), "GET", "/error")
    assert status == 500
    assert request(server.address(), "GET", "/")[0] == 200
    assert "boom in the app" in server.log()
    assert "Traceback" in server.log()


def test_exception_mid_stream_truncates_visibly(server):
    s = connect(server.address())
    s.sendall(b"GET /error-mid HTTP/1.1\r\nHost: x\r\n\r\n")
    data = b""
    s.settimeout(10)
    while True:
        d = s.recv(65536)
        if not d:
            break
        data += d
    s.close()
    assert b"Transfer-Encoding: chunked" in data
    assert b"partial" in data
    assert not data.endswith(b"0\r\n\r\n")   # no terminating chunk: the client sees the truncation


def test_exception_mid_body_with_content_length_closes_short(server):
    data = raw(server.address(), b"GET /error-mid-cl HTTP/1.1\r\nHost: x\r\n\r\n")
    head, body = data.split(b"\r\n\r\n", 1)
    assert b"Content-Length: 100" in head and body == b"partial"


def test_no_start_response_is_500(server):
    assert request(server.address(), "GET", "/nostart")[0] == 500


def test_after_request_runs_once_the_response_is_out():
    # a plugin's after_request (the Lua GC step) runs after the response went out, once per
    # request, whether the app answered, streamed or failed
    p1 = free_port()
    with WorkerProc({"http-socket": [f"127.0.0.1:{p1}"], "http-socket-modifier1": 6}):
        for path in ("/one", "/after-stream", "/after-fail", "/two"):
            status, _, body = request(f"127.0.0.1:{p1}", "GET", path)
            assert status == (500 if path == "/after-fail" else 200), (path, body)
        status, _, body = request(f"127.0.0.1:{p1}", "GET", "/after-seen")
        seen = json.loads(body)[-4:]   # (after the start-up check's requests)
        assert seen == [["/one", True], ["/after-stream", True], ["/after-fail", True], ["/two", True]]


def test_modifier_dispatch_and_503():
    p1, p2, p3 = free_port(), free_port(), free_port()
    with WorkerProc({"http-socket": [f"127.0.0.1:{p1}", f"127.0.0.1:{p2}", f"127.0.0.1:{p3}"],
                     "http-socket-modifier1": 6, "http-socket-modifier2": 3}) as w:
        status, _, body = request(f"127.0.0.1:{p1}", "GET", "/")
        assert status == 200 and body == b"other modifier1=6 modifier2=3"
    with WorkerProc({"http-socket": [f"127.0.0.1:{p1}"], "http-socket-modifier1": 7}) as w:
        status, _, body = request(f"127.0.0.1:{p1}", "GET", "/")
        assert status == 503
        assert "no noapp app is loaded for modifier1 7" in w.log()
    with WorkerProc({"http-socket": [f"127.0.0.1:{p1}"], "http-socket-modifier1": 42}) as w:
        status, _, body = request(f"127.0.0.1:{p1}", "GET", "/")
        assert status == 503
        assert "unavailable modifier requested: 42" in w.log()


def test_unix_and_abstract_sockets(tmp_path):
    path = str(tmp_path / "http.sock")
    abstract = "@uwsgid-test-" + uuid.uuid4().hex[:8]
    port = free_port()
    with WorkerProc({"http-socket": [path, abstract, f"127.0.0.1:{port}"], "chmod-socket": "660"}) as w:
        assert oct(os.stat(path).st_mode & 0o777) == "0o660"
        for addr in (path, abstract):
            data = raw(addr, b"GET /vars HTTP/1.0\r\n\r\n")
            assert data.startswith(b"HTTP/1.1 200")
            v = json.loads(data.split(b"\r\n\r\n", 1)[1])
            assert v["REMOTE_ADDR"] == "" and v["SCRIPT_NAME"] == "" and v["SERVER_PORT"] == "80"
        assert raw(f"127.0.0.1:{port}", b"GET / HTTP/1.0\r\n\r\n").endswith(b"Hello World")


def test_ipv6_socket():
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        s = socket.socket(socket.AF_INET6)
        s.bind(("::1", 0))
        port = s.getsockname()[1]
        s.close()
    except OSError:
        pytest.skip("no ::1")
    with WorkerProc({"http-socket": [f"[::1]:{port}"]}) as w:
        data = raw(f"[::1]:{port}", b"GET /vars HTTP/1.0\r\n\r\n")
        v = json.loads(data.split(b"\r\n\r\n", 1)[1])
        assert v["REMOTE_ADDR"] == "::1" and v["SERVER_PORT"] == str(port)


def test_keepalive_disabled():
    port = free_port()
    with WorkerProc({"http-socket": [f"127.0.0.1:{port}"], "http-keepalive": 0}):
        data = raw(f"127.0.0.1:{port}", b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert data.count(b"HTTP/1.1 200") == 1
        assert b"Connection: close" in data


def test_app_connection_close_is_honoured():
    port = free_port()
    with WorkerProc({"http-socket": [f"127.0.0.1:{port}"]}) as w:
        data = raw(f"127.0.0.1:{port}", b"GET /connclose HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert data.count(b"HTTP/1.1 200") == 1 and b"Connection: close" in data


def test_pipelined_requests_after_app_connection_close_are_not_served_and_the_response_is_whole():
    # RFC 9112 9.6: after a response with "close" the server MUST NOT process further requests on
    # that connection. What must not happen is the response lost to a reset: closing with the
    # pipelined requests unread would make the kernel send RST and drop the unsent tail.
    port = free_port()
    size = 8_000_000
    with WorkerProc({"http-socket": [f"127.0.0.1:{port}"]}) as w:
        assert b"bye" in raw(f"127.0.0.1:{port}", b"GET /connclose HTTP/1.1\r\nHost: x\r\n\r\n")
        s = connect(f"127.0.0.1:{port}")
        s.sendall(b"GET /connclose?n=%d HTTP/1.1\r\nHost: x\r\n\r\n" % size
                  + b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 3)
        time.sleep(0.5)     # the server has closed its side (or tried to) with most of the body unsent
        f = s.makefile("rb")
        status, headers, body = read_response(f)
        assert status == 200 and headers["connection"] == "close" and len(body) == size
        assert f.read() == b""
        s.close()
        log = w.wait_log("pipelined requests not served")
        assert log.count("not served") == 1 and "3 pipelined requests not served" in log


def test_header_injection_answered_500(server):
    data = raw(server.address(), b"GET /crlf HTTP/1.0\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 500") and b"stolen" not in data
    assert "CR/LF" in server.log()
