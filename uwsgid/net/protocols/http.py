"""HTTP/1.x request parsing for --http-socket, with httptools (llhttp in strict mode).

llhttp already refuses the smuggling vectors (Content-Length with Transfer-Encoding, duplicate
Content-Length, obs-fold, NUL and other bad bytes, bad chunk sizes); this module adds the
server's limits (--buffer-size -> 431, --max-vars -> 431, --limit-post -> 413), builds the CGI
vars like uWSGI's http-socket, and answers `Expect: 100-continue`.
"""

from __future__ import annotations

import socket

import httptools

from uwsgid.net.protocols import BodyBuffer, ProtocolError, unquote_to_bytes
from uwsgid.net.request import Request

_HOSTNAME = socket.gethostname().encode()
_Upgrade = httptools.HttpParserUpgrade
_ParserError = httptools.HttpParserError

# Header name -> CGI var name, cached: the same few names come on every request.
_KEYS: dict[bytes, bytes] = {}
_SPECIAL = {b"CONTENT_TYPE", b"CONTENT_LENGTH"}


def header_key(name: bytes) -> bytes:
    key = _KEYS.get(name)
    if key is None:
        up = name.upper().replace(b"-", b"_")
        key = up if up in _SPECIAL else b"HTTP_" + up
        if len(_KEYS) < 4096:
            _KEYS[name] = key
    return key


class _Reject(Exception):
    pass


