"""Python hooks of tests/routing/test_code_hooks.py: loaded by --python-hooks, and named by
python:code_hooks_py:FUNCTION routes. Each phase, an answer, an error, a wait, a variable."""

import hashlib

import uwsgi
from uwsgi_hooks import access, hook, log, response, variable


@access
def gate(r):
    if r.uri.startswith("/py-deny"):
        return 403
    if r.headers.get("X-Answer") == "py":
        return r.answer(201, {"X-Hook": "py"}, "answered by python\n")
    if r.uri.startswith("/py-redirect"):
        return r.redirect("/elsewhere")
    if r.uri.startswith("/py-raise"):
        raise RuntimeError("hook failure on purpose")
    r.ctx["user"] = "py-user"
    r.vars["HOOK_SEEN"] = "python"


@response
def decorate(r):
    r.response_headers["X-Py-Response"] = f"{r.status}"
    if "X-Powered-By" in r.response_headers:
        del r.response_headers["X-Powered-By"]
    if r.uri.startswith("/py-status"):
        r.status = 299


@log
def audit(r):
    r.log(f"py-log-hook status={r.status} sent={r.bytes_sent} dur={r.duration:.3f} "
          f"ctx={r.ctx.get('lua_user') or r.ctx.get('user')} uri={r.uri}")


@variable("md5")
def md5(r):
    return hashlib.md5(r.uri.encode()).hexdigest()


@hook("py_slow")
def slow(r):
    """An access hook that waits without holding the worker (the generator protocol)."""
    uwsgi.async_sleep(float(r.headers.get("X-Sleep", "1")))
    yield
    r.ctx["slept"] = "yes"


def named(r):
    return r.answer("202 Accepted", [("X-Named", "1")], b"by python:code_hooks_py:named\n")


def rpc_gate(r):
    if r.headers.get("X-Rpc") == "deny":
        return 401


uwsgi.register_rpc("pygate", rpc_gate)
