"""What a route's argument becomes for one request: uWSGI's uwsgi_routing_translate.

Two passes, as core/routing.c and core/regexp.c do them:
    1. `$N` (one digit) is the N-th group of the route's regular expression (its subject regexp,
       or a `regexp` condition's); a group beyond the pattern's count is dropped, `$` before
       anything else is kept as it is, a trailing `$` is dropped (uwsgi_regexp_apply_ovec)
    2. `${NAME}` is the request var NAME (`${HTTP_HOST}`, `${PATH_INFO}`...), empty when missing;
       `${name[key]}` is the route var `name` (cookie, qs, mime, uwsgi, time, httptime, base64,
       hex, upper, lower: VARS below) given `key`; an unclosed `${...` stays as written.

A text without `$` is returned as it is: compile() checks that once, at start-up, so that the
common route argument costs nothing per request.
"""

from __future__ import annotations

import os
import re
import time

from uwsgid.util.log import log

VARS: dict = {}      # route var name -> (fn(req, key: bytes) -> bytes | None, one-line doc)


def route_var(name: str, doc: str):
    def register(fn):
        VARS[name.encode()] = (fn, doc)
        return fn
    return register


class Text:
    """A compiled route argument: `render(req, groups)` -> bytes.

    Compiled once, at start-up: a text with no `$` is returned as it is; one with `${...}` but
    no `$N` is split into its literal parts and its keys (pass 1 cannot change it per request),
    so a request only looks the keys up and joins; one with `$N` runs pass 1 with the match's
    groups, then pass 2 on the result (a group's value may itself hold `${...}`, as in uWSGI)."""

    __slots__ = ("raw", "dynamic", "_parts", "_key", "_var")

    def __init__(self, raw: bytes):
        self.raw = raw
        self.dynamic = b"$" in raw
        self._parts = None      # pass 2 precompiled: bytes literals and (key,) lookups
        self._key = None        # the whole text is one ${key} of a request var
        self._var = None        # ... or of a route var: (fn, arg)
        if self.dynamic and _GROUP_REF.search(raw) is None:
            parts = _split_vars(groups_pass(raw, ()))
            if len(parts) == 1 and parts[0].__class__ is tuple:
                key = parts[0][0]
                name, bracket, arg = key.partition(b"[")
                if name and bracket and key.endswith(b"]") and name in VARS:
                    self._var = (VARS[name][0], arg[:-1])
                else:
                    self._key = key
            else:
                self._parts = parts

    def render(self, req, groups=()) -> bytes:
        if not self.dynamic:
            return self.raw
        key = self._key
        if key is not None:
            return req.vars.get(key, b"") if not key.endswith(b"]") else lookup(req, req.vars, key)
        var = self._var
        if var is not None:
            try:
                return var[0](req, var[1]) or b""
            except Exception as e:      # a route var never fails the request: uWSGI's NULL
                log(f"[uwsgi-route] ${{{self.raw[2:-1].decode('latin-1')}}}: {e}")
                return b""
        parts = self._parts
        if parts is None:
            return expand(self.raw, req, groups)
        v = req.vars
        return b"".join([p if p.__class__ is bytes else lookup(req, v, p[0]) for p in parts])

    def __repr__(self) -> str:
        return f"Text({self.raw!r})"


_GROUP_REF = re.compile(rb"\$[0-9]")
_PASS1 = re.compile(rb"\$(.)|\$$", re.S)     # `$` and the next byte, left to right


def _split_vars(text: bytes) -> list:
    """Pass 2's pieces of a text: literal bytes and (key,) for each `${key}` (an unclosed `${`
    stays literal)."""
    parts: list = []
    pos = 0
    start = text.find(b"${")
    while start >= 0:
        close = text.find(b"}", start + 2)
        if close < 0:
            break
        if start > pos:
            parts.append(text[pos:start])
        parts.append((text[start + 2:close],))
        pos = close + 1
        start = text.find(b"${", pos)
    if pos < len(text):
        parts.append(text[pos:])
    return parts or [b""]


def groups_pass(text: bytes, groups) -> bytes:
    """Pass 1: `$N` from the match's groups (groups[0] is the whole match); `$` before anything
    else stays, a trailing `$` is dropped (uwsgi_regexp_apply_ovec)."""
    if b"$" not in text:
        return text
    n = len(groups)

    def sub(m):
        d = m.group(1)
        if d is None:
            return b""              # the trailing $
        pos = d[0] - 48
        if not 0 <= pos <= 9:
            return m.group(0)       # `$x`: kept as it is
        return (groups[pos] or b"") if pos < n else b""
    return _PASS1.sub(sub, text)


