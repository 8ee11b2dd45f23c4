"""A file body going out through sendfile(2) on a non-blocking socket, driven by an event loop.

    FileSender(loop, sock, fd, offset, count, timeout, done).start()
        sends count bytes of fd from offset to sock: as much as the socket takes now, then again
        each time epoll says it is writable (the loop's writer slot for sock is the sender's
        meanwhile); at most BURST bytes per loop turn, so that one fast client does not starve
        the loop's other connections. Then, once: done(error, sent), error None when all went
        out, else the OSError, EOFError (the file shrank) or TimeoutError (no progress for
        `timeout` seconds, uWSGI's --socket-timeout). fd is closed before done() runs; sock is
        the caller's.
    cancel()   stops it without calling done (fd closed, the writer slot released).

The same sender runs in a worker's thread loop (its core waits for it: see serve.py) and in an
offload thread (offload.py); it touches nothing but its loop, sock and fd.
"""

from __future__ import annotations

import errno
import os
import time

_sendfile = os.sendfile
_monotonic = time.monotonic
BURST = 8 << 20
_GONE = (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN, errno.ESHUTDOWN)


class FileSender:
    __slots__ = (
        "done",
        "fd",
        "last",
        "left",
        "loop",
        "offset",
        "over",
        "sent",
        "sock",
        "timeout",
        "timer",
        "waiting",
    )

    def __init__(self, loop, sock: int, fd: int, offset: int, count: int, timeout: float, done):
        self.loop = loop
        self.sock = sock
        self.fd = fd
        self.offset = offset
        self.left = count
        self.sent = 0
        self.timeout = timeout
        self.last = _monotonic()
        self.timer = None
        self.done = done
        self.waiting = False      # registered as the socket's writer
        self.over = False

    def start(self) -> None:
        self.timer = self.loop.call_later(1.0, self._tick)
        self._pump()

    def _pump(self) -> None:
        if self.over:
            return
        budget = BURST
        sock, fd = self.sock, self.fd
        while self.left > 0:
            try:
                n = _sendfile(sock, fd, self.offset, min(self.left, budget))
            except (BlockingIOError, InterruptedError):
                self._wait()
                return
            except OSError as e:
                self._end(e)
                return
            if n == 0:
                self._end(EOFError(f"the file ended {self.left} bytes early"))
                return
            self.offset += n
            self.left -= n
            self.sent += n
            self.last = _monotonic()
            budget -= n
            if budget <= 0 and self.left > 0:
                self._unwait()
                self.loop.ready.append(self._pump)    # a turn for the loop's others
                return
        self._end(None)

    def _wait(self) -> None:
        if not self.waiting:
            self.waiting = True
            self.loop.add_writer(self.sock, self._pump)

    def _unwait(self) -> None:
        if self.waiting:
            self.waiting = False
            self.loop.remove_writer(self.sock)

    def _tick(self) -> None:
        self.timer = None
        if self.over:
            return
        if _monotonic() - self.last >= self.timeout:
            self._end(TimeoutError(f"no progress in {self.timeout:g}s"))
            return
        self.timer = self.loop.call_later(1.0, self._tick)

    def _stop(self) -> None:
        self.over = True
        self._unwait()
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        fd, self.fd = self.fd, -1
        if fd >= 0:
            try:
                os.close(fd)
            except OSError:
                pass

    def _end(self, error) -> None:
        self._stop()
        done, self.done = self.done, None
        if done is not None:
            done(error, self.sent)

    def cancel(self) -> None:
        if not self.over:
            self.done = None
            self._stop()


def client_gone(error) -> bool:
    """An error that only says the client went away (no log line of its own)."""
    return isinstance(error, OSError) and error.errno in _GONE
