"""The receiving side of signals, in a worker or a mule: taking the signals off this process's
channels and running their handlers, from the worker's loop (add_readers), from a thread when
the loop cannot watch them (start_worker_thread), or in the caller's thread with signal_wait
(wait). A worker starts with worker_started; a mule's start and its own loop are in mules.py.
"""

from __future__ import annotations

import os
import select
import socket
import threading
import time

from uwsgid.plugins import api as core_api
from uwsgid.services import channels, signals
from uwsgid.util.log import log

_watched = False        # this worker's channels are watched (by its loop or a thread)
_last_received: int | None = None


def worker_started(wid: int) -> None:
    """In each worker after fork: keep this worker's channel and the shared one."""
    global _watched
    signals.ensure()
    _watched = False
    signals.record_pid(wid)
    channels.worker_started(wid)


def watched() -> bool:
    return _watched


def drain(sock: socket.socket, run: bool = True) -> list[int]:
    """Take every signal pending on sock (and run their handlers); EOF = the master is gone."""
    got = []
    eof = False
    while True:
        try:
            data = sock.recv(64)
        except (BlockingIOError, InterruptedError):
            break
        except OSError:
            eof = True
            break
        if not data:
            eof = True
            break
        got.extend(data)
    if run:
        for num in got:
            signals.dispatch(num)
    if eof:
        _channel_closed(sock)
    return got


def _channel_closed(sock: socket.socket) -> None:
    """The master's end is gone (it died or re-executed): stop watching, or leave (a mule)."""
    if channels.mule_id():
        mule_master_gone()
    worker = core_api.worker
    remove = getattr(worker, "remove_reader", None) if worker is not None else None
    if remove is not None:
        try:
            remove(sock.fileno())
        except Exception:
            pass
    log(f"[uwsgi-signal] {channels.who()}: the signal channel is closed (master gone?)")


def mule_master_gone() -> None:
    """In a mule whose master is gone (it died, or re-executed itself on reload): exit."""
    log(f"mule {channels.mule_id()}: the master is gone, exiting")
    os._exit(0)


def worker_fds() -> list[int]:
    """The fds a worker loop must watch: its own channel, then the shared one."""
    return [s.fileno() for s in channels.receiving_ends()]


def on_readable(fd: int, *_args) -> None:
    """Reader callback for a worker loop: run the handlers of the signals pending on fd."""
    for sock in channels.receiving_ends():
        if sock.fileno() == fd:
            drain(sock)
            return


def add_readers(add_reader) -> bool:
    """Register the worker's channels with a loop's add_reader(fd, callback) once per process."""
    global _watched
    if _watched or not channels.worker_id():
        return False
    for fd in worker_fds():
        add_reader(fd, lambda *a, _fd=fd: on_readable(_fd))
    _watched = True
    return True


def start_worker_thread() -> None:
    """When the worker loop offers no add_reader: handlers run in a thread of their own."""
    global _watched
    if _watched or not channels.worker_id():
        return
    _watched = True

    def run():
        poller = select.poll()
        socks = {s.fileno(): s for s in channels.receiving_ends()}
        for fd in socks:
            poller.register(fd, select.POLLIN)
        while socks:
            for fd, ev in poller.poll():
                drain(socks[fd])
                if ev & (select.POLLHUP | select.POLLERR):
                    poller.unregister(fd)
                    socks.pop(fd, None)

    threading.Thread(target=run, name="uwsgid-signals", daemon=True).start()


def wait(num: int | None = None, timeout: float | None = None) -> int | None:
    """Block this thread until a signal for this worker arrives (its handler is not run; other
    signals meanwhile are handled normally). Returns the signal, None on timeout."""
    global _last_received
    if num is not None:
        signals.check_num(num)
    signals.ensure()
    socks = channels.receiving_ends() if (channels.worker_id() or channels.mule_id()) else []
    if not socks:
        raise ValueError("signal_wait can only be used in a worker or a mule")
    deadline = None if timeout is None else time.monotonic() + timeout
    poller = select.poll()
    for s in socks:
        poller.register(s.fileno(), select.POLLIN)
    while True:
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        ready = poller.poll(None if left is None else int(left * 1000))
        for fd, ev in ready:
            sock = next(s for s in socks if s.fileno() == fd)
            if ev & (select.POLLHUP | select.POLLERR) and not ev & select.POLLIN:
                return None     # the master is gone: nothing will come
            # one message per recv (SOCK_SEQPACKET): take signals one by one, none is lost
            while True:
                try:
                    data = sock.recv(64)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    break
                if not data:
                    break
                sig = data[0]
                if num is None or sig == num:
                    _last_received = sig
                    return sig
                signals.dispatch(sig)
        if deadline is not None and time.monotonic() >= deadline:
            return None


def last_received() -> int | None:
    """The last signal signal_wait returned in this process."""
    return _last_received


def _reset_for_tests() -> None:
    global _watched
    _watched = False
