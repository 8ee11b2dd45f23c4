"""Raw TCP connections (uWSGI's --raw-socket): each accepted connection is one "request" whose
handler, in Python (--python-raw) or Lua (--lua-raw), owns the connection's bytes from start to
end, as nginx's stream `python_content` or OpenResty's stream Lua do.

uWSGI's options: `--raw-socket ADDR` binds a socket speaking the RAW protocol (no parsing: the
connection is handed over as it is; no TCP_DEFER_ACCEPT, so that a protocol where the server
speaks first works), `--raw-modifier1 N` / `--raw-modifier2 N` pick the plugin that serves it
(0, the default, is Python; 6 is Lua).

The pieces, each in the shape the rest of the server already knows:
  RawConnection   the connection as the thread loop sees it (uwsgid/server/thread_loop.py): it
                  dispatches itself to a core as soon as it is accepted and is closed when its
                  request ends;
  RawRequest      the request as the core, the scoreboard and the request log see it (a
                  uwsgid.net.request.Request): one per connection, logged once when the
                  connection is over, "RAW" as its method and protocol, the bytes sent as the
                  response size and the bytes received as %(cl); status 200, 500 when the
                  handler raised, 408 when it gave up on a silent peer (--socket-timeout);
  RawSocket       what the handler gets (req.sock): recv / recvline / recv_exactly / send /
                  sendall / close / settimeout, `preread`, `peer`, fileno().

Waiting. A recv (or send) that cannot go on at once waits for the socket, in slices of at most
a second (a graceful stop ends the wait as an end of stream, so that reloads are not held by
idle connections), up to the socket's timeout (--socket-timeout by default; settimeout(None)
waits forever), then raises TimeoutError. How it waits is the plugin's choice: `wait_readable`
/ `wait_writable` (fd, timeout) -> ready, set by a plugin whose handler runs in a green thread
(the core suspends on the loop: uwsgid.plugins.api.wait_readable), else poll in place, which
holds the thread (a sync worker, a thread of --threads). The Lua plugin drives the same steps
from a coroutine (wait_step / wait_slice / wait_over).
"""

from __future__ import annotations

import errno
import os
import select
import socket
import threading
import time

from uwsgid.config.options import Option, declare
from uwsgid.net.request import Request
from uwsgid.util.log import log

try:
    # a read that answers -EAGAIN instead of raising (core/wsframe.c): half the reads before a
    # wait find nothing, and an exception costs more than the syscall
    from _uwsgi import ffi as _ffi
    from _uwsgi import lib as _lib
    _c_read = _lib.uwsgi_read_nb
except (ImportError, AttributeError):   # plain python without the build
    _c_read = None

declare(
    Option("raw-socket", kind="str", multi=True, metavar="ADDR",
           help="bind a socket speaking the RAW protocol: each connection goes, as it is, to the raw handler "
                "of the plugin --raw-modifier1 names (--python-raw, --lua-raw)"),
    Option("raw-modifier1", kind="int", default=0, metavar="N",
           help="the modifier1 of connections on --raw-socket: the plugin that serves them (0 Python, 6 Lua)"),
    Option("raw-modifier2", kind="int", default=0, metavar="N",
           help="the modifier2 of connections on --raw-socket"),
)

RECV = 65536
PREREAD = 4096
_EAGAIN = -errno.EAGAIN
_EINTR = -errno.EINTR
_buffers = threading.local()    # one C read buffer per thread: the bytes are copied out at once
WAIT_SLICE = 1.0        # seconds a wait lasts before it looks at a graceful stop again
_monotonic = time.monotonic
_FOREVER = float("inf")
_GONE = (errno.ECONNRESET, errno.EPIPE, errno.ENOTCONN, errno.ESHUTDOWN, errno.ETIMEDOUT)


class RawConnection:
    """One accepted connection on a --raw-socket, as the thread loop and the core see it."""

    __slots__ = ("fd", "addr", "sock", "thread_loop", "loop", "listener", "busy", "closed", "closing",
                 "out", "on_drain", "deadline", "served", "queue", "pending", "paused", "eof", "_peer",
                 "__weakref__")

    def __init__(self, thread_loop, fd: int, addr, listener):
        self.fd = fd
        self.addr = addr
        self.thread_loop = thread_loop
        self.loop = thread_loop.loop
        self.listener = listener
        self.sock = socket.socket(fileno=fd)     # owns fd from now on (closed by close())
        self.sock.setblocking(False)
        self.busy = False
        self.closed = False
        self.closing = False
        self.out = None           # the handler writes synchronously: nothing is ever queued
        self.on_drain = None
        self.deadline = _FOREVER  # its handler's waits time out, not the loop's reaper
        self.served = 0
        self.queue = ()
        self.pending = False
        self.paused = False
        self.eof = False
        self._peer = None
        thread_loop.conns[fd] = self
        self.loop.keep(fd)      # its handler's waits leave it registered with epoll (close forgets it)

    @property
    def peer(self) -> str:
        p = self._peer
        if p is None:
            p = self._peer = _peer_text(self.addr, self.sock, self.listener)
        return p

    def start(self) -> None:
        """Accepted: the handler runs now (or when a core is free), whatever has arrived yet."""
        self.busy = True
        self.thread_loop.dispatch(self, RawRequest(self))

    def idle_after_request(self) -> bool:
        return False            # never idle: its one request is the whole connection

    def timed_out(self, now: float) -> None:
        pass                    # see deadline

    def request_done(self, req) -> None:
        self.busy = False
        self.served = 1
        self.closing = True
        self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        fd = self.fd
        loop = self.loop
        if fd in loop._masks or fd in loop._kept:
            loop.forget(fd)
        self.thread_loop.conns.pop(fd, None)
        try:
            self.sock.close()
        except OSError:
            pass


