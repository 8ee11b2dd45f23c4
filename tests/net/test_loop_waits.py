"""The wait path's loop (uwsgid/net/loop.py) and a core's waits on it (uwsgid/server/core.py):
kept fds stay registered with epoll between waits, an event nobody waits for unregisters a kept
fd, forget() wakes whoever waited on a kept fd, a closed-and-reused fd number is registered anew,
and a core's wait timer is one heap entry reused from wait to wait."""

from __future__ import annotations

import os
import socket
import time
from types import SimpleNamespace

import pytest

from uwsgid.net.loop import Loop
from uwsgid.plugins.api import Wait
from uwsgid.server.core import Core


class CountingEpoll:
    """The loop's epoll, counting its epoll_ctl calls."""

    def __init__(self, ep):
        self.ep = ep
        self.calls = []

    def register(self, fd, mask):
        self.calls.append(("add", fd))
        return self.ep.register(fd, mask)

    def modify(self, fd, mask):
        self.calls.append(("mod", fd))
        return self.ep.modify(fd, mask)

    def unregister(self, fd):
        self.calls.append(("del", fd))
        return self.ep.unregister(fd)

    def poll(self, timeout, maxevents=-1):
        return self.ep.poll(timeout, maxevents)

    def close(self):
        self.ep.close()


@pytest.fixture
def loop():
    lp = Loop()
    lp.ep = CountingEpoll(lp.ep)
    yield lp
    lp.close()


def spin(loop, until, timeout=2.0):
    deadline = time.monotonic() + timeout
    while not until() and time.monotonic() < deadline:
        loop.run_once(block=True)
    return until()


def test_kept_fd_stays_registered_between_waits(loop):
    a, b = socket.socketpair()
    with a, b:
        a.setblocking(False)
        fd = a.fileno()
        loop.keep(fd)
        got = []
        for i in range(5):
            loop.add_reader(fd, lambda: got.append(a.recv(10)))
            b.send(b"x%d" % i)
            assert spin(loop, lambda: len(got) == i + 1)
            loop.remove_reader(fd)
        assert got == [b"x0", b"x1", b"x2", b"x3", b"x4"]
        # one epoll_ctl for five waits: registered once, never removed
        assert [c for c in loop.ep.calls if c[1] == fd] == [("add", fd)]
        assert fd in loop._masks


def test_unkept_fd_is_added_and_removed_per_wait(loop):
    a, b = socket.socketpair()
    with a, b:
        fd = a.fileno()
        loop.add_reader(fd, lambda: None)
        loop.remove_reader(fd)
        assert [c for c in loop.ep.calls if c[1] == fd] == [("add", fd), ("del", fd)]


def test_event_nobody_waits_for_unregisters_a_kept_fd(loop):
    a, b = socket.socketpair()
    with a, b:
        a.setblocking(False)
        fd = a.fileno()
        loop.keep(fd)
        loop.add_reader(fd, lambda: None)
        loop.remove_reader(fd)
        b.send(b"data")                 # arrives while nobody waits: level-triggered
        loop.run_once(block=False)
        assert fd not in loop._masks    # unregistered at once, so the loop does not spin
        assert loop.ep.calls[-1] == ("del", fd)
        n = len(loop.ep.calls)
        loop.run_once(block=False)
        assert len(loop.ep.calls) == n
        got = []
        loop.add_reader(fd, lambda: got.append(a.recv(10)))    # the next wait sees the data
        assert spin(loop, lambda: got)
        assert got == [b"data"]


def test_forget_wakes_a_waiter_on_a_kept_fd(loop):
    """A core waiting on a fd another core closes is woken (to find it closed), not hung."""
    a, b = socket.socketpair()
    with b:
        fd = a.fileno()
        loop.keep(fd)
        woken = []
        loop.add_reader(fd, lambda: woken.append(1))
        loop.forget(fd)
        a.close()
        loop.run_once(block=False)
        assert woken == [1]
        assert fd not in loop._kept and fd not in loop._masks


def test_forgotten_fd_number_reused_is_registered_anew(loop):
    a, b = socket.socketpair()
    fd = a.fileno()
    loop.keep(fd)
    loop.add_reader(fd, lambda: None)
    loop.remove_reader(fd)
    loop.forget(fd)
    a.close()
    b.close()
    c, d = socket.socketpair()
    with c, d:
        reused = c.fileno() == fd
        got = []
        loop.add_reader(c.fileno(), lambda: got.append(c.recv(10)))
        d.send(b"new")
        assert spin(loop, lambda: got)
        assert got == [b"new"]
        if reused:
            assert loop.ep.calls[-1] == ("add", fd)


