"""Kept-alive connections spread over the workers of --async N / --gevent N by their cores
(uwsgid.server.conn_spread): a worker holding as many connections as it has cores leaves new ones
to a worker with fewer, and takes them itself again when that worker does not (stuck). The
scoreboard's counts and the deferral with a fake loop, then real processes: a burst of clients
(connected before any was served, as a load tool opens its connections) over two workers of two
cores each gets two per worker."""

from __future__ import annotations

import socket
import textwrap
import time
import types

import pytest
from helpers import Server, free_port

from uwsgid.observe.scoreboard import Scoreboard
from uwsgid.server import conn_spread

# ---- the scoreboard's counts ----------------------------------------------------------------------


def _board(numproc=2, cores=4):
    sb = Scoreboard(numproc, cores)
    for wid in range(1, numproc + 1):
        sb.spawned(wid, 1000 + wid, False)
        sb.set_accepting(wid, True)
    return sb


def test_room_elsewhere_sees_a_live_accepting_worker_under_its_cores():
    sb = _board(3)
    sb.set_conns(1, 4)
    sb.set_conns(2, 4)
    sb.set_conns(3, 1)
    assert sb.room_elsewhere(1, 4) == 5         # worker 3 has room; the others hold 5 in all
    sb.set_conns(3, 4)
    assert sb.room_elsewhere(1, 4) == -1        # all full
    sb.set_conns(3, 0)
    sb.set_accepting(3, False)                  # stopping or paused: not a place to send clients
    assert sb.room_elsewhere(1, 4) == -1
    sb.set_accepting(3, True)
    sb.died(3)                                  # dead: its count is reset, and it has no pid
    assert sb.room_elsewhere(1, 4) == -1
    sb.spawned(3, 2000, True)
    sb.set_accepting(3, True)
    assert sb.room_elsewhere(1, 4) == 4


# ---- the deferral, on a fake thread loop ------------------------------------------------------------


class _FakeLoop:
    def __init__(self):
        self.timers = []

    def call_later(self, delay, fn):
        t = types.SimpleNamespace(delay=delay, fn=fn, cancelled=False)
        t.cancel = lambda: setattr(t, "cancelled", True)
        self.timers.append(t)
        return t


class _FakeThreadLoop:
    def __init__(self, sb, listener, cores=4):
        self.worker = types.SimpleNamespace(id=1, scoreboard=sb, stopping=False,
                                            settings=types.SimpleNamespace(threads=1))
        self.cores = list(range(cores))
        self.single = cores == 1
        self.listeners = [types.SimpleNamespace(fd=listener.fileno())]
        self.conns = {}
        self.loop = _FakeLoop()
        self.accepting = True
        self.spread = None

    def stop_accepting(self):
        self.accepting = False

    def start_accepting(self):
        if self.spread is not None and self.spread.timer is not None:
            return
        self.accepting = True


@pytest.fixture
def listener():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(8)
    yield s
    s.close()


def _spread(sb, listener, cores=4):
    tl = _FakeThreadLoop(sb, listener, cores)
    tl.spread = conn_spread.for_loop(tl)
    return tl, tl.spread


def test_not_for_one_core_loops_threads_or_a_single_worker(listener):
    assert _spread(_board(), listener, cores=1)[1] is None
    assert _spread(_board(numproc=1), listener)[1] is None
    tl = _FakeThreadLoop(_board(), listener)
    tl.worker.settings.threads = 2
    assert conn_spread.for_loop(tl) is None


def test_a_full_worker_defers_to_one_with_room_then_accepts_again(listener):
    sb = _board()
    tl, spread = _spread(sb, listener)
    sb.set_conns(2, 1)
    for fd in range(3):
        tl.conns[fd] = object()
        assert not spread.accepted()            # under its cores: goes on accepting
    tl.conns[3] = object()
    assert spread.accepted() and not tl.accepting
    assert sb.room_elsewhere(2, 4) == -1        # its count is published: worker 2 sees it full
    (timer,) = tl.loop.timers
    assert timer.delay == conn_spread.DEFER
    tl.start_accepting()                        # a core freed meanwhile: still deferring
    assert not tl.accepting
    timer.fn()                                  # nobody waits in the listener's queue
    assert tl.accepting and spread.timer is None
    del tl.conns[3]
    spread.publish()                            # a close
    assert sb.room_elsewhere(2, 4) == 3         # worker 1 has room again: 3 connections


