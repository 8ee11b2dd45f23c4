"""The --http router process: forwarding over uwsgi with --http-modifier1/2, keep-alive, bodies
(plain and chunked), re-framing of close-delimited responses, bad requests, respawn, reload."""

from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import threading
import time

from helpers import free_port, raw

from tests.master_helpers import IN_FLIGHT, MODIFIER1, get, info, launch


def _router(tmp_path, *extra, m2=3):
    port = free_port()
    srv = launch(["--master", "-p", "2", "--http", f"127.0.0.1:{port}", "--http-modifier1", MODIFIER1,
                    "--http-modifier2", m2, *extra], tmp_path / "log")
    srv.wait_port(port)
    srv.wait_log("spawned uWSGI http 1")
    return srv, port


def _raw(port: int, data: bytes) -> bytes:
    """The whole answer to `data`, sent without a half-close."""
    return raw(f"127.0.0.1:{port}", data, half_close=False)


def _dechunk(body: bytes) -> bytes:
    out = b""
    while True:
        size, _, rest = body.partition(b"\r\n")
        n = int(size, 16)
        if n == 0:
            return out
        out += rest[:n]
        assert rest[n:n + 2] == b"\r\n"
        body = rest[n + 2:]


def test_router_forwards_with_both_modifiers_and_keeps_alive(tmp_path):
    srv, port = _router(tmp_path)
    with srv:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            for i in range(3):
                conn.request("GET", f"/echo?i={i}", headers={"X-Test": "yes"})
                resp = conn.getresponse()
                body = resp.read()
                assert resp.status == 200
                assert body == f"GET /echo?i={i} yes m1={MODIFIER1} m2=3 body=".encode()
                assert resp.getheader("Connection") == "keep-alive"
            conn.request("POST", "/echo", body=b"x" * 100000)
            resp = conn.getresponse()
            assert resp.read().endswith(b"body=" + b"x" * 100000)
        finally:
            conn.close()


def test_router_chunked_request_body_and_expect_continue(tmp_path):
    srv, port = _router(tmp_path)
    with srv:
        req = (b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
               b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
        out = _raw(port, req)
        assert out.startswith(b"HTTP/1.1 200")
        assert out.endswith(b"body=hello world")
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n"
                      b"Connection: close\r\n\r\n")
            assert s.recv(100).startswith(b"HTTP/1.1 100 Continue")
            s.sendall(b"data")
            rest = b""
            while chunk := s.recv(65536):
                rest += chunk
            assert rest.endswith(b"body=data")


def test_router_reframes_a_streamed_response(tmp_path):
    srv, port = _router(tmp_path)
    with srv:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            for _ in range(2):   # the connection survives a body of unknown length
                conn.request("GET", "/stream?4")
                resp = conn.getresponse()
                assert resp.read() == b"chunk0;chunk1;chunk2;chunk3;"
                assert resp.getheader("Content-Length") is not None or \
                    resp.getheader("Transfer-Encoding") == "chunked"
        finally:
            conn.close()
        # one raw connection: the re-framed (chunked) response leaves it usable for the next request
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            for _ in range(2):
                s.sendall(b"GET /stream?2 HTTP/1.1\r\nHost: x\r\n\r\n")
                data = b""
                while not data.endswith(b"0\r\n\r\n"):
                    chunk = s.recv(65536)
                    assert chunk, data
                    data += chunk
                assert b"Transfer-Encoding: chunked" in data
                assert _dechunk(data.split(b"\r\n\r\n", 1)[1]) == b"chunk0;chunk1;"
        out = _raw(port, b"GET /stream?2 HTTP/1.0\r\nHost: x\r\n\r\n")
        assert out.startswith(b"HTTP/1.")
        assert out.endswith(b"chunk0;chunk1;")


def test_router_pipelined_requests_answered_in_order(tmp_path):
    srv, port = _router(tmp_path)
    with srv:
        out = _raw(port, b"GET /echo?a HTTP/1.1\r\nHost: x\r\n\r\nGET /echo?b HTTP/1.1\r\nHost: x\r\n"
                         b"Connection: close\r\n\r\n")
        assert out.index(b"/echo?a") < out.index(b"/echo?b")
        assert out.count(b"HTTP/1.1 200") == 2


def test_router_answers_400_to_garbage(tmp_path):
    srv, port = _router(tmp_path)
    with srv:
        assert _raw(port, b"GARBAGE\r\n\r\n").startswith(b"HTTP/1.1 400")
        assert get(port, "/echo")[0] == 200


def test_router_with_an_explicit_unix_socket(tmp_path):
    sock = tmp_path / "w.sock"
    srv, port = _router(tmp_path, "--socket", sock, m2=0)
    with srv:
        assert get(port, "/echo")[1] == f"GET /echo - m1={MODIFIER1} m2=0 body=".encode()


def test_router_is_respawned_when_it_dies(tmp_path):
    srv, port = _router(tmp_path)
    with srv:
        pid = int(re.search(r"spawned uWSGI http 1 \(pid: (\d+)\)", srv.log()).group(1))
        os.kill(pid, signal.SIGKILL)
        srv.wait_log("respawned uWSGI http 1")
        assert f"uWSGI http 1 (pid: {pid}) died" in srv.log()
        deadline = time.monotonic() + 10
        while True:
            try:
                assert get(port)[0] == 200
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)


def test_router_reload_and_graceful_stop_finish_in_flight(tmp_path):
    srv, port = _router(tmp_path)
    with srv:
        before = info(port)
        result = {}
        t = threading.Thread(target=lambda: result.setdefault("r", get(port, "/sleep?1", timeout=30)))
        t.start()
        srv.wait_log(IN_FLIGHT)
        srv.signal(signal.SIGHUP)
        t.join(30)
        assert result.get("r") == (200, b"slept 1")
        srv.wait_log("spawned uWSGI http 1", count=2, timeout=30)
        after = info(port)
        assert after["loaded"] != before["loaded"]
        result.clear()
        t = threading.Thread(target=lambda: result.setdefault("r", get(port, "/sleep?1", timeout=30)))
        t.start()
        srv.wait_log(IN_FLIGHT, count=2)
        srv.signal(signal.SIGTERM)
        t.join(30)
        assert result.get("r") == (200, b"slept 1")
        assert srv.proc.wait(20) == 0


def test_router_head_request_has_no_body_and_keeps_alive(tmp_path):
    srv, port = _router(tmp_path)
    with srv:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            conn.request("HEAD", "/")
            resp = conn.getresponse()
            assert resp.status == 200 and resp.read() == b""
            conn.request("GET", "/")
            assert conn.getresponse().read() == b"hello"
        finally:
            conn.close()


def test_router_limit_post_413(tmp_path):
    srv, port = _router(tmp_path, "--limit-post", "1000")
    with srv:
        out = _raw(port, b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n" + b"x" * 5000)
        assert out.startswith(b"HTTP/1.1 413")


def test_router_oversized_headers_and_uri(tmp_path):
    srv, port = _router(tmp_path)
    with srv:
        big = b"X-Big: " + b"a" * 70000 + b"\r\n"
        assert _raw(port, b"GET / HTTP/1.1\r\nHost: x\r\n" + big + b"\r\n").startswith(b"HTTP/1.1 431")
        assert _raw(port, b"GET /" + b"u" * 70000 + b" HTTP/1.1\r\nHost: x\r\n\r\n").startswith(b"HTTP/1.1 414")
        assert get(port)[0] == 200
