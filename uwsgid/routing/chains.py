"""The four chains compiled from the options, and how one runs: core/routing.c's
uwsgi_opt_add_route and uwsgi_apply_routes_do.

An option's family is its prefix (route, final-route, error-route, response-route) and its
kind the rest: a subject (`--route REGEXP ACTION:ARGS` matches PATH_INFO, `-host` HTTP_HOST...),
`-status N ACTION` (the response's status), `-if COND:ARGS ACTION`, `-if-not`, `-run ACTION`
or `-label NAME`. Every route keeps its position (labels included), so that `goto` jumps to a
label's position, forward only, as uWSGI does.

An action returns NEXT (go on), CONTINUE (stop routing, serve the request) or BREAK (stop: the
request is answered or dropped); `goto` sets state.jump and returns NEXT.
"""

from __future__ import annotations

import re

from uwsgid.routing import conditions
from uwsgid.util.log import log

NEXT, CONTINUE, BREAK = 0, 1, 2
SUSPEND = 3     # a code hook waits on I/O: state.resume_pc says where the chain goes on

FAMILIES = ("route", "final-route", "error-route", "response-route")   # their chains' names
CHAIN_OF = {"route": "request", "final-route": "final", "error-route": "error", "response-route": "response"}

# kind -> the request var a subject route matches (uWSGI's wsgi_req fields)
SUBJECTS = {
    "": b"PATH_INFO", "host": b"HTTP_HOST", "uri": b"REQUEST_URI", "qs": b"QUERY_STRING",
    "remote-addr": b"REMOTE_ADDR", "user-agent": b"HTTP_USER_AGENT", "remote-user": b"REMOTE_USER",
    "referer": b"HTTP_REFERER",
}
KINDS = (*SUBJECTS, "label", "if", "if-not", "run")
STATUS_FAMILIES = ("final-route", "error-route", "response-route")    # these have -status too

ACTIONS: dict = {}    # name -> (factory(arg: bytes, chain) -> fn(state, req, groups) -> code, doc)
REFUSED: dict = {}    # actions of real uWSGI refused here at start-up -> why (never ignored)


def action(*names: str, doc: str):
    def register(factory):
        for n in names:
            ACTIONS[n] = (factory, doc)
        return factory
    return register


def option_names() -> list[str]:
    out = []
    for fam in FAMILIES:
        for kind in KINDS:
            out.append(fam if not kind else f"{fam}-{kind}")
        if fam in STATUS_FAMILIES:
            out.append(f"{fam}-status")
    return out


class RouteError(ValueError):
    """A route that cannot be compiled: its message is the one line the start-up prints."""


class Route:
    __slots__ = ("pos", "label", "test", "run", "text", "kind", "cond", "action", "arg")

    def __init__(self, pos: int, text: str, label: bytes | None = None, test=None, run=None,
                 kind: str = "label", cond: str | None = None, action: str | None = None, arg: bytes = b""):
        self.pos = pos
        self.text = text
        self.label = label
        self.test = test        # req -> (matched, groups); None for a label
        self.run = run          # (state, req, groups) -> NEXT / CONTINUE / BREAK
        # what the route was compiled from, for the native lane's check (uwsgid.routing.lane)
        self.kind = kind        # the option's kind: "" (PATH_INFO), "host", "if", "run", "status"...
        self.cond = cond        # an -if / -if-not route's condition name
        self.action = action    # the action's name, and its argument (untranslated)
        self.arg = arg


class Chain:
    """The compiled routes of one family, in order."""

    __slots__ = ("name", "routes", "labels")

    def __init__(self, name: str):
        self.name = name
        self.routes: list[Route] = []
        self.labels: dict = {}

    def __bool__(self) -> bool:
        return bool(self.routes)

    def run(self, state, req, pc: int = 0) -> int:
        routes = self.routes
        n = len(routes)
        while pc < n:
            r = routes[pc]
            if r.label is None:
                ok, groups = r.test(req)
                if ok:
                    state.jump = -1
                    code = r.run(state, req, groups)
                    if code:
                        if code == SUSPEND:
                            state.resume_pc = pc
                        return code
                    target = state.jump
                    if target >= 0:
                        if target <= pc:
                            log("[uwsgi-route] ERROR \"goto\" instruction can only jump forward (check your label !!!)")
                            return BREAK
                        pc = target
                        continue
            pc += 1
        return CONTINUE

    def find_label(self, name: bytes) -> int:
        pos = self.labels.get(name)
        if pos is not None:
            return pos
        try:
            return int(name)         # uWSGI: an unknown label is read as a position (atoi)
        except ValueError:
            return 0


