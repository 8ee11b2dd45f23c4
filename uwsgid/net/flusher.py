"""Flush deadlines for streamed responses: a chunk the app yielded goes out within a few
milliseconds even when the app then blocks (sleeps, waits on I/O) inside its next step.

The request path coalesces a streamed body (one send per slice, not per chunk: what makes fast
generators cheap). Coalescing alone would hold the last chunk before a pause until the pause
ends, so a plugin that steps a body wraps each blocking step of the app in a Watch:

    w = watch(emit)                  # emit(): hand what is buffered to the core and flush it
    ...
    w.blocked_since = monotonic()    # about to run the app's next step with bytes buffered
    w.lock.release()
    chunk = next(it)                 # the app may block here
    w.lock.acquire()
    w.blocked_since = 0.0
    ...
    w.close()                        # the body ended (or was abandoned)

The app's thread holds `lock` all the time except around those steps. One thread per process
looks at the open watches every POLL seconds; a step blocked for DELAY or more has its buffered
bytes flushed from that thread, under the lock (so the app's thread, coming back, waits for the
flush to end instead of touching the buffers at the same time). The thread runs only while
watches are open, plus IDLE seconds, so an idle worker has no timer waking it.
"""

from __future__ import annotations

import threading
import time

from uwsgid.util.log import log_exception

DELAY = 0.001     # a step blocked this long has its buffered bytes flushed
POLL = 0.001      # how often the flusher thread looks (worst case DELAY + POLL, plus the GIL)
IDLE = 1.0        # the thread goes to sleep after this long without an open watch

_monotonic = time.monotonic


class Watch:
    __slots__ = ("lock", "blocked_since", "emit", "_flusher")

    def __init__(self, flusher: "Flusher", emit):
        self.lock = threading.Lock()
        self.lock.acquire()
        self.blocked_since = 0.0
        self.emit = emit
        self._flusher = flusher

    def close(self) -> None:
        """The body ended: no more deadline flushes. Called by the app's thread, lock held."""
        self._flusher.watches.discard(self)
        self.emit = None
        self.lock.release()


class Flusher:
    def __init__(self):
        self.watches: set[Watch] = set()
        self._wake = threading.Event()
        self._thread = None
        self._sleeping = True
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
        while True:
            if self._sleeping:
                self._wake.wait()
                self._wake.clear()
                idle_since = None
            time.sleep(POLL)
            watches = self.watches
            if not watches:
                now = _monotonic()
                if idle_since is None:
                    idle_since = now
                elif now - idle_since >= IDLE:
                    self._sleeping = True
                    if self.watches:          # a watch came in as we were going to sleep
                        self._sleeping = False
                continue
            idle_since = None
            now = _monotonic()
            for w in list(watches):
                t = w.blocked_since
                if t and now - t >= DELAY and w.lock.acquire(False):
                    try:
                        emit = w.emit
                        if emit is not None and w.blocked_since == t:
                            w.blocked_since = 0.0       # one flush per blocked step
                            self.flushes += 1
                            emit()
                    except Exception:
                        log_exception("uwsgi: flushing a streamed response failed:")
                    finally:
                        w.lock.release()


_flusher = Flusher()


def watch(emit) -> Watch:
    return _flusher.watch(emit)


def flushes() -> int:
    return _flusher.flushes
