"""The socket a raw TCP handler gets (uwsgid/net/raw.py: req.sock of a RawRequest): recv /
recv_nb / recvline / recv_exactly / send / send_nb / sendall / flush / close / settimeout,
`preread`, `peer`, fileno() (the object is usable as the fd, as uWSGI's --python-raw handlers
expect).

Waiting. A recv (or send) that cannot go on at once waits for the socket, in slices of at most
a second (a graceful stop ends the wait as an end of stream, so that reloads are not held by
idle connections), up to the socket's timeout (--socket-timeout by default; settimeout(None)
waits forever), then raises TimeoutError. How it waits is the plugin's choice: `wait_readable`
/ `wait_writable` (fd, timeout) -> ready, set by a plugin whose handler runs in a green thread
(the core suspends on the loop: uwsgid.plugins.api.wait_readable), else poll in place, which
holds the thread (a sync worker, a thread of --threads). The Lua plugin drives the same steps
from a coroutine (wait_slice / wait_over). A recv after a read that emptied the socket waits
first (the read would mostly find nothing: a syscall saved per message of a request/answer
protocol; epoll is level-triggered, so bytes that came meanwhile end the wait at once).

Writing. A green handler's sendall holds its bytes for the end of the loop turn
(batch_writes, uwsgid.net.wsbatch.Batch): the answers of the connections one turn resumed go
out together. What is held goes first on send / send_nb / flush / close / fileno() and at the
handler's end; past Batch.BYTES, and for a peer that stopped reading, sendall writes at once
with the usual waits (back-pressure stays with the handler).
"""

from __future__ import annotations

import errno
import os
import select
import socket
import threading
import time

from uwsgid.net.wsbatch import batch_of

try:
    # a read that answers -EAGAIN instead of raising (core/wsframe.c): half the reads before a
    # wait find nothing, and an exception costs more than the syscall
    from _uwsgi import ffi as _ffi
    from _uwsgi import lib as _lib
    _c_read = _lib.uwsgi_read_nb
    _unpack = _ffi.unpack
except (ImportError, AttributeError):   # plain python without the build
    _c_read = _unpack = None

RECV = 65536
PREREAD = 4096
_EAGAIN = -errno.EAGAIN
_EINTR = -errno.EINTR
_buffers = threading.local()    # one C read buffer per thread: the bytes are copied out at once
WAIT_SLICE = 1.0        # seconds a wait lasts before it looks at a graceful stop again
_monotonic = time.monotonic
_FOREVER = float("inf")