def test_fd_closed_without_forget_recovers_on_a_new_mask(loop):
    """An owner that closed a registered fd without forget(): the next registration of that
    number with another mask finds it gone from epoll (ENOENT) and registers it again."""
    r, w = os.pipe()
    loop.keep(r)
    loop.add_reader(r, lambda: None)
    loop.remove_reader(r)
    os.close(r)
    os.close(w)
    a, b = socket.socketpair()
    with a, b:
        if a.fileno() != r:
            pytest.skip("the fd number was not reused")
        got = []
        loop.add_writer(a.fileno(), lambda: got.append("w"))
        assert spin(loop, lambda: got)


def test_timers_fire_in_order_and_cancel(loop):
    fired = []
    now = time.monotonic()
    loop.call_at(now + 0.03, lambda: fired.append(2))
    t = loop.call_at(now + 0.02, lambda: fired.append("cancelled"))
    loop.call_at(now + 0.01, lambda: fired.append(1))
    t.cancel()
    assert loop.next_timer() == pytest.approx(now + 0.01)
    assert spin(loop, lambda: len(fired) == 2)
    assert fired == [1, 2]
    assert loop.next_timer() is None


# ---- a core's waits -------------------------------------------------------------------------

class StepCore(Core):
    """A core whose step() records what woke it instead of running a request."""
    __slots__ = ("woken",)

    def step(self):
        self.woken.append((self.ready_fd, self.timed_out))


def make_core(loop):
    tl = SimpleNamespace(worker=SimpleNamespace(), loop=loop, single=True)
    core = StepCore(0, tl)
    core.woken = []
    return core


def arm(core, wait):
    core.wait = wait
    core._arm(wait)


def test_wait_times_out_while_its_fd_stays_registered(loop):
    a, b = socket.socketpair()
    with a, b:
        fd = a.fileno()
        loop.keep(fd)
        core = make_core(loop)
        started = time.monotonic()
        arm(core, Wait(fd, Wait.READ, 0.05))
        assert spin(loop, lambda: core.woken)
        assert core.woken == [(-1, True)]
        assert time.monotonic() - started >= 0.04
        assert fd in loop._masks and core._idle_fd == fd    # still registered, the core's idle reader
        # the next wait on it is served at once, without an epoll_ctl
        n = len(loop.ep.calls)
        arm(core, Wait(fd, Wait.READ, 5))
        b.send(b"x")
        assert spin(loop, lambda: len(core.woken) == 2)
        assert core.woken[1] == (fd, False)
        assert len(loop.ep.calls) == n


def test_a_kept_fd_keeps_the_cores_reader_between_its_waits(loop):
    a, b = socket.socketpair()
    c, d = socket.socketpair()
    with a, b, c, d:
        a.setblocking(False)
        fd = a.fileno()
        loop.keep(fd)
        core = make_core(loop)
        for i in range(3):      # wait, wake, wait again: the reader is set once
            arm(core, Wait(fd, Wait.READ, 5))
            b.send(b"x")
            assert spin(loop, lambda: len(core.woken) == i + 1)
            assert core.woken[i] == (fd, False) and core._idle_fd == fd
            a.recv(10)
        # an event while the core does not wait on it: no wake-up, and the reader goes
        b.send(b"y")
        loop.run_once(block=True)
        assert len(core.woken) == 3 and core._idle_fd == -1 and fd not in loop._readers
        loop.run_once(block=True)               # the event again: nobody waits, the loop unregisters it
        assert fd not in loop._masks and len(core.woken) == 3
        a.recv(10)
        # a wait on another fd drops the idle reader first (its events must not wake this wait)
        arm(core, Wait(fd, Wait.READ, 5))
        b.send(b"z")
        assert spin(loop, lambda: len(core.woken) == 4) and core._idle_fd == fd
        arm(core, Wait(c.fileno(), Wait.READ, 5))
        assert core._idle_fd == -1 and fd not in loop._readers
        b.send(b"w")
        loop.run_once(block=False)
        assert len(core.woken) == 4             # not woken by the first fd
        d.send(b"v")
        assert spin(loop, lambda: len(core.woken) == 5) and core.woken[4] == (c.fileno(), False)


def test_a_core_reuses_its_timer_entry_from_wait_to_wait(loop):
    a, b = socket.socketpair()
    with a, b:
        a.setblocking(False)
        fd = a.fileno()
        loop.keep(fd)
        core = make_core(loop)
        for i in range(20):
            arm(core, Wait(fd, Wait.READ, 30))
            b.send(b"x")
            assert spin(loop, lambda: len(core.woken) == i + 1)
            a.recv(10)
        assert all(w == (fd, False) for w in core.woken)
        assert len(loop._timers) == 1       # one entry for twenty waits with a timeout
        # a shorter deadline than the entry's: a new entry, and it fires on time
        started = time.monotonic()
        arm(core, Wait(timeout=0.05))
        assert spin(loop, lambda: len(core.woken) == 21)
        assert core.woken[-1] == (-1, True)
        assert time.monotonic() - started < 1.0


