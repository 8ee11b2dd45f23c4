"""One request as a plugin sees it (see uwsgid/plugins/contract.py), and the response framing.

The body written by the app is coalesced in `_buf` and goes out on flush(): at every plugin
yield, when `_buf` reaches SLICE bytes, and at the end. Framing is decided when the head goes
out: Content-Length when the whole body is known at that point (or set by the app), else
chunked on HTTP/1.1, else close-delimited. HEAD, 1xx, 204 and 304 never carry a body.
"""

from __future__ import annotations

import io
import os

SLICE = 64 * 1024

# Framing decided when the head goes out.
F_NONE = 0      # head not sent yet
F_LENGTH = 1    # Content-Length (ours or the app's)
F_CHUNKED = 2
F_CLOSE = 3     # close-delimited
F_NOBODY = 4    # HEAD, 1xx, 204, 304

# How the body went out, for the request log's " via sendfile() " (uWSGI's UWSGI_VIA_*)
VIA_SENDFILE = 1
VIA_ROUTE = 2
VIA_OFFLOAD = 3

try:    # the whole response serialised in C (core/cpython/native.h); absent: the Python path
    from _uwsgi_native import RESP_HEAD, RESP_HTTP, RESP_HTTP11, RESP_KEEPALIVE
    from _uwsgi_native import response as _native_response
except ImportError:
    _native_response = None

_EMPTY_INPUT = b""
_STATUS: dict = {}   # status line -> code, for the few status lines an app uses


def _check_status(status) -> int:
    raw = status.encode("latin-1") if isinstance(status, str) else status
    try:
        code = int(raw[:3])
    except (ValueError, TypeError):
        raise ValueError(f"invalid HTTP status {status!r}") from None
    if (not 100 <= code <= 999 or (len(raw) > 3 and raw[3:4] != b" ") or not raw[:3].isdigit()
            or b"\n" in raw or b"\r" in raw):
        raise ValueError(f"invalid HTTP status {status!r}")
    if len(_STATUS) < 256 and isinstance(status, bytes):
        _STATUS[status] = code
    return code
_HOP = frozenset((b"connection", b"transfer-encoding", b"keep-alive"))
# An app sends the same headers on most responses: their serialized block, checked once, per
# headers tuple (bounded: varying values such as cookies are simply built each time).
_BLOCKS_HTTP: dict = {}
_BLOCKS_RAW: dict = {}
_BLOCKS_MAX = 256


def _header_block(headers, http: bool) -> tuple:
    """(the "Name: value" CRLF lines, their count, the app asked to close). On an HTTP socket framing and
    connection management are ours: the app's hop-by-hop headers are left out."""
    out = []
    cnt = 0
    close = False
    for name, value in headers:
        if http and len(name) < 18 and name.lower() in _HOP:
            if name.lower() == b"connection" and b"close" in value.lower():
                close = True
            continue
        out += (name, b": ", value, b"\r\n")
        cnt += 1   # the log's "N headers" counts the app's headers, as uWSGI does
    block = b"".join(out)
    if block.count(b"\n") != cnt or block.count(b"\r") != cnt:
        raise ValueError(_bad_header(headers))   # CR/LF smuggled in a header
    return block, cnt, close


# --add-header / --del-header (uWSGI's names): None when neither is given, so that a response
# pays one global test for them. Set once in the master before fork (configure), inherited.
_edit_headers = None


def configure(opts) -> None:
    """Read --add-header "Name: value" (appended to every response, after the app's headers) and
    --del-header / --rem-header NAME (the app's headers of that name, any case, are dropped;
    those of --add-header are kept, as in uWSGI). Raises ValueError, one line, on a bad value."""
    global _edit_headers
    add = []
    for line in getattr(opts, "add_header", None) or ():
        text = line.encode("utf-8", "surrogateescape") if isinstance(line, str) else line  # the bytes of the config
        name, colon, value = text.partition(b":")
        name = name.strip()
        if not colon or not name or any(c <= 32 or c >= 127 for c in name) or b"\r" in text or b"\n" in text:
            raise ValueError(f"--add-header {line!r}: expected 'Name: value' (a token, a colon, "
                             f"no CR/LF)")
        add.append((name, value.strip()))
    remove = set()
    for name in getattr(opts, "del_header", None) or ():
        text = name.encode("utf-8", "surrogateescape").strip() if isinstance(name, str) else name.strip()
        if not text or b":" in text or any(c <= 32 or c >= 127 for c in text):
            raise ValueError(f"--del-header {name!r}: expected a header name")
        remove.add(text.lower())
    _edit_headers = _header_editor(tuple(add), frozenset(remove)) if add or remove else None


