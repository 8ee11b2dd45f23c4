"""The wait path against real processes (uwsgid/net/loop.py kept fds, the cores' reused wait
timers, the C read and unmask of core/wsframe.c): WebSocket sessions and raw connections on
green cores, message after message on fds that stay registered with epoll; a wait that times
out on such a fd; other cores going on meanwhile."""

from __future__ import annotations

import os
import socket
import textwrap
import time

import pytest
from helpers import EXAMPLES, Server, free_port
from websockets.sync.client import connect as ws_connect

WS_APP = textwrap.dedent('''
    import uwsgi

    def application(env, start_response):
        if env["PATH_INFO"] == "/burst":
            # many frames sent in one turn, then the app returns: all of them reach the client
            uwsgi.websocket_handshake()
            n, size = (int(x) for x in env["QUERY_STRING"].split(","))
            for i in range(n):
                uwsgi.websocket_send_binary(b"%08d" % i + b"x" * size)
            uwsgi.websocket_recv()          # the client's "done", after it read them all
            return []
        if env["PATH_INFO"] == "/last":
            uwsgi.websocket_handshake()
            uwsgi.websocket_send(b"bye")    # and the app returns at once
            return []
        if env["PATH_INFO"] == "/echo":
            uwsgi.websocket_handshake()
            try:
                while True:
                    uwsgi.websocket_send_binary(uwsgi.websocket_recv())
            except OSError:
                return []
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"plain"]
''')


def test_websocket_sessions_on_green_cores_echo_every_size(tmp_path):
    """Many messages per session (each one a wait on the kept fd), payload sizes around the
    frame-length forms and odd tails of the word-wise unmask, two sessions interleaved."""
    (tmp_path / "app.py").write_text(WS_APP)
    port = free_port()
    sizes = [0, 1, 3, 7, 8, 9, 125, 126, 127, 1024, 65535, 65536, 70001]
    with Server(["--http-socket", f"127.0.0.1:{port}", "--async", "4", "--greenlet",
                 "--wsgi-file", tmp_path / "app.py"], port) as srv:
        with ws_connect(f"ws://127.0.0.1:{port}/echo", max_size=None) as a, \
                ws_connect(f"ws://127.0.0.1:{port}/echo", max_size=None) as b:
            for n in sizes:
                payload = os.urandom(n)
                a.send(payload)
                b.send(payload[::-1])
                assert a.recv() == payload
                assert b.recv() == payload[::-1]
            for i in range(300):
                msg = b"m%d" % i
                a.send(msg)
                assert a.recv() == msg
        log = srv.wait_log("HTTP/1.1 101", count=2)
    assert "Traceback" not in log, log


def _line_echo(s: socket.socket, line: bytes) -> bytes:
    s.sendall(line)
    got = b""
    while not got.endswith(b"\n"):
        chunk = s.recv(65536)
        if not chunk:
            break
        got += chunk
    return got


def test_raw_wait_times_out_on_a_kept_fd_while_other_cores_go_on():
    """A raw connection that goes silent: its recv waits on its (kept) fd and times out after
    --socket-timeout, the server closes it with one log line; a busy connection on another
    core of the same loop echoes all along."""
    port = free_port()
    with Server(["--raw-socket", f"127.0.0.1:{port}", "--async", "4", "--greenlet", "--socket-timeout", "1",
                 "--python-raw", EXAMPLES / "raw_echo.py"], port) as srv:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as quiet, \
                socket.create_connection(("127.0.0.1", port), timeout=10) as busy:
            assert _line_echo(quiet, b"first\n") == b"first\n"
            started = time.monotonic()
            n = 0
            while time.monotonic() - started < 1.5:
                assert _line_echo(busy, b"line %d\n" % n) == b"line %d\n" % n
                n += 1
            assert n > 50
            quiet.settimeout(5)
            assert quiet.recv(10) == b""         # closed by the server: its wait timed out
            assert time.monotonic() - started < 4
            assert _line_echo(busy, b"still here\n") == b"still here\n"
        log = srv.wait_log("no data from")
    assert "in 1s (--socket-timeout)" in log
    assert "Traceback" not in log, log


@pytest.mark.parametrize("peer_first", [False, True])
def test_raw_connection_closed_by_the_peer_during_a_wait(peer_first):
    """The peer leaves while the handler waits on the kept fd (or right after an echo): the
    connection ends, its fd leaves epoll, and the next connection (often given the same fd
    number) is served."""
    port = free_port()
    with Server(["--raw-socket", f"127.0.0.1:{port}", "--async", "2", "--greenlet",
                 "--python-raw", EXAMPLES / "raw_echo.py"], port) as srv:
        for i in range(20):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                if not peer_first:
                    assert _line_echo(s, b"hi %d\n" % i) == b"hi %d\n" % i
                time.sleep(0.02)        # the handler is waiting on the fd when the peer leaves
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            assert _line_echo(s, b"last\n") == b"last\n"
        log = srv.log()
    assert "Traceback" not in log, log


@pytest.mark.parametrize("n,size", [(200, 10), (3000, 1000), (40, 1_000_000)])
def test_websocket_frames_sent_in_a_turn_all_arrive_in_order(tmp_path, n, size):
    """Green sessions' frames are written at the end of the loop turn (Batch): a burst, and a
    burst bigger than the socket buffers (the client reads late: the app then waits as usual),
    arrive whole and in order."""
    (tmp_path / "app.py").write_text(WS_APP)
    port = free_port()
    with Server(["--http-socket", f"127.0.0.1:{port}", "--async", "4", "--greenlet",
                 "--wsgi-file", tmp_path / "app.py"], port) as srv:
        with ws_connect(f"ws://127.0.0.1:{port}/burst?{n},{size}", max_size=None) as a:
            if n * size > 1_000_000:
                time.sleep(0.5)             # the socket buffers fill: a batch cannot write it all
            for i in range(n):
                msg = a.recv(timeout=20)
                assert msg[:8] == b"%08d" % i and len(msg) == 8 + size
            a.send("done")
        # the last frame of an app that returns right after sending it is not lost
        with ws_connect(f"ws://127.0.0.1:{port}/last") as b:
            assert b.recv(timeout=10) == "bye"
        log = srv.log()
    assert "Traceback" not in log, log
