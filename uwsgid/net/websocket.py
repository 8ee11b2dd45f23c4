"""WebSockets (RFC 6455) on a request's connection, behind uWSGI's API (uwsgi.websocket_*).

`handshake(req, ...)` answers the Upgrade request with 101 and turns the request into a
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

I/O is done on the connection's fd directly: the thread loop stopped reading it at the
handshake (Connection.take_over), so the bytes the client sends reach only this session.
recv() waits with poll (a worker without greenlets blocks there, as uWSGI's does without a
suspend engine); recv_nb() never waits, for async apps that wait with uwsgi.wait_fd_read.
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
import threading
import time

from uwsgid.net.request import F_NOBODY
from uwsgid.net.wsbatch import Batch
from uwsgid.util.log import log

try:
    # the read that answers -EAGAIN instead of raising, and unmasking in C (core/wsframe.c)
    from _uwsgi import ffi as _ffi
    from _uwsgi import lib as _lib
    _c_read = _lib.uwsgi_read_nb
    _c_unmask = _lib.uwsgi_ws_unmask
except (ImportError, AttributeError):   # plain python without the build
    _c_read = _c_unmask = None

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
_DATA_OPS = (OP_CONT, OP_TEXT, OP_BINARY)
_CONTROL_OPS = (OP_CLOSE, OP_PING, OP_PONG)

CLOSE_NORMAL, CLOSE_PROTOCOL, CLOSE_BAD_DATA, CLOSE_TOO_BIG = 1000, 1002, 1007, 1009
# close codes a peer may send (RFC 6455 7.4.1; 1005, 1006 and 1015 are never on the wire)
_VALID_CLOSE = frozenset((1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014))

RECV = 65536
_monotonic = time.monotonic
_EAGAIN = -errno.EAGAIN
_INTR = -errno.EINTR
_head2 = struct.Struct("!BB").pack
_head4 = struct.Struct("!BBH").pack
_head10 = struct.Struct("!BBQ").pack
_buffers = threading.local()    # one read buffer per thread (C reads; the bytes are copied out at once)


def _read_buffer():
    b = getattr(_buffers, "b", None)
    if b is None:
        b = _buffers.b = _ffi.new("char[]", RECV)
    return b


class Violation(Exception):
    """The client broke the protocol: the session closes with `code`."""

    def __init__(self, code: int, why: str):
        super().__init__(why)
        self.code = code


def accept_key(key: bytes) -> bytes:
    import base64
    import hashlib  # here: OpenSSL's hashlib costs ~3 ms of every start-up otherwise
    return base64.b64encode(hashlib.sha1(key.strip() + GUID).digest())


def frame(opcode: int, payload: bytes = b"", fin: bool = True) -> bytes:
    """A server frame (never masked)."""
    n = len(payload)
    b0 = (0x80 if fin else 0) | opcode
    if n < 126:
        return _head2(b0, n) + payload
    if n <= 0xFFFF:
        return _head4(b0, 126, n) + payload
    return _head10(b0, 127, n) + payload


def close_frame(code: int, reason: str = "") -> bytes:
    return frame(OP_CLOSE, struct.pack("!H", code) + reason.encode()[:120])


def _unmask(payload: bytes, mask: bytes) -> bytes:
    # XOR by whole 8-byte words through int arithmetic: ~50x a per-byte loop
    n = len(payload)
    if not n:
        return payload
    m = int.from_bytes((mask * ((n + 3) // 4))[:n], "little")
    return (int.from_bytes(payload, "little") ^ m).to_bytes(n, "little")


class FrameReader:
    """Client frames from a byte stream: feed() bytes, next_frame() -> (fin, opcode, payload) or
    None when more bytes are needed. Raises Violation on a frame the RFC forbids."""

    def __init__(self, max_size: int):
        self.buf = bytearray()
        self.max_size = max_size
        self.message_size = 0       # of the fragmented message in progress (for max_size)

    def feed(self, data: bytes) -> None:
        self.buf += data

    def next_frame(self):
        buf = self.buf
        if len(buf) < 2:
            return None
        b0, b1 = buf[0], buf[1]
        if b0 & 0x70:
            raise Violation(CLOSE_PROTOCOL, "reserved bits set (no extension was negotiated)")
        fin, opcode = bool(b0 & 0x80), b0 & 0x0F
        if opcode not in _DATA_OPS and opcode not in _CONTROL_OPS:
            raise Violation(CLOSE_PROTOCOL, f"unknown opcode {opcode:#x}")
        if not b1 & 0x80:
            raise Violation(CLOSE_PROTOCOL, "unmasked client frame")
        n = b1 & 0x7F
        pos = 2
        if n == 126:
            if len(buf) < 4:
                return None
            n = struct.unpack_from("!H", buf, 2)[0]
            pos = 4
        elif n == 127:
            if len(buf) < 10:
                return None
            n = struct.unpack_from("!Q", buf, 2)[0]
            pos = 10
        if opcode in _CONTROL_OPS:
            if n > 125:
                raise Violation(CLOSE_PROTOCOL, "control frame over 125 bytes")
            if not fin:
                raise Violation(CLOSE_PROTOCOL, "fragmented control frame")
        elif (self.message_size if opcode == OP_CONT else 0) + n > self.max_size:
            raise Violation(CLOSE_TOO_BIG, f"message over {self.max_size} bytes (--websocket-max-size)")
        end = pos + 4 + n
        if len(buf) < end:
            return None
        if _c_unmask is not None:
            if n:
                p = _ffi.from_buffer(buf)       # in place: the mask stays before the payload
                _c_unmask(p + (pos + 4), n, p + pos)
                _ffi.release(p)                 # (an exported buffer cannot be resized)
            payload = bytes(buf[pos + 4:end])
        else:
            payload = _unmask(bytes(buf[pos + 4:end]), bytes(buf[pos:pos + 4]))
        del buf[:end]
        return fin, opcode, payload


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

    # ---- receiving ---------------------------------------------------------------------
    def recv(self, block: bool = True) -> bytes | None:
        """The next whole message (text and binary alike, as bytes, as uWSGI gives them);
        None when `block` is false and no whole message has arrived yet."""
        if self.closed:
            raise OSError(errno.EPIPE, "unable to receive websocket message")
        buf = self.reader.buf
        while True:
            if len(buf) >= 2:       # a frame header at least (the buffer is emptied by frames)
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
            if self._read():
                continue
            if self.closed:
                raise OSError(errno.ECONNRESET, "unable to receive websocket message")
            left = self._check_ping()
            if self.closed:
                raise OSError(errno.ETIMEDOUT, "unable to receive websocket message")
            if self.pending is not None:
                self._push()
            if not block:
                return None
            self._wait_readable(left)

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
        if _c_read is not None:
            b = _read_buffer()
            n = _c_read(self.fd, b, RECV)
            if n > 0:
                self.reader.buf += _ffi.buffer(b, n)
                return True
            if n != _EAGAIN and n != _INTR:
                self.closed = True      # the end of the stream, or an error
            return False
        try:
            data = os.read(self.fd, RECV)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            self.closed = True
            return False
        if not data:
            self.closed = True
            return False
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

    def _check_ping(self) -> float:
        """Ping when the client has been silent for ping_freq, end the session when our ping got
        no pong in pong_tolerance; the seconds until the next check are due."""
        now = _monotonic()
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
        self._send_raw(frame(OP_BINARY if binary else OP_TEXT, data))
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
        pending = self.pending
        if pending is not None:
            data = pending + data
            self.pending = None
        batch = self.batch
        if batch is not None and len(data) <= Batch.BYTES:
            self.pending = data
            if pending is None:
                batch.add(self)
            return
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


def handshake(req, key=None, origin=None, proto=None, ping_freq: float = 30, pong_tolerance: float = 3,
              max_size: int = 1024 * 1024, send_timeout: float = 4, headers=None) -> Session:
    """Answer req (an Upgrade: websocket request) with 101 and hand its connection to a Session
    (stored in req.websocket). key/origin/proto default to the request's headers, as uWSGI's
    (Sec-WebSocket-Origin: the client's Origin or *; Sec-WebSocket-Protocol: the one given, or the
    first the client offered). `headers` (an ASGI websocket.accept's): extra (name, value) header
    lines, and `proto` is then exactly the app's choice (none when not given).
    Raises OSError as uWSGI does when it cannot be done."""
    if req.websocket is not None:
        return req.websocket
    v = req.vars
    key = _b(key) or v.get(b"HTTP_SEC_WEBSOCKET_KEY", b"")
    if not key or req.headers_sent or req.conn is None or req.conn.closed:
        raise OSError(errno.EINVAL, "unable to complete websocket handshake")
    origin = _b(origin) or v.get(b"HTTP_ORIGIN") or b"*"
    if headers is None:
        proto = _b(proto) or v.get(b"HTTP_SEC_WEBSOCKET_PROTOCOL", b"").split(b",")[0].strip()
    else:
        proto = _b(proto)
    lines = [b"HTTP/1.1 101 Web Socket Protocol Handshake", b"Upgrade: WebSocket", b"Connection: Upgrade",
             b"Sec-WebSocket-Origin: " + origin]
    if proto:
        lines.append(b"Sec-WebSocket-Protocol: " + proto)
    lines.append(b"Sec-WebSocket-Accept: " + accept_key(key))
    extra = [_b(n) + b": " + _b(val) for n, val in headers or ()]
    lines.extend(extra)
    head = b"\r\n".join(lines) + b"\r\n\r\n"
    if any(b"\r" in x or b"\n" in x for x in (key, origin, proto, *extra)):
        raise OSError(errno.EINVAL, "unable to complete websocket handshake (CR/LF in a header)")
    conn = req.conn
    if conn.out:
        conn._drain_blocking()      # what the connection still owes goes first (TLS: in order)
    conn.loop.keep(conn.fd)         # registered with epoll between the session's waits
    leftover = conn.take_over()
    where = (f"{req.method.decode('latin-1')} {req.vars.get(b'REQUEST_URI', b'/').decode('latin-1')} "
             f"({conn.peer})")
    tls = conn if hasattr(conn, "encrypt") else None
    session = Session(conn.fd, leftover, where, ping_freq, pong_tolerance, max_size, send_timeout, tls)
    session._send_raw(head)
    if session.closed:
        raise OSError(errno.EPIPE, "unable to complete websocket handshake")
    # the response is the 101 head: nothing more goes out for this request, and the
    # connection closes after it (the request log says 101)
    req.status = 101
    req.status_line = b"101 Web Socket Protocol Handshake"
    req.headers = []
    req.headers_sent = True
    req.headers_size = len(head)
    req._framing = F_NOBODY
    req.keepalive = False
    req.websocket = session
    return session


def _b(value) -> bytes:
    if value is None:
        return b""
    return value.encode("latin-1") if isinstance(value, str) else bytes(value)