class RawSocket:
    """The connection as a raw handler sees it (Python gets it as is; Lua through its glue)."""

    __slots__ = ("_req", "_conn", "_sock", "fd", "preread", "peer", "remote_addr", "remote_port", "timeout",
                 "closed", "eof", "_buf", "wait_readable", "wait_writable", "_deadline", "_drained",
                 "batch", "pending", "_error", "_drain_loop")

    def __init__(self, req, conn):
        # req: its uwsgid.net.raw.RawRequest (the counts, the status); conn: its RawConnection
        self._req = req
        self._conn = conn
        self._sock = conn.sock
        self.fd = conn.fd
        self.peer = conn.peer
        self.remote_addr = req.vars[b"REMOTE_ADDR"].decode()
        self.remote_port = int(req.vars[b"REMOTE_PORT"] or 0)
        self.timeout = conn.thread_loop.limits.socket_timeout or None
        self.closed = False
        self.eof = False
        self._buf = b""         # read ahead by recvline / recv_exactly
        self.wait_readable = None
        self.wait_writable = None
        self._deadline = None
        self._drained = False   # the last read took less than it asked: recv waits before reading
        self.batch = None       # a uwsgid.net.wsbatch.Batch: sendall's bytes go out at the turn's end
        self.pending = None     # bytes sendall took and did not write yet (see batch_writes)
        self._error = None      # an OSError of a write on the loop, raised at the handler's next write
        self._drain_loop = None  # the loop whose writer writes the pending rest of a slow peer
        try:
            # a peek: the bytes stay in the kernel, recv (or os.read on the fd) returns them
            self.preread = conn.sock.recv(PREREAD, socket.MSG_PEEK)
        except OSError:
            self.preread = b""

    def __repr__(self) -> str:
        return f"<RawSocket fd={self.fd} peer={self.peer}{' closed' if self.closed else ''}>"

    # ---- what uWSGI's --python-raw handlers get: a file descriptor ---------------------------
    def fileno(self) -> int:
        if self.pending is not None:
            self._flush_for_fd()
        return self.fd

    def __index__(self) -> int:
        if self.pending is not None:
            self._flush_for_fd()
        return self.fd

    def _flush_for_fd(self) -> None:
        """The handler is about to use the fd itself (os.write, select): what sendall holds for
        the end of the turn goes first, so that the peer gets the bytes in order."""
        if self.closed:
            return
        try:
            self.flush()
        except OSError as e:
            self._error = e     # raised by the handler's next write, not by fileno()

    def settimeout(self, seconds) -> None:
        """Seconds a recv/send may wait (None or 0: forever)."""
        if seconds is None or float(seconds) <= 0:
            self.timeout = None
        else:
            self.timeout = float(seconds)

    def gettimeout(self):
        return self.timeout

    # ---- reading ------------------------------------------------------------------------------
    def recv_nb(self, n: int = RECV):
        """Up to n bytes if some are there, b"" at the end of the stream, None when nothing has
        arrived yet (never waits). Raises OSError when the connection failed."""
        if self.closed:
            self._check_open()
        buf = self._buf
        if buf:
            self._buf = buf[n:]
            return buf[:n]
        if self.eof:
            return b""
        if _c_read is not None:
            b = getattr(_buffers, "b", None)
            if b is None:
                b = _buffers.b = _ffi.new("char[]", RECV)
            k = int(n)
            if not 0 < k <= RECV:
                k = RECV if k > RECV else 1
            got = _c_read(self.fd, b, k)
            if got < 0:
                if got == _EAGAIN or got == _EINTR:
                    return None
                raise OSError(-got, os.strerror(-got))
            self._drained = got < k
            data = _unpack(b, got)
        else:
            try:
                data = self._sock.recv(max(1, int(n)))
            except (BlockingIOError, InterruptedError):
                return None
            self._drained = len(data) < n
        if data:
            self._req.post_cl += len(data)
            self._deadline = None
        else:
            self.eof = True
        return data

    def recv(self, n: int = RECV) -> bytes:
        """Up to n bytes (at least one), waiting for them; b"" at the end of the stream."""
        if self._drained and not self._buf:
            # the last read emptied the socket: a read now would mostly find nothing (a syscall
            # for EAGAIN, once per message of a request/answer protocol), so wait first; the
            # loop's epoll is level-triggered: bytes that came meanwhile end the wait at once
            self._drained = False
            if not self.eof and not self._wait(False):
                self.eof = True
                return b""
        while True:
            data = self.recv_nb(n)
            if data is not None:
                return data
            if not self._wait(False):
                self.eof = True
                return b""      # a graceful stop: the end of the stream

    def recvline(self, limit: int = RECV) -> bytes:
        """One line with its b"\\n"; at the end of the stream what is left (maybe b""). A line
        longer than `limit` raises ValueError (the bytes stay unread)."""
        buf = self._buf
        while True:
            i = buf.find(b"\n", 0, limit)
            if i >= 0:
                self._buf = buf[i + 1:]
                return buf[:i + 1]
            if len(buf) >= limit:
                self._buf = buf
                raise ValueError(f"raw socket: line longer than {limit} bytes from {self.peer}")
            self._buf = b""     # recv reads the socket, not what is buffered (_more, inline)
            try:
                data = self.recv()
            except BaseException:
                self._buf = buf
                raise
            if not data:
                return buf
            buf = buf + data if buf else data

    def recv_exactly(self, n: int) -> bytes:
        """n bytes, waiting for them; fewer only at the end of the stream."""
        n = int(n)
        while len(self._buf) < n:
            if not self._more():
                break
        buf = self._buf
        self._buf = buf[n:]
        return buf[:n]

    def _more(self) -> bytes:
        buf = self._buf
        self._buf = b""
        data = self.recv()
        self._buf = buf + data
        return data

    # ---- writing ------------------------------------------------------------------------------
    def batch_writes(self) -> None:
        """From now on sendall's bytes wait for the end of the loop turn (uwsgid.net.wsbatch),
        for a handler in a green thread, whose waits give the loop its turn: the answers of
        the connections one turn resumes go out together. send / send_nb / close / flush,
        fileno() (an os.write on the fd) and the handler's end write them first."""
        self.batch = batch_of(self._conn.loop)

    def send_nb(self, data) -> int:
        """As much of data as the socket takes now: the count (0 when it is full; never waits)."""
        self._check_open()
        if self.pending is not None:
            self.flush_nb()
            if self.pending is not None:
                return 0    # what sendall took goes first
        try:
            n = self._sock.send(data)
        except (BlockingIOError, InterruptedError):
            return 0
        self._deadline = None
        self._req.response_size += n
        return n

    def send(self, data) -> int:
        """Some of data (at least one byte), waiting until the peer takes some: the count sent."""
        if isinstance(data, str):
            data = data.encode("utf-8")
        if self.pending is not None or self._error is not None:
            self.flush()
        if not data:
            self._check_open()
            return 0
        while True:
            n = self.send_nb(data)
            if n:
                return n
            if not self._wait(True):
                raise ConnectionAbortedError(errno.ECONNABORTED, "raw socket: the worker is stopping")

    def sendall(self, data) -> None:
        if isinstance(data, str):
            data = data.encode("utf-8")
        batch = self.batch
        if batch is not None and not self.closed and self._error is None:
            pending = self.pending
            if pending is None:
                if data.__class__ is not bytes:
                    data = bytes(data)
                if not data:
                    return
                self.pending = data
                batch.add(self)
                return
            pending = pending + data
            if len(pending) <= batch.BYTES:
                self.pending = pending
                return
            self.pending = None     # beyond BYTES: out now, with the usual waits (back-pressure)
            data = pending
        elif self.pending is not None or self._error is not None:
            self.flush()
        self._sendall(data)

    def flush(self) -> None:
        """Write what sendall holds for the end of the turn now (waiting as sendall does)."""
        err = self._error
        if err is not None:
            self._error = None
            raise err
        data = self.pending
        if data is not None:
            self.pending = None
            self._sendall(data)

    def _sendall(self, data) -> None:
        if data.__class__ is bytes and data and not self.closed:
            try:
                n = self._sock.send(data)   # most go out whole, at once
            except (BlockingIOError, InterruptedError):
                n = 0
            if n:
                self._deadline = None
                self._req.response_size += n
                if n == len(data):
                    return
        else:
            n = 0
        view = memoryview(data).cast("B")[n:]
        while view:
            view = view[self.send(view):]

    def _flush_pending(self) -> None:
        """The batch's write, on the loop: what the socket takes now. A peer that does not take
        it all ends batching for this socket: the loop writes the rest when it can, and the
        handler's next write (or flush) waits for it as usual."""
        if self.pending is None or self.closed:
            return
        self.flush_nb()
        if self.pending is not None and self.batch is not None:
            loop = self.batch.loop
            self.batch = None
            self._drain_loop = loop
            loop.add_writer(self.fd, self._drain)

    def flush_nb(self) -> None:
        """What the socket takes now of what sendall holds (never waits; the rest stays)."""
        data = self.pending
        self.pending = None
        try:
            n = self._sock.send(data)
        except (BlockingIOError, InterruptedError):
            n = 0
        except OSError as e:
            self._error = e     # the handler's next write raises it (its reads see the end)
            return
        if n:
            self._deadline = None
            self._req.response_size += n
        if n < len(data):
            self.pending = data[n:]

    def _drain(self) -> None:
        """The loop's writer while a slow peer's pending rest is there (see _flush_pending)."""
        if self.pending is not None and not self.closed:
            self.flush_nb()
            if self.pending is not None and self._error is None:
                return
        loop = self._drain_loop
        self._drain_loop = None
        if loop is not None and loop._writers.get(self.fd) == self._drain:
            loop.remove_writer(self.fd)

    def close(self) -> None:
        """End the connection now (FIN to the peer); the handler may still return later."""
        if self.closed:
            return
        try:
            self.flush()
        except OSError:
            pass        # the peer is gone: nothing more to tell it
        finally:
            self.closed = True
            self.pending = None
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _check_open(self) -> None:
        if self.closed:
            raise OSError(errno.EBADF, "raw socket: closed by the handler")

    # ---- waiting: one step at a time, so that a coroutine (the Lua glue) can drive it too ------
    def wait_slice(self) -> float:
        """Seconds the next wait may last: up to WAIT_SLICE, or to the timeout (started at the
        first wait of a recv/send that could not go on at once)."""
        if self._deadline is None:
            self._deadline = _monotonic() + self.timeout if self.timeout else _FOREVER
        return max(0.001, min(WAIT_SLICE, self._deadline - _monotonic()))

    def wait_over(self, ready: bool) -> str:
        """After a wait: "" (try the I/O again), "stop" (the worker is stopping) or "timeout"."""
        if ready:
            return ""
        if self._conn.thread_loop.worker.stopping:
            self._deadline = None
            return "stop"
        if self._deadline is not None and _monotonic() >= self._deadline:
            self._deadline = None
            return "timeout"
        return ""

    def _wait(self, write: bool) -> bool:
        """Wait until the socket can go on: True; False when the worker is stopping; raises
        TimeoutError past the timeout. (wait_slice and wait_over, inline: once per message.)"""
        if self.closed:
            self._check_open()
        wait = self.wait_writable if write else self.wait_readable
        while True:
            deadline = self._deadline
            if deadline is None:
                timeout = self.timeout
                if not timeout:
                    self._deadline = _FOREVER
                    slice_ = WAIT_SLICE
                else:
                    self._deadline = _monotonic() + timeout
                    slice_ = timeout if timeout < WAIT_SLICE else WAIT_SLICE
            elif deadline == _FOREVER:
                slice_ = WAIT_SLICE
            else:
                slice_ = deadline - _monotonic()
                slice_ = WAIT_SLICE if slice_ > WAIT_SLICE else (0.001 if slice_ < 0.001 else slice_)
            if wait is not None:
                ready = wait(self.fd, slice_)
            else:
                p = select.poll()
                p.register(self.fd, select.POLLOUT if write else select.POLLIN)
                ready = bool(p.poll(slice_ * 1000))
            if ready:
                return True
            why = self.wait_over(False)
            if not why:
                continue
            if why == "stop":
                return False
            raise TimeoutError(f"no {'progress sending to' if write else 'data from'} {self.peer} "
                               f"in {self.timeout:g}s (--socket-timeout)")

