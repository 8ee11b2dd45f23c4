"""PEP 3333 environ from the request's CGI vars (dict[bytes, bytes], decoded latin-1)."""

from __future__ import annotations

from .wsgi_input import WSGIInput

# Vars the environ must hold even when the front end did not send them (PEP 3333 / wsgiref.validate).
_DEFAULTS = (("SCRIPT_NAME", ""), ("PATH_INFO", ""), ("QUERY_STRING", ""),
             ("SERVER_NAME", "localhost"), ("SERVER_PORT", "80"), ("SERVER_PROTOCOL", "HTTP/1.0"),
             ("REQUEST_METHOD", "GET"))

# Var names repeat from request to request: decode each once (bounded, so that a client
# sending random header names cannot grow it without limit).
_names: dict[bytes, str] = {}
_NAMES_MAX = 2048


def _name(key: bytes) -> str:
    s = _names.get(key)
    if s is None:
        s = key.decode("latin-1")
        if len(_names) < _NAMES_MAX:
            _names[key] = s
    return s


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
    env = base.copy()
    names = _names
    for k, v in vars_.items():
        env[names.get(k) or _name(k)] = v.decode("latin-1")
    # A CGI server never passes these as HTTP_* (wsgiref.validate rejects them).
    if "HTTP_CONTENT_TYPE" in env:
        del env["HTTP_CONTENT_TYPE"]
    if "HTTP_CONTENT_LENGTH" in env:
        del env["HTTP_CONTENT_LENGTH"]
    script_name = env["SCRIPT_NAME"]
    if script_name and script_name[-1] == "/":
        # SCRIPT_NAME "/" (nginx setups) means the root: PEP 3333 wants "" there.
        env["SCRIPT_NAME"] = script_name.rstrip("/")
    if b"UWSGI_SCHEME" in vars_ or b"HTTPS" in vars_:
        env["wsgi.url_scheme"] = url_scheme(vars_)
    core = req.core
    if core is not None:
        env["uwsgi.core"] = core.id
    # base holds a shared empty wsgi.input; a body gets a reader that reaches req.input lazily.
    if req.input_terminated:
        env["wsgi.input"] = WSGIInput(req, -1)
    elif b"CONTENT_LENGTH" in vars_:
        n = content_length(vars_)
        if n:
            env["wsgi.input"] = WSGIInput(req, n)
    return env