def _peer_text(addr, sock, listener) -> str:
    if isinstance(addr, (bytes, bytearray)) and addr:
        from uwsgid.net.connection import remote_address
        remote = remote_address(addr, -1)
        if remote is not None:
            return f"{remote[0].decode()}:{remote[1].decode()}"
    try:
        name = sock.getpeername()
    except OSError:
        return listener.name
    if isinstance(name, tuple):
        return f"{name[0]}:{name[1]}"
    return listener.name


class RawRequest(Request):
    """A raw connection as one request for the core, the scoreboard and the log."""

    __slots__ = ("sock",)

    def __init__(self, conn: RawConnection):
        listener = conn.listener
        addr, _, port = conn.peer.rpartition(":") if conn.sock.family != socket.AF_UNIX else ("", "", "")
        vars = {
            b"REQUEST_METHOD": b"RAW",
            b"REQUEST_URI": listener.address.encode(),
            b"SERVER_PROTOCOL": b"RAW",
            b"SERVER_NAME": str(listener.host).encode(),
            b"SERVER_PORT": b"%d" % listener.port,
            b"REMOTE_ADDR": addr.strip("[]").encode(),
            b"REMOTE_PORT": port.encode(),
        }
        super().__init__(conn, vars, listener.modifier1, listener.modifier2, method=b"RAW", http11=False)
        self.status = 200
        self.status_line = b"200 OK"
        self.headers_sent = True  # no HTTP head, ever: an error can only end the connection
        self.sock = RawSocket(self, conn)

    def write(self, data) -> None:
        self.sock.sendall(data)

    def flush(self, final: bool = False) -> None:
        # what the handler sends is written at once; at the end (core.finish/_fail) only the
        # outcome is recorded: the connection is closed by request_done
        if final and self.exception and self.status < 400:
            self.status = 500

    def error_response(self, code: int, reason: bytes, body: bytes) -> None:
        self.status = code
        self.status_line = b"%d %b" % (code, reason)

    def ended_by(self, exc: BaseException) -> bool:
        """The handler raised `exc`: True (and one log line) when it is the peer's doing (it
        left, or stayed silent past the timeout), which is no handler bug worth a traceback."""
        if isinstance(exc, TimeoutError):
            self.status = 408
            log(f"raw connection from {self.conn.peer}: {exc}")
            return True
        if isinstance(exc, (ConnectionError, BrokenPipeError)) or (
                isinstance(exc, OSError) and exc.errno in _GONE):
            self.status = 499 if self.status < 400 else self.status
            return True
        return False


class RawSocket:
    """The connection as a raw handler sees it (Python gets it as is; Lua through its glue)."""

    __slots__ = ("_req", "_conn", "_sock", "fd", "preread", "peer", "remote_addr", "remote_port", "timeout",
                 "closed", "eof", "_buf", "wait_readable", "wait_writable", "_deadline")

    def __init__(self, req: RawRequest, conn: RawConnection):
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
        try:
            # a peek: the bytes stay in the kernel, recv (or os.read on the fd) returns them
            self.preread = conn.sock.recv(PREREAD, socket.MSG_PEEK)
        except OSError:
            self.preread = b""

    def __repr__(self) -> str:
        return f"<RawSocket fd={self.fd} peer={self.peer}{' closed' if self.closed else ''}>"

    # ---- what uWSGI's --python-raw handlers get: a file descriptor ---------------------------
    def fileno(self) -> int:
        return self.fd

    def __index__(self) -> int:
        return self.fd

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
            got = _c_read(self.fd, b, k if 0 < k <= RECV else (RECV if k > RECV else 1))
            if got < 0:
                if got == _EAGAIN or got == _EINTR:
                    return None
                raise OSError(-got, os.strerror(-got))
            data = _ffi.buffer(b, got)[:]
        else:
            try:
                data = self._sock.recv(max(1, int(n)))
            except (BlockingIOError, InterruptedError):
                return None
        if data:
            self._req.post_cl += len(data)
            self._deadline = None
        else:
            self.eof = True
        return data

    def recv(self, n: int = RECV) -> bytes:
        """Up to n bytes (at least one), waiting for them; b"" at the end of the stream."""
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
        while True:
            buf = self._buf
            i = buf.find(b"\n", 0, limit)
            if i >= 0:
                self._buf = buf[i + 1:]
                return buf[:i + 1]
            if len(buf) >= limit:
                raise ValueError(f"raw socket: line longer than {limit} bytes from {self.peer}")
            data = self._more()
            if not data:
                self._buf = b""
                return buf

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
    def send_nb(self, data) -> int:
        """As much of data as the socket takes now: the count (0 when it is full; never waits)."""
        self._check_open()
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

    def close(self) -> None:
        """End the connection now (FIN to the peer); the handler may still return later."""
        if self.closed:
            return
        self.closed = True
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
        TimeoutError past the timeout."""
        self._check_open()
        while True:
            slice_ = self.wait_slice()
            wait = self.wait_writable if write else self.wait_readable
            if wait is not None:
                ready = wait(self.fd, slice_)
            else:
                p = select.poll()
                p.register(self.fd, select.POLLOUT if write else select.POLLIN)
                ready = bool(p.poll(slice_ * 1000))
            why = self.wait_over(ready)
            if not why:
                if ready:
                    return True
                continue
            if why == "stop":
                return False
            raise TimeoutError(f"no {'progress sending to' if write else 'data from'} {self.peer} "
                               f"in {self.timeout:g}s (--socket-timeout)")

