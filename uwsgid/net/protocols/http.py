"""HTTP/1.x request parsing for --http-socket and the --http router, with httptools (llhttp in
strict mode), and the CGI vars built from a request (as uWSGI's http-socket builds them).

Two paths, one result:

- **The fast path** (every ordinary request): the bytes go to llhttp as they are read. llhttp
  refuses the smuggling vectors (Content-Length with Transfer-Encoding, duplicate Content-Length,
  obs-fold, bare LF, NUL and other bad bytes); `on_headers_complete` adds what RFC 9110/9112 ask
  of a server and llhttp leaves to it (Host, Transfer-Encoding codings, request-target forms,
  repeated fields) and the server's limits (--buffer-size -> 414/431, --max-vars -> 431,
  --limit-post -> 413), and answers `Expect: 100-continue`.
- **The exact path** (`_Exact`), for what llhttp refuses although the RFCs allow it: a method
  that is a token llhttp does not know (`-BLARGH`), a raw non-ASCII byte in the request target
  (passed through as latin-1, like nginx and gunicorn), HTTP/1.x with x > 1 (read as 1.1, RFC
  9112 2.3), empty elements in the Transfer-Encoding list (RFC 9110 5.6.1), and every chunked
  body (whitespace around `;` and `=` in chunk extensions, RFC 9112 7.1.1). It frames the
  stream itself, line by line, validates what llhttp would not see, and feeds llhttp only
  normalised heads (llhttp still checks every header line). A connection takes it when llhttp
  refuses one of those requests (the request is re-read from its first byte: `prime` keeps the
  bytes of a request in progress across reads, `_skip` finds where in this read it began) or
  when a chunked request's head is done, and leaves it at the next request boundary that ends
  a read.

Every rejected request logs one line, `STATUS PEER REASON` (protocols.reject, docs/ERRORS.md).
"""

from __future__ import annotations

import re
import socket
from importlib.machinery import PathFinder

from uwsgid.net.protocols import BodyBuffer, ProtocolError, reject, unquote_to_bytes
from uwsgid.net.protocols.stream import BodyStream
from uwsgid.net.request import Request

try:    # the CGI vars of a common head in one C call (core/cpython/native.h); absent: _vars
    from _uwsgi_native import http_vars as _native_http_vars
except ImportError:
    _native_http_vars = None

_HOSTNAME = socket.gethostname().encode()
UPGRADE_TAIL_MAX = 1 << 20   # bytes kept after an Upgrade request until the app takes them
# httptools' classes, set by load()
_Upgrade = _ParserError = _RequestParser = None
_NO_CONNECT = "CONNECT (a tunnel) is not supported by an application server"

# Header name -> CGI var name, cached: the same few names come on every request. A name with
# "_" is dropped: in CGI "X_Forwarded_For" and "X-Forwarded-For" would both be
# HTTP_X_FORWARDED_FOR, and one could pass for the other (nginx and gunicorn drop them too). It
# maps to _DROP, a var every request already has, so that the repeated-field path (which drops
# it) is the only one that sees it: no cost for the other names.
_KEYS: dict[bytes, bytes] = {}
_DROP = b"SCRIPT_NAME"
# The vars on_headers_complete looks at.
_WATCH = frozenset((b"HTTP_HOST", b"CONTENT_LENGTH", b"HTTP_TRANSFER_ENCODING", b"HTTP_EXPECT"))
_SPECIAL = {b"CONTENT_TYPE", b"CONTENT_LENGTH"}

# Host header values already found valid (RFC 9112 3.2 / RFC 3986 3.2.2: uri-host [":" port]).
_HOSTS: set = set()
_HOST_RE = rb"(?:\[[0-9A-Za-z:.\-_~!$&'()*+,;=]+\]|[0-9A-Za-z\-._~!$&'()*+,;=%]*)(?::[0-9]*)?"

_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
# RFC 9112 7.1 / 7.1.1: chunk-size [ chunk-ext ] CRLF, chunk-ext = *( BWS ";" BWS chunk-ext-name
# [ BWS "=" BWS chunk-ext-val ] ), chunk-ext-val = token / quoted-string.
_QUOTED = rb'"(?:[\t !\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*"'
_CHUNK_LINE_RE = (rb"([0-9A-Fa-f]+)(?:[ \t]*;[ \t]*" + _TOKEN + rb"(?:[ \t]*=[ \t]*(?:" + _TOKEN
                  + rb"|" + _QUOTED + rb"))?)*\r\n")
# The compiled expressions of the Python parser, set by load() with httptools (its only users)
_HOST = _IS_TOKEN = _VERSION = _CHUNK_LINE = _SIZE_THEN_WS = _TRAILER_LINE = _HIGH_BYTE = None

