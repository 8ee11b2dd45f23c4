"""Code hooks: a Python or Lua function run by a route (`python:`, `lua:`, `hook:`, `hooks:`) or
a `${hook[NAME]}` variable. What both runtimes share, so that a hook sees the same request object
in either: the registry the language plugins fill, and `HookCall`, the operations behind the
request object (vars, headers, ctx, status, response headers, log, the answers).

The routing layer (uwsgid.routing.actions_code) calls a provider; a language plugin is one:

    PROVIDERS[lang]          "python" / "lua" -> a provider, set by the plugin's configure:
        check(ref) -> str | None       a problem with a `python:`/`lua:` reference (at start-up)
        call(ref, hc)                  run the function for HookCall hc: an outcome (below), or
                                       an iterator the core steps (the hook waits on I/O) whose
                                       StopIteration.value is the outcome
    NAMED[name]              (lang, ref): `hook:NAME` (decorated @hook(NAME) / a Lua hooks table)
    PHASES[phase]            [(lang, ref)] run by `hooks:PHASE` (access, response, log)
    VARS[name]               (lang, ref): `${hook[NAME]}`, %(hook.NAME)
    WANTED                   [(lang, ref, where)]: the references routes name, checked by the
                             provider's plugin once it is configured (one line naming the route)
    HOOK_OPTIONS             the plugins' options that register hooks (--python-hooks...): any
                             of them given makes the routing set up its hook chains

An outcome is a tuple: (NEXT,) go on; (CONTINUE,) stop routing, serve; (BREAK,) stop: the request
is answered or dropped; (ANSWER, status: bytes, headers: [(bytes, bytes)], body: bytes);
(REDIRECT, url: bytes, code: int); (GOTO, label: bytes). The function's return value becomes one
through `outcome()` (Python) or the Lua runner (hooks.lua): nothing/true = go on, a number < 100 is
uWSGI's route code (0 next, 1 continue, 2 break), a number >= 100 answers that status, a
(status, headers, body) answers, r.answer()/r.redirect()/r.goto() record one.
"""

from __future__ import annotations

import time
from http import HTTPStatus

from uwsgid.util.log import log

# http.HTTPStatus, not http.client's table: http.client pulls email and ssl into every worker
_REASONS = {s.value: s.phrase.encode() for s in HTTPStatus}

NEXT, CONTINUE, BREAK, ANSWER, REDIRECT, GOTO = 0, 1, 2, 10, 11, 12
GO_ON = (NEXT,)

PROVIDERS: dict = {}
NAMED: dict = {}
PHASES: dict = {"access": [], "response": [], "log": []}
VARS: dict = {}
WANTED: list = []
HOOK_OPTIONS: list = []

# the routing chain a phase runs in -> the phase name hooks see
PHASE_OF_CHAIN = {"request": "access", "response": "response", "error": "error", "final": "log"}


class HookError(Exception):
    """A hook used the request object wrongly (set a status in the access phase...)."""


def provide(lang: str, provider) -> None:
    PROVIDERS[lang] = provider


def register(lang: str, ref, *, phase: str | None = None, name: str | None = None,
             var: str | None = None) -> None:
    """What --python-hooks / --lua-hooks found: a phase hook, a named hook, a variable."""
    if phase is not None:
        if phase not in PHASES:
            raise ValueError(f"unknown hook phase {phase!r} (access, response, log)")
        PHASES[phase].append((lang, ref))
    if name is not None:
        NAMED[name] = (lang, ref)
    if var is not None:
        VARS[var] = (lang, ref)


def reason(code: int) -> bytes:
    return _REASONS.get(code, b"Unknown")


def status_line(status) -> bytes:
    """403 / "403" / b"403 Forbidden" -> b"403 Forbidden"."""
    if isinstance(status, int) and not isinstance(status, bool):
        status = b"%d" % status
    elif isinstance(status, str):
        status = status.encode("latin-1")
    elif not isinstance(status, (bytes, bytearray)):
        raise HookError(f"a status is a number or a string, not {type(status).__name__}")
    status = bytes(status).strip()
    code = status[:3]
    if not code.isdigit() or not 100 <= int(code) <= 999 or b"\r" in status or b"\n" in status:
        raise HookError(f"invalid status {status!r}")
    return status if len(status) > 3 else code + b" " + reason(int(code))


def _b(value) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("latin-1")
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value).encode()
    raise HookError(f"expected a string, got {type(value).__name__}")


def header_list(headers) -> list:
    """A dict or a list of pairs -> [(bytes, bytes)], checked for CR/LF."""
    if headers is None:
        return []
    items = headers.items() if hasattr(headers, "items") else headers
    out = []
    for name, value in items:
        n, v = _b(name), _b(value)
        if not n or b"\r" in n + v or b"\n" in n + v or b":" in n:
            raise HookError(f"invalid header {n!r}: {v!r}")
        out.append((n, v))
    return out


def _var_name(header: bytes) -> bytes:
    """'User-Agent' -> b'HTTP_USER_AGENT' (Content-Type/Length have no HTTP_ prefix, as CGI)."""
    key = header.upper().replace(b"-", b"_")
    if key in (b"CONTENT_TYPE", b"CONTENT_LENGTH"):
        return key
    return b"HTTP_" + key


