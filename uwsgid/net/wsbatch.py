"""Writes batched per loop turn: a green WebSocket session's frames (uwsgid/net/websocket.py
Session.batch) and a green raw TCP handler's sendall (uwsgid/net/raw_socket.py batch_writes).

On loopback most of what an echo costs is waking the client's process: written one by one, the
frames of the green sessions a loop turn resumes wake it once each. A Batch writes them
together at the end of the turn (a `ready` callback of the loop), or as soon as MAX sessions
have some; a session's frames beyond BYTES go out at once, with the usual waits (back-pressure
stays with the app). A frame waits at most for the other sessions of its batch to take their
turn. The writer's side (pending, _flush_pending, the loop's writer for a slow client, what is
left at the end of the request) is in Session and RawSocket: a Batch only calls
_flush_pending() on each at the end of the turn.

A turn can run long: an app that blocks its thread (time.sleep, a blocking call, CPU work)
after a send does not give the loop its turn back, and the frames of its batch would wait for
it (uWSGI writes every frame at once). So each batch arms a slot of a watchdog (core/wsframe.c:
a thread that looks every LATE / 2 seconds without the GIL, and ends after a second with no batch
waiting) with the time its frames began to wait. A batch LATE old wakes a Python thread blocked
on a pipe, which writes its WebSocket frames (write_now: what the sockets take; the rest stays
for the turn's end). The app's thread holds the batch's lock while it touches a session's
pending bytes, so the two never write at once. Without the build (plain python) nothing is
batched (batch_of answers None).
"""

from __future__ import annotations

import os
import threading
import time

from uwsgid.util.log import log, log_exception

try:
    from _uwsgi import lib as _lib
    # the watchdog's state, read and written here without a call: the slots (a batch's start,
    # 0: nothing waits) and its running flag. One race is left: a slot armed just as the
    # thread ends after its idle second may see it still running; that batch's frames then
    # wait for its turn's end (as without a watchdog), and the next batch starts it again.
    _since = _lib.uwsgi_ws_watch_slots()
    _running = _lib.uwsgi_ws_watch_running()
    SLOTS = _lib.UWSGI_WS_WATCH_SLOTS
except (ImportError, AttributeError):   # plain python without the build
    _lib = _since = _running = None
    SLOTS = 0

LATE = 0.005        # frames waiting this long for the turn's end are written by the watchdog

_monotonic = time.monotonic


class Batch:
    """The sessions (WebSocket or raw) of one loop with bytes to write at the end of this turn."""

    __slots__ = ("loop", "sessions", "_flush", "lock", "since", "slot")
    MAX = 32                # sessions per batch: a frame waits for at most 31 others
    BYTES = 65536           # a session's frames beyond this go out at once (with the usual waits)

    def __init__(self, loop, slot: int):
        self.loop = loop
        self.sessions: list = []
        self._flush = self.flush
        self.lock = threading.Lock()    # held by the app's thread while it touches pending bytes
        self.since = 0.0                # when the first frame of this turn came (0: none waits)
        self.slot = slot                # its slot in the watchdog

    def add(self, session) -> None:
        sessions = self.sessions
        if not sessions:
            self.loop.ready.append(self._flush)
        if not self.since and hasattr(session, "write_now"):   # raw sockets wait for the turn's end
            _since[self.slot] = self.since = _monotonic()
            if not _running[0]:
                _watchdog.start()
        sessions.append(session)
        if len(sessions) >= self.MAX:
            self.flush()

    def flush(self) -> None:
        sessions = self.sessions
        if sessions:
            with self.lock:
                self.sessions = []
                self.since = _since[self.slot] = 0.0
                for s in sessions:
                    s._flush_pending()

    def _flush_late(self) -> bool:
        """The watchdog's Python thread, under the lock: True when bytes are still waiting."""
        left = False
        for s in self.sessions:
            write_now = getattr(s, "write_now", None)   # WebSocket sessions (raw sockets wait for the turn)
            if write_now is not None:
                write_now()
                if s.pending is not None:
                    left = True
        return left


class _Watchdog:
    def __init__(self):
        self.batches: list[Batch] = []      # by slot: one per loop, they live as long as it
        self.thread = None                  # the Python side, blocked on the pipe
        self.rfd = self.wfd = -1
        self.late_writes = 0                # batches written late (for the tests and the curious)
        self.failed = False                 # the thread could not be started (said once)

    def start(self) -> None:
        if self.failed:
            return
        if self.thread is None:
            self.rfd, self.wfd = os.pipe2(os.O_CLOEXEC)
            os.set_blocking(self.wfd, False)
            self.thread = threading.Thread(target=self._run, name="uwsgi-ws-batch", daemon=True)
            self.thread.start()
        rc = _lib.uwsgi_ws_watch_start(self.wfd, LATE)
        if rc:
            self.failed = True      # said once; batches still work, only without the late writes
            log(f"uwsgi: cannot start the WebSocket batch watchdog: {os.strerror(rc)} (frames wait for "
                f"the loop's turn)")

    def _run(self) -> None:
        while True:
            try:
                os.read(self.rfd, 512)
            except InterruptedError:
                continue
            except OSError:
                return          # (closed in a forked child)
            now = _monotonic()
            for b in list(self.batches):
                since = b.since
                if since and now - since >= LATE and b.lock.acquire(False):
                    try:
                        if b.since == since:        # the same turn, still not over
                            self.late_writes += 1
                            # what the sockets did not take: again after LATE more; else the
                            # batch's next frame arms it again (add)
                            b.since = _since[b.slot] = now if b._flush_late() else 0.0
                    except Exception:
                        log_exception("uwsgi: writing late WebSocket frames failed:")
                    finally:
                        b.lock.release()

    def forked(self) -> None:
        """In a child: no thread, the parent's pipe closed; the batches (and their slots) stay,
        each with a new lock (a thread of the parent may have held one)."""
        if self.thread is None and not self.batches:
            return      # never used in the parent (the usual master): nothing to reset, no code run
        _lib.uwsgi_ws_watch_forked()
        for fd in (self.rfd, self.wfd):
            if fd >= 0:
                os.close(fd)
        batches = self.batches
        self.__init__()
        self.batches = batches
        for b in batches:
            b.lock = threading.Lock()
            b.since = 0.0


_watchdog = _Watchdog()
if _lib is not None:
    os.register_at_fork(after_in_child=_watchdog.forked)


def late_writes() -> int:
    return _watchdog.late_writes


def batch_of(loop) -> Batch | None:
    """The loop's Batch (one per loop, made at its first green WebSocket session or raw handler);
    None (write at once) without the build's watchdog or when its slots are taken."""
    b = getattr(loop, "ws_batch", None)
    if b is None:
        batches = _watchdog.batches
        if _since is None or len(batches) >= SLOTS:
            return None
        b = loop.ws_batch = Batch(loop, len(batches))
        batches.append(b)
    return b