# llhttp's reasons (str(HttpParserError)) in words a log reader can act on.
_REASONS = {
    "Invalid method encountered": "method is not a token",
    "Expected space after method": "method not followed by a single space",
    "Invalid method for HTTP/x.x request": "method is not a token",
    "Unexpected start char in url": "request target is not /path, an http(s) URL or *",
    "Unexpected char in url schema": "request target is not /path, an http(s) URL or *",
    "Unexpected char in url server": "invalid authority in the request target",
    "Invalid characters in url": "invalid request target (not /path, an http(s) URL or *, or a character "
                                 "not allowed in it)",
    "Invalid char in url path": "invalid character in the request target",
    "Invalid char in url query": "invalid character in the request target",
    "Invalid char in url fragment start": "invalid character in the request target",
    "Expected HTTP/, RTSP/ or ICE/": "invalid HTTP version in the request line",
    "Expected SOURCE method for ICE/x.x request": "invalid HTTP version in the request line",
    "Invalid HTTP version": "invalid HTTP version in the request line",
    "Invalid major version": "invalid HTTP version in the request line",
    "Invalid minor version": "invalid HTTP version in the request line",
    "Expected dot": "invalid HTTP version in the request line",
    "Expected CRLF after version": "request line does not end with CRLF after the version",
    "Unexpected space after start line": "whitespace at the start of a header line (obs-fold)",
    "Unexpected whitespace after header value": "whitespace at the start of a header line (obs-fold)",
    "Invalid header token": "invalid header field name (a character outside token, or whitespace "
                            "before the colon)",
    "Invalid header field char": "invalid header field name (a character outside token, or whitespace "
                                 "before the colon)",
    "Invalid header value char": "control character in a header value",
    "Missing expected CR after header value": "header line does not end with CRLF",
    "Missing expected LF after header value": "header line does not end with CRLF",
    "Expected LF after headers": "header section does not end with CRLF",
    "Expected LF after CR": "bare CR in the request",
    "Expected CRLF": "line does not end with CRLF",
    "Content-Length can't be present with Transfer-Encoding": "both Content-Length and Transfer-Encoding",
    "Transfer-Encoding can't be present with Content-Length": "both Content-Length and Transfer-Encoding",
    "Duplicate Content-Length": "more than one Content-Length",
    "Invalid character in Content-Length": "Content-Length is not a decimal number",
    "Empty Content-Length": "Content-Length is not a decimal number",
    "Content-Length overflow": "Content-Length is too large",
    "Invalid `Transfer-Encoding` header value": "invalid Transfer-Encoding (chunked more than once, or "
                                                "not last)",
    "Empty Transfer-Encoding": "invalid Transfer-Encoding (empty)",
    "Request has invalid `Transfer-Encoding`": "Transfer-Encoding does not end with chunked",
    "Data after `Connection: close`": "data after a request with Connection: close",
    "Expected HTTP/2 Connection Preface": "HTTP/2 connection preface on an HTTP/1.1 socket",
    "Pause on PRI/Upgrade": "HTTP/2 connection preface on an HTTP/1.1 socket",
}
_TE_LAST = "Transfer-Encoding does not end with chunked"
_TE_TWICE = "invalid Transfer-Encoding (chunked more than once)"
# The refusals the exact path may overturn: the request is re-read there.
_RECOVER = frozenset(("Invalid method encountered", "Invalid method for HTTP/x.x request",
                      "Expected space after method",
                      "Invalid HTTP version", "Invalid char in url path", "Invalid char in url query",
                      "Invalid char in url fragment start", "Invalid `Transfer-Encoding` header value"))


def _reason(e: Exception, data: bytes = b"") -> str:
    text = str(e)
    if text.startswith("Invalid header") and (b"\r\n " in data or b"\r\n\t" in data):
        return _REASONS["Unexpected whitespace after header value"]   # llhttp's word for some obs-folds
    return _REASONS.get(text) or f"malformed request ({text[:80]})"


def header_key(name: bytes) -> bytes:
    key = _KEYS.get(name)
    if key is None:
        if b"_" in name:
            key = _DROP
        else:
            up = name.upper().replace(b"-", b"_")
            key = up if up in _SPECIAL else b"HTTP_" + up
        if len(_KEYS) < 4096:
            _KEYS[name] = key
    return key


