"""--vhost / --vhost-host as uWSGI: a request runs the app mounted at HOST|SCRIPT_NAME (HOST: the
Host header, else SERVER_NAME), else the default app; the key is the environ's UWSGI_APPID and
the request log lines start with HOST. The Python cases run against Debian's uWSGI too (when
installed): the same app choices, environ and log lines for the same mounts and requests."""

from __future__ import annotations

import os
import socket

import pytest
from helpers import EXAMPLES, UWSGI, Server, free_port, read_response, uwsgi_packet

pytestmark = pytest.mark.skipif(not UWSGI.exists(), reason="./uwsgi is not built (make build)")

REAL = "/usr/bin/uwsgi"
HAS_REAL = os.path.exists(REAL) and os.path.exists("/usr/lib/uwsgi/plugins/python3_plugin.so")


@pytest.fixture(params=["ours", "uwsgi"])
def server(request):
    """Server(args, port) for ./uwsgi, and for Debian's uWSGI with its python3 plugin."""
    if request.param == "ours":
        return Server
    if not HAS_REAL:
        pytest.skip("Debian's uWSGI with the python3 plugin is not installed")
    return lambda args, port: Server(["--plugin", "python3", *args], port, binary=REAL)

APP = '''
def application(env, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"@APP@ " + env.get("UWSGI_APPID", "-").encode() + b" " + env.get("SCRIPT_NAME", "").encode()]
'''


@pytest.fixture()
def apps(tmp_path):
    out = {}
    for name in ("default", "one", "two"):
        p = tmp_path / f"{name}.py"
        p.write_text(APP.replace("@APP@", name))
        out[name] = p
    return out


def _mounts(apps) -> list:
    return ["--wsgi-file", apps["default"], "--mount", f"a.local|={apps['one']}",
            "--mount", f"b.local|/x={apps['two']}"]


def _http(port: int, host: str, path: str = "/x/y") -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        status, _, body = read_response(s.makefile("rb"))
    assert status == 200, body
    return body


def _uwsgi(port: int, **extra) -> bytes:
    v = {"REQUEST_METHOD": "GET", "REQUEST_URI": "/x/y", "PATH_INFO": "/y", "QUERY_STRING": "",
         "SERVER_PORT": str(port), "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1", **extra}
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        s.sendall(uwsgi_packet(v))
        status, _, body = read_response(s.makefile("rb"))
    assert status == 200, body
    return body


@pytest.mark.parametrize("flag", ["--vhost", "--vhost-host"])
def test_vhost_picks_the_app_by_host_over_http(apps, flag, server):
    port = free_port()
    with server(["--http-socket", f"127.0.0.1:{port}", flag, *_mounts(apps)], port) as srv:
        assert _http(port, "a.local") == b"one a.local| "
        assert _http(port, "z.local") == b"default z.local| "       # no such vhost: the default app
        # an HTTP socket sets no SCRIPT_NAME: b.local|/x is not reached without it (as uWSGI)
        assert _http(port, "b.local") == b"default b.local| "
        srv.wait_log("b.local [pid:")
        lines = [ln for ln in srv.log().splitlines() if "[pid:" in ln]
        assert [ln.split(" ", 1)[0] for ln in lines] == ["a.local", "z.local", "b.local"], lines
        assert "|app: 1|" in lines[0] and "|app: 0|" in lines[1]


def test_vhost_over_uwsgi_uses_server_name_and_script_name(apps, server):
    port = free_port()
    with server(["--socket", f"127.0.0.1:{port}", "--vhost", *_mounts(apps)], port):
        assert _uwsgi(port, SERVER_NAME="b.local", SCRIPT_NAME="/x") == b"two b.local|/x /x"
        # the Host header wins over SERVER_NAME, port included
        assert _uwsgi(port, SERVER_NAME="b.local", HTTP_HOST="a.local", SCRIPT_NAME="") == b"one a.local| "
        assert _uwsgi(port, SERVER_NAME="x", HTTP_HOST="b.local:8080", SCRIPT_NAME="/x") == \
            b"default b.local:8080|/x /x"
        # an explicit UWSGI_APPID (nginx's uwsgi_param) picks the app itself
        assert _uwsgi(port, SERVER_NAME="z", SCRIPT_NAME="", UWSGI_APPID="a.local|").startswith(b"one ")


def test_without_vhost_the_host_does_not_choose(apps, server):
    port = free_port()
    with server(["--http-socket", f"127.0.0.1:{port}", *_mounts(apps)], port) as srv:
        assert _http(port, "a.local") == b"default - "
        log = srv.wait_log("GET /x/y =>")
        line = [ln for ln in log.splitlines() if "GET /x/y =>" in ln][0]
        assert line.startswith("[pid:"), line       # no host in front


def test_vhost_with_lua_prefixes_the_request_lines():
    port = free_port()
    args = ["--http-socket", f"127.0.0.1:{port}", "--http-socket-modifier1", "6", "--lua",
            EXAMPLES / "pippo.lua", "--vhost"]
    with Server(args, port) as srv:
        assert b"Hello Wsapi" in _http(port, "lua.local", "/")
        srv.wait_log("lua.local [pid:")
