"""Splicing two connections (the --http router's WebSocket sessions, --http-websockets): bytes
are copied both ways until either side closes, in the client's thread, without a thread per
direction (an SSL object must not be read and written from two threads at once).

Each direction has a bounded buffer (CAP): a side is not read while what it sent is still
waiting for the other side to take it, so a fast sender meets the slow reader's back-pressure
through TCP instead of growing the router's memory. A session idle both ways for `idle`
seconds (--http-timeout) is closed, as are sessions still open when the router stops.

The client side may be an ssl.SSLSocket (--https): non-blocking reads then raise
SSLWantRead/WriteError instead of returning nothing, decrypted bytes may wait in the SSL object
(pending()) with nothing left on the socket, and a write that did not complete must be retried
with the same bytes.
"""

from __future__ import annotations

import selectors
import socket
import ssl
import time

CAP = 256 * 1024          # bytes buffered per direction before the sender is no longer read
READ_SIZE = 65536


def is_websocket_upgrade(v: dict) -> bool:
    """uWSGI's --http-websockets test on a request's vars: Upgrade: websocket, Connection: upgrade,
    a version and a key (Connection read as a token list: browsers send "keep-alive, Upgrade")."""
    return (v.get(b"HTTP_UPGRADE", b"").strip().lower() == b"websocket"
            and b"upgrade" in [t.strip() for t in v.get(b"HTTP_CONNECTION", b"").lower().split(b",")]
            and b"HTTP_SEC_WEBSOCKET_VERSION" in v and bool(v.get(b"HTTP_SEC_WEBSOCKET_KEY")))


class _End:
    """One side: its socket, and what the other side sent that it has not taken yet."""

    __slots__ = ("sock", "out", "eof", "attempt", "want_write", "shut")

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.out = bytearray()      # bytes to write to this side
        self.eof = False            # this side will send nothing more
        self.attempt = 0            # the length of an SSL write to retry (0: none pending)
        self.want_write = False     # an SSL read needs the socket writable (renegotiation)
        self.shut = False           # the other side's close was passed on

    def read(self, peer: "_End") -> bool:
        """Move what this side sent into `peer.out`; False when nothing could be read now."""
        moved = False
        while len(peer.out) < CAP:
            try:
                data = self.sock.recv(READ_SIZE)
            except ssl.SSLWantReadError:
                return moved
            except ssl.SSLWantWriteError:
                self.want_write = True
                return moved
            except (BlockingIOError, InterruptedError):
                return moved
            except ssl.SSLZeroReturnError:
                data = b""
            self.want_write = False
            if not data:
                self.eof = True
                return True
            peer.out += data
            moved = True
            if not isinstance(self.sock, ssl.SSLSocket) or not self.sock.pending():
                if len(data) < READ_SIZE:
                    return moved
        return moved

    def write(self) -> None:
        """Write what is waiting for this side, as much as the socket takes now."""
        while self.out:
            n = self.attempt or min(len(self.out), READ_SIZE)
            try:
                sent = self.sock.send(memoryview(self.out)[:n])
            except (ssl.SSLWantWriteError, ssl.SSLWantReadError, BlockingIOError, InterruptedError):
                self.attempt = n if isinstance(self.sock, ssl.SSLSocket) else 0
                return
            self.attempt = 0
            del self.out[:sent]

    def events(self, peer: "_End") -> int:
        ev = 0
        if not self.eof and len(peer.out) < CAP:
            ev |= selectors.EVENT_READ
        if self.out or self.want_write:
            ev |= selectors.EVENT_WRITE
        return ev


def splice(client: socket.socket, backend: socket.socket, to_backend: bytes, to_client: bytes,
           idle: float, stopping) -> None:
    """Relay until both directions ended (or one side failed), idle `idle` s, or stopping()."""
    a, b = _End(client), _End(backend)
    b.out += to_backend
    a.out += to_client
    for s in (client, backend):
        s.setblocking(False)
    sel = selectors.DefaultSelector()
    registered: dict = {}
    last = time.monotonic()
    try:
        while True:
            for end in (a, b):
                end.write()
            # a side that closed and whose bytes were all delivered: pass the close on
            for src, dst in ((a, b), (b, a)):
                if src.eof and not dst.out and not dst.shut:
                    dst.shut = True
                    _shutdown_write(dst.sock)
            if (a.eof and not b.out) and (b.eof and not a.out):
                return
            if (a.eof and not b.out) or (b.eof and not a.out):
                # a WebSocket ends with its close handshake: one side gone is the session's end
                # once what it sent has been delivered (the other direction gets a short grace)
                idle = min(idle, 2.0)
            progressed = False
            for src, dst in ((a, b), (b, a)):
                if isinstance(src.sock, ssl.SSLSocket) and src.sock.pending() and len(dst.out) < CAP:
                    progressed |= src.read(dst)      # decrypted bytes no event will announce
            for end, peer in ((a, b), (b, a)):
                ev = end.events(peer)
                old = registered.get(end)
                if ev != old:
                    if old:
                        sel.modify(end.sock, ev, end) if ev else sel.unregister(end.sock)
                    elif ev:
                        sel.register(end.sock, ev, end)
                    registered[end] = ev
            if progressed:
                last = time.monotonic()
                continue
            if not any(registered.values()):
                return
            remaining = last + idle - time.monotonic()
            if remaining <= 0 or stopping():
                return
            ready = sel.select(min(remaining, 1.0))
            for key, mask in ready:
                end = key.data
                peer = b if end is a else a
                if mask & selectors.EVENT_READ or end.want_write:
                    end.read(peer)
                if mask & selectors.EVENT_WRITE:
                    end.write()
            if ready:
                last = time.monotonic()
    except OSError:
        return      # a reset or a failed TLS record: the session is over
    finally:
        sel.close()


def _shutdown_write(sock: socket.socket) -> None:
    try:
        if isinstance(sock, ssl.SSLSocket):
            return      # the TLS close_notify comes with the close
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass
