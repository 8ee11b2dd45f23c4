"""WebSockets (RFC 6455) on a request's connection, behind uWSGI's API (uwsgi.websocket_*).

uwsgid/net/wshandshake.py answers the Upgrade request with 101 and turns the request into a
`Session`: from then on the connection belongs to the app, which receives and sends whole
messages. The server's part of the protocol is done here, not by the app:

  - ping/pong: a ping every `ping_freq` seconds of silence while the app waits for a message,
    and the session ends when no pong came within `pong_tolerance` (uWSGI's options and
    defaults: 30 and 3 seconds); a client's ping is answered with a pong;
  - fragmented messages are reassembled; a message over `max_size` bytes closes the session
    with 1009 as soon as its size is known (nothing is buffered beyond the limit);
  - a frame that breaks the RFC closes the session with its code: an unmasked client frame,
    reserved bits, an unknown opcode, a fragmented or oversized control frame, a continuation
    out of place (1002), a text message that is not UTF-8 (1007);
  - a close frame is answered with a close frame (its code echoed), then the session ends.

A session that ended makes recv/send raise OSError (uWSGI raises IOError: "unable to receive
websocket message"), which is how an app's receive loop learns that the client left.

Frames themselves (the codec, the close codes, Violation) are uwsgid.net.wsframes'.

I/O is done on the connection's fd directly: the thread loop stopped reading it at the
handshake (Connection.take_over), so the bytes the client sends reach only this session.
recv() waits with poll (a worker without greenlets blocks there, as uWSGI's does without a
suspend engine); recv_nb() never waits, for async apps that wait with uwsgi.wait_fd_read: its
common case (a read that holds one whole message) is one C call (core/cpython/ws.c), as is a
send's frame when nothing is batched or pending (one writev).
recv() does not read again before waiting once a read drained the socket (see `unread`).
A session run in a green thread (--greenlet) is given `wait_readable`/`wait_writable`
(fd, timeout) -> ready by the plugin API: those suspend only its core, on the loop, whose
epoll keeps the fd registered from one wait to the next (uwsgid.net.loop keep). Its frames
are batched (uwsgid.net.wsbatch): written together at the end of the loop turn, up to 32 sessions and 64 KB
each, so that the client is woken once for many messages; a client that does not take a batch
whole gets the rest from the loop, and the session's next send or wait writes it as before.
"""

from __future__ import annotations

import errno
import os
import select
import struct
import time

from uwsgid.net.wsbatch import Batch
from uwsgid.net.wsframes import (  # noqa: F401  (the codec's names, re-exported)
    CLOSE_BAD_DATA,
    CLOSE_NORMAL,
    CLOSE_PROTOCOL,
    CLOSE_TOO_BIG,
    GUID,
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    RECV,
    FrameReader,
    Violation,
    accept_key,
    close_frame,
    frame,
    read_buffer,
)
from uwsgid.util.log import log

try:
    # a read cut into its first frame, and a frame written, one C call each (core/cpython/ws.c)
    from _uwsgi_native import ws_recv as _ws_recv
    from _uwsgi_native import ws_send as _ws_send
except ImportError:     # plain python without the build
    _ws_recv = _ws_send = None
try:
    # the read that answers -EAGAIN instead of raising (core/wsframe.c)
    from _uwsgi import lib as _lib
    _c_read = _lib.uwsgi_read_nb
except (ImportError, AttributeError):   # plain python without the build
    _c_read = None

# close codes a peer may send (RFC 6455 7.4.1; 1005, 1006 and 1015 are never on the wire)
_VALID_CLOSE = frozenset((1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014))

_monotonic = time.monotonic
PROBE = 8           # see recv: one wait in PROBE reads first when reads before waits find nothing
_EAGAIN = -errno.EAGAIN
_WHOLE = (0x10 | OP_TEXT, 0x10 | OP_BINARY)     # ws_recv's info & 0x1F of a one-frame message
_INTR = -errno.EINTR