def load() -> None:
    """Import httptools and compile the parser's expressions. A single process does it with the
    first request head the native lane leaves to Python: the lane parses the requests of a Lua
    app (and the plain ones of a Python app) in C, and httptools imports typing, the largest
    module of the standard library, several ms of a start-up that may never need it. An
    instance that forks workers does it at start-up (uwsgid.main._bind), so that they share it."""
    global _Upgrade, _ParserError, _RequestParser
    global _HOST, _IS_TOKEN, _VERSION, _CHUNK_LINE, _SIZE_THEN_WS, _TRAILER_LINE, _HIGH_BYTE
    if _RequestParser is None:
        import httptools
        _HOST, _IS_TOKEN, _VERSION = re.compile(_HOST_RE), re.compile(_TOKEN), re.compile(rb"HTTP/([0-9])\.([0-9])")
        _CHUNK_LINE, _SIZE_THEN_WS = re.compile(_CHUNK_LINE_RE), re.compile(rb"[0-9A-Fa-f]+[ \t]+\r\n")
        _TRAILER_LINE = re.compile(_TOKEN + rb":[\t \x21-\x7e\x80-\xff]*\r\n")
        _HIGH_BYTE = re.compile(rb"[\x80-\xff]")
        _Upgrade, _ParserError = httptools.HttpParserUpgrade, httptools.HttpParserError
        _RequestParser = httptools.HttpRequestParser     # last: the others are set when it is


def require() -> None:
    """At start-up, for an instance with an HTTP socket: a Python without httptools is named
    then (uwsgid.embed turns the error into one line), not at its first request. Finding the
    module does not import it."""
    if _RequestParser is None and PathFinder.find_spec("httptools") is None:
        raise ModuleNotFoundError("No module named 'httptools'", name="httptools")


class _Reject(Exception):
    pass


class _ToExact(Exception):
    pass


