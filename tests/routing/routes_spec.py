"""The routes and requests the routing tests send both to real uWSGI (recorded once with
record_uwsgi.py into data/uwsgi-2.0.21.json) and to this server, and how answers are compared."""

from __future__ import annotations

import base64

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
]

# headers compared (the rest differ between servers: Content-Length presence, Date...)
COMPARED = ("location", "content-type", "www-authenticate", "x-route", "x-local", "x-curl", "x-app")


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
