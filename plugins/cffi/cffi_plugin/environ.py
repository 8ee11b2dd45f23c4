"""PEP 3333 environ from the request's CGI vars (dict[bytes, bytes], decoded latin-1)."""

from __future__ import annotations

from .wsgi_input import WSGIInput

try:    # the environ built in one C call (core/cpython/native.h); absent: the plan below
    from _uwsgi_native import environ as _native_environ
except ImportError:
    _native_environ = None

# Vars the environ must hold even when the front end did not send them (PEP 3333 / wsgiref.validate).
_DEFAULTS = (("SCRIPT_NAME", ""), ("PATH_INFO", ""), ("QUERY_STRING", ""),
             ("SERVER_NAME", "localhost"), ("SERVER_PORT", "80"), ("SERVER_PROTOCOL", "HTTP/1.0"),
             ("REQUEST_METHOD", "GET"))

# Behind one front end every request carries the same var names in the same order: a plan per
# name tuple holds their str names and which fix-ups apply, so that building an environ is one
# join + decode + split for the values and one dict update. Bounded: a client sending random
# header names cannot grow it without limit.
_plans: dict[tuple, tuple] = {}
_PLANS_MAX = 256
# A CGI server never passes these as HTTP_* (wsgiref.validate rejects them).
_DROP = frozenset((b"HTTP_CONTENT_TYPE", b"HTTP_CONTENT_LENGTH"))


def _plan(keys: tuple) -> tuple:
    names = tuple(k.decode("latin-1") for k in keys)
    drop = tuple(k.decode("latin-1") for k in keys if k in _DROP)
    scheme = b"UWSGI_SCHEME" in keys or b"HTTPS" in keys
    plan = (names, drop, scheme, b"CONTENT_LENGTH" in keys)
    if len(_plans) < _PLANS_MAX:
        _plans[keys] = plan
    return plan


def content_length(vars_: dict) -> int:
    raw = vars_.get(b"CONTENT_LENGTH")
    if not raw:
        return 0
    try:
        n = int(raw)
    except ValueError:
        return 0
    return n if n > 0 else 0


def url_scheme(vars_: dict) -> str:
    scheme = vars_.get(b"UWSGI_SCHEME")
    if scheme:
        return scheme.decode("latin-1")
    https = vars_.get(b"HTTPS")
    # uWSGI's rule: "on" in any case (a prefix: strncasecmp) or a leading "1"; "off", "" and
    # anything else is http. "true"/"yes" are accepted too (some front ends send them).
    if https and (https[:2].lower() == b"on" or https[:1] == b"1" or https.lower() in (b"true", b"yes")):
        return "https"
    return "http"


# No body (most requests): one stateless reader shared by all (length 0: always EOF).
EMPTY_INPUT = WSGIInput(None, 0)


def base_defaults() -> dict:
    """The vars an environ must hold even when the front end did not send them, and the
    shared empty wsgi.input."""
    base = dict(_DEFAULTS)
    base["wsgi.input"] = EMPTY_INPUT
    return base


def build_environ(req, base: dict) -> dict:
    """A fresh environ: `base` holds the per-server constant keys (wsgi.version, errors,
    multithread, multiprocess, run_once, file_wrapper, uwsgi.*) and base_defaults()."""
    vars_ = req.vars
    if _native_environ is not None:
        env = _native_environ(vars_, base)
        core = req.core
        if core is not None:
            env["uwsgi.core"] = core.id
        if req.input_terminated:
            env["wsgi.input"] = WSGIInput(req, -1)
        elif vars_.get(b"CONTENT_LENGTH"):     # (nginx sends an empty one with every GET)
            n = content_length(vars_)
            if n:
                env["wsgi.input"] = WSGIInput(req, n)
        return env
    keys = tuple(vars_)
    plan = _plans.get(keys)
    if plan is None:
        plan = _plan(keys)
    names, drop, scheme, has_cl = plan
    env = base.copy()
    # latin-1 maps byte to char one to one: decode all the values at once (a NUL inside one
    # shows as an extra part; then one by one)
    values = b"\0".join(vars_.values()).decode("latin-1").split("\0")
    if len(values) != len(names):
        values = [v.decode("latin-1") for v in vars_.values()]
    env.update(zip(names, values))
    for name in drop:
        del env[name]
    script_name = env["SCRIPT_NAME"]
    if script_name and script_name[-1] == "/":
        # SCRIPT_NAME "/" (nginx setups) means the root: PEP 3333 wants "" there.
        env["SCRIPT_NAME"] = script_name.rstrip("/")
    if scheme:
        env["wsgi.url_scheme"] = url_scheme(vars_)
    core = req.core
    if core is not None:
        env["uwsgi.core"] = core.id
    # base holds a shared empty wsgi.input; a body gets a reader that reaches req.input lazily.
    if req.input_terminated:
        env["wsgi.input"] = WSGIInput(req, -1)
    elif has_cl:
        n = content_length(vars_)
        if n:
            env["wsgi.input"] = WSGIInput(req, n)
    return env