class HttpParser:
    """Parses one connection's byte stream; appends Requests to conn.queue (pipelining kept in order)."""

    __slots__ = ("conn", "limits", "base", "p", "error", "url", "headers", "hsize", "in_head",
                 "began", "body", "chunked", "expect", "req", "modifier1", "modifier2",
                 "upgraded", "_reject", "prime", "exact", "xline", "switch", "tail", "stream")

    def __init__(self, conn, listener, limits, remote_addr: bytes, remote_port: bytes):
        self.conn = conn
        self.limits = limits
        self.modifier1 = listener.modifier1
        self.modifier2 = listener.modifier2
        # as uWSGI's http-socket and http router: SERVER_NAME is the host name, SERVER_PORT the
        # socket's port (80 on a unix socket); the client's Host header is in HTTP_HOST
        server_name = _HOSTNAME
        server_port = b"%d" % listener.port if listener.port else b"80"
        self.base = {b"SCRIPT_NAME": b"", b"SERVER_NAME": server_name, b"SERVER_PORT": server_port,
                     b"REMOTE_ADDR": remote_addr, b"REMOTE_PORT": remote_port}
        if getattr(listener, "tls", None) is not None:
            self.base[b"HTTPS"] = b"on"          # wsgi.url_scheme https, as uWSGI's https socket
        self.p = None         # llhttp's parser, made by the first feed: the lane parses most heads in C
        self.error = None
        self.in_head = False
        self.began = 0
        self.req = None
        self.body = None
        self.upgraded = False
        self.tail = b""       # after an Upgrade request: what the client sent next (a WebSocket's frames)
        self._reject = None
        self.prime = None     # the request in progress at the end of the last read (see _partial)
        self.exact = None     # an _Exact while this connection takes the exact path
        self.xline = None     # (method, SERVER_PROTOCOL) of a request line the exact path rewrote
        self.switch = False   # a chunked head is done: its body takes the exact path
        self.stream = None    # the BodyStream of a request dispatched before its body (ASGI)

    @property
    def partial(self) -> bool:
        """True while a request has started arriving but is not complete."""
        return self.in_head or self.req is not None or (self.exact is not None and self.exact.partial)

    def feed(self, data: bytes) -> None:
        if self.error is not None or self.upgraded:
            if self.upgraded and len(self.tail) < UPGRADE_TAIL_MAX:
                self.tail += data     # kept for the app that takes the connection (detach)
            return
        if self.exact is not None:
            self.exact.feed(data)
            return
        self.began = 0
        if self.p is None:
            if _RequestParser is None:
                load()
            self.p = _RequestParser(self)
        try:
            self.p.feed_data(data)
        except _Upgrade as e:
            self._upgrade()
            if e.args and isinstance(e.args[0], int):
                self.tail = bytes(data[e.args[0]:])
            return
        except _ParserError as e:
            self._parse_error(e, data)
            return
        if self.in_head or self.req is not None:
            self._partial(data)       # a request goes on in the next read
        elif self.prime is not None:
            self.prime = None

    # ---- errors and the switch to the exact path ----------------------------------------
    def _fail(self, status: int, why: str):
        """From a callback: refuse the request (raises into llhttp, which stops)."""
        self._reject = (status, why)
        raise _Reject(why)

    def _refuse(self, status: int, why: str) -> None:
        if why == _REASONS["Data after `Connection: close`"]:
            # never answered: the connection closes after the request that said close
            self.error = ProtocolError(status, "Bad Request")
            return
        self.error = reject(status, self.conn.peer, why)
        if self.stream is not None:     # the app reading the body sees it end early
            self.stream.refuse()

    def detach(self) -> bytes:
        """The app takes the connection (a WebSocket handshake): the bytes that followed the
        request; this parser reads nothing more."""
        tail, self.tail = self.tail, b""
        self.upgraded = True
        return tail

    def _upgrade(self) -> None:
        # Upgrade (RFC 9110 7.8: a server may ignore it): served as a plain request, then the
        # connection closes, whatever the client sends after it.
        self.upgraded = True
        if self.req is not None:
            self.on_message_complete()
        queue = self.conn.queue
        if queue and queue[-1].method == b"CONNECT":   # llhttp takes every CONNECT as an upgrade
            queue.pop()
            self._refuse(501, _NO_CONNECT)
        elif queue:
            queue[-1].keepalive = False   # the upgrade request: those before it are served as usual

    def _parse_error(self, e: Exception, data: bytes) -> None:
        rej = self._reject
        if rej is not None:
            self._reject = None
            self._refuse(*rej)
        elif self.switch:
            self.switch = False
            self._to_exact(data, True)
        elif str(e) in _RECOVER:
            self._to_exact(data, False)
        else:
            self._refuse(400, _reason(e, self._stream(data)[0]))

    def _partial(self, data: bytes) -> None:
        """After a read that ends inside a request: keep where that request stands, so that the
        exact path can re-read it if a later read makes llhttp refuse it (not the hot path: a
        request split over reads). In a Content-Length body: the bytes still to come (an int);
        in the head: the head's bytes so far."""
        req = self.req
        if req is not None:
            body = self.body
            self.prime = req.post_cl - (body.size if body is not None else 0)
            return
        prime = self.prime
        began = self.began
        if not began and type(prime) is bytes:
            prime += data                  # the same head, started in an earlier read
        elif began == 1 and prime is None:
            prime = data                   # the head started with this read
        else:
            stream, at = self._stream(data)
            at = _skip(stream, at, began - 1 + (prime is not None) - (type(prime) is int))
            if at is None:
                self._refuse(400, "malformed request (cannot find where the request starts)")
                return
            prime = stream[at:]
        self.prime = prime
        if len(prime) > self.limits.buffer_size + 64:
            if self.headers:
                self._refuse(431, f"request header section over --buffer-size {self.limits.buffer_size}")
            else:
                self._refuse(414, f"request target over --buffer-size {self.limits.buffer_size}")

    def _stream(self, data: bytes):
        """This read, with the request that was in progress before it: (bytes, where the first
        request of the bytes starts). An int prime: that many bytes of a body come first."""
        prime = self.prime
        if type(prime) is int:
            return data, prime
        return (prime + data if prime else data), 0

    def _to_exact(self, data: bytes, head_done: bool) -> None:
        """Take the exact path from the request in progress on: re-read it from its first byte
        (head_done: a chunked request whose head llhttp parsed: from its body)."""
        prime = self.prime
        began = self.began
        done_before = began - 1 + (prime is not None) if began else 0   # requests of this read
        stream, at = self._stream(data)
        if type(prime) is int:
            done_before -= 1     # the body in progress counts as `at`
        self.prime = None
        at = _skip(stream, at, done_before)
        if at is None:
            self._refuse(400, "malformed request (cannot find where the request starts)")
            return
        ex = self.exact = _Exact(self)
        if head_done:
            end = _head_end(stream, at)
            if end is None:
                self._refuse(400, "malformed request (cannot find the end of the head)")
                return
            at = end
            ex.state = _CHUNK_SIZE
        else:
            # the refused request starts over (on_message_begin resets the rest)
            self.in_head = False
            self.req = None
            self.body = None
        ex.feed(stream[at:] if at else stream)

    # ---- httptools callbacks --------------------------------------------------------------
    def on_message_begin(self):
        self.url = b""
        self.headers = []
        self.hsize = 0
        self.in_head = True
        self.began += 1
        self.chunked = False
        self.expect = False

    def on_url(self, url: bytes):
        self.url += url
        self.hsize += len(url)

    def on_header(self, name: bytes, value: bytes):
        value = value.rstrip(b" \t")    # RFC 9110 5.5: OWS around a field value is not part of it
        self.headers.append((name, value))
        self.hsize += len(name) + len(value) + 4
        if self.hsize > self.limits.buffer_size:
            self._too_big()

    def _too_big(self):
        limit = self.limits.buffer_size
        if len(self.url) > limit:
            self._fail(414, f"request target over --buffer-size {limit}")
        self._fail(431, f"request header section over --buffer-size {limit}")

    def on_headers_complete(self):
        self.in_head = False
        p = self.p
        limits = self.limits
        method = p.get_method()
        version = p.get_http_version()
        http11 = version == "1.1"
        if not http11 and version != "1.0":
            if version == "0.9":   # llhttp reads a request line without a version as HTTP/0.9
                self._fail(400, "no HTTP version in the request line (HTTP/0.9)")
            self._fail(505, f"unsupported HTTP version {version}")
        if self.hsize > limits.buffer_size:
            self._too_big()
        url = self.url
        fast = None
        if _native_http_vars is not None and self.xline is None:
            # the common head (a /path target, no repeated or special field) in one C call
            fast = _native_http_vars(self.base, method, b"HTTP/1.1" if http11 else b"HTTP/1.0", url,
                                     self.headers, _KEYS)
        if fast is not None:
            v, cl, host = fast
            authority = None
        else:
            v, cl, host, authority, method = self._vars(method, http11, url)
        if len(v) > limits.max_vars:
            self._fail(431, f"too many request vars (--max-vars {limits.max_vars})")
        if host is None:
            if http11:   # RFC 9112 3.2
                self._fail(400, "HTTP/1.1 request without a Host header")
        elif host not in _HOSTS:
            _check_host(self, host)
        if authority is not None:    # RFC 9112 3.2.2: the absolute-form's authority wins over Host
            v[b"HTTP_HOST"] = authority
        keepalive = limits.keepalive and p.should_keep_alive()
        req = Request(self.conn, v, self.modifier1, self.modifier2, method, http11, keepalive)
        if cl > 0:
            req.post_cl = cl
            if limits.limit_post and cl > limits.limit_post:
                self._fail(413, f"request body of {cl} bytes over --limit-post {limits.limit_post}")
        self.req = req
        self.body = None
        stream_body = limits.stream_body
        if stream_body is not None and (cl > 0 or self.chunked) and stream_body(req):
            # dispatched now, its body handed over as it arrives (protocols.stream)
            self.body = self.stream = req.stream = BodyStream(self.conn)
            self.conn.queue.append(req)
        if self.chunked:
            self._chunked(req, v[b"HTTP_TRANSFER_ENCODING"], http11)
        elif self.expect and cl > 0 and http11:
            self.conn.send(b"HTTP/1.1 100 Continue\r\n\r\n")

    def _vars(self, method: bytes, http11: bool, url: bytes):
        """The CGI vars of the head just parsed (what _native_http_vars declines, or all of it
        without the C module): (vars, Content-Length or -1, Host or None, the absolute-form's
        authority or None, the method)."""
        v = self.base.copy()
        xl = self.xline
        if xl is not None:           # a request line the exact path rewrote for llhttp
            self.xline = None
            method = xl[0]
            v[b"SERVER_PROTOCOL"] = xl[1]
        else:
            v[b"SERVER_PROTOCOL"] = b"HTTP/1.1" if http11 else b"HTTP/1.0"
        v[b"REQUEST_METHOD"] = method
        v[b"REQUEST_URI"] = url
        if 35 in url:                # "#": a fragment is the client's business (RFC 9110 4.2.5)
            url = url[:url.find(b"#")]
        q = url.find(b"?")
        if q >= 0:
            path = url[:q]
            v[b"QUERY_STRING"] = url[q + 1:]
        else:
            path = url
            v[b"QUERY_STRING"] = b""
        authority = None
        if path[:1] != b"/":
            path, authority = self._target_form(method, path)
        if b"%" in path:
            path = unquote_to_bytes(path)
        v[b"PATH_INFO"] = path
        cl = -1
        host = None
        for name, value in self.headers:
            key = _KEYS.get(name) or header_key(name)
            if key in v:
                self._repeated(v, key, value)
                continue
            v[key] = value
            if key in _WATCH:
                if key == b"HTTP_HOST":
                    host = value
                elif key == b"CONTENT_LENGTH":
                    cl = int(value)   # llhttp validated it
                    if value[:1] == b"0" and cl:
                        v[key] = b"%d" % cl
                elif key == b"HTTP_TRANSFER_ENCODING":
                    self.chunked = True
                elif value.lower() == b"100-continue":   # HTTP_EXPECT
                    self.expect = True
        return v, cl, host, authority, method

    def _target_form(self, method: bytes, target: bytes):
        """A request target that is not /path (RFC 9112 3.2): (PATH_INFO, the authority that
        replaces Host or None)."""
        if target == b"*":
            if method != b"OPTIONS":   # RFC 9112 3.2.4
                self._fail(400, "asterisk-form request target (*) with a method other than OPTIONS")
            return b"*", None
        low = target[:8].lower()
        if low.startswith((b"http://", b"https://")):
            rest = target[target.find(b"//") + 2:]
            slash = rest.find(b"/")
            authority = rest if slash < 0 else rest[:slash]
            if b"@" in authority:       # RFC 9110 4.2.4
                self._fail(400, "userinfo (user@) in the request target")
            if not authority or _HOST.fullmatch(authority) is None:
                self._fail(400, "invalid authority in the request target")
            return (rest[slash:] if slash >= 0 else b"/"), authority
        if method == b"CONNECT":
            self._fail(501, _NO_CONNECT)
        self._fail(400, "request target is not /path, an http(s) URL or *")

    def _repeated(self, v: dict, key: bytes, value: bytes) -> None:
        """A field line whose name came before: combined as RFC 9110 5.3 says (", "; Cookie
        with "; " as RFC 9113 8.2.3 and CGI servers do), or refused for the singletons."""
        if key == b"HTTP_HOST":       # RFC 9112 3.2
            self._fail(400, "more than one Host header")
        if key == b"CONTENT_TYPE":    # RFC 9110 8.3: a singleton; two could disagree
            self._fail(400, "more than one Content-Type header")
        if key == b"CONTENT_LENGTH":  # llhttp refuses this first
            self._fail(400, "more than one Content-Length")
        if key == _DROP:              # a name with "_" (see _KEYS)
            return
        v[key] = v[key] + (b"; " if key == b"HTTP_COOKIE" else b", ") + value
        if key == b"HTTP_EXPECT":
            self.expect = b"100-continue" in [e.strip(b" \t").lower() for e in v[key].split(b",")]

    def _chunked(self, req: Request, value: bytes, http11: bool) -> None:
        """llhttp found chunked last in Transfer-Encoding (RFC 9112 6.1, 6.3): check the
        codings, then the body takes the exact path (from the fast one: feed -> _to_exact)."""
        if not http11:
            # RFC 9112 6.1: an HTTP/1.0 message with Transfer-Encoding has faulty framing
            self._fail(400, "Transfer-Encoding in an HTTP/1.0 request")
        codings = [c for c in (c.strip(b" \t").lower() for c in value.split(b",")) if c]
        if codings != [b"chunked"]:
            if not codings or codings[-1] != b"chunked":
                self._fail(400, _TE_LAST)     # RFC 9112 6.3: the length cannot be known
            if codings.count(b"chunked") > 1:
                self._fail(400, _TE_TWICE)    # RFC 9112 6.1: chunked at most once
            other = b", ".join(codings[:-1]).decode("latin-1")
            self._fail(501, f"transfer coding {other!r} is not supported (only chunked)")
        req.input_terminated = True
        if self.expect:
            self.conn.send(b"HTTP/1.1 100 Continue\r\n\r\n")
        if self.exact is None:
            self.switch = True
            raise _ToExact()

    def on_body(self, data: bytes):
        body = self.body
        if body is None:
            body = self.body = BodyBuffer(self.limits.post_buffering)
        lp = self.limits.limit_post
        if lp and body.size + len(data) > lp:     # checked first: a streamed body never passes it
            self._fail(413, f"request body over --limit-post {lp}")
        body.add(data)

    def on_message_complete(self):
        req = self.req
        if req is None:
            return
        self.req = None
        body = self.body
        stream = self.stream
        if stream is not None:       # already queued at its head
            self.stream = self.body = None
            req.post_cl = stream.size
            stream.end()
            return
        if body is not None:
            self.body = None
            req.set_body(body.result())
            req.post_cl = body.size
        self.conn.queue.append(req)


