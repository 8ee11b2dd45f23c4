"""The WebSocket opening handshake (RFC 6455 4.2.2) as uWSGI's websocket_handshake does it: the
101 answer, and the request's connection handed to a Session (uwsgid/net/websocket.py)."""

from __future__ import annotations

import errno

from uwsgid.net.request import F_NOBODY
from uwsgid.net.websocket import Session
from uwsgid.net.wsframes import accept_key


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
