"""The options the routes lean on (--collect-header, --pull-header, --static-safe with the
static/file actions): the routes and requests sent both to real uWSGI (recorded once by
record_uwsgi.py into data/uwsgi-2.0.21-leaning.json) and to this server.

The files live in a tree made per run (make_tree): {D} in the routes is its directory.
"""

from __future__ import annotations

import http.client
import os
from pathlib import Path

ROUTES = [
    ("route", "^/p$ static:{D}/www/p.txt"),
    ("route", "^/link$ static:{D}/www/out-link.txt"),          # real path outside: refused
    ("route", "^/safelink$ static:{D}/www/safe-link.txt"),     # real path under --static-safe
    ("route", "^/dots$ static:{D}/www/../out/s.txt"),          # `..`: not under the given path
    ("route", "^/dots-safe$ static:{D}/www/../safe/s.txt"),
    ("route", "^/flink$ file:filename={D}/www/out-link.txt"),  # file: no security check in uWSGI
    ("route", "^/next$ static-next:{D}/www/out-link.txt"),
    ("route", "^/next$ break-with-status:410"),
    ("response-route-run", "addheader:X-Seen: ${TAG}/${PULLED}"),
    ("final-route-run", "log:LEANING ${REQUEST_URI} tag=${TAG} pulled=${PULLED}"),
    # (with --static-safe uWSGI loads its MIME table, which ${mime[...]} needs)
    ("route", "^/app addheader:X-Mime: ${mime[REQUEST_URI]}"),
    ("route", "^/send send:hello"),
    ("route", "^/send send-crnl:world"),
    ("route", "^/send break:"),
    ("route", "^/setapp setapp:nosuch"),        # an unknown app id: the default app serves it
    ("route", "^/sig signal:17"),               # no handler: logged, the request goes on
]
OPTIONS = [
    ("collect-header", "X-Tag TAG"),
    ("pull-header", "x-pull PULLED"),
    ("static-safe", "{D}/safe"),
]

REQUESTS = [
    # (name, method, path)
    ("static", "GET", "/p"),
    ("static-symlink-refused", "GET", "/link"),
    ("static-symlink-safe", "GET", "/safelink"),
    ("static-dots-refused", "GET", "/dots"),
    ("static-dots-safe", "GET", "/dots-safe"),
    ("file-symlink", "GET", "/flink"),
    ("static-next-refused", "GET", "/next"),
    ("static-post", "POST", "/p"),
    ("collect-pull", "GET", "/app"),
    ("mime-var", "GET", "/app?f=x.css"),
    ("setapp", "GET", "/setapp"),
    ("signal", "GET", "/sig"),
    ("send", "RAW", "/send"),       # no status prepared: the bytes go out as they are, no head
]

COMPARED = ("content-type", "x-tag", "x-pull", "x-seen", "x-app", "x-mime")
# (not Content-Length: uWSGI sends none for a short WSGI body where this server does)


def make_tree(d: Path) -> None:
    (d / "www").mkdir(parents=True)
    (d / "out").mkdir()
    (d / "safe").mkdir()
    (d / "www" / "p.txt").write_bytes(b"page\n")
    (d / "out" / "s.txt").write_bytes(b"outside\n")
    (d / "safe" / "s.txt").write_bytes(b"safe\n")
    os.symlink("../out/s.txt", d / "www" / "out-link.txt")
    os.symlink("../safe/s.txt", d / "www" / "safe-link.txt")


def args(d: Path) -> list[str]:
    out = []
    for opt, value in ROUTES + OPTIONS:
        out += [f"--{opt}", value.replace("{D}", str(d))]
    return out


def raw(port: int, path: str) -> dict:
    """An HTTP/1.0 GET on a plain socket: every byte that came back, until the close."""
    import socket
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        s.sendall(f"GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return {"raw": data.decode("latin-1")}


def ask(port: int, method: str, path: str) -> dict:
    """status 0: the connection closed without an answer (uWSGI's refused static file)."""
    if method == "RAW":
        return raw(port, path)
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        c.request(method, path, body=b"" if method == "POST" else None)
        r = c.getresponse()
        headers = {k.lower(): v for k, v in r.getheaders() if k.lower() in COMPARED}
        return {"status": r.status, "headers": headers, "body": r.read().decode("latin-1")}
    except (http.client.RemoteDisconnected, ConnectionResetError):
        return {"status": 0, "headers": {}, "body": ""}
    finally:
        c.close()
