"""The options routes lean on, against real uWSGI 2.0.21's recorded answers
(data/uwsgi-2.0.21-leaning.json, from record_uwsgi.py: the command is in the file):
--collect-header and --pull-header (a response header into a request var, pull: removed), and
--static-safe with the `static` action (uWSGI's real-path check) and the `file` action (none),
for the Python app and (setmodifier1:6) the Lua app."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import leaning_spec  # noqa: E402
from helpers import Server, free_port, run_uwsgi  # noqa: E402

RECORDED = json.loads((HERE / "data" / "uwsgi-2.0.21-leaning.json").read_text())["answers"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    d = tmp_path_factory.mktemp("leaning")
    leaning_spec.make_tree(d)
    port = free_port()
    args = ["--plugins", "lua,cffi", "--http-socket", f"127.0.0.1:{port}",
            "--wsgi-file", str(HERE / "route_app.py"), "--lua", str(HERE / "route_app.lua"),
            "--master", "--processes", "1",
            "--route-if", "equal:${HTTP_X_RUNTIME};lua setmodifier1:6", *leaning_spec.args(d)]
    with Server(args, port) as s:
        yield s


@pytest.mark.parametrize("name,method,path", leaning_spec.REQUESTS, ids=[r[0] for r in leaning_spec.REQUESTS])
def test_same_answer_as_uwsgi(server, name, method, path):
    assert leaning_spec.ask(server.port, method, path) == RECORDED[name]


def test_refused_static_file_is_logged(server):
    leaning_spec.ask(server.port, "GET", "/link")
    server.wait_log("[uwsgi-fileserve] security error:")
    assert "out/s.txt is not under" in server.log()


@pytest.mark.parametrize("runtime", ["python", "lua"])
def test_collected_vars_reach_the_final_chain(server, runtime):
    import http.client
    c = http.client.HTTPConnection("127.0.0.1", server.port, timeout=20)
    c.request("GET", f"/app?rt={runtime}", headers={"X-Runtime": runtime})
    r = c.getresponse()
    assert r.read() == b"app" and r.getheader("X-Pull") is None and r.getheader("X-Tag") == "abc"
    assert r.getheader("X-Seen") == "abc/zz"
    c.close()
    server.wait_log(f"LEANING /app?rt={runtime} tag=abc pulled=zz")


@pytest.mark.parametrize("option,value", [("collect-header", "X-Tag"), ("pull-header", "X-Tag: TAG")])
def test_bad_header_option_stops_the_start(option, value):
    r = run_uwsgi(["--plugins", "cffi", "--http-socket", f"127.0.0.1:{free_port()}",
                   "--wsgi-file", str(HERE / "route_app.py"), f"--{option}", value], timeout=60)
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    assert f"--{option} '{value}': invalid" in out and "must be <header> <var>" in out
    assert "Traceback" not in out