def headers_edited() -> bool:
    """--add-header or --del-header is given: every response's headers pass through the editor."""
    return _edit_headers is not None


def _header_editor(add: tuple, remove: frozenset):
    if not remove:
        return lambda headers: [*headers, *add]

    def edit(headers):
        kept = [h for h in headers if h[0].lower() not in remove]
        kept += add
        return kept
    return edit


class HeaderBlock(list):
    """Response headers serialized once by their owner, who keeps them (static files: one set per
    file), --add-header/--del-header applied when built. start_response and the head use them as
    they are, and they stay out of the shared block cache below (bounded, first come): that one
    is for the app's few header sets, which per-file headers would otherwise crowd out."""

    __slots__ = ("blocks", "length")

    def __init__(self, headers):
        if _edit_headers is not None:
            headers = _edit_headers(headers)
        super().__init__(headers)
        self.blocks = (_header_block(self, False), _header_block(self, True))   # [is_http]
        length = None
        for name, value in self:
            if len(name) == 14 and name.lower() == b"content-length":
                length = int(value)
        self.length = length


def _bad_header(headers) -> str:
    for name, value in headers:
        if b"\n" in name or b"\r" in name or b"\n" in value or b"\r" in value:
            return f"invalid header (CR/LF) {name!r}: {value!r}"
    return "invalid header (CR/LF)"


