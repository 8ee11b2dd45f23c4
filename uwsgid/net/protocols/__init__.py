"""Wire protocols spoken on the workers' sockets: `http` (HTTP/1.1, --http-socket, and the
--http router's client side) and `uwsgi` (the uwsgi packet, --socket). A parser is fed the bytes
of one connection and appends complete Request objects to `conn.queue`; on bad input it sets
`error` = ProtocolError and the connection answers (HTTP status) or just closes (uwsgi), as the
error says.

Every rejected request logs one line when the parser finds the problem (`reject`):
`STATUS PEER REASON`, e.g. `400 127.0.0.1:53422 chunk size line is not hex` (`-` for a
connection closed without a reply), at most REJECT_LINES_PER_SECOND lines a second per process
(docs/ERRORS.md lists them all)."""

from __future__ import annotations

from uwsgid.config.options import value as option_value
from uwsgid.util.ratelimit import RateLimitedLog

# %XX -> the byte, for every case of the hex digits (urllib.parse's table). Decoding here rather
# than with urllib.parse, which imports ipaddress: ~0.75 MB of RSS in every worker.
_HEX = "0123456789abcdefABCDEF"
_HEXBYTE = {(a + b).encode(): bytes.fromhex(a + b) for a in _HEX for b in _HEX}


def unquote_to_bytes(s: bytes) -> bytes:
    """Percent-decoding (PATH_INFO), exactly as urllib.parse.unquote_to_bytes: a bad escape stays."""
    parts = s.split(b"%")
    if len(parts) == 1:
        return s
    out = [parts[0]]
    for item in parts[1:]:
        byte = _HEXBYTE.get(item[:2])
        if byte is None:
            out += (b"%", item)
        else:
            out += (byte, item[2:])
    return b"".join(out)


class ProtocolError(Exception):
    """Bad input on a connection. status 0 = close without a reply; reason = the status line's
    phrase; log = a line for the connection to log (empty: the parser logged it, see reject);
    body = the reply's text when "STATUS REASON" would not tell the client enough."""

    def __init__(self, status: int, reason: str, log: str = "", body: str = ""):
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.log = log
        self.body = body


# The status lines of the errors the parsers answer (RFC 9110's phrases).
PHRASES = {400: "Bad Request", 408: "Request Timeout", 413: "Content Too Large", 414: "URI Too Long",
           431: "Request Header Fields Too Large", 501: "Not Implemented", 502: "Bad Gateway",
           505: "HTTP Version Not Supported"}

# A flood of bad requests must not fill the disk: per process (a worker, the router).
REJECT_LINES_PER_SECOND = 20
_rejects = RateLimitedLog(REJECT_LINES_PER_SECOND, "rejected requests")
_tag = ""


def set_reject_tag(tag: str) -> None:
    """A prefix for this process's reject lines (the --http router: "[uwsgi-http] ")."""
    global _tag
    _tag = tag


def reject(status: int, peer: str, why: str, body: str = "") -> ProtocolError:
    """Log the one line of a rejected request (rate-limited) and make its ProtocolError.
    status 0: the connection is closed without a reply (the uwsgi protocol has none)."""
    _rejects.log(f"{_tag}{status or '-'} {peer} {why}")
    return ProtocolError(status, PHRASES.get(status, "Error"), "", body)


SPOOL_DEFAULT = 8 * 1024 * 1024


class Limits:
    """The per-worker settings a parser needs, read once from the options."""

    __slots__ = ("buffer_size", "max_vars", "limit_post", "post_buffering", "keepalive", "socket_timeout",
                 "stream_body")

    def __init__(self, buffer_size=4096, max_vars=64, limit_post=0, post_buffering=0, keepalive=True,
                 socket_timeout=4):
        self.buffer_size = buffer_size
        self.max_vars = max_vars
        self.limit_post = limit_post
        # Bodies are buffered before dispatch; without --post-buffering a big one still goes to
        # a temp file past SPOOL_DEFAULT, so that one upload cannot eat the worker's memory.
        self.post_buffering = post_buffering or SPOOL_DEFAULT
        self.keepalive = keepalive
        self.socket_timeout = socket_timeout
        # stream_body(req) -> True: the request is queued at the end of its head and its body
        # handed over as it arrives (protocols.stream; set by the ASGI plugin), None: never
        self.stream_body = None

    @classmethod
    def from_opts(cls, opts) -> "Limits":
        def get(name, default):
            return option_value(opts, name, default)
        return cls(buffer_size=int(get("buffer_size", 4096)) or 4096,
                   max_vars=int(get("max_vars", 64)) or 64,
                   limit_post=int(get("limit_post", 0)),
                   post_buffering=int(get("post_buffering", 0)),
                   keepalive=keepalive_seconds(get("http_keepalive", "1")) > 0,
                   socket_timeout=float(get("socket_timeout", 4)) or 4.0)


_KEEPALIVE_WORDS = {"true": 1, "yes": 1, "on": 1, "false": 0, "no": 0, "off": 0}


def keepalive_seconds(value) -> int:
    """--http-keepalive [N] as uWSGI reads it, a number: 0 off, 1 on, N > 1 on with an N-second
    idle timeout (the router's). true/false words are read as 1/0 (uWSGI's atoi would turn "true"
    into 0). Raises ValueError, one line, for anything else."""
    if value is True or value is False or value is None:
        return int(bool(value))
    text = str(value).strip().lower()
    if text in _KEEPALIVE_WORDS:
        return _KEEPALIVE_WORDS[text]
    try:
        n = int(text, 10)
    except ValueError:
        n = -1
    if n < 0:
        raise ValueError(f"--http-keepalive {value!r}: expected a number (0 off, 1 on, N > 1: on, "
                         f"idle connections closed after N seconds)")
    return n


class BodyBuffer:
    """Collects a request body: in memory, spooled to a temp file over --post-buffering."""

    __slots__ = ("parts", "size", "file", "spool_at")

    def __init__(self, spool_at: int = 0):
        self.parts = []
        self.size = 0
        self.file = None
        self.spool_at = spool_at

    def add(self, data: bytes) -> None:
        self.size += len(data)
        if self.file is not None:
            self.file.write(data)
            return
        self.parts.append(bytes(data))
        if self.spool_at and self.size > self.spool_at:
            import tempfile  # only when a body spools: tempfile costs ~1 MB of worker RSS
            self.file = tempfile.TemporaryFile(prefix="uwsgid-body-")
            for part in self.parts:
                self.file.write(part)
            self.parts = []

    def result(self):
        if self.file is not None:
            self.file.seek(0)
            return self.file
        parts = self.parts
        if not parts:
            return b""
        return parts[0] if len(parts) == 1 else b"".join(parts)
