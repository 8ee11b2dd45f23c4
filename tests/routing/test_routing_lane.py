"""The routes on the native lane (uwsgid/routing/lane.py, core/cpython/lane_route.c): with
routes configured, the same requests answer byte for byte, and log the same lines, with the lane
(the default) and with UWSGI_NO_LANE=1 (the Python path), whether the request chain lets the
request go on to the app on the lane (no match, addheader, addvar, goto, last, a final chain,
donotlog) or hands it to the Python path (redirect, break, a bad header...); and the lane
really serves the first kind."""

from __future__ import annotations

import re
import textwrap

import pytest

from tests.helpers import raw, send_paced, uwsgi_packet
from tests.lane_helpers import log_lines, start_pair

native = pytest.importorskip("_uwsgi_native")
if not hasattr(native, "Lane") or not hasattr(native.Lane, "set_routes"):
    pytest.skip("the native module has no lane routes (an old build)", allow_module_level=True)

APP = textwrap.dedent('''
    def application(env, start_response):
        # where: the lane's start_response is _uwsgi_native's (masked when the answers are compared)
        where = "L" if type(start_response).__module__ == "_uwsgi_native" else "P"    # one length: the same framing
        p = env["PATH_INFO"]
        if p.startswith("/gen"):
            start_response("200 OK", [("Content-Type", "text/plain")])
            return (c for c in [b"g", b"e", b"n"])
        if p.startswith("/declared"):   # a framework's shape: an iterable of the length it declares
            body = f"where={where}\\n".encode()
            start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
            return (c for c in [body])
        keys = ("PATH_INFO", "MY_VAR", "OTHER_VAR", "REQUEST_URI")
        body = "".join(f"{k}={env.get(k, '')}\\n" for k in keys) + f"where={where}\\n"
        start_response("200 OK", [("Content-Type", "text/plain"), ("X-App", "1")])
        return [body.encode()]
''')

ROUTES = [
    "--route", "^/admin/ break:403",                                    # no match on most paths
    "--route-if", "equal:${HTTP_X_FORWARDED_PROTO};http redirect-permanent:https://${HTTP_HOST}${REQUEST_URI}",
    "--route-host", "^old\\.example\\.com$ redirect:http://new.example.com${REQUEST_URI}",
    "--route-run", "addheader:X-Content-Type-Options: nosniff",
    "--route", "^/hdr/(.*)$ addheader:X-Got: $1 ${HTTP_X_IN}",
    "--route", "^/var/(.*)$ addvar:MY_VAR=v-$1",
    "--route-if", "startswith:${REQUEST_URI};/var/two addvar:OTHER_VAR=${cookie[c]}",
    "--route", "^/old/(.*)$ redirect:/new/$1",
    "--route", "^/jump goto:there",
    "--route", "^/jump addheader:X-Skipped: 1",
    "--route-label", "there",
    "--route", "^/jump addheader:X-Jumped: 1",
    "--route", "^/back/ goto:there",           # backwards: uWSGI's error, the request dropped
    "--route", "^/last last:",
    "--route", "^/last addheader:X-After-Last: 1",
    "--route", "^/brk break:",
    "--route", "^/ret break-with-status:410",
    "--route", "^/bad addheader:${HTTP_X_BAD}",
    "--route", "^/cl addheader:Content-Length: 3",
    "--route", "^/logme log:LOGGED ${REQUEST_URI} ${qs[a]}",
    "--route", "^/quiet donotlog:",
    "--route-if", "equal:${SERVER_NAME};localhost addheader:X-Server-Name: localhost",
    "--route", "^/genvar addvar:MY_VAR=gv",
    "--final-route", "^/genvar log:GENVAR ${MY_VAR} ${uwsgi[status]}",
    "--final-route", "^/quietfinal donotlog:",
    "--final-route-if", "ishigherequal:${uwsgi[status]};200 log:FINAL ${REQUEST_URI} ${uwsgi[status]} ${uwsgi[rsize]}",
]


@pytest.fixture(scope="module")
def app_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("lane_routes") / "app.py"
    path.write_text(APP)
    return path