class HookCall:
    """One run of a hook on a request: the operations of the request object, on bytes. The
    language wrappers (cffi_plugin.hooks, lua_plugin.hooks) give them their runtime's form."""

    __slots__ = ("req", "phase", "outcome")

    def __init__(self, req, phase: str):
        self.req = req
        self.phase = phase
        self.outcome = None

    # ---- request vars and headers -------------------------------------------------------------
    def var(self, name: bytes):
        return self.req.vars.get(name)

    def set_var(self, name: bytes, value) -> None:
        if value is None:
            self.req.vars.pop(name, None)
        else:
            self.req.vars[name] = _b(value)
        self.req.vars_block = None      # the plugin must not read the packet as received

    def var_names(self) -> list:
        return list(self.req.vars)

    def header(self, name: bytes):
        return self.req.vars.get(_var_name(name))

    def set_header(self, name: bytes, value) -> None:
        self.set_var(_var_name(name), value)

    @property
    def ctx(self) -> dict:
        ctx = self.req.ctx
        if ctx is None:
            ctx = self.req.ctx = {}
        return ctx

    # ---- the response ---------------------------------------------------------------------------
    @property
    def status(self) -> int:
        return self.req.status

    def set_status(self, status) -> None:
        req = self.req
        if self.phase not in ("response", "error") or req.headers_sent:
            raise HookError(f"the status can be set in the response phase only (this is {self.phase}); "
                            "answer with r.answer(...) instead")
        line = status_line(status)
        req.status = int(line[:3])
        req.status_line = line

    def _response_headers(self) -> list:
        if self.phase not in ("response", "error") or self.req.headers_sent:
            raise HookError(f"response headers can be changed in the response phase only (this is {self.phase})")
        headers = self.req.headers
        if headers.__class__ is not list:
            headers = self.req.headers = list(headers or ())    # HeaderBlock's cached form no longer applies
        return headers

    def response_header(self, name: bytes):
        low = name.lower()
        for n, v in self.req.headers or ():
            if n.lower() == low:
                return v
        return None

    def response_headers(self) -> list:
        return list(self.req.headers or ())

    def add_response_header(self, name, value) -> None:
        (pair,) = header_list([(name, value)])
        self._response_headers().append(pair)
        self._length_changed(pair[0])

    def set_response_header(self, name, value) -> None:
        self.del_response_header(name)
        if value is not None:
            self.add_response_header(name, value)

    def del_response_header(self, name) -> None:
        headers = self._response_headers()
        low = _b(name).lower()
        headers[:] = [h for h in headers if h[0].lower() != low]
        self._length_changed(low)

    def _length_changed(self, name: bytes) -> None:
        if name.lower() == b"content-length":
            cl = self.response_header(b"content-length")
            self.req._app_cl = int(cl) if cl is not None and cl.strip().isdigit() else None

    # ---- what the log phase reads -----------------------------------------------------------------
    def fact(self, name: str):
        """bytes_sent, headers_size, duration (s), start_time (epoch s), status, method, uri,
        remote_addr, exception (a 500 from an error), core, worker."""
        req = self.req
        if name == "bytes_sent":
            return req.response_size
        if name == "headers_size":
            return req.headers_size
        if name == "duration":
            end = req.end or time.monotonic()
            return max(0.0, end - req.start) if req.start else 0.0
        if name == "start_time":
            return req.start_wall
        if name == "status":
            return req.status
        if name == "method":
            return req.method
        if name == "uri":
            return req.vars.get(b"REQUEST_URI", b"")
        if name == "remote_addr":
            return req.vars.get(b"REMOTE_ADDR", b"")
        if name == "exception":
            return bool(req.exception)
        if name == "phase":
            return self.phase
        return None

    def log(self, msg) -> None:
        log(msg if isinstance(msg, str) else bytes(_b(msg)).decode("utf-8", "replace"))

    # ---- outcomes ------------------------------------------------------------------------------------
    def answer(self, status, headers=None, body=b"") -> int:
        if body is None:
            body = b""
        elif isinstance(body, str):
            body = body.encode("utf-8")
        elif isinstance(body, (list, tuple)):
            body = b"".join(_b(p) if not isinstance(p, str) else p.encode("utf-8") for p in body)
        else:
            body = _b(body)
        hdrs = header_list(headers)
        if not any(n.lower() == b"content-type" for n, _v in hdrs):
            hdrs.append((b"Content-Type", b"text/plain"))
        self.outcome = (ANSWER, status_line(status), hdrs, body)
        return BREAK

    def redirect(self, url, status: int = 302) -> int:
        if int(status) not in (301, 302, 303, 307, 308):
            raise HookError(f"redirect status {status}: one of 301, 302, 303, 307, 308")
        url = _b(url)
        if b"\r" in url or b"\n" in url:
            raise HookError("a redirect URL has no CR/LF")
        self.outcome = (REDIRECT, url, int(status))
        return BREAK

    def goto(self, label) -> int:
        self.outcome = (GOTO, _b(label))
        return NEXT


def outcome(hc: HookCall, value) -> tuple:
    """A Python hook's return value (or a Lua one, already unpacked) -> an outcome tuple."""
    if hc.outcome is not None:
        return hc.outcome
    if value is None or value is True:
        return GO_ON
    if isinstance(value, bool):
        raise HookError("a hook returned false: return a status (403) or r.answer(...) to refuse")
    if isinstance(value, int):
        if value >= 100:
            hc.answer(value, None, reason(value) if value in _REASONS else b"")
            return hc.outcome
        if value in (NEXT, CONTINUE, BREAK):
            return (value,)
        raise HookError(f"a hook returned {value}: 0 (next), 1 (continue), 2 (break) or a status >= 100")
    if isinstance(value, tuple) and 1 <= len(value) <= 3:
        status, headers, body = (tuple(value) + (None, b""))[:3]
        hc.answer(status, headers, body)
        return hc.outcome
    raise HookError(f"a hook returned a {type(value).__name__}: None to go on, a status, "
                    "(status, headers, body) or r.answer(...)")