def compile_chains(entries) -> dict:
    """{chain name: Chain} from (option name, value) pairs in the order given."""
    chains = {CHAIN_OF[f]: Chain(CHAIN_OF[f]) for f in FAMILIES}
    for opt, value in entries:
        fam, kind = split_option(opt)
        chain = chains[CHAIN_OF[fam]]
        where = f"--{opt} {value!r}"
        try:
            chain.routes.append(compile_route(chain, len(chain.routes), kind, value))
        except RouteError as e:
            raise RouteError(f"{where}: {e}") from None
    return chains


def split_option(opt: str) -> tuple[str, str]:
    for fam in sorted(FAMILIES, key=len, reverse=True):
        if opt == fam:
            return fam, ""
        if opt.startswith(fam + "-"):
            return fam, opt[len(fam) + 1:]
    raise RouteError(f"--{opt}: not a route option")


def compile_route(chain: Chain, pos: int, kind: str, value: str) -> Route:
    raw = value.encode("utf-8", "surrogateescape")
    if kind == "label":
        label = raw.strip()
        chain.labels.setdefault(label, pos)
        return Route(pos, value, label=label)
    cond = None
    if kind == "run":
        test = _always
        command = raw
    else:
        head, space, command = raw.partition(b" ")
        if not space:
            raise RouteError("invalid route syntax (expected 'SUBJECT ACTION:ARGS')")
        command = command.strip()
        if kind in ("if", "if-not"):
            name, colon, args = head.partition(b":")
            if not colon:
                raise RouteError("invalid route condition syntax (expected NAME:ARGS)")
            cond = name.decode("latin-1")
            try:
                check = conditions.compile(cond, args)
            except ValueError as e:
                raise RouteError(str(e)) from None
            test = check if kind == "if" else _negate(check)
        elif kind == "status":
            test = _status(_atoi(head))
        elif kind in SUBJECTS:
            try:
                rx = re.compile(head)
            except re.error as e:
                raise RouteError(f"bad regexp {head.decode('latin-1')!r}: {e}") from None
            test = _subject(SUBJECTS[kind], rx)
        else:
            raise RouteError(f"unknown route kind {kind!r}")
    name, colon, args = command.partition(b":")
    if not colon:
        raise RouteError("invalid route syntax (expected ACTION:ARGS, e.g. 'break:403' or 'continue:')")
    entry = ACTIONS.get(name.decode("latin-1"))
    if entry is None and name.decode("latin-1") in REFUSED:
        raise RouteError(f"the \"{name.decode('latin-1')}\" route action is not supported: "
                         f"{REFUSED[name.decode('latin-1')]}")
    if entry is None:
        raise RouteError(f"unable to register route: missing router for \"{name.decode('latin-1')}\" "
                         f"(docs/ROUTING.md lists the actions)")
    try:
        run = entry[0](args, chain)
    except ValueError as e:
        raise RouteError(f"{name.decode('latin-1')}: {e}") from None
    return Route(pos, value, test=test, run=run, kind=kind, cond=cond, action=name.decode("latin-1"), arg=args)


def _always(req):
    return True, ()


def _negate(cond):
    def test(req):
        ok, _groups = cond(req)
        return (not ok), ()
    return test


def _status(code: int):
    def test(req):
        return req.status == code, ()
    return test


def _subject(var: bytes, rx):
    search = rx.search

    def test(req):
        m = search(req.vars.get(var, b""))
        if m is None:
            return False, ()
        return True, (m.group(0), *m.groups())
    return test


def _atoi(text: bytes) -> int:
    m = re.match(rb"\s*[-+]?\d+", text)
    return int(m.group(0)) if m else 0
