"""The exact path of HTTP/1.x parsing (see uwsgid.net.protocols.http's docstring): for what llhttp
refuses although the RFCs allow it, and for every chunked body, the stream is framed here line by
line, checked, and llhttp is fed normalised heads only."""

from __future__ import annotations

import re

import httptools

from uwsgid.net.protocols.http_reasons import NO_CONNECT, TE_LAST, TE_TWICE, Reject, reason

_Upgrade = httptools.HttpParserUpgrade
_ParserError = httptools.HttpParserError
_RequestParser = httptools.HttpRequestParser

_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_IS_TOKEN = re.compile(_TOKEN)
_VERSION = re.compile(rb"HTTP/([0-9])\.([0-9])")
# RFC 9112 7.1 / 7.1.1: chunk-size [ chunk-ext ] CRLF, chunk-ext = *( BWS ";" BWS chunk-ext-name
# [ BWS "=" BWS chunk-ext-val ] ), chunk-ext-val = token / quoted-string.
_QUOTED = rb'"(?:[\t !\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*"'
_CHUNK_LINE = re.compile(rb"([0-9A-Fa-f]+)(?:[ \t]*;[ \t]*" + _TOKEN + rb"(?:[ \t]*=[ \t]*(?:" + _TOKEN
                         + rb"|" + _QUOTED + rb"))?)*\r\n")
_SIZE_THEN_WS = re.compile(rb"[0-9A-Fa-f]+[ \t]+\r\n")
_TRAILER_LINE = re.compile(_TOKEN + rb":[\t \x21-\x7e\x80-\xff]*\r\n")
_HIGH_BYTE = re.compile(rb"[\x80-\xff]")


def head_end(stream: bytes, at: int):
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


def skip(stream: bytes, at: int, n: int):
    """Past `n` whole requests from `at` (each accepted by llhttp, each with no body or a
    Content-Length one: a chunked body takes the exact path): where the next one starts."""
    for _ in range(n):
        end = head_end(stream, at)
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
_START, _HEAD, _BODY, CHUNK_SIZE, _CHUNK_DATA, _CHUNK_END, _TRAILERS = range(7)


class Exact:
    """The exact path of one connection (see the module's docstring): frames the requests
    itself, so that it knows where each line is, and feeds llhttp normalised heads only. Bodies
    go to the parser's on_body / on_message_complete without llhttp."""

    __slots__ = ("parser", "buf", "state", "need", "head", "fresh", "tsize", "codings")

    def __init__(self, parser):
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
        except Reject:
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
                parser._refuse(400, reason(e, buf))
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
                self.state = CHUNK_SIZE
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
            elif state == CHUNK_SIZE:
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

    def _bad(self, why: str, status: int = 400) -> Reject:
        self.parser._reject = (status, why)
        return Reject(why)

    def _too_long(self, state: int, limit: int) -> None:
        if state == _START:
            raise self._bad(f"request target over --buffer-size {limit}", 414)
        if state == _HEAD:
            raise self._bad(f"request header section over --buffer-size {limit}", 431)
        if state == CHUNK_SIZE:
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
            raise self._bad(NO_CONNECT, 501)
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
                raise self._bad(TE_TWICE if c.lower() == b"chunked" else TE_LAST)
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
            self.state = CHUNK_SIZE
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
