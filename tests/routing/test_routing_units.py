"""The route compiler, the conditions and the translation, without a server."""

from __future__ import annotations

import pytest

from uwsgid.routing import chains, conditions, load_actions, translate
from uwsgid.routing.runtime import Router, State

load_actions()      # the actions register when routes are configured (uwsgid.routing.setup)


class Req:
    def __init__(self, **v):
        self.vars = {k.encode(): x.encode() for k, x in v.items()}
        self.status = 0
        self.core = None
        self.start = self.start_wall = self.end = 0.0
        self.response_size = 0


def test_translate_groups_and_vars():
    req = Req(PATH_INFO="/a/b", QUERY_STRING="x=1&y=22", HTTP_COOKIE="k=v; sid=abc")
    groups = (b"/a/b", b"a", b"b")
    assert translate.expand(b"/$2/$1$9-${PATH_INFO}", req, groups) == b"/b/a-/a/b"
    assert translate.expand(b"${qs[y]} ${cookie[sid]} ${upper[PATH_INFO]} ${hex[QUERY_STRING]}", req) \
        == b"22 abc /A/B " + b"x=1&y=22".hex().upper().encode()     # upper case, as uWSGI
    assert translate.expand(b"cost $x and ${MISSING}.", req) == b"cost $x and ."
    assert translate.expand(b"open ${PATH_INFO", req) == b"open ${PATH_INFO"
    assert translate.expand(b"trailing$", req) == b"trailing"      # uWSGI drops it


def test_translate_time_case_and_mime_vars():
    import re
    import time
    req = Req(PATH_INFO="/a/b.css", HTTP_X_UP="MiXed")
    now = int(time.time())
    unix = int(translate.expand(b"${time[unix]}", req))
    assert now - 5 <= unix <= now + 5
    assert abs(int(translate.expand(b"${time[micros]}", req)) / 1e6 - unix) < 5
    assert re.fullmatch(rb"[A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d GMT",
                        translate.expand(b"${httptime[3600]}", req))
    assert translate.expand(b"${lower[HTTP_X_UP]} ${upper[HTTP_X_UP]}", req) == b"mixed MIXED"
    from uwsgid.static import mime
    translate.use_mime_table(mime.MimeTable(dict(mime.BUILTIN)))
    assert translate.expand(b"${mime[PATH_INFO]}", req) == b"text/css"


def test_divide_divides():
    # uWSGI 2.0.21 registers `/` with the multiply code (core/routing.c): a bug, not followed here
    compiled = chains.compile_chains([("route-run", "addvar:N=50"), ("route-run", "/:N,4"),
                                      ("route-run", "addvar:M=7"), ("route-run", "/:M,0")])
    req = Req(PATH_INFO="/")
    compiled["request"].run(State(Router(compiled)), req)
    assert (req.vars[b"N"], req.vars[b"M"]) == (b"12", b"0")      # integer division; by 0: 0, as uWSGI


def test_refused_actions_stop_with_their_reason():
    assert chains.REFUSED
    for name, why in chains.REFUSED.items():
        with pytest.raises(chains.RouteError) as e:
            chains.compile_chains([("route", f"^/x {name}:arg")])
        assert f'"{name}" route action is not supported' in str(e.value) and why in str(e.value)


@pytest.mark.parametrize("cond,args,expected", [
    ("equal", b"${PATH_INFO};/x", True), ("eq", b"a;b", False), ("startswith", b"/xyz;/x", True),
    ("endswith", b"file.txt;.txt", True), ("contains", b"hello;ell", True), ("empty", b"${NOPE}", True),
    ("ipv4in", b"10.1.2.3;10.0.0.0/8", True), ("ipv4in", b"11.1.2.3;10.0.0.0/8", False),
    ("ipv6in", b"2001:db8::1;2001:db8::/32", True), ("ishigher", b"10;9", True), ("<=", b"3;3", True),
    ("isdir", b"/tmp", True), ("isfile", b"/tmp", False), ("exists", b"/nonexistent-x", False),
    ("regexp", b"${PATH_INFO};^/(x)$", True), ("equal", b"no-semicolon", False),
    ("re", b"${PATH_INFO};x$", True), ("re", b"${PATH_INFO};^x", False), ("isequal", b"a;a", True),
    ("==", b"${PATH_INFO};/y", False), ("contain", b"hello;lo", True), ("contains", b"hello;xx", False),
    (">", b"10;9", True), (">", b"9;10", False), (">=", b"9;9", True), ("ishigherequal", b"8;9", False),
    ("<", b"2;10", True), ("islower", b"10;2", False), ("islowerequal", b"2;2", True),
    ("ishigher", b"12abc;9", True),     # strtol: the leading digits
    ("isexec", b"/bin/sh", True), ("isexec", b"/nonexistent-x", False),
    ("islink", b"/nonexistent-x", False), ("exists", b"/tmp", True),
])
def test_conditions(cond, args, expected):
    ok, _groups = conditions.compile(cond, args)(Req(PATH_INFO="/x"))
    assert ok is expected


@pytest.mark.parametrize("opt,value,message", [
    ("route", "^/(x bad:", "bad regexp"),
    ("route", "^/x nosuchaction:1", "missing router for \"nosuchaction\""),
    ("route-if", "nosuchcond:a goto:x", "unable to find \"nosuchcond\" route condition"),
    ("route", "^/x", "invalid route syntax"),
    ("route", "^/x proxyhttp:127.0.0.1:80", "not supported"),
    ("route", "^/x logvar:novalue", "KEY=VALUE"),
    ("route", "^/x basicauth:realm", "REALM,USER:PASS"),
    ("route", "^/x cache:name=foo", "cache key"),
])
def test_bad_routes_name_the_option(opt, value, message):
    with pytest.raises(chains.RouteError) as e:
        chains.compile_chains([(opt, value)])
    assert message in str(e.value) and f"--{opt}" in str(e.value)


def test_goto_labels_and_forward_only():
    compiled = chains.compile_chains([
        ("route-run", "goto:end"), ("route-run", "addvar:SKIPPED=1"), ("route-label", "end"),
        ("route-run", "addvar:DONE=1"), ("route-run", "goto:end"),
    ])
    req = Req(PATH_INFO="/")
    code = compiled["request"].run(State(Router(compiled)), req)
    assert b"SKIPPED" not in req.vars and req.vars[b"DONE"] == b"1"
    assert code == chains.BREAK          # the backward goto is refused, as uWSGI does


def test_option_names_are_uwsgis():
    names = set(chains.option_names())
    for n in ("route", "route-host", "route-uri", "route-qs", "route-remote-addr", "route-user-agent",
              "route-remote-user", "route-referer", "route-label", "route-if", "route-if-not", "route-run",
              "final-route-status", "error-route-status", "response-route-status", "response-route-if"):
        assert n in names
    assert "route-status" not in names
