"""The routes and requests the routing tests send both to real uWSGI (recorded once with
record_uwsgi.py into data/uwsgi-2.0.21.json) and to this server, and how answers are compared."""

from __future__ import annotations

import base64
from pathlib import Path

DIR = str(Path(__file__).resolve().parent / "data")    # the file actions' files (sent as X-Dir)

ROUTES = [
    ("route", "^/old/(.*)$ redirect-301:/new/$1"),
    ("route", "^/tmp/(.*)$ redirect:/t/$1?from=${REQUEST_METHOD}"),
    ("route-run", "addheader:X-Route: ${PATH_INFO}"),
    ("route", "^/deny break-with-status:403"),
    ("route", "^/brk break:403"),
    ("route-if", "equal:${qs[a]};1 rewrite:/rewritten?x=1"),
    ("route-if-not", "empty:${cookie[sid]} addvar:ROUTED=cookie-${cookie[sid]}"),
    ("route", "^/last rewrite-last:/after-last"),
    ("route", "^/after-last break-with-status:500"),
    ("route-if", "startswith:${PATH_INFO};/jump goto:target"),
    ("route", "^/jump break-with-status:500"),
    ("route-label", "target"),
    ("route-if", "startswith:${PATH_INFO};/jump addvar:ROUTED=jumped"),
    ("route-if", "ipv4in:${REMOTE_ADDR};127.0.0.0/8 addheader:X-Local: yes"),
    ("route-if", "regexp:${HTTP_USER_AGENT};^curl/(\\d+) addheader:X-Curl: $1"),
    ("route", "^/auth basicauth:realm,user:pass"),
    ("route", "^/math addvar:COUNT=5"),
    ("route", "^/math +:COUNT,10"),
    ("route", "^/math *:COUNT,3"),
    ("route", "^/scheme setscheme:https"),
    # the rest of the actions, each on its own path (DIR: the X-Dir header, tests/routing/data)
    ("route", "^/calc addvar:COUNT=50"),
    ("route", "^/calc -:COUNT,8"),     # (uWSGI 2.0's `/` multiplies: test_routing_units)
    ("route", "^/bauth basicauth-next:realm2,alice:one"),
    ("route", "^/bauth basicauth:realm2,bob:two"),
    ("route", "^/cwd chdir:/tmp"),
    ("route", "^/cont continue:"),
    ("route", "^/cont break-with-status:500"),
    ("route", "^/lst last:"),
    ("route", "^/lst break-with-status:500"),
    ("route", "^/delh delheader:X-App"),
    ("route", "^/remh remheader:x-app"),
    ("route", "^/ff$ fastfile:filename=${HTTP_X_DIR}/page.txt,content_type=text/x-ff"),
    ("route", "^/ffn fastfile-next:filename=${HTTP_X_DIR}/missing.txt"),
    ("route", "^/ffn break-with-status:410"),
    ("route", "^/sfn sendfile-next:filename=${HTTP_X_DIR}/missing.txt"),
    ("route", "^/sfn sendfile:filename=${HTTP_X_DIR}/page.txt"),
    ("route", "^/fpi/ setscriptname:/fpi"),
    ("route", "^/fpi/ fixpathinfo:"),
    ("route", "^/flush fixcl:"),
    ("route", "^/flush flush:"),
    ("route", "^/forcecl forcecl:"),
    ("route", "^/r302 redirect-302:/to-302"),
    ("route", "^/rperm redirect-permanent:/to-301"),
    ("response-route", "^/reset resetheaders:202"),
    ("route", "^/ret return:451"),
    ("route", "^/setdocroot setdocroot:/srv/www"),
    ("route", "^/sethome sethome:/opt/venv"),
    ("route", "^/setfile setfile:/opt/venv2"),
    ("route", "^/setmethod setmethod:PUT"),
    ("route", "^/m2 setmodifier2:3"),
    ("route", "^/setpi setpathinfo:/new/path"),
    ("route", "^/procname setprocname:uwsgi-route-test"),
    ("route", "^/setra setremoteaddr:10.9.8.7"),
    ("route", "^/seturi seturi:/other?z=1"),
    ("route", "^/setuser setuser:john:secret"),
    ("route", "^/vars addheader:X-Vars: ${base64[PATH_INFO]} ${hex[PATH_INFO]} ${qs[k]}"),
    ("error-route-status", "404 redirect:/nf"),
    ("final-route-run", "log:FINAL ${uwsgi[status]} ${PATH_INFO}"),
]