class HttpParser:
    """Parses one connection's byte stream; appends Requests to conn.queue (pipelining kept in order)."""

    __slots__ = ("conn", "limits", "base", "p", "error", "url", "headers", "hsize", "in_head",
                 "head_accum", "began", "body", "chunked", "expect", "req", "modifier1", "modifier2",
                 "upgraded", "_reject")

    def __init__(self, conn, listener, limits, remote_addr: bytes, remote_port: bytes):
        self.conn = conn
        self.limits = limits
        self.modifier1 = listener.modifier1
        self.modifier2 = listener.modifier2
        # as uWSGI's http-socket: SERVER_NAME is the host name, SERVER_PORT the socket's port
        # (80 on a unix socket); the client's Host header is in HTTP_HOST
        server_name = _HOSTNAME
        server_port = b"%d" % listener.port if listener.port else b"80"
        self.base = {b"SCRIPT_NAME": b"", b"SERVER_NAME": server_name, b"SERVER_PORT": server_port,
                     b"REMOTE_ADDR": remote_addr, b"REMOTE_PORT": remote_port}
        self.p = httptools.HttpRequestParser(self)
        self.error = None
        self.in_head = False
        self.head_accum = 0
        self.began = False
        self.req = None
        self.body = None
        self.upgraded = False
        self._reject = None

    @property
    def partial(self) -> bool:
        """True while a request has started arriving but is not complete."""
        return self.in_head or self.req is not None

    def feed(self, data: bytes) -> None:
        if self.error is not None or self.upgraded:
            return
        self.began = False
        try:
            self.p.feed_data(data)
        except _Upgrade:
            # Upgrade/CONNECT: served as a plain request, then the connection closes.
            self.upgraded = True
            if self.req is not None:
                self.on_message_complete()
            for req in self.conn.queue:
                req.keepalive = False
            return
        except _ParserError as e:
            rej = self._reject
            if rej is not None:
                self.error = rej
            else:
                self.error = ProtocolError(400, "Bad Request", f"invalid HTTP request: {e}")
            return
        if self.in_head:
            # Guard against an endless header block before llhttp reports any complete line.
            self.head_accum = self.hsize if self.began else self.head_accum + len(data)
            if self.head_accum > self.limits.buffer_size:
                self.error = ProtocolError(431, "Request Header Fields Too Large",
                                           f"request headers over --buffer-size {self.limits.buffer_size}")

    def _fail(self, status: int, reason: str, log: str):
        self._reject = ProtocolError(status, reason, log)
        raise _Reject(log)

    # ---- httptools callbacks --------------------------------------------------------------
    def on_message_begin(self):
        self.url = b""
        self.headers = []
        self.hsize = 0
        self.in_head = True
        self.began = True
        self.chunked = False
        self.expect = False

    def on_url(self, url: bytes):
        self.url += url
        self.hsize += len(url)

    def on_header(self, name: bytes, value: bytes):
        self.headers.append((name, value))
        self.hsize += len(name) + len(value) + 4
        if self.hsize > self.limits.buffer_size:
            self._fail(431, "Request Header Fields Too Large",
                       f"request headers over --buffer-size {self.limits.buffer_size}")

    def on_headers_complete(self):
        self.in_head = False
        p = self.p
        limits = self.limits
        method = p.get_method()
        version = p.get_http_version()
        http11 = version == "1.1"
        if not http11 and version != "1.0":
            if version == "0.9":   # llhttp reads a request line without a version as HTTP/0.9
                self._fail(400, "Bad Request", "invalid HTTP request: no HTTP version in the request line")
            self._fail(505, "HTTP Version Not Supported", f"unsupported HTTP version {version}")
        url = self.url
        v = self.base.copy()
        v[b"REQUEST_METHOD"] = method
        v[b"REQUEST_URI"] = url
        q = url.find(b"?")
        if q >= 0:
            path = url[:q]
            v[b"QUERY_STRING"] = url[q + 1:]
        else:
            path = url
            v[b"QUERY_STRING"] = b""
        if path[:1] != b"/" and (path[:7].lower() == b"http://" or path[:8].lower() == b"https://"):
            # absolute-form request target: keep only the path
            slash = path.find(b"/", path.find(b"//") + 2)
            path = path[slash:] if slash >= 0 else b"/"
        if b"%" in path:
            path = unquote_to_bytes(path)
        v[b"PATH_INFO"] = path
        v[b"SERVER_PROTOCOL"] = b"HTTP/1.1" if http11 else b"HTTP/" + version.encode()
        cl = -1
        for name, value in self.headers:
            key = header_key(name)
            if key in v and key[:5] == b"HTTP_":
                if key == b"HTTP_HOST":   # RFC 9112 3.2: more than one Host is a bad request
                    self._fail(400, "Bad Request", "invalid HTTP request: duplicate Host header")
                v[key] = v[key] + b", " + value
                continue
            v[key] = value
            if key == b"CONTENT_LENGTH":
                cl = int(value)   # llhttp validated it
            elif key == b"HTTP_TRANSFER_ENCODING":
                self.chunked = True
            elif key == b"HTTP_EXPECT" and value.lower() == b"100-continue":
                self.expect = True
        if len(v) > limits.max_vars:
            self._fail(431, "Request Header Fields Too Large", f"too many request vars (--max-vars {limits.max_vars})")
        keepalive = limits.keepalive and p.should_keep_alive()
        req = Request(self.conn, v, self.modifier1, self.modifier2, method, http11, keepalive)
        if cl > 0:
            req.post_cl = cl
            if limits.limit_post and cl > limits.limit_post:
                self._fail(413, "Request Entity Too Large",
                           f"request body of {cl} bytes over --limit-post {limits.limit_post}")
        if self.chunked:
            req.input_terminated = True
        self.req = req
        self.body = None
        if self.expect and (cl > 0 or self.chunked) and http11:
            self.conn.send(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, data: bytes):
        body = self.body
        if body is None:
            body = self.body = BodyBuffer(self.limits.post_buffering)
        body.add(data)
        lp = self.limits.limit_post
        if lp and body.size > lp:
            self._fail(413, "Request Entity Too Large", f"request body over --limit-post {lp}")

    def on_message_complete(self):
        req = self.req
        if req is None:
            return
        self.req = None
        body = self.body
        if body is not None:
            self.body = None
            req.set_body(body.result())
            req.post_cl = body.size
        self.conn.queue.append(req)