@pytest.fixture(scope="module")
def pair(app_file):
    servers = start_pair(lambda port: ["--master", "--processes", "1", "--http-socket", f"127.0.0.1:{port}",
                                       "--wsgi-file", app_file, *ROUTES])
    yield servers
    for s in servers:
        s.stop()


def get(port: int, path: str, headers: bytes = b"", close: bool = True) -> bytes:
    head = b"GET " + path.encode() + b" HTTP/1.1\r\nHost: example.org\r\n" + headers
    return raw(f"127.0.0.1:{port}", head + (b"Connection: close\r\n" if close else b"") + b"\r\n")


def _masked(answer: bytes) -> bytes:
    return re.sub(rb"where=[LP]", b"where=W", answer)


def same(pair, path: str, headers: bytes = b"") -> bytes:
    lane, python = pair
    a = get(lane.port, path, headers)
    b = get(python.port, path, headers)
    assert _masked(a) == _masked(b), path
    assert b"where=L" not in b
    return a


# (path, request headers, who ran the app: "L" the lane, "P" the Python path, None: no app ran,
# or no telling (a generator's body))
CASES = [
    ("/plain", b"", "L"),                                  # no match but the addheader route
    ("/plain?x=1", b"X-Forwarded-Proto: https\r\n", "L"),  # the -if does not match
    ("/plain", b"X-Forwarded-Proto: http\r\n", None),      # ... does: a redirect
    ("/plain", b"Host: old.example.com\r\n", None),
    ("/hdr/abc", b"X-In: in\r\n", "L"),                    # groups and a var in a header
    ("/var/one", b"", "L"),                                # a var set for the app
    ("/var/two", b"Cookie: a=1; c=from-cookie\r\n", "L"),
    ("/old/page", b"", None),
    ("/jump", b"", "L"),
    ("/back/x", b"", None),
    ("/last", b"", "L"),
    ("/brk", b"", None),
    ("/ret", b"", None),
    ("/admin/x", b"", None),
    ("/bad", b"X-Bad: no colon\r\n", "P"),                # an invalid header: the Python path says so
    ("/cl", b"", None),                                   # a Content-Length: the Python path frames it (3 bytes)
    ("/gen", b"", None),                                    # a generator: the Python path goes on
    ("/declared", b"", "L"),                                # an iterable of its declared length: the lane
    ("/logme?a=5", b"", "L"),
    ("/quiet", b"", "L"),
    ("/quietfinal", b"", "L"),
]