def _check_host(parser: HttpParser, host: bytes) -> None:
    """RFC 9112 3.2: a Host that is not uri-host [":" port] is a bad request."""
    if _HOST.fullmatch(host) is None:
        parser._fail(400, "invalid Host header")
    if len(_HOSTS) < 1024:
        _HOSTS.add(host)


def _head_end(stream: bytes, at: int):
    """Where the head starting at `at` ends (after its empty line), or None. The head was
    accepted by llhttp in strict mode: CRLF line ends, so its end is the first CRLF CRLF."""
    while True:
        if stream.startswith(b"\r\n", at):
            at += 2
        elif stream.startswith(b"\n", at):
            at += 1
        else:
            break
    end = stream.find(b"\r\n\r\n", at)
    return None if end < 0 else end + 4


def _skip(stream: bytes, at: int, n: int):
    """Past `n` whole requests from `at` (each accepted by llhttp, each with no body or a
    Content-Length one: a chunked body takes the exact path): where the next one starts."""
    for _ in range(n):
        end = _head_end(stream, at)
        if end is None:
            return None
        cl = 0
        for line in stream[at:end].split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                cl = int(value.strip(b" \t"))
        at = end + cl
    return at


# The exact path's states: the stream is between requests, in a head, in a body of `need`
# bytes, at a chunk-size line, in a chunk's data, at the CRLF after it, in the trailer section.
_START, _HEAD, _BODY, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_END, _TRAILERS = range(7)


