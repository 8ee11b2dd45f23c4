"""The routes on the native lane (core/cpython/lane_route.c): a request whose request chain ends
in "go on to the app" stays on the lane, instead of every request taking the Python path as
soon as any route is configured.

At start-up `plan(router)` checks the chains once. The lane runs with routes when there is no
response or error chain and no --collect-header/--pull-header (they act on the app's response),
and every route of the request and final chains reads only what the lane has (request vars,
the route vars but ${hook[...]}, the conditions of conditions.py). Per request, through one
Python call each:

    pre(arg, raw)  before the app, arg being the environ (a WSGI app) or the vars block (a block
                 app, Lua), raw a uwsgi packet's vars block (None over HTTP): the request chain runs. False: a matched route needs the Python path
                 (a redirect, break, rewrite, delheader, a var a block app cannot get...), which
                 then parses the request anew as if the lane had never seen it; nothing the
                 routes did here leaves a trace (its `log` lines are written only once the chain
                 ended on the lane). None: nothing to do. Else (headers to add, state or None):
                 the lane appends the headers to the app's, and calls post(state, ...) once the
                 response is out
    post(st, status, size)   the final chain; False: `donotlog` ran, no request log line

When the app's response is not the lane's (a generator, write(), take_request), the Python path
goes on with a runtime.State made from the lane's (state_for): the same headers, the final
chain run by the core.

The routes read the vars the Python path would: a uwsgi packet's (pre gets its vars block: a
WSGI environ holds defaults, SERVER_NAME "localhost"..., for the vars a packet lacks), over HTTP
the environ's (every var with a default is in the head's) or the vars block a block app gets.
"""

from __future__ import annotations

import re
import time

from uwsgid.routing.chains import CONTINUE, NEXT
from uwsgid.routing.runtime import State
from uwsgid.routing.translate import Text
from uwsgid.util.log import log

try:
    from _uwsgi_native import parse_vars
except ImportError:     # no C module: no lane either (uwsgid.server.native_lane)
    parse_vars = None

# the conditions of conditions.py: pure functions of the request's vars (and of files)
CONDITIONS = frozenset((
    "exists", "isfile", "isdir", "islink", "isexec", "empty", "equal", "isequal", "eq", "==",
    "startswith", "endswith", "contains", "contain", "ishigher", ">", "ishigherequal", ">=",
    "islower", "<", "islowerequal", "<=", "ipv4in", "ipv6in", "regexp", "re"))
# the route vars the lane's request has what for (not ${hook[...]}: code runs there)
ROUTE_VARS = frozenset((b"cookie", b"qs", b"mime", b"uwsgi", b"time", b"httptime", b"base64", b"hex",
                        b"upper", b"lower"))
_ROUTE_VAR = re.compile(rb"\$\{([^}\[]*)\[")
# the actions of the final chain the lane runs (after the response: they need no Request)
FINAL_ACTIONS = frozenset(("log", "donotlog", "goto", "continue", "last", "addvar"))
# request vars the environ derives more from, or the log line reads: set by a route, the request
# takes the Python path (the app selection, url scheme, framing and log line follow them there)
_DERIVED = frozenset((b"SCRIPT_NAME", b"PATH_INFO", b"REQUEST_METHOD", b"REQUEST_URI", b"REMOTE_ADDR",
                      b"REMOTE_USER", b"SERVER_PROTOCOL", b"HTTPS", b"CONTENT_LENGTH", b"CONTENT_TYPE",
                      b"HTTP_HOST", b"SERVER_NAME", b"HTTP_CONNECTION", b"HTTP_X_FORWARDED_FOR",
                      b"HTTP_CONTENT_TYPE", b"HTTP_CONTENT_LENGTH"))
_CGI_NAME = re.compile(rb"[A-Z][A-Z0-9_]*\Z")

# the request chain's routes on the lane: what a match does
_SKIP, _RUN, _LOG, _VAR, _HAND = range(5)


