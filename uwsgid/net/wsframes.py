"""RFC 6455 frames, the byte level of uwsgid/net/websocket.py: server frames out (never masked),
client frames in (FrameReader), and the rules a client frame must keep (Violation, with the close
code the session answers it with).

FrameReader takes bytes two ways: feed() (a bytearray the frames are cut from: TLS, the handshake's
leftover, a read that held more than one frame) and take_read(), for a read into the thread's C
buffer that most of the time holds exactly one whole frame (a client waiting for its echo): that
frame is checked and unmasked in place by core/wsframe.c and its payload copied out once, with no
bytearray in between. Without the build (plain python) it is all done here, in Python.
"""

from __future__ import annotations

import struct
import threading

try:
    from _uwsgi import ffi as _ffi
    from _uwsgi import lib as _lib
    _c_frame = _lib.uwsgi_ws_frame
    _unpack = _ffi.unpack
    _MORE = _lib.UWSGI_WS_MORE
except (ImportError, AttributeError):   # plain python without the build
    _ffi = _c_frame = None
    _MORE = -1

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
_DATA_OPS = (OP_CONT, OP_TEXT, OP_BINARY)
_CONTROL_OPS = (OP_CLOSE, OP_PING, OP_PONG)

CLOSE_NORMAL, CLOSE_PROTOCOL, CLOSE_BAD_DATA, CLOSE_TOO_BIG = 1000, 1002, 1007, 1009

RECV = 65536        # bytes per read (the C buffer's size)
_head2 = struct.Struct("!BB").pack
_head4 = struct.Struct("!BBH").pack
_head10 = struct.Struct("!BBQ").pack
_buffers = threading.local()    # one read buffer per thread (its bytes are copied out at once)


def read_buffer():
    """This thread's C read buffer (RECV bytes); None without the build."""
    b = getattr(_buffers, "b", None)
    if b is None and _ffi is not None:
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


# what uwsgi_ws_frame's negative answers mean (uwsgi.h enum uwsgi_ws_frame_error); None: the
# message is made in next_frame (it names the opcode, or the limit)
_C_VIOLATIONS = {} if _c_frame is None else {
    _lib.UWSGI_WS_RESERVED: (CLOSE_PROTOCOL, "reserved bits set (no extension was negotiated)"),
    _lib.UWSGI_WS_OPCODE: (CLOSE_PROTOCOL, None),
    _lib.UWSGI_WS_UNMASKED: (CLOSE_PROTOCOL, "unmasked client frame"),
    _lib.UWSGI_WS_CONTROL_SIZE: (CLOSE_PROTOCOL, "control frame over 125 bytes"),
    _lib.UWSGI_WS_CONTROL_FRAGMENTED: (CLOSE_PROTOCOL, "fragmented control frame"),
    _lib.UWSGI_WS_TOO_BIG: (CLOSE_TOO_BIG, None),
}


class FrameReader:
    """Client frames from a byte stream: feed() bytes (or take_read()), next_frame() ->
    (fin, opcode, payload) or None when more bytes are needed. Raises Violation on a frame the
    RFC forbids."""

    __slots__ = ("buf", "max_size", "message_size", "ready")

    def __init__(self, max_size: int):
        self.buf = bytearray()
        self.max_size = max_size
        self.message_size = 0       # of the fragmented message in progress (for max_size)
        self.ready = None           # a whole frame take_read() cut out, before what is in buf

    def feed(self, data: bytes) -> None:
        self.buf += data

    def take_read(self, b, n: int) -> None:
        """n bytes just read into the C buffer b (read_buffer()). When nothing is pending, a
        whole frame at their start is cut out there; the rest goes to buf as feed() would."""
        if self.ready is None and not self.buf:
            r = _c_frame(b, n, self.max_size, self.message_size)
            if r >= 0:
                plen = r >> 9
                end = ((r >> 5) & 15) + plen
                self.ready = (bool(r & 16), r & 15, _unpack(b + (end - plen), plen))
                if end < n:
                    self.buf += _ffi.buffer(b, n)[end:]
                return
        self.buf += _ffi.buffer(b, n)

    def pending(self) -> bool:
        """Could next_frame() give a frame without more bytes? (False: read, or wait, first)"""
        return self.ready is not None or len(self.buf) >= 2

    def next_frame(self):
        got = self.ready
        if got is not None:
            self.ready = None
            return got
        buf = self.buf
        if len(buf) < 2:
            return None
        if _c_frame is None:
            return self._next_frame_py(buf)
        p = _ffi.from_buffer(buf)       # checked and unmasked in place
        r = _c_frame(p, len(buf), self.max_size, self.message_size)
        _ffi.release(p)                 # (an exported buffer cannot be resized)
        if r < 0:
            if r == _MORE:
                return None
            code, why = _C_VIOLATIONS[r]
            if why is None:
                why = (f"message over {self.max_size} bytes (--websocket-max-size)" if code == CLOSE_TOO_BIG
                       else f"unknown opcode {buf[0] & 0x0F:#x}")
            raise Violation(code, why)
        plen = r >> 9
        end = ((r >> 5) & 15) + plen
        payload = bytes(memoryview(buf)[end - plen:end])
        del buf[:end]
        return bool(r & 16), r & 15, payload

    def _next_frame_py(self, buf: bytearray):
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
        payload = _unmask(bytes(buf[pos + 4:end]), bytes(buf[pos:pos + 4]))
        del buf[:end]
        return fin, opcode, payload
