"""Code in every phase: route actions that call a Python or Lua function, and `${hook[NAME]}`.

    python:MODULE:FUNCTION     a Python callable (the cffi plugin imports MODULE)
    lua:FILE.lua:FUNCTION      a function of the table (or the globals) a Lua file defines,
                               loaded once in each thread's lua_State
    hook:NAME                  a hook registered by --python-hooks (@hook("NAME")) or
                               --lua-hooks (its `hooks` table), else a function registered
                               with uwsgi.register_rpc in either runtime
    hooks:PHASE                every hook --python-hooks / --lua-hooks registered for PHASE
                               (access, response, log); the options add these routes themselves
    ${hook[NAME]}              a variable computed by code (@variable / the `vars` table), in
                               any route argument; %(hook.NAME) in --log-format

The function gets one request object (its runtime's form of uwsgid.plugins.code.HookCall) and
its return says what the chain does (code.outcome). The phase is the chain's: request chain
`access`, response chain `response`, error chain `error`, final chain `log` (after the response
is out: the client never waits for it).

Waiting on I/O (request chain only): a Python hook that is a generator (it arms a wait with
uwsgi.async_sleep / wait_fd_read... and yields), or a Lua hook that yields its coroutine, hands
the core an iterator: Router.request returns at once and the core steps it like a streamed body
(its other cores serve meanwhile). When the hook is done the chain goes on from the next route;
when it ends with `continue`, the core runs the request again from the top (runtime.Router
sees `state.resumed` and lets it through to the static files and the app).

An error in a hook: its traceback in the log, a 500 (in the final chain: the log only).
"""

from __future__ import annotations

from uwsgid.plugins import api, code
from uwsgid.routing import translate
from uwsgid.routing.chains import BREAK, NEXT, SUSPEND, action
from uwsgid.util.log import log, log_exception

_ERROR_STATUS = b"500 Internal Server Error"


def _ref(lang: str, arg: bytes, chain):
    ref = arg.decode("utf-8", "surrogateescape").strip()
    if ref.count(":") < 1 or not ref.rpartition(":")[0] or not ref.rpartition(":")[2]:
        what = "MODULE:FUNCTION" if lang == "python" else "FILE.lua:FUNCTION"
        raise ValueError(f"{ref!r}: expected {what}")
    code.WANTED.append((lang, ref, f"{lang}:{ref}"))
    return ref


@action("python", doc="MODULE:FUNCTION: call the Python function with the request object; its return "
                      "says what the chain does (None go on, a status or (status, headers, body) "
                      "answers, r.redirect(), r.goto(), 0/1/2 next/continue/break); in any chain")
def _python(arg, chain):
    ref = _ref("python", arg, chain)
    return lambda state, req, groups: run_hook(state, req, chain, "python", ref)


@action("lua", doc="FILE.lua:FUNCTION: call the Lua function (of the table the file returns, or a "
                   "global) with the request object, as `python:` does")
def _lua(arg, chain):
    ref = _ref("lua", arg, chain)
    return lambda state, req, groups: run_hook(state, req, chain, "lua", ref)


@action("hook", doc="NAME: call the hook registered as NAME (--python-hooks @hook(NAME), --lua-hooks "
                    "`hooks` table) or the function registered with uwsgi.register_rpc(NAME) in "
                    "either runtime, with the request object")
def _hook(arg, chain):
    name = arg.decode("utf-8", "surrogateescape").strip()
    if not name:
        raise ValueError("expected hook:NAME")

    def run(state, req, groups):
        found = code.NAMED.get(name) or _rpc_hook(name)
        if found is None:
            log(f"[uwsgi-route] hook:{name}: no hook or rpc function of that name is registered")
            return _fail(state, req, chain)
        return run_hook(state, req, chain, found[0], found[1])
    return run