class _Handoff(Exception):
    """A route needs the Python path: the lane gives the request back."""


def _reads_ok(route) -> bool:
    """The route's test and texts read only what the lane's request has."""
    raw = route.text.encode("utf-8", "surrogateescape")
    if b"HTTP_CONTENT_" in raw:
        return False    # a WSGI environ does not hold them (PEP 3333); the Python vars do
    if any(m.group(1) not in ROUTE_VARS for m in _ROUTE_VAR.finditer(raw)):
        return False
    if route.kind in ("if", "if-not"):
        return route.cond in CONDITIONS
    return True


def _request_op(route):
    if route.label is not None:
        return _SKIP, None
    a = route.action
    if a in ("addheader", "continue", "last", "goto", "donotlog"):
        return _RUN, route.run
    if a == "log":
        return _LOG, Text(route.arg)
    if a == "addvar":
        key = route.arg.partition(b"=")[0]
        if _CGI_NAME.match(key) and key not in _DERIVED and not key.startswith(b"UWSGI_"):
            return _VAR, (route.run, key)
    return _HAND, None


class Plan:
    """The compiled check of one Router: shared by the lanes of the process."""

    __slots__ = ("router", "ops", "final")

    def __init__(self, router, ops, final):
        self.router = router
        self.ops = ops          # per request-chain position: (test, op, payload)
        self.final = final      # the final Chain, or None

    def routing(self, core):
        """The pre and post of one lane, on `core`'s loop (its worker's ${uwsgi[wid]})."""
        return Routing(self, core)


def plan(router):
    """The lane's Plan for these chains, or None: the lane stays off (the module doc)."""
    if router.error is not None or router.response is not None or router.collect is not None:
        return None
    ops = []
    diverts = False     # a route before may end the chain or jump (continue, last, goto)
    for r in (router.request_chain.routes if router.request_chain is not None else ()):
        if r.label is None and not _reads_ok(r):
            return None
        op, payload = _request_op(r)
        if op == _HAND and r.kind == "run" and not diverts:
            return None     # every request would be handed on: the lane would only add work
        diverts = diverts or r.action in ("continue", "last", "goto")
        ops.append((r.test, op, payload))
    final = router.final
    if final is not None:
        for r in final.routes:
            if r.label is None and (not _reads_ok(r) or r.action not in FINAL_ACTIONS):
                return None
    return Plan(router, tuple(ops), final)


class _EnvVars:
    """A WSGI environ as the routes' vars (bytes names and values, latin-1 as the lane decoded
    them): a route reads the few it names, so nothing is converted up front."""

    __slots__ = ("env",)

    def __init__(self, env: dict):
        self.env = env

    def get(self, key: bytes, default=None):
        v = self.env.get(key.decode("latin-1"))
        return v.encode("latin-1") if v.__class__ is str else default

    def __getitem__(self, key: bytes) -> bytes:
        v = self.get(key)
        if v is None:
            raise KeyError(key)
        return v

    def __contains__(self, key: bytes) -> bool:
        return self.env.get(key.decode("latin-1")).__class__ is str

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self.env[key.decode("latin-1")] = value.decode("latin-1")


class LaneRequest:
    """What the routes read of a request on the lane (net.request.Request's names)."""

    __slots__ = ("vars", "core", "status", "start", "end", "start_wall", "response_size")

    def __init__(self, vars_, core):
        self.vars = vars_
        self.core = core
        self.status = 0
        self.start = time.monotonic()
        self.end = None
        self.start_wall = time.time()
        self.response_size = 0


class LaneState:
    """A request's routing state on the lane: the fields its actions set (runtime.State's)."""

    __slots__ = ("req", "add", "jump", "donotlog", "chain", "resume_pc", "set")

    def __init__(self, req):
        self.req = req
        self.set = None         # the names of the vars addvar set (state_for)
        self.add = None
        self.jump = -1
        self.donotlog = False
        self.chain = "request"
        self.resume_pc = 0

    def add_header(self, line: bytes) -> None:
        name, colon, value = line.partition(b":")
        name = name.strip()
        if not colon or not name or b"\r" in line or b"\n" in line:
            raise _Handoff     # the Python path says why, once
        if self.add is None:
            self.add = []
        self.add.append((name, value.strip()))


