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
                  sendall / flush / close / settimeout, `preread`, `peer`, fileno()
                  (uwsgid/net/raw_socket.py).

How the handler's socket waits and writes: uwsgid/net/raw_socket.py.
"""

from __future__ import annotations

import errno
import socket

from uwsgid.config.options import Option, declare
from uwsgid.net.raw_socket import RawSocket
from uwsgid.net.request import Request
from uwsgid.util.log import log

declare(
    Option("raw-socket", kind="str", multi=True, metavar="ADDR",
           help="bind a socket speaking the RAW protocol: each connection goes, as it is, to the raw handler "
                "of the plugin --raw-modifier1 names (--python-raw, --lua-raw)"),
    Option("raw-modifier1", kind="int", default=0, metavar="N",
           help="the modifier1 of connections on --raw-socket: the plugin that serves them (0 Python, 6 Lua)"),
    Option("raw-modifier2", kind="int", default=0, metavar="N",
           help="the modifier2 of connections on --raw-socket"),
)

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
        tl = self.thread_loop
        tl.conns.pop(fd, None)
        if tl.spread is not None:
            tl.spread.publish()
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
        if final:
            sock = self.sock
            if sock.pending is not None and not sock.closed:
                sock.flush_nb()   # the handler's end flushed it: only a last resort here
            if self.exception and self.status < 400:
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