AUTH = "Basic " + base64.b64encode(b"user:pass").decode()
REQUESTS = [
    # (name, path, extra headers)
    ("redirect-301", "/old/abc", {}),
    ("redirect-302", "/tmp/x", {}),
    ("break-with-status", "/deny", {}),
    ("break", "/brk", {}),
    ("rewrite-qs", "/p?a=1&b=2", {}),
    ("cookie-var", "/c", {"Cookie": "x=1; sid=abc"}),
    ("rewrite-last", "/last", {}),
    ("goto", "/jump", {}),
    ("ipv4in-regexp", "/h", {"User-Agent": "curl/7.88"}),
    ("basicauth-401", "/auth", {}),
    ("basicauth-ok", "/auth", {"Authorization": AUTH}),
    ("math", "/math", {}),
    ("scheme", "/scheme", {}),
    ("error-route", "/status/404", {}),
    ("app-error-no-route", "/status/500", {}),
    ("minus", "/calc", {}),
    ("basicauth-next-first", "/bauth", {"Authorization": "Basic " + base64.b64encode(b"alice:one").decode()}),
    ("basicauth-next-second", "/bauth", {"Authorization": "Basic " + base64.b64encode(b"bob:two").decode()}),
    ("basicauth-next-wrong", "/bauth", {"Authorization": "Basic " + base64.b64encode(b"alice:two").decode()}),
    ("chdir", "/cwd", {}),
    ("continue", "/cont", {}),
    ("last", "/lst", {}),
    ("delheader", "/delh", {}),
    ("remheader", "/remh", {}),
    ("fastfile", "/ff", {"X-Dir": DIR}),
    ("fastfile-next", "/ffn", {"X-Dir": DIR}),
    ("sendfile-next", "/sfn", {"X-Dir": DIR}),
    ("fixpathinfo", "/fpi/rest", {}),
    ("flush", "/flush", {}),
    ("forcecl", "/forcecl", {}),
    ("redirect-302-action", "/r302", {}),
    ("redirect-permanent", "/rperm", {}),
    ("resetheaders", "/reset", {}),
    ("return", "/ret", {}),
    ("setdocroot", "/setdocroot", {"X-Show": "DOCUMENT_ROOT"}),
    ("sethome", "/sethome", {"X-Show": "UWSGI_HOME"}),
    ("setfile", "/setfile", {"X-Show": "UWSGI_HOME"}),
    ("setmethod", "/setmethod", {}),
    ("setmodifier2", "/m2", {}),
    ("setpathinfo", "/setpi", {}),
    ("setprocname", "/procname", {}),
    ("setremoteaddr", "/setra", {"X-Show": "REMOTE_ADDR"}),
    ("seturi", "/seturi", {"X-Show": "REQUEST_URI"}),
    ("setuser", "/setuser", {}),
    ("route-vars", "/vars?k=v1&j=2", {}),
]
# ours runs the Python app and the Lua app; these depend on the Python app (a path only it has)
PYTHON_ONLY = {"error-route", "app-error-no-route", "chdir"}

# headers compared (the rest differ between servers: Content-Length presence, Date...)
COMPARED = ("location", "content-type", "www-authenticate", "x-route", "x-local", "x-curl", "x-app", "x-vars")


def summary(status: int, headers: list, body: bytes) -> dict:
    h = {}
    for name, value in headers:
        if name.lower() in COMPARED:
            h[name.lower()] = value
    return {"status": status, "headers": h, "body": body.decode("latin-1")}


def route_args() -> list[str]:
    out = []
    for opt, value in ROUTES:
        out += [f"--{opt}", value]
    return out