class _Exact:
    """The exact path of one connection (see the module's docstring): frames the requests
    itself, so that it knows where each line is, and feeds llhttp normalised heads only. Bodies
    go to the parser's on_body / on_message_complete without llhttp."""

    __slots__ = ("parser", "buf", "state", "need", "head", "fresh", "tsize", "codings")

    def __init__(self, parser: HttpParser):
        self.parser = parser
        self.buf = b""
        self.state = _START
        self.need = 0
        self.head = []        # head lines waiting to be fed to llhttp
        self.fresh = True     # llhttp must start over at the next request
        self.tsize = 0        # bytes of trailer section so far
        self.codings = []     # the transfer codings of the head so far

    @property
    def partial(self) -> bool:
        return self.state != _START or bool(self.buf)

    def feed(self, data: bytes) -> None:
        parser = self.parser
        buf = self.buf + data if self.buf else data
        try:
            pos = self._run(buf)
        except _Reject:
            rej = parser._reject
            parser._reject = None
            parser._refuse(*rej)
            return
        except _Upgrade:
            parser._upgrade()
            return
        except _ParserError as e:
            rej = parser._reject
            parser._reject = None
            if rej is not None:
                parser._refuse(*rej)
            else:
                parser._refuse(400, _reason(e, buf))
            return
        self.buf = buf[pos:]
        if self.state == _START and not self.buf and parser.error is None:
            # a request boundary that ends a read: back to the fast path
            parser.exact = None
            if self.fresh:
                parser.p = _RequestParser(parser)

    def _run(self, buf: bytes) -> int:
        parser = self.parser
        limit = parser.limits.buffer_size
        pos = 0
        end = len(buf)
        while parser.error is None:
            state = self.state
            if state == _BODY or state == _CHUNK_DATA:
                n = min(self.need, end - pos)
                if n <= 0:
                    break
                parser.on_body(buf[pos:pos + n])
                pos += n
                self.need -= n
                if self.need:
                    break
                if state == _BODY:
                    self._done()
                else:
                    self.state = _CHUNK_END
                continue
            if state == _CHUNK_END:
                if end - pos < 2:
                    if buf[pos:pos + 1] not in (b"", b"\r"):
                        raise self._bad("chunk data not followed by CRLF")
                    break
                if buf[pos:pos + 2] != b"\r\n":
                    raise self._bad("chunk data not followed by CRLF")
                pos += 2
                self.state = _CHUNK_SIZE
                continue
            nl = buf.find(b"\n", pos)
            if nl < 0:
                if end - pos > limit:
                    self._too_long(state, limit)
                if self.head:
                    self._feed_head()      # llhttp sees the complete lines now
                break
            if nl - pos >= limit:
                self._too_long(state, limit)
            line = buf[pos:nl + 1]
            pos = nl + 1
            if state == _START:
                if line == b"\r\n" or line == b"\n":
                    continue               # RFC 9112 2.2: empty lines before a request
                self._request_line(line)
            elif state == _HEAD:
                if line[:18].lower() == b"transfer-encoding:":
                    line = self._te_line(line)
                self.head.append(line)
                if line == b"\r\n" or line == b"\n":
                    self._feed_head()
                    self._after_head()
            elif state == _CHUNK_SIZE:
                self._chunk_size(line)
            else:   # _TRAILERS
                self.tsize += len(line)
                if line == b"\r\n":
                    self._done()
                elif _TRAILER_LINE.fullmatch(line) is None:
                    raise self._bad("invalid trailer field line" if line.endswith(b"\r\n")
                                    else "trailer line does not end with CRLF")
                elif self.tsize > limit:
                    raise self._bad(f"trailer section over --buffer-size {limit}", 431)
        return pos

    def _bad(self, why: str, status: int = 400) -> _Reject:
        self.parser._reject = (status, why)
        return _Reject(why)

    def _too_long(self, state: int, limit: int) -> None:
        if state == _START:
            raise self._bad(f"request target over --buffer-size {limit}", 414)
        if state == _HEAD:
            raise self._bad(f"request header section over --buffer-size {limit}", 431)
        if state == _CHUNK_SIZE:
            raise self._bad(f"chunk size line over --buffer-size {limit}")
        raise self._bad(f"trailer section over --buffer-size {limit}", 431)

    def _request_line(self, line: bytes) -> None:
        """Rewrite a request line for llhttp: its method as GET, raw bytes >= 0x80 of the
        target %-encoded, HTTP/1.x as HTTP/1.1; the real ones go to the CGI vars (xline, url)."""
        parser = self.parser
        if not line.endswith(b"\r\n"):
            raise self._bad("request line does not end with CRLF")
        words = line[:-2].split(b" ")
        if not words[0] or not words[-1]:
            raise self._bad("whitespace at the start or end of the request line")
        words = [w for w in words if w]        # several SP between words: as llhttp (RFC 9112 3)
        if len(words) == 2 and _IS_TOKEN.fullmatch(words[0]):
            raise self._bad("no HTTP version in the request line (HTTP/0.9)")
        if len(words) != 3:
            raise self._bad("request line is not METHOD SP TARGET SP HTTP-VERSION")
        method, target, version = words
        if _IS_TOKEN.fullmatch(method) is None:
            raise self._bad("method is not a token")
        if method == b"CONNECT":        # llhttp would see GET: as on the fast path
            raise self._bad(_NO_CONNECT, 501)
        m = _VERSION.fullmatch(version)
        if m is None:
            raise self._bad("invalid HTTP version in the request line")
        if m.group(1) != b"1":
            raise self._bad(f"unsupported HTTP version {version[5:].decode()}", 505)
        sent = target
        if _HIGH_BYTE.search(target):
            sent = _HIGH_BYTE.sub(lambda b: b"%%%02X" % b.group()[0], target)
        if self.fresh:
            parser.p = _RequestParser(parser)
            self.fresh = False
        parser.xline = (method, version)     # SERVER_PROTOCOL: the version the client sent
        self.head = [b"GET " + sent + (b" HTTP/1.0\r\n" if m.group(2) == b"0" else b" HTTP/1.1\r\n")]
        self.codings = []
        self._feed_head()
        parser.url = target
        self.state = _HEAD

    def _feed_head(self) -> None:
        data = b"".join(self.head)
        self.head = []
        self.parser.p.feed_data(data)

    def _te_line(self, line: bytes) -> bytes:
        """A Transfer-Encoding line, checked (RFC 9112 6.1, 6.3) and given to llhttp without the
        empty list elements that RFC 9110 5.6.1 allows and llhttp does not."""
        if not line.endswith(b"\r\n"):
            return line
        codings = [c for c in (c.strip(b" \t") for c in line[18:-2].split(b",")) if c]
        seen = self.codings
        for c in codings:
            if seen and seen[-1].lower() == b"chunked":
                raise self._bad(_TE_TWICE if c.lower() == b"chunked" else _TE_LAST)
            seen.append(c)
        return b"Transfer-Encoding: " + b", ".join(codings) + b"\r\n"

    def _after_head(self) -> None:
        parser = self.parser
        if parser.in_head:      # llhttp took a line as the empty line it was not (bare LF)
            raise self._bad("header section does not end with CRLF")
        req = parser.req
        if req is None:         # no body: llhttp completed the request itself
            self.state = _START
        elif parser.chunked:
            self.fresh = True
            self.state = _CHUNK_SIZE
        else:
            self.fresh = True
            self.need = req.post_cl
            self.state = _BODY

    def _chunk_size(self, line: bytes) -> None:
        m = _CHUNK_LINE.fullmatch(line)
        if m is None:
            if not line.endswith(b"\r\n"):
                raise self._bad("chunk size line does not end with CRLF")
            if line[:1] not in b"0123456789abcdefABCDEF" or not line[:1]:
                raise self._bad("chunk size line is not hex")
            if _SIZE_THEN_WS.fullmatch(line):
                raise self._bad("whitespace after the chunk size without an extension")
            raise self._bad("invalid chunk size or chunk extension")
        digits = m.group(1).lstrip(b"0")
        if len(digits) > 16:
            raise self._bad("chunk size is too large")
        size = int(digits or b"0", 16)
        if size:
            self.need = size
            self.state = _CHUNK_DATA
        else:
            self.tsize = 0
            self.state = _TRAILERS   # trailer fields are checked, not passed on (RFC 9112 7.1.2)

    def _done(self) -> None:
        self.state = _START
        self.parser.on_message_complete()