def test_no_deferral_when_every_other_worker_is_full(listener):
    sb = _board()
    tl, spread = _spread(sb, listener)
    sb.set_conns(2, 4)
    tl.conns.update({fd: object() for fd in range(5)})
    assert not spread.accepted() and tl.accepting and not tl.loop.timers


def test_a_stuck_worker_does_not_hold_new_clients(listener):
    """Clients still wait in the queue after STALLS deferrals and the other worker's count did
    not move: this worker takes them, and does not defer again for OFF seconds."""
    sb = _board()
    tl, spread = _spread(sb, listener)
    sb.set_conns(2, 1)
    tl.conns.update({fd: object() for fd in range(4)})
    assert spread.accepted()
    client = socket.create_connection(listener.getsockname())
    try:
        for _ in range(conn_spread.STALLS - 1):     # maybe only a scheduling delay: once more
            tl.loop.timers[-1].fn()
            assert not tl.accepting and spread.timer is not None
        tl.loop.timers[-1].fn()
        assert tl.accepting and spread.timer is None
        tl.conns[4] = object()
        assert not spread.accepted()            # OFF: accepting as before
    finally:
        client.close()


def test_while_the_other_worker_takes_clients_the_deferral_goes_on(listener):
    sb = _board()
    tl, spread = _spread(sb, listener)
    sb.set_conns(2, 1)
    tl.conns.update({fd: object() for fd in range(4)})
    assert spread.accepted()
    client = socket.create_connection(listener.getsockname())
    try:
        sb.set_conns(2, 2)                      # it took one meanwhile; another still waits
        tl.loop.timers[-1].fn()
        assert not tl.accepting and spread.timer is not None and len(tl.loop.timers) == 2
    finally:
        client.close()


# ---- real processes ---------------------------------------------------------------------------------

APP = textwrap.dedent('''
    import os

    def application(env, start_response):
        body = str(os.getpid()).encode()
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]
''')
CORES = 3


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    p = tmp_path_factory.mktemp("conn_spread") / "app.py"
    p.write_text(APP)
    return p


def _burst_pids(port: int, n: int) -> list[bytes]:
    """n clients connected at once, then each sends one request and stays open: the pid that
    answered each."""
    socks = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(n)]
    try:
        for s in socks:
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        pids = []
        for s in socks:
            data = b""
            while b"\r\n\r\n" not in data or not data.partition(b"\r\n\r\n")[2]:
                chunk = s.recv(4096)
                assert chunk, "closed before the answer"
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200"), head
            pids.append(body)
        return pids
    finally:
        for s in socks:
            s.close()


def _until_both_workers_serve(port: int) -> None:
    """Both workers accept (the second may still be starting when the first answers)."""
    seen = set()
    deadline = time.monotonic() + 30
    while len(seen) < 2:
        assert time.monotonic() < deadline, f"only {seen} answered"
        seen.update(_burst_pids(port, 1))
        time.sleep(0.05)


@pytest.mark.parametrize("mode,env", [
    (["--async", str(CORES)], {}),
    (["--async", str(CORES)], {"UWSGI_NO_LANE": "1"}),
    (["--gevent", str(CORES)], {}),
], ids=["async-lane", "async-python-path", "gevent"])
def test_a_burst_of_kept_alive_clients_fills_both_workers_cores(app, mode, env):
    if mode[0] == "--gevent":
        pytest.importorskip("gevent")
    port = free_port()
    argv = ["--master", "--processes", "2", "--http-socket", f"127.0.0.1:{port}", "--wsgi-file", app, *mode]
    with Server(argv, port, env=env) as srv:
        _until_both_workers_serve(port)
        for burst in range(3):      # each burst after the last one's clients closed: counts go down too
            pids = _burst_pids(port, 2 * CORES)
            counts = sorted(pids.count(p) for p in set(pids))
            assert counts == [CORES, CORES], f"burst {burst}: connections per worker: {counts}\n{srv.log()}"
            time.sleep(0.3)     # their closes reach the workers
