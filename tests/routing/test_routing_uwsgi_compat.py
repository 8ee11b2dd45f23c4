"""The routes of routes_spec.py against this server, compared with real uWSGI 2.0.21's answers
(data/uwsgi-2.0.21.json, recorded by record_uwsgi.py: the command is in the file), over an
http-socket and the uwsgi protocol, for the Python app and (setmodifier1:6) the Lua app."""

from __future__ import annotations

import http.client
import io
import json
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import socket  # noqa: E402

from helpers import Server, free_port, read_response, uwsgi_packet  # noqa: E402
from routes_spec import PYTHON_ONLY, REQUESTS, route_args, summary  # noqa: E402

RECORDED = json.loads((HERE / "data" / "uwsgi-2.0.21.json").read_text())["answers"]


@pytest.fixture(scope="module")
def server():
    http_port, uwsgi_port = free_port(), free_port()
    args = ["--plugins", "lua,cffi", "--http-socket", f"127.0.0.1:{http_port}",
            "--socket", f"127.0.0.1:{uwsgi_port}", "--wsgi-file", str(HERE / "route_app.py"),
            "--lua", str(HERE / "route_app.lua"), "--master", "--processes", "1",
            "--route-if", "equal:${HTTP_X_RUNTIME};lua setmodifier1:6", *route_args()]
    with Server(args, http_port) as s:
        s.wait_port(uwsgi_port)
        s.uwsgi_port = uwsgi_port
        yield s


def _http(port, path, headers):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    c.request("GET", path, headers={"User-Agent": "test", **headers})
    r = c.getresponse()
    out = summary(r.status, r.getheaders(), r.read())
    c.close()
    return out


def _uwsgi(port, path, headers):
    path_info, _, qs = path.partition("?")
    v = {"REQUEST_METHOD": "GET", "REQUEST_URI": path, "PATH_INFO": path_info, "QUERY_STRING": qs,
         "SCRIPT_NAME": "", "SERVER_NAME": "localhost", "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1",
         "REMOTE_ADDR": "127.0.0.1", "HTTP_HOST": "localhost", "HTTP_USER_AGENT": "test"}
    for k, val in headers.items():
        v["HTTP_" + k.upper().replace("-", "_")] = val
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        s.sendall(uwsgi_packet(v))
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    status, hdrs, body = read_response(io.BytesIO(data))
    return summary(status, list(hdrs.items()), body)


def _expected(name, runtime):
    exp = json.loads(json.dumps(RECORDED[name]))
    if runtime == "lua":
        exp["body"] = exp["body"].replace("runtime=python", "runtime=lua")
    return exp


@pytest.mark.parametrize("proto", ["http", "uwsgi"])
@pytest.mark.parametrize("runtime", ["python", "lua"])
@pytest.mark.parametrize("name,path,headers", REQUESTS, ids=[r[0] for r in REQUESTS])
def test_same_answer_as_uwsgi(server, proto, runtime, name, path, headers):
    if runtime == "lua" and name in PYTHON_ONLY:
        pytest.skip("a path only the Python app has")
    hdrs = dict(headers, **({"X-Runtime": "lua"} if runtime == "lua" else {}))
    got = _http(server.port, path, hdrs) if proto == "http" else _uwsgi(server.uwsgi_port, path, hdrs)
    exp = _expected(name, runtime)
    assert got == exp


def test_final_chain_logs_after_the_response(server):
    _http(server.port, "/old/final-check", {})
    server.wait_log("FINAL 301 /old/final-check")
