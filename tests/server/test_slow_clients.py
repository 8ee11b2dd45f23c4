"""Slow clients never hold a worker: while 1,000 connections trickle their request head one byte
every 0.5 s (slowloris), normal requests are answered, in sync, threaded and async modes, over
HTTP and the uwsgi protocol. A head must arrive within --http-header-timeout; past
--max-pending-heads the oldest waiting connection is closed. Through the real ./uwsgi.

The p99 bound is the issue's target, 100 ms; measured here it is 3-9 ms with the machine
loaded by another test run (bench/soak.py reports the figures of a longer run)."""

from __future__ import annotations

import json
import socket
import time

import pytest
from helpers import EXAMPLES, Server, free_port, http_get, raw, recv_all, uwsgi_packet
from master_helpers import read_stats
from slowloris import Slowloris, probe

HELLO = ["--wsgi-file", EXAMPLES / "hello.py"]
ATTACKERS = 1000


def _http_ok(port):
    return lambda: http_get(port, "/", timeout=5)[::2] == (200, b"Hello World")


def _uwsgi_ok(port):
    packet = uwsgi_packet({"REQUEST_METHOD": "GET", "PATH_INFO": "/", "SERVER_PROTOCOL": "HTTP/1.1",
                           "REQUEST_URI": "/", "QUERY_STRING": "", "SERVER_NAME": "x", "SERVER_PORT": "80"})
    return lambda: raw(f"127.0.0.1:{port}", packet, timeout=5).endswith(b"Hello World")


@pytest.mark.parametrize("mode", [[], ["--threads", "4"], ["--async", "8"]], ids=["sync", "threads", "async"])
def test_normal_requests_are_answered_during_slowloris_over_http(mode):
    port = free_port()
    with Server(["--master", "--processes", "2", "--http-socket", f"127.0.0.1:{port}", *HELLO, *mode], port) as s:
        with Slowloris("127.0.0.1", port, ATTACKERS) as attack:
            result = probe(_http_ok(port), count=100, give_up_after=3)
        assert attack.open == ATTACKERS
        assert result.answered >= 0.99, (result, s.log()[-3000:])
        assert result.p(0.99) < 0.1, result


def test_normal_requests_are_answered_during_slowloris_over_the_uwsgi_protocol():
    port = free_port()
    with Server(["--master", "--processes", "2", "--socket", f"127.0.0.1:{port}", *HELLO], port) as s:
        with Slowloris("127.0.0.1", port, ATTACKERS, proto="uwsgi"):
            result = probe(_uwsgi_ok(port), count=100, give_up_after=3)
        assert result.answered >= 0.99, (result, s.log()[-3000:])
        assert result.p(0.99) < 0.1, result


def test_a_head_that_does_not_arrive_in_time_gets_a_408():
    port = free_port()
    with Server(["--http-socket", f"127.0.0.1:{port}", *HELLO, "--http-header-timeout", "2"], port) as s:
        c = socket.create_connection(("127.0.0.1", port))
        t0 = time.monotonic()
        for ch in b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ":
            c.send(bytes([ch]))          # bytes keep coming: they do not extend the deadline
            time.sleep(0.05)
        data = recv_all(c, timeout=10)
        took = time.monotonic() - t0
        c.close()
        assert data.startswith(b"HTTP/1.1 408 Request Timeout"), data
        assert 1.5 < took < 6, took
        assert "request head not complete in 2s" in s.log()
        assert http_get(port, "/")[0] == 200


def test_past_the_cap_the_oldest_waiting_connection_is_closed_and_counted():
    port, stats = free_port(), free_port()
    args = ["--master", "--http-socket", f"127.0.0.1:{port}", *HELLO, "--max-pending-heads", "20",
            "--stats", f"127.0.0.1:{stats}"]
    with Server(args, port) as s:
        with Slowloris("127.0.0.1", port, 60) as attack:
            result = probe(_http_ok(port), count=20)
            time.sleep(1.5)
            worker = json.loads(read_stats(stats))["workers"][0]
        assert result.answered == 1.0, result
        assert attack.reopened > 0                   # the server closed some attackers
        assert worker["pending_heads"] <= 20
        assert worker["dropped_pending_heads"] > 0
        log = s.log()
        assert "--max-pending-heads 20" in log
        assert log.count("waiting for their request head") < 5    # once per burst, not per drop


def test_idle_keepalive_connections_never_hold_a_sync_worker():
    port = free_port()
    with Server(["--http-socket", f"127.0.0.1:{port}", *HELLO], port):
        idle = []
        for _ in range(20):
            c = socket.create_connection(("127.0.0.1", port))
            c.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            c.recv(65536)
            idle.append(c)                            # kept open, silent
        result = probe(_http_ok(port), count=20)
        for c in idle:
            c.close()
        assert result.answered == 1.0, result


def test_a_reload_does_not_wait_for_slow_clients():
    """SIGHUP while slow clients trickle their heads: the old workers give a request still
    arriving one more second, not the whole --http-header-timeout, so the reload (during which
    nothing accepts) is not held by an attacker."""
    import signal
    port = free_port()
    args = ["--master", "--processes", "2", "--http-socket", f"127.0.0.1:{port}", *HELLO,
            "--http-header-timeout", "20"]
    with Server(args, port) as s:
        with Slowloris("127.0.0.1", port, 50):
            time.sleep(1.0)
            s.proc.send_signal(signal.SIGHUP)
            time.sleep(0.2)
            t0 = time.monotonic()
            status = http_get(port, "/", timeout=30)[0]
            took = time.monotonic() - t0
        assert status == 200
        assert took < 8, (took, s.log()[-2000:])      # 20 s (the head timeout) before
