"""HTTP/1.x request parsing for --http-socket and the --http router, with httptools (llhttp in
strict mode), and the CGI vars built from a request (as uWSGI's http-socket builds them).

Two paths, one result:

- **The fast path** (every ordinary request): the bytes go to llhttp as they are read. llhttp
  refuses the smuggling vectors (Content-Length with Transfer-Encoding, duplicate Content-Length,
  obs-fold, bare LF, NUL and other bad bytes); `on_headers_complete` adds what RFC 9110/9112 ask
  of a server and llhttp leaves to it (Host, Transfer-Encoding codings, request-target forms,
  repeated fields) and the server's limits (--buffer-size -> 414/431, --max-vars -> 431,
  --limit-post -> 413), and answers `Expect: 100-continue`.
- **The exact path** (`Exact`, in http_exact.py), for what llhttp refuses although the RFCs allow it: a method
  that is a token llhttp does not know (`-BLARGH`), a raw non-ASCII byte in the request target
  (passed through as latin-1, like nginx and gunicorn), HTTP/1.x with x > 1 (read as 1.1, RFC
  9112 2.3), empty elements in the Transfer-Encoding list (RFC 9110 5.6.1), and every chunked
  body (whitespace around `;` and `=` in chunk extensions, RFC 9112 7.1.1). It frames the
  stream itself, line by line, validates what llhttp would not see, and feeds llhttp only
  normalised heads (llhttp still checks every header line). A connection takes it when llhttp
  refuses one of those requests (the request is re-read from its first byte: `prime` keeps the
  bytes of a request in progress across reads, `skip` finds where in this read it began) or
  when a chunked request's head is done, and leaves it at the next request boundary that ends
  a read.

Every rejected request logs one line, `STATUS PEER REASON` (protocols.reject, docs/ERRORS.md).
"""

from __future__ import annotations

import re
import socket
from importlib.machinery import PathFinder

from uwsgid.net.protocols import BodyBuffer, ProtocolError, reject, unquote_to_bytes
from uwsgid.net.protocols.http_reasons import NO_CONNECT, REASONS, RECOVER, TE_LAST, TE_TWICE, Reject, reason
from uwsgid.net.protocols.stream import BodyStream
from uwsgid.net.request import Request

try:    # the CGI vars of a common head in one C call (core/cpython/native.h); absent: _vars
    from _uwsgi_native import http_vars as _native_http_vars
except ImportError:
    _native_http_vars = None

_HOSTNAME = socket.gethostname().encode()
UPGRADE_TAIL_MAX = 1 << 20   # bytes kept after an Upgrade request until the app takes them
# httptools' classes and the exact path (http_exact.py, which imports httptools), set by load()
_Upgrade = _ParserError = _RequestParser = None
Exact = skip = head_end = CHUNK_SIZE = None

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
_HOST = None    # compiled by load()

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
    """Import httptools and the exact path, and compile the Host check. A single process does it
    with the first request head the native lane leaves to Python: the lane parses the requests of
    a Lua app (and the plain ones of a Python app) in C, and httptools imports typing, the
    largest module of the standard library, several ms of a start-up that may never need it. An
    instance that forks workers does it at start-up (uwsgid.main._http_parser), so that they share it."""
    global _Upgrade, _ParserError, _RequestParser, _HOST, Exact, skip, head_end, CHUNK_SIZE
    if _RequestParser is None:
        import httptools

        from uwsgid.net.protocols import http_exact
        _HOST = re.compile(_HOST_RE)
        Exact, skip, head_end = http_exact.Exact, http_exact.skip, http_exact.head_end
        CHUNK_SIZE = http_exact.CHUNK_SIZE
        _Upgrade, _ParserError = httptools.HttpParserUpgrade, httptools.HttpParserError
        _RequestParser = httptools.HttpRequestParser     # last: the others are set when it is


def require() -> None:
    """At start-up, for an instance with an HTTP socket: a Python without httptools is named
    then (uwsgid.embed turns the error into one line), not at its first request. Finding the
    module does not import it."""
    if _RequestParser is None and PathFinder.find_spec("httptools") is None:
        raise ModuleNotFoundError("No module named 'httptools'", name="httptools")


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
        self.exact = None     # an Exact (http_exact.py) while this connection takes the exact path
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
        raise Reject(why)

    def _refuse(self, status: int, why: str) -> None:
        if why == REASONS["Data after `Connection: close`"]:
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
            self._refuse(501, NO_CONNECT)
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
        elif str(e) in RECOVER:
            self._to_exact(data, False)
        else:
            self._refuse(400, reason(e, self._stream(data)[0]))

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
            at = skip(stream, at, began - 1 + (prime is not None) - (type(prime) is int))
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
        at = skip(stream, at, done_before)
        if at is None:
            self._refuse(400, "malformed request (cannot find where the request starts)")
            return
        ex = self.exact = Exact(self)
        if head_done:
            end = head_end(stream, at)
            if end is None:
                self._refuse(400, "malformed request (cannot find the end of the head)")
                return
            at = end
            ex.state = CHUNK_SIZE
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
            self._fail(501, NO_CONNECT)
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
                self._fail(400, TE_LAST)     # RFC 9112 6.3: the length cannot be known
            if codings.count(b"chunked") > 1:
                self._fail(400, TE_TWICE)    # RFC 9112 6.1: chunked at most once
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