@pytest.mark.parametrize("path,headers,where", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_the_lane_answers_as_the_python_path(pair, path, headers, where):
    answer = same(pair, path, headers)
    if where is not None:
        assert b"where=" + where.encode() in answer


def test_what_the_routes_did(pair):
    lane, _ = pair
    a = get(lane.port, "/hdr/abc", b"X-In: in\r\n")
    assert b"\r\nX-App: 1\r\nX-Content-Type-Options: nosniff\r\nX-Got: abc in\r\n" in a
    assert b"MY_VAR=v-one\n" in get(lane.port, "/var/one")
    assert b"OTHER_VAR=from-cookie\n" in get(lane.port, "/var/two", b"Cookie: c=from-cookie\r\n")
    a = get(lane.port, "/jump")
    assert b"X-Jumped: 1" in a and b"X-Skipped" not in a
    assert b"X-After-Last" not in get(lane.port, "/last")
    assert get(lane.port, "/plain", b"X-Forwarded-Proto: http\r\n").startswith(b"HTTP/1.1 301 ")
    assert b"X-Content-Type-Options: nosniff" in get(lane.port, "/gen")


def test_kept_alive_connections(pair):
    """A kept-alive connection's next requests (the lane's handle()) route the same way, the
    handed-on ones included."""
    lane, python = pair
    pieces = [b"GET /var/k HTTP/1.1\r\nHost: h\r\n\r\n",
              b"GET /old/k HTTP/1.1\r\nHost: h\r\n\r\n",
              b"GET /hdr/k HTTP/1.1\r\nHost: h\r\n\r\n",
              b"GET /gen HTTP/1.1\r\nHost: h\r\n\r\n",
              b"GET /jump HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"]
    a = send_paced(lane.port, pieces)
    b = send_paced(python.port, pieces)
    assert _masked(a) == _masked(b)
    assert a.count(b"where=L") == 3


def test_the_log_lines(pair):
    """The request chain's log, the final chain's (status, size), donotlog in either chain: the
    same lines, in the same order."""
    lane, python = pair
    for srv in pair:
        for path in ("/logme?a=7&b=2", "/quiet", "/quietfinal", "/marker-end"):
            get(srv.port, path)
    for marker in ("/logme?a=7", "/marker-end"):
        # the counts differ: other tests sent requests to the lane's server only
        a, b = ([re.sub(r"req: \d+/\d+", "req: N", ln) for ln in log_lines(srv, marker, 1)] for srv in pair)
        assert a == b, marker
    assert log_lines(lane, "/quiet", 0) == log_lines(python, "/quiet", 0) == []     # logged before /marker-end
    for srv in pair:
        text = srv.wait_log("FINAL /marker-end 200")
        lines = [ln for ln in text.splitlines() if "a=7" in ln or "/quiet" in ln or "/marker-end" in ln]
        lines = [re.sub(r"\[pid: .*", "[request line]", ln) for ln in lines]
        srv.lines = lines
    assert lane.lines == python.lines
    assert "LOGGED /logme?a=7&b=2 7" in lane.lines
    assert not any(ln.startswith("[request line]") and "/quiet" in ln for ln in lane.lines)


@pytest.mark.parametrize("routes", [
    ["--response-route-run", "addheader:X-Response: ${uwsgi[status]}"],
    ["--error-route-status", "404 addheader:X-Err: 1"],
    ["--route", "^/x setmodifier1:0"],
    ["--route-if", "equal:${hook[x]};y log:never"],
], ids=["response-route", "error-route", "setmodifier1", "hook-var"])
def test_routes_the_lane_leaves_to_python(app_file, routes):
    """Chains the lane cannot run leave the lane off, or hand every matching request on: the
    answers stay the Python path's."""
    servers = start_pair(lambda port: ["--master", "--processes", "1", "--disable-logging", "--http-socket",
                                       f"127.0.0.1:{port}", "--wsgi-file", app_file, *routes])
    try:
        for path in ("/a", "/x"):
            a = same(servers, path)
            assert b"where=L" not in a or routes[0] == "--route"
    finally:
        for s in servers:
            s.stop()


LUA_APP = textwrap.dedent('''
    return function(env)
      if env.PATH_INFO == "/co" then
        return 200, {["Content-Type"] = "text/plain"}, coroutine.wrap(function()
          coroutine.yield("c") coroutine.yield("o")
        end)
      end
      return 200, {["Content-Type"] = "text/plain"},
        "PATH_INFO=" .. env.PATH_INFO .. "\\nMY_VAR=" .. tostring(env.MY_VAR) .. "\\n"
    end
''')
LUA_PATHS = [("/plain", b""), ("/plain", b"X-Forwarded-Proto: http\r\n"), ("/hdr/x", b"X-In: i\r\n"),
             ("/var/lua", b""), ("/jump", b""), ("/last", b""), ("/brk", b""), ("/co", b""), ("/logme?a=1", b"")]


@pytest.mark.parametrize("sock", ["--http-socket", "--socket"])
def test_a_lua_app(tmp_path, sock):
    """A block app (the Lua plugin's): the same answers; a var set for it takes the Python path
    (its vars block is not rebuilt on the lane)."""
    app = tmp_path / "app.lua"
    app.write_text(LUA_APP)
    extra = ["--http-socket-modifier1", "6"] if sock == "--http-socket" else []
    servers = start_pair(lambda port: ["--master", "--processes", "1", "--disable-logging", sock, f"127.0.0.1:{port}",
                                       *extra, "--lua", app, *ROUTES])
    answers = {}
    try:
        for path, headers in LUA_PATHS:
            if sock == "--http-socket":
                a, b = (get(s.port, path, headers) for s in servers)
            else:
                v = {"REQUEST_METHOD": "GET", "REQUEST_URI": path, "PATH_INFO": path.split("?")[0],
                     "QUERY_STRING": path.partition("?")[2], "SERVER_PROTOCOL": "HTTP/1.1",
                     "SERVER_NAME": "localhost", "SERVER_PORT": "80", "REMOTE_ADDR": "127.0.0.1",
                     "HTTP_HOST": "example.org", "SCRIPT_NAME": ""}
                for line in headers.decode().splitlines():
                    name, _, value = line.partition(": ")
                    v["HTTP_" + name.upper().replace("-", "_")] = value
                a, b = (raw(f"127.0.0.1:{s.port}", uwsgi_packet(v, modifier1=6)) for s in servers)
            assert a == b, path
            answers[path] = a
        assert b"MY_VAR=v-lua\n" in answers["/var/lua"]
        assert b"X-Got: x i\r\n" in answers["/hdr/x"]
    finally:
        for s in servers:
            s.stop()


def test_a_uwsgi_socket(app_file):
    """Over --socket (the vars come in a packet): a var set by a route reaches the app, and the
    final chain of a request the Python path goes on with (a generator) reads it too."""
    servers = start_pair(lambda port: ["--master", "--processes", "1", "--socket", f"127.0.0.1:{port}",
                                       "--wsgi-file", app_file, *ROUTES])
    try:
        for path in ("/var/sock", "/genvar", "/old/x", "/jump"):
            v = {"REQUEST_METHOD": "GET", "REQUEST_URI": path, "PATH_INFO": path, "QUERY_STRING": "",
                 "SERVER_PROTOCOL": "HTTP/1.1", "SERVER_NAME": "localhost", "SERVER_PORT": "80",
                 "REMOTE_ADDR": "127.0.0.1", "HTTP_HOST": "example.org", "SCRIPT_NAME": ""}
            a, b = (raw(f"127.0.0.1:{s.port}", uwsgi_packet(v)) for s in servers)
            assert _masked(a) == _masked(b), path
            if path == "/var/sock":
                assert b"MY_VAR=v-sock\n" in a and b"where=L" in a
                assert b"X-Server-Name" in a
        # a packet without SERVER_NAME: the routes read it missing (the environ has a default)
        v = {"REQUEST_METHOD": "GET", "REQUEST_URI": "/var/n", "PATH_INFO": "/var/n", "HTTP_HOST": "h"}
        a, b = (raw(f"127.0.0.1:{s.port}", uwsgi_packet(v)) for s in servers)
        assert _masked(a) == _masked(b)
        assert b"where=L" in a and b"MY_VAR=v-n\n" in a and b"X-Server-Name" not in a
        for srv in servers:
            srv.wait_log("GENVAR gv 200")
    finally:
        for s in servers:
            s.stop()


def test_which_chains_run_on_the_lane():
    """lane.plan: None (the lane stays off) for what the lane cannot run, or would hand on for
    every request."""
    from uwsgid.routing import chains, lane, load_actions
    from uwsgid.routing.runtime import Router
    load_actions()

    def plan(*items):
        return lane.plan(Router(chains.compile_chains([(items[i], items[i + 1]) for i in range(0, len(items), 2)])))

    assert plan("route-run", "addheader:X: 1", "final-route-run", "log:${REQUEST_URI}") is not None
    assert plan("route", "^/x redirect:/y", "route-if", "equal:${HTTP_HOST};a break:403") is not None
    assert plan("route-run", "rewrite:/other") is None                  # every request handed on
    assert plan("route", "^/x last:", "route-run", "rewrite:/other") is not None    # not every one
    assert plan("response-route-run", "addheader:X: 1") is None
    assert plan("error-route-status", "404 addheader:X: 1") is None
    assert plan("final-route-run", "addheader:X: 1") is None           # only what needs no Request
    assert plan("route-if", "equal:${hook[x]};1 log:x") is None          # code runs there
    assert plan("route", "^/x log:${HTTP_CONTENT_TYPE}") is None         # not in a WSGI environ
