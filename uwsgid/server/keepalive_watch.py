"""Idle keep-alive connections are not left waiting behind a slow request (issue 15).

A one-core thread loop (a sync worker, or one thread of --threads N) runs its request in the
loop's own thread: while it runs, the loop does not read its other connections, so a keep-alive
client of that worker whose next request comes meanwhile waits for the slow one to end, even
though another worker is idle (measured in bench/keepalive_fairness.py: 2 sync workers, 16 fast
keep-alive clients, one 1 s request: 7 of the 16 clients stalled ~1 s each time).

So a watcher thread (one per worker process, started with its first loop) looks at the loops
every SHED_AFTER / 2 seconds; once a loop's core has been running one request for SHED_AFTER,
its idle keep-alive connections with nothing unread in the kernel are shut down. RFC 9112 9.8
lets a server close an idle connection at any time; clients reconnect (and retry an idempotent
request they raced with the close), and the reconnect is accepted by a worker that is free,
since the busy loop stopped accepting (ThreadLoop._hold). With --threads, the loop first hands
such connections to an idle thread of the worker (ThreadLoop._shed_idle); this covers the case
where none is idle. A connection with bytes already waiting is left alone (its request is in:
dropping it would lose it); TLS connections too (their plaintext may sit in the SSL object).

The watcher acts only while the loop's thread is inside the app (ThreadLoop._run: the request
call, and a generator's steps up to its first pause; or the native lane's app call), when no
loop code runs that could close or reuse an fd; `ThreadLoop.watch_lock` makes the
check-then-shutdown atomic with the app returning. It only shuts a socket down: the fd stays the loop's, which reads the end and
closes it when it runs again.

Not covered: a client whose next request is already in the kernel buffer when the threshold
passes (a client that sends back-to-back) still waits; moving such a connection needs an fd
hand-off to another worker (SCM_RIGHTS over a channel the master makes before forking).
"""

from __future__ import annotations

import array
import fcntl
import os
import socket
import termios
import threading
import time

from uwsgid.net.connection import Connection

SHED_AFTER = 0.1        # seconds a request runs before the loop's idle keep-alive clients go elsewhere

_loops: list = []
_lock = threading.Lock()
_thread: threading.Thread | None = None


def watch(tl) -> None:
    """Watch a one-core thread loop that accepts (see the module doc)."""
    global _thread
    tl.watch_lock = threading.Lock()
    with _lock:
        _loops.append(tl)
        if _thread is None:
            _thread = threading.Thread(target=_run, name="uwsgi-keepalive-watch", daemon=True)
            _thread.start()


def unwatch(tl) -> None:
    with _lock:
        if tl in _loops:
            _loops.remove(tl)


def _after_fork() -> None:
    # threads do not survive fork: a child that makes loops starts its own watcher
    global _thread
    _thread = None
    _loops.clear()


os.register_at_fork(after_in_child=_after_fork)


def _run() -> None:
    me = threading.current_thread()
    while _thread is me:
        time.sleep(SHED_AFTER / 2)
        now = time.monotonic()
        with _lock:
            loops = list(_loops)
        for tl in loops:
            started = _running_since(tl)
            if started and now - started >= SHED_AFTER and not tl.worker.stopping:
                with tl.watch_lock:
                    if _running_since(tl) == started:   # still the same request: the loop is not running
                        shed(tl)


def _running_since(tl) -> float:
    """When the loop's app call began (0.0: none is running), on the Python path or the native
    lane's (uwsgid/server/native_lane.py: it takes watch_lock as the app returns)."""
    started = tl.run_started
    if not started and tl.lane is not None:
        started = tl.lane.busy_since
    return started


def shed(tl) -> int:
    """Shut down the loop's idle keep-alive connections with nothing unread; how many."""
    n = 0
    for conn in list(tl.conns.values()):    # a C-level copy: atomic under the GIL
        if (type(conn) is Connection and not conn.closed and not conn.paused and not conn.eof
                and conn.idle_after_request() and _unread(conn.fd) == 0):
            s = socket.socket(fileno=conn.fd)
            try:
                s.shutdown(socket.SHUT_RDWR)     # the loop reads the end and closes it
                n += 1
            except OSError:
                pass
            finally:
                s.detach()
    return n


def _unread(fd: int) -> int:
    buf = array.array("i", [0])
    try:
        fcntl.ioctl(fd, termios.FIONREAD, buf, True)
    except OSError:
        return -1
    return buf[0]