@action("hooks", doc="PHASE: run the hooks --python-hooks / --lua-hooks registered for PHASE (access, "
                     "response, log), in order, until one does not go on; the options add "
                     "`--route-run hooks:access`, `--response-route-run hooks:response` and "
                     "`--final-route-run hooks:log` first in their chains")
def _hooks(arg, chain):
    phase = arg.decode("latin-1").strip()
    if phase not in code.PHASES:
        raise ValueError(f"{phase!r}: a phase is access, response or log")
    hooks = code.PHASES[phase]

    def run(state, req, groups):
        if not hooks:
            return NEXT
        return run_hook(state, req, chain, None, hooks)
    return run


def _rpc_hook(name: str):
    from uwsgid.services import rpc  # below routing: the RPC table (no lookup function of its own)
    fn = rpc.lookup(name.encode("utf-8", "surrogateescape"))
    if fn is None:
        return None
    lua_name = getattr(fn, "lua_rpc_name", None)
    return ("lua", ("rpc", lua_name)) if lua_name is not None else ("python", fn)


# ---- running one -------------------------------------------------------------------------------------
def _call(lang: str, ref, hc):
    provider = code.PROVIDERS.get(lang)
    if provider is None:
        raise code.HookError(f"no {lang} runtime is configured in this instance for {lang} hooks")
    return provider.call(ref, hc)


def _sequence(hooks, req, phase):
    """hooks:PHASE: each registered hook in turn; an iterator when one of them waits."""
    for i, (lang, ref) in enumerate(hooks):
        hc = code.HookCall(req, phase)
        res = _call(lang, ref, hc)
        if res.__class__ is not tuple:
            return _rest(res, hooks[i + 1:], req, phase)
        if res != code.GO_ON:
            return res
    return code.GO_ON


def _rest(pending, hooks, req, phase):
    out = yield from pending
    if out != code.GO_ON:
        return out
    for lang, ref in hooks:
        res = _call(lang, ref, code.HookCall(req, phase))
        if res.__class__ is not tuple:
            res = yield from res
        if res != code.GO_ON:
            return res
    return code.GO_ON


def run_hook(state, req, chain, lang, ref) -> int:
    phase = code.PHASE_OF_CHAIN[chain.name]
    core = req.core
    try:
        if lang is None:
            res = _sequence(ref, req, phase)
        else:
            res = _call(lang, ref, code.HookCall(req, phase))
    except Exception as e:
        _log_error(e, f"[uwsgi-route] error in the {phase} hook {_desc(ref)} on {_where(req)}:")
        return _fail(state, req, chain)
    if res.__class__ is not tuple:
        if chain.name == "request" and core is not None:
            state.pending = res
            return SUSPEND
        _close(res)
        log(f"[uwsgi-route] the {phase} hook {_desc(ref)} waited on I/O: only access hooks (the request "
            f"chain) may wait; {_where(req)}")
        return _fail(state, req, chain)
    if core is not None and core.wait is not None:
        # a wait armed by a hook that did not yield (a Python hook that is not a generator)
        core.wait = None
        log(f"[uwsgi-route] the hook {_desc(ref)} armed a wait without yielding: make it a generator "
            f"(`yield` after uwsgi.async_sleep...) or use --greenlet; {_where(req)}")
        return _fail(state, req, chain)
    return settle(state, req, chain, res)


def settle(state, req, chain, out) -> int:
    """An outcome -> what the chain does."""
    kind = out[0]
    if kind == code.NEXT or kind == code.CONTINUE:
        return kind
    if kind == code.GOTO:
        state.jump = chain.find_label(out[1])
        return NEXT
    if chain.name == "final":
        if kind != code.BREAK:
            log(f"[uwsgi-route] a log hook cannot answer: the response is already out ({_where(req)})")
        return BREAK if kind == code.BREAK else NEXT
    if kind == code.ANSWER:
        _, status, headers, body = out
        if not any(n.lower() == b"content-length" for n, _v in headers):
            headers = [*headers, (b"Content-Length", b"%d" % len(body))]
        state.answer(req, status, headers, body)
        return BREAK
    if kind == code.REDIRECT:
        _, url, status = out
        state.answer(req, b"%d %b" % (status, code.reason(status)), [(b"Location", url)], b"Moved")
        return BREAK
    return BREAK


