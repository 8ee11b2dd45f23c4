"""Long-lived connections spread over the workers (ThreadLoop.kept_open, Loop.requeue).

With EPOLLEXCLUSIVE the kernel wakes the first idle epoll in a listener's queue, so a worker
registered first took every connection while it was idle between events: 55 of 60 WebSocket
sessions on one of two workers. A loop that keeps a connection open goes to the back of the
queue. Clients here connect one after the other, each kept alive, with a pause between them
(the shape of WebSocket or keep-alive clients arriving over time), on the native lane and on
the Python path, with async cores and with threads, and WebSocket sessions."""

from __future__ import annotations

import contextlib
import socket
import textwrap
import time

import pytest
from helpers import Server, free_port

APP = textwrap.dedent('''
    import os
    import uwsgi

    def session():
        # uWSGI's async pattern: wait on the connection and yield, the other cores run meanwhile
        uwsgi.websocket_send(str(os.getpid()).encode())
        fd = uwsgi.connection_fd()
        while True:
            try:
                if uwsgi.websocket_recv_nb():
                    continue
            except OSError:
                return
            yield uwsgi.wait_fd_read(fd, 30)

    def application(env, start_response):
        if env["PATH_INFO"] == "/ws":
            uwsgi.websocket_handshake()
            return session()
        body = str(os.getpid()).encode()
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]
''')
CLIENTS = 20


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    p = tmp_path_factory.mktemp("spread") / "app.py"
    p.write_text(APP)
    return p


def _pid_of_new_kept_connection(port: int) -> tuple[socket.socket, bytes]:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data or not data.partition(b"\r\n\r\n")[2]:
        chunk = s.recv(4096)
        assert chunk, "closed before the answer"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    return s, body


@pytest.mark.parametrize("mode,env", [
    (["--async", "4"], {}),
    (["--async", "4"], {"UWSGI_NO_LANE": "1"}),
    (["--threads", "4"], {}),
], ids=["async-lane", "async-python-path", "threads"])
def test_kept_alive_clients_arriving_one_by_one_go_to_both_workers(app, mode, env):
    port = free_port()
    argv = ["--master", "--processes", "2", "--http-socket", f"127.0.0.1:{port}", "--wsgi-file", app, *mode]
    with Server(argv, port, env=env):
        held = []
        pids = []
        for _ in range(CLIENTS):
            s, pid = _pid_of_new_kept_connection(port)
            held.append(s)          # still open: a long-lived client
            pids.append(pid)
            time.sleep(0.02)        # both workers are idle again before the next one comes
        for s in held:
            s.close()
    _assert_both(pids)


def test_websocket_sessions_arriving_one_by_one_go_to_both_workers(app):
    from websockets.sync.client import connect
    port = free_port()
    argv = ["--master", "--processes", "2", "--http-socket", f"127.0.0.1:{port}", "--wsgi-file", app,
            "--async", str(CLIENTS)]
    with Server(argv, port), contextlib.ExitStack() as open_sessions:
        sessions = []
        for _ in range(CLIENTS):
            sessions.append(open_sessions.enter_context(connect(f"ws://127.0.0.1:{port}/ws", open_timeout=10)))
            time.sleep(0.02)
        pids = [ws.recv(timeout=10) for ws in sessions]
    _assert_both(pids)


def _assert_both(pids: list) -> None:
    counts = sorted(pids.count(p) for p in set(pids))
    assert len(counts) == 2 and counts[0] >= CLIENTS // 4, f"connections per worker: {counts}"
