"""Record real uWSGI's answers to routes_spec.REQUESTS into data/uwsgi-2.0.21.json and to
leaning_spec.REQUESTS into data/uwsgi-2.0.21-leaning.json:

    .venv/bin/python tests/routing/record_uwsgi.py [leaning]

runs /usr/bin/uwsgi (Debian 2.0.21, python3 and router plugins) with the spec's routes on an
http-socket in front of route_app.py; the command is stored beside the answers."""

from __future__ import annotations

import http.client
import json
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import leaning_spec  # noqa: E402
from helpers import Server, free_port  # noqa: E402
from routes_spec import REQUESTS, route_args, summary  # noqa: E402

PLUGINS = "python3,router_redirect,router_rewrite,router_basicauth,router_static,router_cache"


def ask(port: int, path: str, headers: dict):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", path, headers={"User-Agent": "test", **headers})
    r = c.getresponse()
    out = summary(r.status, r.getheaders(), r.read())
    c.close()
    return out


def main() -> None:
    port = free_port()
    argv = ["--plugins", PLUGINS, "--http-socket", f"127.0.0.1:{port}", "--wsgi-file", "route_app.py", "--master",
            "--processes", "1", *route_args()]
    with Server(argv, port, binary="/usr/bin/uwsgi", cwd=HERE) as s:
        answers = {name: ask(port, path, hdrs) for name, path, hdrs in REQUESTS}
        s.stop()
    out = {"command": "cd tests/routing && /usr/bin/uwsgi " + " ".join(repr(a) if " " in a else a for a in argv),
           "uwsgi": "2.0.21-debian", "answers": answers}
    (HERE / "data" / "uwsgi-2.0.21.json").write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")



def record_leaning() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        leaning_spec.make_tree(d)
        port = free_port()
        argv = ["--plugins", PLUGINS, "--http-socket", f"127.0.0.1:{port}", "--wsgi-file", "route_app.py",
                "--master", "--processes", "1", *leaning_spec.args(d)]
        with Server(argv, port, binary="/usr/bin/uwsgi", cwd=HERE) as s:
            answers = {name: leaning_spec.ask(port, method, path) for name, method, path in leaning_spec.REQUESTS}
            s.stop()
        shown = " ".join(repr(a) if " " in a else a for a in argv).replace(tmp, "{D}")
    out = {"command": "cd tests/routing && /usr/bin/uwsgi " + shown + "  # {D}: leaning_spec.make_tree",
           "uwsgi": "2.0.21-debian", "answers": answers}
    (HERE / "data" / "uwsgi-2.0.21-leaning.json").write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    if sys.argv[1:] != ["leaning"]:      # `leaning`: only data/uwsgi-2.0.21-leaning.json
        main()
    record_leaning()
