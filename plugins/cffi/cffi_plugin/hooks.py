"""Python code in every request phase: the request object a hook gets, the provider the routing's
`python:` / `hook:` / `hooks:` actions call (uwsgid.plugins.code), and the decorators of
--python-hooks modules, importable as `uwsgi_hooks`:

    from uwsgi_hooks import access, response, log, variable, hook

    @access                      # before the app (Tyk's @Pre / @Post): deny, answer, rewrite
    def only_staff(r):
        if r.headers.get("X-Staff") != "yes":
            return 403
        r.ctx["user"] = "staff"  # the app sees environ["uwsgi.ctx"]

    @response                    # after the app set status and headers (Tyk's @Response)
    def secure(r):
        r.response_headers["X-Frame-Options"] = "DENY"

    @log                         # after the last byte went out
    def audit(r):
        r.log(f"{r.status} {r.bytes_sent} bytes in {r.duration:.3f}s")

    @variable("country")         # ${hook[country]} in routes, %(hook.country) in --log-format
    def country(r):
        return r.headers.get("CF-IPCountry", "-")

Waiting on I/O in an access hook: make it a generator (`uwsgi.async_sleep(0.5); yield`) or run
under --greenlet, where uwsgi.async_sleep() and the other waits switch inside the call.
Strings are str (latin-1 for vars and headers, as WSGI's environ).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import MutableMapping

from uwsgid.plugins import api, code

ROUTE_NEXT, ROUTE_CONTINUE, ROUTE_BREAK = code.NEXT, code.CONTINUE, code.BREAK


def _s(value) -> str | None:
    return value.decode("latin-1") if isinstance(value, bytes) else value


def _b(value) -> bytes:
    return value.encode("latin-1") if isinstance(value, str) else code._b(value)


class _Vars(MutableMapping):
    """r.vars: the request vars (CGI names), read and write."""

    __slots__ = ("_hc",)

    def __init__(self, hc):
        self._hc = hc

    def __getitem__(self, name):
        v = self._hc.var(_b(name))
        if v is None:
            raise KeyError(name)
        return _s(v)

    def __setitem__(self, name, value):
        self._hc.set_var(_b(name), _b(value))

    def __delitem__(self, name):
        if self._hc.var(_b(name)) is None:
            raise KeyError(name)
        self._hc.set_var(_b(name), None)

    def __iter__(self):
        return (_s(k) for k in self._hc.var_names())

    def __len__(self):
        return len(self._hc.var_names())


class _Headers(MutableMapping):
    """r.headers: the request headers by name, any case ("User-Agent", "user-agent")."""

    __slots__ = ("_hc",)

    def __init__(self, hc):
        self._hc = hc

    def __getitem__(self, name):
        v = self._hc.header(_b(name))
        if v is None:
            raise KeyError(name)
        return _s(v)

    def __setitem__(self, name, value):
        self._hc.set_header(_b(name), _b(value))

    def __delitem__(self, name):
        self._hc.set_header(_b(name), None)

    def _names(self):
        for k in self._hc.var_names():
            if k.startswith(b"HTTP_"):
                yield k[5:].decode("latin-1").replace("_", "-").title()
            elif k in (b"CONTENT_TYPE", b"CONTENT_LENGTH"):
                yield k.decode("latin-1").replace("_", "-").title()

    def __iter__(self):
        return self._names()

    def __len__(self):
        return sum(1 for _ in self._names())


class _ResponseHeaders(MutableMapping):
    """r.response_headers: the app's response headers (writable in the response phase);
    [name] is the first value, add(name, value) adds one more, items() lists them all."""

    __slots__ = ("_hc",)

    def __init__(self, hc):
        self._hc = hc

    def __getitem__(self, name):
        v = self._hc.response_header(_b(name))
        if v is None:
            raise KeyError(name)
        return _s(v)

    def __setitem__(self, name, value):
        self._hc.set_response_header(_b(name), _b(value))

    def __delitem__(self, name):
        self._hc.del_response_header(_b(name))

    def add(self, name, value) -> None:
        self._hc.add_response_header(_b(name), _b(value))

    def items(self):
        return [(_s(n), _s(v)) for n, v in self._hc.response_headers()]

    def __iter__(self):
        return iter([_s(n) for n, _v in self._hc.response_headers()])

    def __len__(self):
        return len(self._hc.response_headers())


class Request:
    """What a hook gets: the same shape as the Lua hooks' request table."""

    __slots__ = ("_hc", "vars", "headers", "response_headers")

    def __init__(self, hc):
        self._hc = hc
        self.vars = _Vars(hc)
        self.headers = _Headers(hc)
        self.response_headers = _ResponseHeaders(hc)

    phase = property(lambda self: self._hc.phase, doc="access, response, error, log or var")
    ctx = property(lambda self: self._hc.ctx, doc="the per-request dict the app sees (environ['uwsgi.ctx'])")
    method = property(lambda self: _s(self._hc.fact("method")))
    uri = property(lambda self: _s(self._hc.fact("uri")))
    remote_addr = property(lambda self: _s(self._hc.fact("remote_addr")))
    bytes_sent = property(lambda self: self._hc.fact("bytes_sent"), doc="body bytes sent (log phase)")
    headers_size = property(lambda self: self._hc.fact("headers_size"))
    duration = property(lambda self: self._hc.fact("duration"), doc="seconds since the request started")
    start_time = property(lambda self: self._hc.fact("start_time"), doc="epoch seconds")
    exception = property(lambda self: self._hc.fact("exception"), doc="the app (or a hook) failed")

    @property
    def status(self) -> int:
        return self._hc.status

    @status.setter
    def status(self, value) -> None:
        self._hc.set_status(value)

    def log(self, msg) -> None:
        self._hc.log(msg)

    def answer(self, status, headers=None, body=b"") -> int:
        return self._hc.answer(status, headers, body)

    def redirect(self, url, status: int = 302) -> int:
        return self._hc.redirect(url, status)

    def goto(self, label) -> int:
        return self._hc.goto(label)

    def __repr__(self) -> str:
        return f"<uwsgi hook request {self.method} {self.uri} ({self.phase})>"