def expand(text: bytes, req, groups=()) -> bytes:
    text = groups_pass(text, groups)
    if b"${" not in text:
        return text
    v = req.vars
    return b"".join([p if p.__class__ is bytes else lookup(req, v, p[0]) for p in _split_vars(text)])


def lookup(req, v: dict, key: bytes) -> bytes:
    """${key}: a route var `name[arg]`, else the request var."""
    if key.endswith(b"]"):
        bracket = key.find(b"[")
        if bracket > 0:
            entry = VARS.get(key[:bracket])
            if entry is not None:
                try:
                    return entry[0](req, key[bracket + 1:-1]) or b""
                except Exception as e:      # a route var never fails the request: uWSGI's NULL
                    log(f"[uwsgi-route] ${{{key.decode('latin-1')}}}: {e}")
                    return b""
    return v.get(key, b"")


# ---- the route vars of core/routing.c and core/cookie.c, core/querystring.c -------------------
@route_var("cookie", "the value of cookie KEY in the request's Cookie header")
def _cookie(req, key: bytes):
    for part in req.vars.get(b"HTTP_COOKIE", b"").split(b";"):
        name, eq, value = part.strip().partition(b"=")
        if eq and name == key and value:
            return value
    return None


@route_var("qs", "the value of KEY in QUERY_STRING (not url-decoded, as uWSGI)")
def _qs(req, key: bytes):
    for part in req.vars.get(b"QUERY_STRING", b"").split(b"&"):
        name, eq, value = part.partition(b"=")
        if eq and name == key and value:
            return value
    return None


_mime_table = None


def use_mime_table(table) -> None:
    """The MIME table (uwsgid.static.mime.MimeTable) for ${mime[VAR]} and file/cache mime=1."""
    global _mime_table
    _mime_table = table


def mime_type(name: bytes):
    if _mime_table is None:
        return None
    dot = name.rfind(b".")
    if dot < 0 or b"/" in name[dot:]:
        return None
    return _mime_table.lookup(name)


@route_var("mime", "the MIME type of the file named by request var KEY (by its extension)")
def _mime(req, key: bytes):
    value = req.vars.get(key)
    return mime_type(value) if value else None


def _worker_id(req) -> int:
    core = req.core
    return core.worker.id if core is not None else 0


_UWSGI_KEYS = {
    b"wid": lambda req: str(_worker_id(req)).encode(),
    b"pid": lambda req: str(os.getpid()).encode(),
    b"uuid": lambda req: _uuid4(),
    b"status": lambda req: str(req.status).encode(),
    b"rtime": lambda req: str(int(((req.end or time.monotonic()) - req.start) * 1_000_000)).encode(),
    b"rsize": lambda req: str(req.response_size).encode(),
    b"sor": lambda req: str(int(req.start_wall * 1_000_000)).encode(),
}


@route_var("uwsgi", "wid, pid, uuid, status, rtime (µs), rsize (body bytes), sor (start of "
                    "the request, µs since the epoch)")
def _uwsgi(req, key: bytes):
    fn = _UWSGI_KEYS.get(key)
    return fn(req) if fn is not None else None


@route_var("time", "unix (seconds since the epoch) or micros")
def _time(req, key: bytes):
    if key == b"unix":
        return str(int(time.time())).encode()
    if key == b"micros":
        return str(int(time.time() * 1_000_000)).encode()
    return None


_LEADING_INT = re.compile(rb"\s*([-+]?[0-9]+)")


def _num(text: bytes) -> int:
    """uwsgi_str_num / strtol: the leading digits (with a sign), 0 when none."""
    m = _LEADING_INT.match(text)
    return int(m.group(1)) if m is not None else 0


@route_var("httptime", "an HTTP date KEY seconds from now (for Expires)")
def _httptime(req, key: bytes):
    from email.utils import formatdate  # here: it imports random, socket... for one route var
    return formatdate(time.time() + _num(key), usegmt=True).encode()


@route_var("base64", "request var KEY, base64-encoded")
def _base64(req, key: bytes):
    value = req.vars.get(key)
    import base64
    return base64.b64encode(value) if value is not None else None


@route_var("hex", "request var KEY, hex-encoded (upper case digits, as uwsgi_str_to_hex)")
def _hex(req, key: bytes):
    value = req.vars.get(key)
    return value.hex().upper().encode() if value is not None else None


@route_var("upper", "request var KEY in upper case (uWSGI 2.0.22+)")
def _upper(req, key: bytes):
    value = req.vars.get(key)
    return value.upper() if value is not None else None


@route_var("lower", "request var KEY in lower case (uWSGI 2.0.22+)")
def _lower(req, key: bytes):
    value = req.vars.get(key)
    return value.lower() if value is not None else None


num = _num


def _uuid4() -> bytes:
    import uuid  # here: it imports platform
    return str(uuid.uuid4()).encode()
