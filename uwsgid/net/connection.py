"""One accepted client connection inside a worker loop: reads, feeds the protocol parser,
queues complete requests (pipelining answered in order), writes with back-pressure, enforces
--socket-timeout and --http-header-timeout, and answers protocol errors (400/413/431) or closes
(uwsgi packets).

Deadlines (checked by the thread loop's reaper, once a second): a connection waiting for its
first request, or idle between requests, gets --socket-timeout; once a request's first byte is
in, its head (or a uwsgi packet's vars) must be complete within --http-header-timeout of that
byte, however the bytes trickle (slowloris); a body in progress gets --socket-timeout per read.

A connection owns a plain fd (non-blocking, accepted by a thread loop with accept4, uwsgid/server/thread_loop.py) and does its
I/O with os.read/os.write: no socket object to create and destroy per connection."""

from __future__ import annotations

import errno
import os
import select
import socket
import time
from collections import deque

from uwsgid.net.protocols import reject
from uwsgid.net.protocols.http import HttpParser
from uwsgid.net.protocols.uwsgi import UwsgiParser
from uwsgid.util.log import log

RECV = 65536
HIGH_WATER = 1 << 20       # unsent bytes over this make a writer wait (blocking) for the client
MAX_QUEUED = 32            # pipelined requests parsed ahead before we stop reading
LINGER = 2.0               # seconds to drain a client after an error reply before closing

_monotonic = time.monotonic
_read = os.read
_write = os.write
_close = os.close
_inet_ntop = socket.inet_ntop
try:
    from _uwsgi import lib as _lib
    _send_last = _lib.uwsgi_send_last
except (ImportError, AttributeError):   # plain python without the build: a plain write
    _send_last = None
_RETRY = (-errno.EAGAIN, -errno.EINTR)
AF_INET, AF_INET6 = int(socket.AF_INET), int(socket.AF_INET6)


def remote_address(addr, fd: int) -> tuple[bytes, bytes] | None:
    """(address, port) of the peer as bytes, or None for a unix socket. addr: a raw sockaddr
    (the worker's accept), a socket.accept() address, or None to ask the kernel."""
    if addr is None:
        s = socket.socket(fileno=fd)
        try:
            addr = s.getpeername()
        except OSError:
            return None
        finally:
            s.detach()
    if isinstance(addr, tuple):
        return addr[0].encode(), b"%d" % addr[1]
    if isinstance(addr, (bytes, bytearray)) and len(addr) >= 8:
        family = addr[0] | (addr[1] << 8)     # sa_family_t, host order (little-endian here)
        port = b"%d" % ((addr[2] << 8) | addr[3])
        if family == AF_INET:
            return _inet_ntop(AF_INET, addr[4:8]).encode(), port
        if family == AF_INET6 and len(addr) >= 24:
            return _inet_ntop(AF_INET6, addr[8:24]).encode(), port
    return None


def _shutdown_write(fd: int) -> None:
    s = socket.socket(fileno=fd)
    try:
        s.shutdown(socket.SHUT_WR)
    finally:
        s.detach()


def error_reply(status: int, reason: str, text: str = "") -> bytes:
    body = (text or f"{status} {reason}").encode() + b"\n"
    return (b"HTTP/1.1 %d %b\r\nContent-Type: text/plain\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%b"
            % (status, reason.encode(), len(body), body))