class Session:
    """One WebSocket connection, in the app's hands between handshake() and the app's return."""

    def __init__(self, fd: int, leftover: bytes, where: str, ping_freq: float, pong_tolerance: float,
                 max_size: int, send_timeout: float, tls=None):
        self.fd = fd
        self.tls = tls        # a TlsConnection (wss): its read_plain/encrypt carry the bytes
        self.where = where                 # "GET /path (addr)" for log lines
        self.reader = FrameReader(max_size)
        self.reader.feed(leftover)
        self.ping_freq = ping_freq
        self.pong_tolerance = pong_tolerance
        self.send_timeout = send_timeout
        self.closed = False
        self.fragments: list[bytes] = []
        self.fragment_op = 0
        self.last_ping = 0.0               # when our unanswered ping left (0: none pending)
        self.last_activity = _monotonic()
        self.last_opcode = OP_TEXT         # of the last message recv() gave (text or binary)
        self.close_code = None             # the code the session closed with (None: connection lost)
        # (fd, timeout) -> ready, when a suspend engine waits for us (else poll blocks the thread)
        self.wait_readable = None
        self.wait_writable = None
        self.batch = None       # a Batch: frames are written at the end of the loop turn (green sessions)
        self.pending = None     # bytes sent and not written yet (see Batch; take_pending)
        self.loop_writer = None     # the loop whose writer finishes a batch's rest (_drain)
        # may the socket hold bytes not read yet? (False after a read that drained it; TLS:
        # always, the TLS object may hold decrypted bytes the socket's readiness does not show)
        self.unread = True
        self.skips = 0          # waits without a read before them since one found nothing (recv)
        self.drained_step = -1  # the app's step in which recv_nb's read drained the socket (recv_nb)

    # ---- receiving ---------------------------------------------------------------------
    def recv_nb(self, step: int = -1) -> bytes | None:
        """recv(block=False), with the common case (one whole text or binary frame per read,
        nothing pending) in one C call. `step`: the async core's step of the app (-1: not on
        one): a call in the step whose read gave a message and drained the socket answers None
        without reading (the client had nothing more a moment ago; an app that then waits on
        the fd is woken at once by the level-triggered loop if something came since), once."""
        reader = self.reader
        if (_ws_recv is None or self.closed or self.tls is not None or reader.ready is not None or reader.buf
                or self.fragments or self.pending is not None or self.last_ping):
            return self.recv(block=False)
        if step >= 0 and step == self.drained_step:
            self.drained_step = -1
            return None
        got = _ws_recv(self.fd, reader.max_size, 0, True)
        if got.__class__ is int:
            if got == _EAGAIN:
                self.unread = False
                if _monotonic() - self.last_activity < self.ping_freq:
                    return None
            return self.recv(block=False)       # the end of the stream, an error, a ping due
        info, payload, rest, self.unread = got
        if not rest and (info & 0x1F) in _WHOLE and ((info & 15) == OP_BINARY or payload.isascii()):
            self.last_activity = _monotonic()   # a whole text (ASCII) or binary message
            self.last_opcode = info & 15
            if step >= 0 and not self.unread:
                self.drained_step = step
            return payload
        if info >= 0:
            reader.ready = (bool(info & 16), info & 15, payload)
        if rest:
            reader.buf += rest
        return self.recv(block=False)           # the general path takes what was read

    def recv(self, block: bool = True) -> bytes | None:
        """The next whole message (text and binary alike, as bytes, as uWSGI gives them);
        None when `block` is false and no whole message has arrived yet."""
        if self.closed:
            raise OSError(errno.EPIPE, "unable to receive websocket message")
        reader = self.reader
        while True:
            if reader.ready is not None or len(reader.buf) >= 2:    # a frame header at least
                try:
                    msg = self._next_message()
                except Violation as v:
                    log(f"[uwsgi-websocket] {self.where}: {v}: closing with {v.code}")
                    self._end(v.code)
                    raise OSError(errno.EPROTO, "unable to receive websocket message") from None
                if msg is not None:
                    return msg
                if self.closed:
                    raise OSError(errno.ECONNRESET, "unable to receive websocket message")
            # Once a read drained the socket and a read before a wait found nothing (the client
            # waits for our answer), the next waits go straight on: the loop's epoll (level-
            # triggered) or poll says at once when more is there. Every PROBE-th wait reads
            # first anyway: when that finds bytes (a client ahead of us) reads come first again.
            if self.unread or not block or self.skips >= PROBE:
                if self._read():
                    continue
                if self.closed:
                    raise OSError(errno.ECONNRESET, "unable to receive websocket message")
                self.skips = 0
            else:
                self.skips += 1
            now = _monotonic()
            if self.last_ping or now - self.last_activity >= self.ping_freq:
                left = self._check_ping(now)
                if self.closed:
                    raise OSError(errno.ETIMEDOUT, "unable to receive websocket message")
            else:                           # (the common case, without a call)
                left = self.last_activity + self.ping_freq - now
            if self.pending is not None:
                self._push()
            if not block:
                return None
            self._wait_readable(left)
            self.unread = True

    def _next_message(self) -> bytes | None:
        reader = self.reader
        while True:
            got = reader.next_frame()
            if got is None:
                return None
            fin, opcode, payload = got
            self.last_activity = _monotonic()
            if opcode == OP_PING:
                self._send_raw(frame(OP_PONG, payload))
            elif opcode == OP_PONG:
                self.last_ping = 0.0
            elif opcode == OP_CLOSE:
                self._on_close(payload)
                return None
            elif opcode == OP_CONT:
                if not self.fragments:
                    raise Violation(CLOSE_PROTOCOL, "continuation frame without a message to continue")
                self.fragments.append(payload)
                reader.message_size += len(payload)
                if fin:
                    return self._message(self.fragment_op, b"".join(self.fragments))
            else:
                if self.fragments:
                    raise Violation(CLOSE_PROTOCOL, "new message in the middle of a fragmented one")
                if fin:
                    return self._message(opcode, payload)
                self.fragments = [payload]
                self.fragment_op = opcode
                reader.message_size = len(payload)

    def _message(self, opcode: int, data: bytes) -> bytes:
        if self.fragments:
            self.fragments = []
            self.reader.message_size = 0
        self.last_opcode = opcode
        if opcode == OP_TEXT and not data.isascii():     # ASCII is UTF-8: no decoding
            try:
                data.decode("utf-8")
            except UnicodeDecodeError:
                raise Violation(CLOSE_BAD_DATA, "text message that is not UTF-8") from None
        return data

    def _on_close(self, payload: bytes) -> None:
        code = CLOSE_NORMAL
        if len(payload) == 1:
            code = CLOSE_PROTOCOL
        elif len(payload) >= 2:
            got = struct.unpack_from("!H", payload)[0]
            if got not in _VALID_CLOSE and not 3000 <= got <= 4999:
                code = CLOSE_PROTOCOL
            else:
                try:
                    payload[2:].decode("utf-8")
                    code = got
                except UnicodeDecodeError:
                    code = CLOSE_BAD_DATA
        self._end(code)

    def _read(self) -> bool:
        """Read what the client sent; False when nothing was there (or the client left)."""
        if self.tls is not None:
            data = self.tls.read_plain()
            if data is None:
                return False
            if not data:
                self.closed = True
                return False
            self.reader.feed(data)
            return True
        if _ws_recv is not None:
            reader = self.reader
            got = _ws_recv(self.fd, reader.max_size, reader.message_size,
                           reader.ready is None and not reader.buf)
            if got.__class__ is int:
                if got == _EAGAIN:
                    self.unread = False
                elif got != _INTR:
                    self.closed = True      # the end of the stream (0), or an error
                return False
            info, payload, rest, self.unread = got
            if info >= 0:
                reader.ready = (bool(info & 16), info & 15, payload)
            if rest:
                reader.buf += rest
            return True
        if _c_read is not None:
            b = read_buffer()
            n = _c_read(self.fd, b, RECV)
            if n > 0:
                self.unread = n == RECV
                self.reader.take_read(b, n)
                return True
            if n == _EAGAIN:
                self.unread = False
            elif n != _INTR:
                self.closed = True      # the end of the stream, or an error
            return False
        try:
            data = os.read(self.fd, RECV)
        except (BlockingIOError, InterruptedError):
            self.unread = False
            return False
        except OSError:
            self.closed = True
            return False
        if not data:
            self.closed = True
            return False
        self.unread = len(data) == RECV
        self.reader.feed(data)
        return True

    def _wait_readable(self, left: float) -> None:
        """Until the client sent something, or `left` seconds (the next ping check) passed."""
        left = (left if left > 0.0 else 0.0) + 0.001
        wait = self.wait_readable
        if wait is not None:
            wait(self.fd, left)
            return
        p = select.poll()
        p.register(self.fd, select.POLLIN)
        p.poll(left * 1000)

    def _next_timer(self) -> float:
        if self.last_ping:
            return self.last_ping + self.pong_tolerance
        return self.last_activity + self.ping_freq

    def _check_ping(self, now: float) -> float:
        """Ping when the client has been silent for ping_freq, end the session when our ping got
        no pong in pong_tolerance (`now`: time.monotonic()); the seconds until the next check."""
        if self.last_ping:
            if now - self.last_ping > self.pong_tolerance:
                log(f"[uwsgi-websocket] {self.where}: no PONG received in {self.pong_tolerance:g} seconds")
                self._end(CLOSE_NORMAL, send=False)
            return self.last_ping + self.pong_tolerance - now
        if now - self.last_activity >= self.ping_freq:
            self.last_ping = now
            self._send_raw(frame(OP_PING))
            return self.pong_tolerance
        return self.last_activity + self.ping_freq - now

    # ---- sending -----------------------------------------------------------------------
    def send(self, data: bytes, binary: bool = False) -> None:
        if self.closed:
            raise OSError(errno.EPIPE, "unable to send websocket message")
        opcode = OP_BINARY if binary else OP_TEXT
        if _ws_send is not None and self.batch is None and self.pending is None and self.tls is None:
            left = _ws_send(self.fd, 0x80 | opcode, data)     # the frame in one writev
            if left == 0:
                return
            if left > 0:    # the client is slow: the rest, waiting for it as usual
                whole = frame(opcode, data)
                self._send_raw(whole[len(whole) - left:])
            else:
                self.closed = True
        else:
            self._send_raw(frame(opcode, data))
        if self.closed:
            raise OSError(errno.EPIPE, "unable to send websocket message")

    def _send_raw(self, data: bytes) -> None:
        """Write all of `data`, waiting (poll) for a slow client up to the socket timeout; in a
        batch, at the end of the loop turn."""
        if self.tls is not None:
            try:
                data = self.tls.encrypt(data)
            except OSError:
                self.closed = True
                return
        batch = self.batch
        if batch is not None:
            with batch.lock:    # the batch's watchdog may be writing our pending bytes (see wsbatch)
                pending = self.pending
                if pending is not None:
                    data = pending + data
                    self.pending = None
                small = len(data) <= Batch.BYTES
                if small:
                    self.pending = data
            if small:
                if pending is None:
                    batch.add(self)
                return
        else:
            pending = self.pending
            if pending is not None:
                data = pending + data
                self.pending = None
        if not self.closed:
            try:
                n = os.write(self.fd, data)     # most writes go out whole, at once
            except (BlockingIOError, InterruptedError):
                n = 0
            except OSError:
                self.closed = True
                return
            if n == len(data):
                return
            data = memoryview(data)[n:]
        view = memoryview(data)
        poller = None
        while view and not self.closed:
            try:
                n = os.write(self.fd, view)
                view = view[n:]
                continue
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                self.closed = True
                return
            wait = self.wait_writable
            if wait is not None:
                ready = wait(self.fd, self.send_timeout)
            else:
                if poller is None:
                    poller = select.poll()
                    poller.register(self.fd, select.POLLOUT)
                ready = poller.poll(self.send_timeout * 1000)
            if not ready:
                log(f"[uwsgi-websocket] {self.where}: the client stopped reading for {self.send_timeout:g} s")
                self.closed = True

    def _flush_pending(self) -> None:
        """The batch's write, on the loop: what the socket takes now. A client that does not
        take it all ends batching for this session: its app writes the rest, waiting as usual."""
        data = self.pending
        if data is None:
            return
        self.pending = None
        try:
            n = os.write(self.fd, data)
        except (BlockingIOError, InterruptedError):
            n = 0
        except OSError:
            self.closed = True
            return
        if n < len(data):
            # the client is slow: the loop writes the rest when it can, the session's next
            # send (or wait) writes it itself, waiting as usual, and batching stops for it
            self.pending = data[n:]
            batch = self.batch
            self.batch = None
            if batch is not None:
                self.loop_writer = batch.loop
                batch.loop.add_writer(self.fd, self._drain)

    def write_now(self) -> None:
        """The batch watchdog's write of what waits for a late turn's end (Batch._flush_late,
        under the batch's lock): what the socket takes now; the rest waits for the turn."""
        data = self.pending
        if data is None or self.closed:
            return
        try:
            n = os.write(self.fd, data)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            n = len(data)       # the client is gone: the app's next send or recv says so
            self.closed = True
        self.pending = data[n:] if n < len(data) else None

    def _drain(self) -> None:
        """The loop's writer while a batch's rest is pending (see _flush_pending)."""
        data = self.pending
        if data is not None:
            try:
                n = os.write(self.fd, data)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                n = len(data)
                self.closed = True
            self.pending = data[n:] if n < len(data) else None
            if self.pending is not None:
                return
        loop = self.loop_writer
        self.loop_writer = None
        if loop is not None and loop._writers.get(self.fd) == self._drain:
            loop.remove_writer(self.fd)

    def _push(self) -> None:
        """Before waiting for the client: what a batch could not write goes out now."""
        if self.pending is not None and self.batch is None:
            self._send_raw(b"")

    def take_pending(self) -> bytes | None:
        """At the end of the request: what is still to be written (the connection sends it
        before it closes)."""
        batch = self.batch
        if batch is not None:
            with batch.lock:
                data = self.pending
                self.pending = None
        else:
            data = self.pending
            self.pending = None
        self.batch = None
        self._drain()           # (only unregisters the loop's writer, if any)
        return data

    def _end(self, code: int, send: bool = True) -> None:
        if not self.closed and self.close_code is None:
            self.close_code = code
        if not self.closed and send:
            self._send_raw(close_frame(code))
        self.closed = True