# ---- the provider --------------------------------------------------------------------------------------
def resolve(ref: str):
    """'package.module:function' (or 'module:Class.method') -> the callable."""
    module, _, attr = ref.partition(":")
    obj = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    if not callable(obj):
        raise TypeError(f"{ref} is a {type(obj).__name__}, not a function")
    return obj


class Provider:
    """uwsgid.plugins.code's "python" provider."""

    def __init__(self):
        self.functions: dict = {}
        self.green = False      # --greenlet: hooks run in greenlets, waits switch inside the call

    def check(self, ref: str) -> str | None:
        try:
            self.functions[ref] = resolve(ref)
        except Exception as e:
            return f"{type(e).__name__}: {e}"
        return None

    def _fn(self, ref):
        if callable(ref):
            return ref
        fn = self.functions.get(ref)
        if fn is None:
            fn = self.functions[ref] = resolve(ref)
        return fn

    def call(self, ref, hc):
        fn = self._fn(ref)
        r = Request(hc)
        if self.green:
            core = api.current_core()
            if core is not None and getattr(core, "to_loop", 1) is None and hc.phase == "access":
                return _green_call(core, fn, r, hc)
        res = fn(r)
        if res is not None and hasattr(res, "send") and hasattr(res, "throw"):     # a generator: it waits
            return _generator(res, hc)
        return code.outcome(hc, res)

    def value(self, ref, hc) -> bytes:
        res = self._fn(ref)(Request(hc))
        if res is None:
            return b""
        if isinstance(res, str):
            return res.encode("utf-8")
        return code._b(res)


def _generator(gen, hc):
    out = yield from gen
    return code.outcome(hc, out)


def _green_call(core, fn, r, hc):
    from greenlet import GreenletExit, getcurrent, greenlet

    g = greenlet(fn)

    def to_loop():
        g.parent.switch()

    core.to_loop = to_loop
    try:
        res = g.switch(r)
    finally:
        core.to_loop = None
    if g.dead:
        return code.outcome(hc, res)

    def pending():
        nonlocal res
        try:
            while not g.dead:
                yield       # the core suspends on the wait the hook armed
                g.parent = getcurrent()
                core.to_loop = to_loop
                try:
                    res = g.switch()
                finally:
                    core.to_loop = None
        finally:
            if not g.dead:      # abandoned (client gone): the hook's finally blocks run
                g.parent = getcurrent()
                g.throw(GreenletExit)
        return code.outcome(hc, res)
    return pending()


PROVIDER = Provider()


# ---- --python-hooks: the decorators ---------------------------------------------------------------
def access(fn):
    """Run fn(r) before the app, for every request (Tyk's @Pre / @Post)."""
    code.register("python", fn, phase="access")
    return fn


def response(fn):
    """Run fn(r) when the app has set the status and headers (Tyk's @Response)."""
    code.register("python", fn, phase="response")
    return fn


def log(fn):
    """Run fn(r) once the response is out (status, bytes_sent, duration...)."""
    code.register("python", fn, phase="log")
    return fn


def hook(name: str):
    """Name fn for `--route... hook:NAME`."""
    def register(fn):
        code.register("python", fn, name=name)
        return fn
    return register


def variable(name: str):
    """fn(r) computes ${hook[NAME]} in routes and %(hook.NAME) in --log-format."""
    def register(fn):
        code.register("python", fn, var=name)
        return fn
    return register


Pre = Post = access         # Tyk's middleware names
Response = response


def configure(opts) -> None:
    """At plugin configure (after sys.path is set): the provider, the `uwsgi_hooks` module,
    --python-hooks imported, the `python:` routes' functions checked (one line naming the route)."""
    from uwsgid.plugins.contract import OptionValueError
    code.provide("python", PROVIDER)
    PROVIDER.green = bool(getattr(opts, "greenlet", False))
    sys.modules.setdefault("uwsgi_hooks", sys.modules[__name__])
    for name in opts.get("python-hooks", None) or ():
        try:
            importlib.import_module(name)
        except Exception as e:
            raise OptionValueError(f"--python-hooks {name}: cannot import it ({type(e).__name__}: {e})") from None
    for lang, ref, where in code.WANTED:
        if lang == "python":
            problem = PROVIDER.check(ref)
            if problem:
                raise OptionValueError(f"route action {where}: {problem}")
