"""The uwsgi protocol (--socket): a 4-byte header (modifier1, little-endian u16 datasize,
modifier2), then datasize bytes of vars (u16 key length, key, u16 value length, value ...),
then CONTENT_LENGTH bytes of body. One request per connection, answered with a raw HTTP
response, as uWSGI does behind nginx's uwsgi_pass. A bad packet closes the connection (the
protocol has no error reply), an HTTP request or a body over --limit-post gets an HTTP error;
either way with one log line, `STATUS PEER REASON` (`-` for no reply, see protocols.reject).
"""

from __future__ import annotations

import os
import struct

from uwsgid.net.packet import PacketError, parse_vars
from uwsgid.net.protocols import BodyBuffer, ProtocolError, reject
from uwsgid.net.protocols.stream import BodyStream
from uwsgid.net.request import Request

try:    # the vars dict built in one C call (core/cpython/native.h); an int: a bad packet
    from _uwsgi_native import parse_vars as _native_vars
except ImportError:
    _native_vars = None
if os.environ.get("UWSGI_PACKET_PURE"):    # uwsgid.net.packet's switch to the Python codec
    _native_vars = None

_unpack_header = struct.Struct("<BHB").unpack_from
MODIFIER_PING = 100
_UPPER = frozenset(range(ord("A"), ord("Z") + 1))
WRONG_PROTOCOL = ("This is a uwsgi-protocol socket (--socket), for nginx's uwsgi_pass or another uwsgi "
                  "client; HTTP clients need an --http-socket.")
# Modifiers whose packet body is an array of u16le-prefixed strings, not key/value vars:
# 110 = remote signal, 173 = RPC. The handler reads req.packet.
RAW_MODIFIERS = (110, 173)


class UwsgiParser:
    __slots__ = ("conn", "limits", "buf", "req", "body", "need", "error", "done", "stream")

    def __init__(self, conn, limits):
        self.conn = conn
        self.limits = limits
        self.buf = b""
        self.req = None
        self.body = None
        self.need = 0
        self.error = None
        self.done = False
        self.stream = None      # the BodyStream of a request dispatched before its body (ASGI)

    @property
    def partial(self) -> bool:
        return bool(self.buf) or self.req is not None

    def detach(self) -> bytes:
        """The app takes the connection (a WebSocket handshake behind nginx): the bytes after
        the request's packet; this parser reads nothing more."""
        buf, self.buf = self.buf, b""
        self.done = True
        return bytes(buf)

    def feed(self, data: bytes) -> None:
        if self.error is not None or self.done:
            return
        if self.req is not None:
            self._body(data)
            return
        buf = self.buf + data if self.buf else data
        if len(buf) < 4:
            self.buf = buf
            return
        if _looks_like_http(buf):
            line = buf.split(b"\r\n", 1)[0][:80].decode("latin-1")
            self.error = reject(400, self.conn.peer, f"HTTP request on a uwsgi socket ({line!r}): use "
                                f"--http-socket for HTTP clients, or nginx's uwsgi_pass", WRONG_PROTOCOL)
            return
        modifier1, size, modifier2 = _unpack_header(buf)
        limits = self.limits
        if size > limits.buffer_size:
            self.error = reject(0, self.conn.peer, f"invalid request block size: {size} (max "
                                f"{limits.buffer_size})...skip: uwsgi packet vars over --buffer-size")
            return
        if modifier1 == MODIFIER_PING and size == 0:
            self.conn.send(b"\x64\x00\x00\x00")   # uwsgi ping: an empty pong
            self.done = True
            self.error = ProtocolError(0, "", "")
            return
        end = 4 + size
        if len(buf) < end:
            self.buf = buf
            return
        self.buf = b""
        raw = block = None
        try:
            if modifier1 in RAW_MODIFIERS:
                raw = buf[4:end]
                v = {}
            else:
                block = buf[4:end]
                v = _native_vars(block, limits.max_vars) if _native_vars is not None else None
                if v is None or v.__class__ is int:
                    v = parse_vars(block, limits.max_vars)   # a bad packet: raises, in its words
        except PacketError as e:
            self.error = reject(0, self.conn.peer, f"invalid uwsgi packet: {e}")
            return
        if b"SCRIPT_NAME" not in v:
            v[b"SCRIPT_NAME"] = b""   # nginx's stock uwsgi_params sends none
        req = Request(self.conn, v, modifier1, modifier2, v.get(b"REQUEST_METHOD", b"GET"),
                      v.get(b"SERVER_PROTOCOL", b"HTTP/1.1") != b"HTTP/1.0", False)
        req.pktsize = size
        req.packet = raw
        req.vars_block = block
        cl_text = v.get(b"CONTENT_LENGTH")
        if not cl_text:
            # no body (most requests): complete now; nothing may follow one request here
            self.done = True
            self.conn.queue.append(req)
            return
        try:
            cl = int(cl_text)
            if cl < 0:
                raise ValueError
        except ValueError:
            self.error = reject(0, self.conn.peer, f"invalid CONTENT_LENGTH {cl_text[:32]!r} in uwsgi packet")
            return
        lp = limits.limit_post
        if lp and cl > lp:
            self.error = reject(413, self.conn.peer, f"request body of {cl} bytes over --limit-post {lp}")
            return
        req.post_cl = cl
        self.req = req
        self.need = cl
        stream_body = limits.stream_body
        if stream_body is not None and stream_body(req):
            # dispatched now, its body handed over as it arrives (protocols.stream)
            self.body = self.stream = req.stream = BodyStream(self.conn)
            self.conn.queue.append(req)
        else:
            self.body = BodyBuffer(limits.post_buffering)
        self._body(buf[end:])

    def _body(self, data: bytes) -> None:
        need = self.need
        if data:
            if len(data) > need:
                data = data[:need]   # nothing may follow one request on a uwsgi connection
            self.body.add(data)
            need = self.need = need - len(data)
        if need == 0:
            req = self.req
            stream = self.stream
            if stream is not None:      # already queued at its packet
                self.stream = self.req = self.body = None
                self.done = True
                stream.end()
                return
            req.set_body(self.body.result())
            self.req = None
            self.body = None
            self.done = True
            self.conn.queue.append(req)


def _looks_like_http(head: bytes) -> bool:
    """An HTTP request line ("GET /", "POST ", "OPTIONS"): its first four bytes, read as a uwsgi
    header, are upper-case letters (then a space), a modifier1 of 65-90 that no uwsgi client uses."""
    return head[0] in _UPPER and head[1] in _UPPER and head[2] in _UPPER and (head[3] in _UPPER or head[3] == 32)
