"""Flush deadlines for streamed responses: a chunk the app yielded goes out within a few
milliseconds even when the app then blocks (sleeps, waits on I/O) inside its next step.

The request path coalesces a streamed body (one send per slice, not per chunk: what makes fast
generators cheap). Coalescing alone would hold the last chunk before a pause until the pause
ends, so a plugin that steps a body marks each step of the app it runs with bytes buffered:

    w = watch(emit)              # emit(): hand what is buffered to the core and flush it
    ...
    w.enter()                    # seq odd: a step that may block, with bytes buffered
    chunk = next(it)             # the app may block here
    w.seq += 1                   # seq even: back
    if w.flushing:               # a deadline flush of that step is going on: wait for its end
        w.wait_flush()
    ...
    w.close()                    # the body ended (or was abandoned)

One thread per process looks at the open watches every POLL seconds while some step is under
way, and naps otherwise (enter() wakes it: one wake per pause of a paced producer, none while a
fast producer keeps it looking). A step seen under way for DELAY or more has its bytes flushed
from that thread, under `lock`, after setting `flushing` and checking that the step is still the
same (seq unchanged): the app's thread, coming back, sees `flushing` and waits for the lock, so
the two never touch the buffers at once. Per step the app's thread pays two increments and two
tests (a 10001-chunk body steps 10001 times). A plugin that must keep the flusher off a response
for a while (a green thread leaving its core mid-step) holds `lock` meanwhile. The thread runs
only while watches are open, plus IDLE seconds, so an idle worker has no timer waking it.
"""

from __future__ import annotations

import threading
import time

from uwsgid.util.log import log_exception

DELAY = 0.001     # a step under way this long has its buffered bytes flushed
POLL = 0.001      # how often the flusher thread looks (worst case DELAY + POLL, plus the GIL)
IDLE = 1.0        # the thread goes to sleep after this long without an open watch
QUIET = 1.0       # its longest nap while watches are open but no step is under way

_monotonic = time.monotonic


class Watch:
    __slots__ = ("lock", "seq", "flushing", "emit", "_flusher", "seen", "seen_at")

    def __init__(self, flusher: "Flusher", emit):
        self.lock = threading.Lock()
        self.seq = 0              # odd while the app's thread runs a step with bytes buffered
        self.flushing = False     # the flusher is emitting for this watch (under lock)
        self.emit = emit
        self._flusher = flusher
        self.seen = -1            # the flusher's: the odd seq it saw, and when
        self.seen_at = 0.0

    def enter(self) -> None:
        """The app's thread is about to run a step that may block, with bytes buffered."""
        self.seq += 1
        f = self._flusher
        if f.napping:
            f.napping = False
            f._wake.set()

    def wait_flush(self) -> None:
        """The app's thread, back from its step while a flush of it is going on."""
        with self.lock:
            pass

    def close(self) -> None:
        """The body ended: no more deadline flushes. Called by the app's thread."""
        self._flusher.watches.discard(self)
        self.emit = None
        if self.seq & 1:
            self.seq += 1
        if self.flushing:
            self.wait_flush()


class Flusher:
    def __init__(self):
        self.watches: set[Watch] = set()
        self._wake = threading.Event()
        self._thread = None
        self._sleeping = True
        self.napping = False      # waiting for an enter() (watches open, no step under way)
        self.flushes = 0          # deadline flushes done (for the tests and the curious)

    def watch(self, emit) -> Watch:
        w = Watch(self, emit)
        self.watches.add(w)
        if self._sleeping:
            self._sleeping = False
            if self._thread is None or not self._thread.is_alive():
                # started on first use in each process (a thread does not survive fork)
                self._thread = threading.Thread(target=self._run, name="uwsgi-flusher", daemon=True)
                self._thread.start()
            self._wake.set()
        return w

    def _run(self) -> None:
        idle_since = None
        busy = True
        while True:
            if self._sleeping:
                self._wake.wait()
                self._wake.clear()
                idle_since = None
            if busy:
                time.sleep(POLL)
            else:
                # watches open, no step under way: nap until an enter() (or QUIET, to see them close)
                self.napping = True
                if not any(w.seq & 1 for w in list(self.watches)):
                    self._wake.wait(QUIET)
                self._wake.clear()
                self.napping = False
            watches = self.watches
            if not watches:
                busy = True
                now = _monotonic()
                if idle_since is None:
                    idle_since = now
                elif now - idle_since >= IDLE:
                    self._sleeping = True
                    if self.watches:          # a watch came in as we were going to sleep
                        self._sleeping = False
                continue
            idle_since = None
            busy = False
            now = _monotonic()
            for w in list(watches):
                s = w.seq
                if not s & 1:
                    continue
                busy = True
                if w.seen != s:
                    w.seen, w.seen_at = s, now        # a new step: its deadline starts now
                elif now - w.seen_at >= DELAY and w.lock.acquire(False):
                    try:
                        w.flushing = True
                        emit = w.emit
                        if emit is not None and w.seq == s:
                            w.seen_at = float("inf")   # one flush per step
                            self.flushes += 1
                            emit()
                    except Exception:
                        log_exception("uwsgi: flushing a streamed response failed:")
                    finally:
                        w.flushing = False
                        w.lock.release()


_flusher = Flusher()


def watch(emit) -> Watch:
    return _flusher.watch(emit)


def flushes() -> int:
    return _flusher.flushes
