"""A small epoll event loop, one per worker thread: fd readers/writers, timers, call_soon.

Kept deliberately tiny (redis `ae` style): the worker's hot path registers each fd once and
the loop dispatches straight to bound methods, with no selector-key objects in between.

Kept fds (`keep(fd)`): a connection the server owns (a WebSocket session, a raw socket, a
cosocket) is waited on again and again, one wait per message. Its fd stays registered with
epoll between waits (level-triggered: an event while nobody waits is not lost, epoll reports
it again once a reader is back), so a wait that follows a wait costs no epoll_ctl at all. An
event on a kept fd that nobody waits for unregisters it then (libev's lazy removal), so that a
busy app does not make the loop spin. The owner promises to call forget(fd) before it closes
the fd: a closed fd leaves epoll by itself, and its number, reused by a new fd, must not be
taken for registered.

Timers are a heap of (when, seq, Timer) tuples: pushed and popped with C comparisons.
"""

from __future__ import annotations

import heapq
import itertools
import os
import select
import threading
import time
from collections import deque
from functools import partial

EPOLLIN = select.EPOLLIN
EPOLLOUT = select.EPOLLOUT
EPOLLERR_HUP = select.EPOLLERR | select.EPOLLHUP
EPOLLEXCLUSIVE = getattr(select, "EPOLLEXCLUSIVE", 0)
# events taken per epoll_wait: Python allocates room for maxevents on every call (1023 by
# default, 12 KB, held by each thread blocked in the wait); more ready fds come next turn
MAX_EVENTS = 256


class Timer:
    __slots__ = ("when", "fn", "cancelled")

    def __init__(self, when: float, fn):
        self.when = when
        self.fn = fn
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True

    def __lt__(self, other: "Timer") -> bool:
        return self.when < other.when


