"""Batched WebSocket frames (uwsgid/net/wsbatch.py) when the loop's turn runs late: an app that
blocks its thread after a send (time.sleep under --greenlet) still has each frame on the wire
within the watchdog's LATE, as uWSGI writes them at once; an echo keeps writing at the turn's end
(no late write)."""

from __future__ import annotations

import socket
import textwrap
import time

import pytest
from helpers import Server, free_port

from uwsgid.net import wsbatch
from uwsgid.net.loop import Loop
from uwsgid.net.websocket import Session, frame

PUSH_APP = textwrap.dedent('''
    import time, uwsgi

    def application(env, start_response):
        uwsgi.websocket_handshake(env["HTTP_SEC_WEBSOCKET_KEY"], "")
        for i in range(4):
            uwsgi.websocket_send("tick %d" % i)
            time.sleep(0.4)         # blocks the worker's thread: the loop gets no turn
        return []
''')


@pytest.fixture
def loop():
    lp = Loop()
    yield lp
    lp.close()


def test_frames_of_a_turn_that_runs_late_are_written_by_the_watchdog(loop):
    batch = wsbatch.batch_of(loop)
    if batch is None:
        pytest.skip("no batching without the _uwsgi module (core/wsframe.c's watchdog)")
    a, b = socket.socketpair()
    with a, b:
        a.setblocking(False)
        s = Session(a.fileno(), b"", "test", 30, 3, 1 << 20, 4)
        s.batch = batch
        before = wsbatch.late_writes()
        s.send(b"first")
        s.send(b"second")                   # the same turn: one write with both
        b.settimeout(2)
        started = time.monotonic()
        want = frame(0x1, b"first") + frame(0x1, b"second")
        got = b""
        while len(got) < len(want):         # the loop never runs: only the watchdog writes
            got += b.recv(4096)
        assert got == want and time.monotonic() - started < 1.0
        assert wsbatch.late_writes() > before
        with batch.lock:                    # (the watchdog may still be between its write and this)
            assert s.pending is None
        loop.run_once(block=False)          # the turn's end finds nothing left to write
        b.setblocking(False)
        with pytest.raises(BlockingIOError):
            b.recv(1)


def test_a_turn_that_ends_in_time_writes_its_frames_itself(loop):
    batch = wsbatch.batch_of(loop)
    if batch is None:
        pytest.skip("no batching without the _uwsgi module (core/wsframe.c's watchdog)")
    a, b = socket.socketpair()
    with a, b:
        a.setblocking(False)
        s = Session(a.fileno(), b"", "test", 30, 3, 1 << 20, 4)
        s.batch = batch
        before = wsbatch.late_writes()
        for i in range(50):
            s.send(b"m%d" % i)
            loop.run_once(block=False)      # the turn ends at once: the batch writes
        b.settimeout(2)
        want = b"".join(frame(0x1, b"m%d" % i) for i in range(50))
        got = b""
        while len(got) < len(want):
            got += b.recv(4096)
        assert got == want and wsbatch.late_writes() == before


# under --master the worker is forked from a master that never used the watchdog (it skips the
# after-fork reset then): the worker starts it at its first batch all the same
@pytest.mark.parametrize("master", [[], ["--master", "--processes", "1"]], ids=["single", "master"])
def test_a_green_app_that_blocks_after_each_send_still_streams(tmp_path, master):
    pytest.importorskip("greenlet")
    from websockets.sync.client import connect
    app = tmp_path / "push.py"
    app.write_text(PUSH_APP)
    port = free_port()
    with Server(["--http-socket", f"127.0.0.1:{port}", "--async", "4", "--greenlet", "--wsgi-file", app,
                 "--disable-logging", *master], port):
        with connect(f"ws://127.0.0.1:{port}/", open_timeout=20) as ws:
            arrivals = []
            for i in range(4):
                assert ws.recv(timeout=20) == f"tick {i}"
                arrivals.append(time.monotonic())
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:])]
    # one frame per 0.4 s sleep, not all of them when the app returns (0.2: a loaded machine)
    assert all(g > 0.2 for g in gaps), gaps