class Request:
    __slots__ = (
        "vars", "modifier1", "modifier2", "_input", "_body", "input_terminated", "core", "_logvars",
        "conn", "fd", "method", "http11", "keepalive", "status", "status_line", "headers",
        "headers_sent", "response_size", "headers_size", "header_cnt", "_buf", "_buflen",
        "_framing", "_app_cl", "_remaining", "start", "start_wall", "end", "switches", "_var_cnt",
        "_pktsize", "app_id", "exception", "broken", "post_cl", "finished", "packet", "vars_block",
        "websocket", "route", "via", "ctx", "stream",
    )

    def __init__(self, conn, vars: dict, modifier1: int = 0, modifier2: int = 0, method: bytes = b"GET",
                 http11: bool = True, keepalive: bool = False):
        self.vars = vars
        self.modifier1 = modifier1
        self.modifier2 = modifier2
        self.conn = conn
        self.fd = conn.fd if conn is not None else -1
        self.method = method
        self.http11 = http11
        self.keepalive = keepalive
        self._input = None
        self._body = _EMPTY_INPUT
        self.input_terminated = False
        self.post_cl = 0
        self.core = None
        self._logvars = None
        self.status = 0
        self.status_line = b""
        self.headers = None
        self.headers_sent = False
        self.response_size = 0
        self.headers_size = 0
        self.header_cnt = 0
        self._buf = []
        self._buflen = 0
        self._framing = F_NONE
        self._app_cl = None
        self._remaining = 0
        self.start = 0.0
        self.start_wall = 0.0
        self.end = 0.0
        self.switches = 0
        self._var_cnt = -1      # -1: computed from vars when first asked (only the log needs them)
        self._pktsize = -1
        self.packet = None   # raw body of a RAW_MODIFIERS uwsgi packet
        self.vars_block = None   # a uwsgi packet's vars as received (a plugin may parse them itself)
        self.app_id = 0
        self.exception = False
        self.broken = False
        self.finished = False   # set by the core at the end: later writes must not reach the next response
        self.websocket = None   # the Session after uwsgi.websocket_handshake (uwsgid/net/websocket.py)
        self.route = None       # the internal routing's State (uwsgid.routing), only with --route*
        self.ctx = None         # a code hook's per-request dict (uwsgid.plugins.code), seen by the app
        self.via = 0            # VIA_*: a file body sent by sendfile or an offload thread
        self.stream = None      # a protocols.stream.BodyStream: the body arrives while the app runs

    @property
    def logvars(self) -> dict:
        """--log-format %(var) values set by the app; made when first used (most requests never)."""
        lv = self._logvars
        if lv is None:
            lv = self._logvars = {}
        return lv

    # ---- the "{N vars in N bytes}" of the log line ---------------------------------------------
    @property
    def var_cnt(self) -> int:
        """Keys and values, as uWSGI counts its iovecs."""
        if self._var_cnt < 0:
            self._var_cnt = 2 * len(self.vars)
        return self._var_cnt

    @var_cnt.setter
    def var_cnt(self, n: int) -> None:
        self._var_cnt = n

    @property
    def pktsize(self) -> int:
        """Size of the vars as a uwsgi packet (what the request occupied in uWSGI's buffer)."""
        if self._pktsize < 0:
            self._pktsize = sum(len(k) + len(x) for k, x in self.vars.items()) + 4 * len(self.vars)
        return self._pktsize

    @pktsize.setter
    def pktsize(self, n: int) -> None:
        self._pktsize = n

    # ---- request body ---------------------------------------------------------------------
    def set_body(self, body) -> None:
        """bytes (in memory) or a file object positioned at 0 (spooled over --post-buffering)."""
        self._body = body
        self._input = None

    @property
    def input(self):
        inp = self._input
        if inp is None:
            body = self._body
            inp = self._input = io.BytesIO(body) if isinstance(body, (bytes, bytearray)) else body
        return inp

    # ---- response -------------------------------------------------------------------------
    def start_response(self, status: bytes, headers: list) -> None:
        if self.headers_sent or self.finished:
            raise RuntimeError("start_response() called after the headers were sent")
        code = _STATUS.get(status)
        if code is None:
            code = _check_status(status)
            if isinstance(status, str):
                status = status.encode("latin-1")
        if headers.__class__ is HeaderBlock:     # edited and checked when it was built
            self.status = code
            self.status_line = status
            self.headers = headers
            self._app_cl = headers.length
            self._buf = []
            self._buflen = 0
            return
        if _edit_headers is not None:
            headers = _edit_headers(headers)
        app_cl = None
        for name, value in headers:
            # CR/LF in a header is caught when the head is built (one count over the joined head)
            if len(name) == 14 and name.lower() == b"content-length":
                try:
                    app_cl = int(value)
                    if app_cl < 0:
                        raise ValueError
                except (ValueError, TypeError):
                    raise ValueError(f"invalid Content-Length header {value!r}") from None
        self.status = code
        self.status_line = status
        self.headers = headers
        self._app_cl = app_cl
        # A restart before anything went out (WSGI exc_info) drops the earlier body.
        self._buf = []
        self._buflen = 0

    @property
    def app_length(self) -> int | None:
        """The Content-Length the response's headers declare (start_response read it), or None."""
        return self._app_cl

    def write(self, data: bytes) -> None:
        if not data:
            return
        if not self.status or self.finished:
            raise RuntimeError("write() after the response ended" if self.finished else "write() before start_response()")
        self._buf.append(data)
        self._buflen += len(data)
        if self._buflen >= SLICE:
            self.flush()

    def sendfile(self, fd: int, offset: int = 0, count: int = 0) -> None:
        """Send `count` bytes of file `fd` from `offset` (count 0 = to the end of the file)."""
        if not self.status or self.finished:
            raise RuntimeError("sendfile() after the response ended" if self.finished else "sendfile() before start_response()")
        if count <= 0:
            count = max(0, os.fstat(fd).st_size - offset)
        self.flush()
        if not self.headers_sent and self.route is not None:
            self.write(os.pread(fd, count, offset))     # a route holds the body (fixcl, cachestore)
            return
        fr = self._framing
        if fr == F_NOBODY or count == 0 or self.conn.closed:
            return
        if fr == F_LENGTH:
            count = min(count, self._remaining)
            self._remaining -= count
            if count == 0:
                return
        if fr == F_CHUNKED:
            self.conn.send(b"%x\r\n" % count)
        self.via = VIA_SENDFILE
        sent = self.conn.sendfile(fd, offset, count)
        self.response_size += sent
        if fr == F_CHUNKED and sent == count:
            self.conn.send(b"\r\n")

    def _head(self, final: bool, n: int) -> bytes:
        code = self.status
        conn = self.conn
        http = conn.is_http
        app_cl = self._app_cl
        headers = self.headers
        if headers.__class__ is HeaderBlock:
            hb = headers.blocks[1 if http else 0]
        else:
            blocks = _BLOCKS_HTTP if http else _BLOCKS_RAW
            try:
                key = tuple(headers)
                hb = blocks.get(key)
            except TypeError:   # unhashable header items: built every time
                key = hb = None
            if hb is None:
                hb = _header_block(headers, http)
                if key is not None and len(blocks) < _BLOCKS_MAX:
                    blocks[key] = hb
        block, cnt, close = hb
        if close:
            self.keepalive = False   # the app's "Connection: close" is honoured
        tail = b""
        if code < 200 or code == 204 or code == 304:
            fr = F_NOBODY
        elif app_cl is not None:
            fr = F_NOBODY if self.method == b"HEAD" else F_LENGTH
            self._remaining = app_cl
        elif final:
            tail = b"Content-Length: %d\r\n" % n
            fr = F_NOBODY if self.method == b"HEAD" else F_LENGTH
            self._remaining = n
        elif self.method == b"HEAD":
            fr = F_NOBODY
        elif http and self.http11:
            tail = b"Transfer-Encoding: chunked\r\n"
            fr = F_CHUNKED
        else:
            fr = F_CLOSE
            self.keepalive = False
        if http:
            if self.keepalive and conn.worker_stopping() and not conn.queue:
                # stopping: this connection closes after its last request already received
                # (pipelined ones are answered first, not dropped)
                self.keepalive = False
            if not self.keepalive:
                if self.http11:
                    tail += b"Connection: close\r\n"
            elif not self.http11:
                tail += b"Connection: keep-alive\r\n"
        else:
            self.keepalive = False
        head = b"HTTP/1.1 %b\r\n%b%b\r\n" % (self.status_line, block, tail)
        self._framing = fr
        self.headers_sent = True
        self.headers_size = len(head)
        self.header_cnt = cnt
        return head

    def flush(self, final: bool = False) -> None:
        """Send the head (first time) and the coalesced body; final adds the end of the body."""
        rs = self.route
        if rs is not None and not self.headers_sent and self.status:
            # the error/response chains, the routes' headers; None: the body is held (fixcl...)
            final = rs.before_head(self, final)
            if final is None:
                return
        buf = self._buf
        if buf:
            data = buf[0] if len(buf) == 1 else b"".join(buf)
            buf.clear()
            self._buflen = 0
        else:
            data = b""
        if self.headers_sent:
            if not data and not final:
                return
            head = b""
        elif not self.status:
            return
        else:
            head = self._head(final, len(data))
        fr = self._framing
        if data:
            if fr == F_CHUNKED:
                self.response_size += len(data)
                data = b"%x\r\n%b\r\n" % (len(data), data)
            elif fr == F_LENGTH:
                if len(data) > self._remaining:
                    data = data[:self._remaining]   # never overrun a declared length
                self._remaining -= len(data)
                self.response_size += len(data)
            elif fr == F_NOBODY:
                data = b""
            else:
                self.response_size += len(data)
        if final:
            if fr == F_CHUNKED and not self.broken:
                data += b"0\r\n\r\n"
            elif fr == F_LENGTH and self._remaining:
                self.keepalive = False   # short body: closing makes the truncation visible
        if head:
            data = head + data if data else head
        if data:
            if final and not self.keepalive:
                self.conn.send_last(data)   # the connection closes next: the FIN goes with it
            else:
                self.conn.send(data)

    def respond(self, status: bytes, headers: list, body) -> bool:
        """The whole response at once, the body known (a list or tuple of bytes, or bytes): head
        and body serialised by C into one bytes and sent, as start_response + write + flush(True)
        would send them. False, nothing done, when the C path does not take it (not built, a
        route that needs the response (State.plain_headers), --add-header/--del-header, a
        response already started, anything unusual: see native.h); then the caller takes the
        Python path, which raises the usual errors."""
        if (_native_response is None or self.headers_sent or self.finished
                or _edit_headers is not None or headers.__class__ is HeaderBlock):
            return False
        rs = self.route
        if rs is not None:
            # the routes' headers (addheader...) when nothing else of the routing applies
            headers = rs.plain_headers(status, headers)
            if headers is None:
                return False
        conn = self.conn
        flags = 0
        if conn.is_http:
            flags = RESP_HTTP
            if self.keepalive and not (conn.worker_stopping() and not conn.queue):
                flags |= RESP_KEEPALIVE
            if self.http11:
                flags |= RESP_HTTP11
        if self.method == b"HEAD":
            flags |= RESP_HEAD
        r = _native_response(status, headers, body, flags)
        if r is None:
            return False
        data, self.status, keepalive, self.headers_size, self.header_cnt, self.response_size = r
        self.keepalive = bool(keepalive)
        self.status_line = status
        self.headers = headers
        self.headers_sent = True
        self._framing = F_LENGTH    # all of it is out: the final flush sends nothing more
        self._remaining = 0
        if keepalive:
            conn.send(data)
        else:
            conn.send_last(data)    # the connection closes next: the FIN goes with it
        return True

    def error_response(self, code: int, reason: bytes, body: bytes) -> None:
        """Replace an unsent response with a small error page (the core's 500/503)."""
        self.start_response(b"%d %b" % (code, reason), [(b"Content-Type", b"text/plain")])
        self.write(body)

    def __repr__(self) -> str:
        return f"<Request {self.method.decode('latin-1')} {self.vars.get(b'REQUEST_URI', b'')!r}>"