def _fail(state, req, chain) -> int:
    req.exception = True
    if chain.name == "final" or req.headers_sent:
        return NEXT
    body = b"Internal Server Error\n"
    state.answer(req, _ERROR_STATUS, [(b"Content-Type", b"text/plain"),
                                      (b"Content-Length", b"%d" % len(body))], body)
    return BREAK


def _log_error(e: Exception, prefix: str) -> None:
    if getattr(e, "own_traceback", False):
        log(f"{prefix}\n{e}")     # a Lua error: its Lua traceback says where
    else:
        log_exception(prefix)


def _close(it) -> None:
    close = getattr(it, "close", None)
    if close is not None:
        try:
            close()
        except Exception:
            pass


def _desc(ref) -> str:
    if isinstance(ref, list):
        return "hooks"
    if isinstance(ref, tuple):
        return f"rpc {ref[1]}"
    return getattr(ref, "__qualname__", None) or str(ref)


def _where(req) -> str:
    v = req.vars
    return f"{v.get(b'REQUEST_METHOD', b'-').decode('latin-1')} {v.get(b'REQUEST_URI', b'')[:200].decode('latin-1')}"


# ---- a hook that waits: the core steps it -------------------------------------------------------------
def suspend(core, req, st) -> bool:
    """The request chain stopped at a waiting hook (Router.request): the core steps _drive."""
    core.respond(_drive(core, req, st, st.router.request_chain))
    return True


def _drive(core, req, st, chain):
    while True:
        pending = st.pending
        st.pending = None
        try:
            out = yield from pending
            code_ = settle(st, req, chain, out if out is not None else code.GO_ON)
        except Exception as e:
            _log_error(e, f"[uwsgi-route] error in an access hook on {_where(req)}:")
            code_ = _fail(st, req, chain)
        if code_ == NEXT:
            pc = st.resume_pc + 1
            if st.jump >= 0:
                if st.jump <= st.resume_pc:
                    log("[uwsgi-route] ERROR \"goto\" instruction can only jump forward (check your label !!!)")
                    code_ = BREAK
                pc = st.jump
            if code_ == NEXT:
                code_ = chain.run(st, req, pc)
                if code_ == SUSPEND:
                    continue
        break
    st.chain = "response"
    if code_ == BREAK:
        if not req.status:
            # break without an answer: uWSGI closes the connection (logged as nginx's 444)
            req.keepalive = False
            req.status, req.status_line = 444, b"444 No Response"
            core.conn.close()
        return      # the core finishes the request: the hook's answer goes out
    # CONTINUE: the static files and the app, as Core.run does after the routes. The core is
    # parked on no event and runs the request again at the next loop turn; Router.request sees
    # `resumed` and lets it through.
    req.vars_block = None
    st.resumed = (req.start, req.start_wall, req.switches)
    conn = core.conn
    api.park()
    core.loop.ready.append(lambda: core.run(conn, req))
    yield


def resumed(core, req, st) -> bool:
    """Core.run again after _drive: keep the request's first start and count it once."""
    req.start, req.start_wall, req.switches = st.resumed
    st.resumed = None
    core.requests -= 1
    core.worker.requests -= 1
    return False


# ---- ${hook[NAME]} and %(hook.NAME) -----------------------------------------------------------------
def value(req, name: str) -> bytes:
    found = code.VARS.get(name)
    if found is None:
        log(f"[uwsgi-route] ${{hook[{name}]}}: no variable of that name is registered "
            "(--python-hooks @variable, --lua-hooks `vars`)")
        return b""
    lang, ref = found
    provider = code.PROVIDERS.get(lang)
    if provider is None:
        return b""
    try:
        return provider.value(ref, code.HookCall(req, "var"))
    except Exception:
        log_exception(f"[uwsgi-route] error computing ${{hook[{name}]}} on {_where(req)}:")
        return b""