class Connection:
    __slots__ = ("fd", "addr", "thread_loop", "loop", "listener", "parser", "queue", "out", "busy", "closed",
                 "closing", "deadline", "is_http", "_peer", "served", "eof", "paused", "on_drain",
                 "lingering", "timeout", "pending", "lane", "__weakref__")

    def __init__(self, thread_loop, fd: int, addr, listener):
        """fd: an accepted non-blocking socket, owned (closed) by this connection from now on.
        addr: see remote_address (the peer's text is only made when a log line needs it)."""
        self.fd = fd
        self.addr = addr
        self._peer = None
        self.thread_loop = thread_loop
        self.loop = thread_loop.loop
        self.listener = listener
        self.queue = deque()
        self.out = None
        self.busy = False
        self.closed = False
        self.closing = False
        self.eof = False
        self.paused = False
        self.on_drain = None
        self.lingering = False
        self.served = 0
        self.pending = False    # in the thread loop's pending (its first request still arriving)
        self.lane = None        # the native lane's handle(conn, data) (uwsgid/server/native_lane.py)
        limits = thread_loop.limits
        self.timeout = limits.socket_timeout
        self.deadline = _monotonic() + self.timeout
        if listener.proto == "http":
            self.is_http = True
            remote = remote_address(addr, fd) or (b"", b"")
            self.parser = HttpParser(self, listener, limits, remote[0], remote[1])
        else:
            # the uwsgi protocol carries the client's address in its vars (REMOTE_ADDR)
            self.is_http = False
            self.parser = UwsgiParser(self, limits)
        thread_loop.conns[fd] = self

    @property
    def peer(self) -> str:
        """The client as text for log lines ("addr:port", or the socket's name on unix)."""
        p = self._peer
        if p is None:
            # after close only a saved address is left (the fd may be another connection's)
            remote = remote_address(self.addr, self.fd) if self.addr is not None or not self.closed else None
            if remote is None:
                p = self.listener.name
            else:
                p = f"{remote[0].decode()}:{remote[1].decode()}"
            self._peer = p
        return p

    def start(self, data: bytes = b"") -> None:
        """First read right away (the request usually arrives with the connection; `data`: what
        the native lane read already); register with epoll only if more is needed, so a
        one-shot connection costs no epoll_ctl."""
        if data:
            self._received(data)
        else:
            self.on_readable()
        if not (self.closed or self.eof or self.paused or self.lingering):
            self.loop.add_reader(self.fd, self.on_readable)

    def idle_after_request(self) -> bool:
        """An idle keep-alive connection, safe to close on a graceful stop. A connection that has
        not sent its first request yet is not: its request may be in flight (it gets until its
        socket timeout), or a graceful reload would fail requests that were already accepted."""
        return (self.served > 0 and not self.busy and not self.queue and not self.out
                and not self.parser.partial and not self.lingering)

    def worker_stopping(self) -> bool:
        return self.thread_loop.worker.stopping

    # ---- reading ------------------------------------------------------------------------
    def on_readable(self) -> None:
        try:
            data = _read(self.fd, RECV)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.close()
            return
        self._received(data)

    def _received(self, data: bytes) -> None:
        """What the client sent (b"": it closed its side); a TLS connection's plaintext."""
        if self.lingering:
            if not data:
                self.close()
            return
        if not data:
            self.eof = True
            self.loop.remove_reader(self.fd)
            if self.parser.stream is not None:  # a body being handed to the app (protocols.stream)
                self.parser.stream.client_gone()
            if not self.busy and not self.queue:
                if self.parser.partial and self.parser.error is None:
                    # rate-limited with the rejections: a slowloris attacker does this by the thousand
                    reject(0, self.peer, "the client closed the connection in the middle of a request")
                self.close()
            return
        parser = self.parser
        started = parser.partial
        lane = self.lane
        if (lane is not None and not started and not self.busy and not self.queue and not self.closing
                and parser.error is None and lane(self, data)):
            return      # the next request of a kept-alive connection, taken by the native lane
        parser.feed(data)
        if parser.req is not None:
            self.deadline = _monotonic() + self.timeout   # body upload progressing
        elif not started and parser.partial:
            # a head started: it has until then, however its bytes trickle in
            self.deadline = _monotonic() + self.thread_loop.head_timeout
        if self.busy:
            if parser.error is not None or len(self.queue) >= MAX_QUEUED:
                self.paused = True
                self.loop.remove_reader(self.fd)
            return
        if self.queue or parser.error is not None:
            self.pump()

    def take_over(self) -> bytes:
        """The running request's app takes the connection (a WebSocket): the loop stops reading
        it, and it closes after the request. Returns what the client sent after the request."""
        self.loop.remove_reader(self.fd)
        self.paused = True
        self.closing = True
        return self.parser.detach()

    # ---- request flow -----------------------------------------------------------------------
    def pump(self) -> None:
        """Start the next queued request, or answer a protocol error, or wait for more input."""
        if self.busy or self.closed or self.lingering:
            return
        if self.closing:   # the last response said Connection: close; nothing more is served
            if self.out:
                self.on_drain = self.close
            else:
                self.close()
            return
        if self.out:
            self.on_drain = self.pump
            return
        if self.queue:
            req = self.queue.popleft()
            self.busy = True
            self.thread_loop.dispatch(self, req)
            return
        parser = self.parser
        if parser.error is not None:
            self._reply_error(parser.error)
            return
        if self.eof or self.closing or (self.thread_loop.worker.stopping and self.idle_after_request()):
            self.close()
            return
        if self.paused and not self.eof:
            self.paused = False
            self.loop.add_reader(self.fd, self.on_readable)
        self.deadline = _monotonic() + self.timeout

    def request_done(self, req) -> None:
        self.busy = False
        self.served += 1
        if self.closed:
            return
        ws = req.websocket
        if ws is not None and ws.pending is not None:
            self.send(ws.take_pending())    # a WebSocket's last frames (uwsgid/net/websocket.py Batch)
        if not req.keepalive:
            self.closing = True
            if self.queue or self.parser.partial:
                self._close_unserved()
            elif self.out:
                self.on_drain = self.close
            else:
                self.close()
            return
        if self.queue or self.parser.error is not None or self.paused or self.eof:
            # deferred: a long pipeline must not recurse through dispatch
            self.loop.ready.append(self.pump)
            return
        if self.thread_loop.worker.stopping and not self.parser.partial:
            self.close()
            return
        self.deadline = _monotonic() + self.timeout

    def _reply_error(self, err) -> None:
        if err.log:
            log(f"{self.peer}: {err.log}")
        if err.status and not self.closed:
            self.send(error_reply(err.status, err.reason, err.body))
            self.closing = True
            self.lingering = True
            if self.out:
                self.on_drain = self._linger
            else:
                self._linger()
        else:
            self.close()

    def _close_unserved(self) -> None:
        """The response said Connection: close with more requests already received: RFC 9112
        (9.6) forbids serving them; the client learns it from the close and retries them. Close
        lingering, since closing with them unread would reset the connection and could drop the
        tail of the response still in the kernel's buffer."""
        # a streamed body still arriving (protocols.stream) is the served request's, not another
        n = len(self.queue) + (1 if self.parser.partial and self.parser.stream is None else 0)
        if n:
            log(f"{self.peer}: {n} pipelined request{'s' if n != 1 else ''} not served: the response said "
                f"Connection: close")
        self.queue.clear()
        self.lingering = True
        if self.out:
            self.on_drain = self._linger
        else:
            self._linger()

    def _linger(self) -> None:
        """Half-close after an error reply and drain what the client still sends, so that the
        kernel does not reset the connection (and lose the reply) on unread data."""
        if self.closed:
            return
        try:
            _shutdown_write(self.fd)
        except OSError:
            self.close()
            return
        self.deadline = _monotonic() + LINGER
        if not self.eof:
            self.loop.add_reader(self.fd, self.on_readable)
        else:
            self.close()

    # ---- writing --------------------------------------------------------------------------
    def send(self, data) -> None:
        if self.closed:
            return
        if self.out:
            self.out += data
        else:
            try:
                n = _write(self.fd, data)
            except (BlockingIOError, InterruptedError):
                n = 0
            except OSError as e:
                self._gone(e)
                return
            if n == len(data):
                return
            self.out = bytearray(memoryview(data)[n:])
            self.loop.add_writer(self.fd, self._on_writable)
            self.deadline = _monotonic() + self.timeout
        if len(self.out) > HIGH_WATER:
            self._drain_blocking()

    def send_last(self, data) -> None:
        """The response's last bytes, the connection being closed right after (the caller's
        promise): they leave with the FIN in one segment (see uwsgi_send_last in uwsgi.h)."""
        if self.out or self.closed or _send_last is None or type(data) is not bytes:
            self.send(data)
            return
        n = _send_last(self.fd, data, len(data))
        if n == len(data):
            return
        if n < 0:
            if n not in _RETRY:
                self._gone(OSError(-n, os.strerror(-n)))
                return
            n = 0
        self.send(data[n:])   # a plain write pushes what MSG_MORE held back

    def _on_writable(self) -> None:
        out = self.out
        if not out:
            self.loop.remove_writer(self.fd)
            return
        try:
            n = _write(self.fd, out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            self._gone(e)
            return
        del out[:n]
        self.deadline = _monotonic() + self.timeout
        if not out:
            self.out = None
            self.loop.remove_writer(self.fd)
            cb = self.on_drain
            if cb is not None:
                self.on_drain = None
                cb()

    def _drain_blocking(self) -> None:
        """Wait for the client to take our unsent bytes (a writer that cannot suspend)."""
        poller = select.poll()
        poller.register(self.fd, select.POLLOUT)
        ms = int(self.timeout * 1000)
        while self.out and not self.closed:
            if not poller.poll(ms):
                log(f"socket timeout: {self.peer} stopped reading the response, dropped")
                self.close()
                return
            self._on_writable()

    def sendfile(self, fd: int, offset: int, count: int) -> int:
        """Zero-copy file body; returns bytes sent (short only if the client went away)."""
        if self.out:
            self._drain_blocking()
        sent = 0
        poller = None
        while sent < count and not self.closed:
            try:
                n = os.sendfile(self.fd, fd, offset + sent, count - sent)
            except (BlockingIOError, InterruptedError):
                n = None
            except OSError as e:
                self._gone(e)
                break
            if n == 0:
                break   # file shorter than announced
            if n is None:
                if poller is None:
                    poller = select.poll()
                    poller.register(self.fd, select.POLLOUT)
                if not poller.poll(int(self.timeout * 1000)):
                    log(f"socket timeout: {self.peer} stopped reading the response, dropped")
                    self.close()
                    break
                continue
            sent += n
        return sent

    # ---- end ------------------------------------------------------------------------------
    def _gone(self, e: OSError) -> None:
        if (e.errno not in (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN, errno.ESHUTDOWN)
                and not getattr(self.thread_loop.worker, "ignore_write_errors", False)):
            log(f"write error to {self.peer}: {e.strerror or e}")
        self.close()

    def timed_out(self, now: float) -> None:
        """Called by the loop's reaper when the deadline passed."""
        if self.lingering:
            self.close()
            return
        if self.out:
            log(f"socket timeout: {self.peer} stopped reading the response, dropped")
        elif self.busy:
            stream = self.parser.stream
            if stream is None or stream.held or self.queue:
                return   # the app is running; harakiri is the master's business
            # the running app waits for a body the client stopped sending (protocols.stream)
            log(f"socket timeout: {self.peer} stopped sending the request body for {self.timeout:g}s, dropped")
        elif self.parser.partial and self.parser.req is None:
            self._head_timed_out()
            return
        elif self.parser.partial:
            log(f"socket timeout: {self.peer} sent an incomplete request in {self.timeout:g}s, dropped")
        elif self.served == 0:
            log(f"socket timeout: {self.peer} sent nothing in {self.timeout:g}s, dropped")
        self.close()

    def _head_timed_out(self) -> None:
        """--http-header-timeout passed with the head still incomplete: 408 over HTTP (then the
        usual lingering close), a plain close on a uwsgi socket."""
        timeout = self.thread_loop.head_timeout
        if self.is_http:
            self._reply_error(reject(408, self.peer, f"request head not complete in {timeout:g}s"))
        else:
            self._reply_error(reject(0, self.peer, f"uwsgi packet not complete in {timeout:g}s"))

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.pending:
            self.thread_loop.forget_pending(self)
        fd = self.fd
        loop = self.loop
        if fd in loop._masks or fd in loop._kept:  # registered (a one-shot connection never is)
            loop.forget(fd)
        tl = self.thread_loop
        tl.conns.pop(fd, None)
        if tl.spread is not None:
            tl.spread.publish()
        try:
            _close(fd)
        except OSError:
            pass
        if self.parser.stream is not None:      # a body being handed to the app (protocols.stream)
            self.parser.stream.client_gone()
        # break the connection <-> parser cycle (a parser is fed only while open): refcounting
        # frees both now instead of the cyclic GC later
        self.parser.conn = None
        self.out = None
        cb = self.on_drain
        if cb is not None:
            # a core suspended until this connection drained must wake up and see it closed
            self.on_drain = None
            if self.busy:
                self.loop.ready.append(cb)