def test_a_stale_timer_entry_does_not_wake_a_later_wait(loop):
    core = make_core(loop)
    a, b = socket.socketpair()
    with a, b:
        fd = a.fileno()
        arm(core, Wait(fd, Wait.READ, 0.05))   # its entry is due in 0.05 s
        b.send(b"x")
        assert spin(loop, lambda: core.woken)
        arm(core, Wait(timeout=0.3))           # a later deadline: the old entry moves it on
        started = time.monotonic()
        assert spin(loop, lambda: len(core.woken) == 2)
        assert core.woken[1] == (-1, True)
        assert time.monotonic() - started >= 0.2


def test_a_late_fd_callback_does_not_end_another_wait(loop):
    """forget() of a kept fd calls its waiter at the next turn: if that wait already ended and
    the core sleeps on a timer now, the call is ignored."""
    core = make_core(loop)
    a, b = socket.socketpair()
    with b:
        fd = a.fileno()
        loop.keep(fd)
        arm(core, Wait(fd, Wait.READ, None))
        loop.forget(fd)         # schedules the waiter
        a.close()
        core._cancel_wait()     # ...whose wait ends another way first
        arm(core, Wait(timeout=0.2))
        loop.run_once(block=False)
        assert core.woken == []
        assert spin(loop, lambda: core.woken)
        assert core.woken == [(-1, True)]


def test_a_late_fd_callback_does_not_wake_a_wait_on_another_fd(loop):
    """forget() of a kept fd whose wait ended meanwhile, the core now waiting on another fd: the
    queued call must not report that other fd ready (a wait_fd_read user would read it)."""
    core = make_core(loop)
    a, b = socket.socketpair()
    c, d = socket.socketpair()
    with b, c, d:
        fd = a.fileno()
        loop.keep(fd)
        arm(core, Wait(fd, Wait.READ, None))
        loop.forget(fd)         # schedules the waiter
        a.close()
        core._cancel_wait()     # ...whose wait ends another way first
        arm(core, Wait(c.fileno(), Wait.READ, 0.3))
        loop.run_once(block=False)
        assert core.woken == []             # c is not ready: no wake-up
        d.send(b"x")
        assert spin(loop, lambda: core.woken)
        assert core.woken == [(c.fileno(), False)]


def test_forget_still_wakes_the_wait_on_the_forgotten_fd(loop):
    core = make_core(loop)
    a, b = socket.socketpair()
    with b:
        fd = a.fileno()
        loop.keep(fd)
        arm(core, Wait(fd, Wait.READ, None))
        loop.forget(fd)
        a.close()
        assert spin(loop, lambda: core.woken)
        assert core.woken == [(fd, False)]  # the app finds it closed


# ---- WebSocket frames batched per loop turn (uwsgid/net/websocket.py Batch) ------------------

def _batch(loop):
    from uwsgid.net.wsbatch import batch_of
    b = batch_of(loop)
    if b is None:
        pytest.skip("no batching without the _uwsgi module (core/wsframe.c's watchdog)")
    return b


def test_batched_frames_go_out_at_the_end_of_the_turn_and_a_slow_client_gets_the_rest(loop):
    from uwsgid.net.websocket import Session, frame
    a, b = socket.socketpair()
    with a, b:
        a.setblocking(False)
        a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        b.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        loop.keep(a.fileno())
        s = Session(a.fileno(), b"", "test", 30, 3, 1 << 20, 4)
        s.batch = _batch(loop)
        msgs = [b"%05d" % i + b"y" * 1000 for i in range(60)]     # 60 KB: more than the buffers
        for m in msgs:
            s.send(m, binary=True)
        b.setblocking(False)
        with pytest.raises(BlockingIOError):
            b.recv(1)                       # nothing written before the turn ends
        loop.run_once(block=False)          # the batch's flush: the socket takes a part
        assert s.pending is not None and s.batch is None and s.loop_writer is loop
        want = b"".join(frame(0x2, m) for m in msgs)
        got = b""
        deadline = time.monotonic() + 5
        while len(got) < len(want) and time.monotonic() < deadline:
            try:
                got += b.recv(65536)        # the client reads: the loop's writer sends the rest
            except BlockingIOError:
                pass
            loop.run_once(block=False)
        assert got == want
        assert s.pending is None and a.fileno() not in loop._writers


def test_a_session_ending_with_frames_pending_hands_them_over(loop):
    from uwsgid.net.websocket import Session
    a, b = socket.socketpair()
    with a, b:
        s = Session(a.fileno(), b"", "test", 30, 3, 1 << 20, 4)
        s.batch = _batch(loop)
        s.send(b"last words")
        data = s.take_pending()             # what Connection.request_done sends before closing
        assert data == b"\x81\x0alast words"
        assert s.pending is None and s.batch is None
        loop.run_once(block=False)          # the batch finds nothing left to write
        b.setblocking(False)
        with pytest.raises(BlockingIOError):
            b.recv(1)