class Loop:
    def __init__(self, index: int = 0):
        self.index = index
        self.ep = select.epoll()
        self._readers: dict[int, object] = {}
        self._writers: dict[int, object] = {}
        self._masks: dict[int, int] = {}
        self._timers: list[tuple] = []       # (when, seq, Timer): a heap
        self._seq = itertools.count()
        self._kept: set[int] = set()          # see keep()
        self.ready: deque = deque()
        self.thread_id = threading.get_ident()
        self.stopped = False
        # Wake-up pipe: signal handlers and other threads poke the loop out of epoll.
        self._wr, self._ww = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        # Guards _ww against close(): another thread may wake this loop after it closed, and
        # its fd number may already belong to a file opened since (a write there corrupted
        # Sputnik's SQLite database at shutdown). Reentrant: signal handlers wake loops too.
        self._ww_lock = threading.RLock()
        self.add_reader(self._wr, self._drain_wakeup)

    # ---- fds ---------------------------------------------------------------------------
    def _update(self, fd: int, exclusive: bool = False) -> None:
        mask = (EPOLLIN if fd in self._readers else 0) | (EPOLLOUT if fd in self._writers else 0)
        old = self._masks.get(fd)
        if mask == 0:
            if old is not None and fd not in self._kept:
                del self._masks[fd]
                try:
                    self.ep.unregister(fd)
                except (OSError, ValueError):
                    pass
            return
        if old is None:
            try:
                self.ep.register(fd, mask | (EPOLLEXCLUSIVE if exclusive else 0))
            except FileExistsError:     # registered behind our back (a dup): take it as it is
                self.ep.modify(fd, mask)
        elif old != mask:
            try:
                self.ep.modify(fd, mask)
            except FileNotFoundError:   # closed and reused without forget(): register the new one
                self.ep.register(fd, mask)
        self._masks[fd] = mask

    def requeue(self, fd: int) -> None:
        """Register an exclusive fd (a listener) again. The kernel wakes the first idle epoll in a
        listener's queue, so without this the worker registered first takes every connection
        while it is idle between events; this puts this loop last in the queue. Nothing is lost:
        a connection that came in between is found by the new registration."""
        mask = self._masks.get(fd)
        if mask is None:
            return
        try:
            self.ep.unregister(fd)
            self.ep.register(fd, mask | EPOLLEXCLUSIVE)
        except (OSError, ValueError):   # a closed listener (stopping): the loop drops it later
            pass

    def keep(self, fd: int) -> None:
        """fd stays registered between its waits (see the module doc); forget(fd) before closing it."""
        self._kept.add(fd)

    def _stray(self, fd: int) -> None:
        """An event on a kept fd nobody waits for: unregister it until a reader or writer is back."""
        if self._masks.pop(fd, None) is not None:
            try:
                self.ep.unregister(fd)
            except (OSError, ValueError):
                pass

    def add_reader(self, fd: int, cb, exclusive: bool = False) -> None:
        """cb() is called when fd is readable (or in error / hung up)."""
        self._readers[fd] = cb
        self._update(fd, exclusive)

    def remove_reader(self, fd: int) -> None:
        if self._readers.pop(fd, None) is not None:
            self._update(fd)

    def add_writer(self, fd: int, cb) -> None:
        self._writers[fd] = cb
        self._update(fd)

    def remove_writer(self, fd: int) -> None:
        if self._writers.pop(fd, None) is not None:
            self._update(fd)

    def forget(self, fd: int) -> None:
        """Drop every registration of fd (before closing it). Whoever waited on a kept fd (a
        core, closed under it by another) is called at the next turn, to find it closed; a
        waiter that has `fd_closed` (Core) gets the fd: by then it may wait on another one."""
        r = self._readers.pop(fd, None)
        w = self._writers.pop(fd, None)
        if fd in self._kept:
            self._kept.discard(fd)
            for cb in (r, w):
                if cb is not None:
                    closed = getattr(getattr(cb, "__self__", None), "fd_closed", None)
                    self.ready.append(partial(closed, fd) if closed is not None else cb)
        if self._masks.pop(fd, None) is not None:
            try:
                self.ep.unregister(fd)
            except (OSError, ValueError):
                pass

    def has_reader(self, fd: int) -> bool:
        return fd in self._readers

    # ---- time ----------------------------------------------------------------------------
    def call_later(self, delay: float, fn) -> Timer:
        return self.call_at(time.monotonic() + delay, fn)

    def call_at(self, when: float, fn) -> Timer:
        t = Timer(when, fn)
        heapq.heappush(self._timers, (when, next(self._seq), t))
        return t

    def next_timer(self) -> float | None:
        """When the earliest live timer is due (None: no timer)."""
        timers = self._timers
        while timers and timers[0][2].cancelled:
            heapq.heappop(timers)
        return timers[0][0] if timers else None

    def call_soon(self, fn) -> None:
        """Thread-safe: fn() runs in this loop's thread at the next turn."""
        self.ready.append(fn)
        if threading.get_ident() != self.thread_id:
            self.wakeup()

    def wakeup(self) -> None:
        with self._ww_lock:
            if self._ww < 0:
                return
            try:
                os.write(self._ww, b"x")
            except OSError:
                pass

    def _drain_wakeup(self) -> None:
        try:
            while os.read(self._wr, 4096):
                pass
        except OSError:
            pass

    # ---- running --------------------------------------------------------------------------
    def run_once(self, block: bool = True) -> None:
        timers = self._timers
        if self.ready or not block:
            timeout = 0
        elif timers:
            while timers and timers[0][2].cancelled:
                heapq.heappop(timers)
            timeout = max(0.0, timers[0][0] - time.monotonic()) if timers else 1.0
            if timeout > 1.0:
                timeout = 1.0
        else:
            timeout = 1.0
        try:
            events = self.ep.poll(timeout, MAX_EVENTS)
        except InterruptedError:
            events = ()
        readers = self._readers
        writers = self._writers
        for fd, ev in events:
            if ev & (EPOLLIN | EPOLLERR_HUP):
                cb = readers.get(fd)
                if cb is not None:
                    cb()
                    if not ev & EPOLLOUT:
                        continue
                elif not ev & EPOLLOUT:
                    cb = writers.get(fd)   # error on a write-only fd: let the writer see it
                    if cb is not None:
                        cb()
                    elif fd in self._kept:
                        self._stray(fd)
                    continue
            if ev & (EPOLLOUT | EPOLLERR_HUP):
                cb = writers.get(fd)
                if cb is not None:
                    cb()
                elif fd in self._kept and fd not in readers:
                    self._stray(fd)
        if timers:
            now = time.monotonic()
            while timers and timers[0][0] <= now:
                t = heapq.heappop(timers)[2]
                if not t.cancelled:
                    t.fn()
        ready = self.ready
        n = len(ready)
        while n:
            n -= 1
            ready.popleft()()

    def close(self) -> None:
        with self._ww_lock:
            fds, self._wr, self._ww = (self._wr, self._ww), -1, -1
        for fd in fds:
            if fd < 0:
                continue
            try:
                os.close(fd)
            except OSError:
                pass
        self.ep.close()