@translate.route_var("hook", "the variable NAME computed by code: --python-hooks @variable(NAME), "
                             "--lua-hooks `vars` table (also %(hook.NAME) in --log-format)")
def _hook_var(req, key: bytes):
    return value(req, key.decode("utf-8", "surrogateescape"))


def log_value(name: str, req) -> bytes:
    return value(req, name) if req is not None else b""


def implicit_routes(opts) -> list:
    """The hook chains --python-hooks / --lua-hooks add, first in their chains."""
    if not any(opts.get(o, None) for o in code.HOOK_OPTIONS):
        return []
    return [("route-run", "hooks:access"), ("response-route-run", "hooks:response"),
            ("final-route-run", "hooks:log")]


# ---- docs/ROUTING.md's section (uwsgid.routing.doc) ------------------------------------------------
GUIDE = """## Code in every phase (Python and Lua hooks)

`python:MODULE:FUNCTION`, `lua:FILE.lua:FUNCTION` and `hook:NAME` call a function of either
runtime from any chain, whatever runtime serves the app; `--python-hooks MODULE` (decorators of
the `uwsgi_hooks` module: `@access`, `@response`, `@log`, `@hook(NAME)`, `@variable(NAME)`) and
`--lua-hooks FILE` (a file returning `{access=, response=, log=, hooks={NAME=}, vars={NAME=}}`)
register them without routes: they add `--route-run hooks:access`, `--response-route-run
hooks:response` and `--final-route-run hooks:log` first in their chains.

| phase | chain | what a hook does there |
|---|---|---|
| `access` | request (`--route*`) | before static files and the app: deny (`return 403`), answer (`r.answer(...)`), redirect, rewrite vars, fill `r.ctx`; may wait on I/O under `--async` (Python: a generator that yields after `uwsgi.async_sleep`/`wait_fd_read`..., or any plain function under `--greenlet`; Lua: `coroutine.yield()` after `uwsgi.async_sleep`, or a cosocket) |
| `response` | response (`--response-route*`) | status and headers are set, nothing is sent: `r.status = N`, `r.response_headers[NAME] = value` / `nil`, `add_response_header`; or answer instead |
| `error` | error (`--error-route*`) | as response, for status >= 400 |
| `log` | final (`--final-route*`) | after the last byte went out (the client never waits): `r.status`, `r.bytes_sent`, `r.duration`, `r.vars`, `r.ctx` |
| `var` | `${hook[NAME]}`, `%(hook.NAME)` | compute a value (nginx `python_set`): its return, as a string |

The request object has the same shape in both runtimes (Python `r.x`, Lua `r.x` / `r:method()`):
`vars` (request vars, read/write), `headers` (request headers by name, any case, read/write),
`ctx` (a per-request dict/table the app sees: WSGI `environ["uwsgi.ctx"]`, WSAPI `env.ctx`),
`status`, `response_headers`, `method`, `uri`, `remote_addr`, `phase`, `bytes_sent`,
`headers_size`, `duration` (s), `start_time` (epoch s), `exception`, `log(msg)`,
`answer(status, headers, body)`, `redirect(url[, 302])`, `goto(label)`.

What it returns: nothing (or true) goes on; a number >= 100 answers that status; a number < 100
is uWSGI's route code (0 next, 1 continue, 2 break); `(status, headers, body)` (Lua: three
returns, WSAPI style) answers. An error is a 500 with the traceback in the log (in the log
phase: the log line only); the worker goes on. An answer is the request's outcome in the
request log. Without any hook or route nothing of this runs (one attribute test per request).
Tests: test_code_hooks.py.
"""