class Routing:
    """One lane's pre and post (core/cpython/lane_route.c calls them)."""

    __slots__ = ("plan", "core", "last")

    def __init__(self, plan_: Plan, core):
        self.plan = plan_
        self.core = core        # ${uwsgi[wid]}: the lane's worker
        self.last = None        # the state of the lane's last request (state_for)

    def pre(self, arg, raw):
        self.last = None
        wsgi = arg.__class__ is dict
        env = None      # a WSGI environ that a var set by a route must reach too
        if raw is not None:     # a uwsgi packet's vars, read as protocols.uwsgi reads them
            vars_ = parse_vars(raw, 1024)
            if b"SCRIPT_NAME" not in vars_:
                vars_[b"SCRIPT_NAME"] = b""
            if wsgi:
                env = arg
        elif wsgi:
            vars_ = _EnvVars(arg)
        else:
            vars_ = parse_vars(arg, 1024)
        req = LaneRequest(vars_, self.core)
        st = LaneState(req)
        logs = None
        ops = self.plan.ops
        n = len(ops)
        pc = 0
        try:
            while pc < n:
                test, op, payload = ops[pc]
                if op == _SKIP:
                    pc += 1
                    continue
                ok, groups = test(req)
                if not ok:
                    pc += 1
                    continue
                if op == _HAND or (op == _VAR and not wsgi):
                    return False
                if op == _LOG:
                    if logs is None:
                        logs = []
                    logs.append(payload.render(req, groups))
                    pc += 1
                    continue
                if op == _VAR:
                    if st.set is None:
                        st.set = []
                    st.set.append(payload[1])
                    payload = payload[0]
                st.jump = -1
                code = payload(st, req, groups)
                if env is not None and op == _VAR:
                    key = st.set[-1]
                    env[key.decode("latin-1")] = vars_[key].decode("latin-1")
                if code == CONTINUE:
                    break
                if code != NEXT:
                    return False
                target = st.jump
                if target >= 0:
                    if target <= pc:
                        return False    # the Python path logs uWSGI's error and breaks
                    pc = target
                    continue
                pc += 1
        except Exception:
            return False    # the Python path runs the chain again: its error, its answer
        add = st.add
        if add:
            for name, _ in add:
                if len(name) == 14 and name.lower() == b"content-length":
                    return False    # the Python path sorts the framing out
        if logs is not None:
            for line in logs:
                log(line.decode("utf-8", "replace"))
        if self.plan.final is None and not st.donotlog and st.set is None:
            if not add:
                return None
            self.last = st
            return tuple(add), None
        if vars_.__class__ is _EnvVars:     # the final chain reads the vars as the routes left them
            req.vars = _EnvVars(arg.copy())     # (not as the app may change its environ)
        self.last = st
        return (tuple(add) if add else ()), st

    def post(self, st, status: int, size: int) -> bool:
        req = st.req
        req.status = status
        req.response_size = size
        req.end = time.monotonic()
        final = self.plan.final
        if final is not None:
            st.chain = "final"
            try:
                final.run(st, req)
            except Exception as e:
                log(f"[uwsgi-route] error in the final chain: {e!r}")
        return not st.donotlog

    def state_for(self, req):
        """The Python path's State for the request the lane hands on after its app ran."""
        st = State(self.plan.router)
        st.chain = "response"
        last = self.last
        self.last = None
        if last is not None:
            st.add = list(last.add) if last.add else None
            st.donotlog = last.donotlog
            for key in last.set or ():      # the Python path's vars may come from the packet
                value = last.req.vars.get(key)
                if value is not None:
                    req.vars[key] = value
        return st

