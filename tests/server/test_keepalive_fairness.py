"""Idle keep-alive connections of a worker busy with a slow request are closed (uwsgid/server/
keepalive_watch.py), so that their clients' next requests reconnect to a free worker instead of
waiting; a connection whose request is already in is not dropped but answered."""

from __future__ import annotations

import socket
import textwrap
import time

import pytest
from helpers import Server, free_port

APP = textwrap.dedent('''
    import os, time
    def application(env, start_response):
        if env["PATH_INFO"] == "/slow":
            time.sleep(float(env["QUERY_STRING"] or 3))
        body = str(os.getpid()).encode()
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]
''')


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    p = tmp_path_factory.mktemp("ka") / "app.py"
    p.write_text(APP)
    return p


def _request(s: socket.socket, path: str = "/") -> bytes:
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    return s


def _response(s: socket.socket) -> bytes | None:
    """The body of one response, or None when the server closed the connection instead."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(4096)
        if not chunk:
            return None
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length")))
    while len(body) < length:
        body += s.recv(4096)
    assert head.startswith(b"HTTP/1.1 200"), head
    return body


def _connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def test_idle_clients_of_a_busy_worker_go_to_the_free_one(app):
    port = free_port()
    with Server(["--master", "--processes", "2", "--http-socket", f"127.0.0.1:{port}", "--wsgi-file", app], port):
        conns = [_connect(port) for _ in range(8)]
        pids = [_response(_request(s)) for s in conns]
        busy_pid = max(set(pids), key=pids.count)   # the worker with most clients (>= 4 of 8)
        first = pids.index(busy_pid)
        conns.insert(0, conns.pop(first))
        pids.insert(0, pids.pop(first))
        _request(conns[0], "/slow?3")          # conns[0]'s worker is busy for 3 s
        time.sleep(0.5)
        for s, pid in zip(conns[1:], pids[1:]):
            started = time.monotonic()
            try:
                body = _response(_request(s))
            except OSError:                     # closed while idle: the request raced the close
                body = None
            if body is None:
                assert pid == busy_pid          # only the busy worker's clients were closed
                s.close()
                body = _response(_request(_connect(port)))   # a client's retry on a new connection
                assert body != busy_pid
            assert time.monotonic() - started < 1.5, "waited behind the slow request"
        assert _response(conns[0]) == busy_pid  # the slow request itself completes
        for s in conns:
            s.close()


def test_a_request_already_sent_is_answered_not_dropped(app):
    port = free_port()
    with Server(["--http-socket", f"127.0.0.1:{port}", "--wsgi-file", app], port) as srv:
        idle, waiting, slow = _connect(port), _connect(port), _connect(port)
        for s in (idle, waiting):
            assert _response(_request(s))
        _request(slow, "/slow?1.5")
        time.sleep(0.05)
        _request(waiting)                       # in the kernel's buffer before the watcher looks
        time.sleep(0.5)
        idle.settimeout(0.5)
        assert idle.recv(100) == b""            # the idle one was closed meanwhile, not at --socket-timeout
        assert _response(waiting)               # this one waited (one worker) and was answered
        assert _response(slow)
        assert _response(_request(_connect(port)))
        log = srv.log()
    assert "Traceback" not in log, log
