"""--add-header / --del-header (and its alias --rem-header): every response gets the added headers
and loses the deleted ones, whatever the runtime (the Python and the Lua app), the protocol (an
HTTP socket, a uwsgi socket as nginx speaks it) and the front (the --http router), static files
included; the same checks pass against Debian's uWSGI (when installed). A bad value stops the
start with one line."""

from __future__ import annotations

import os
import socket

import pytest
from helpers import EXAMPLES, UWSGI, Server, free_port, read_response, run_uwsgi, uwsgi_packet

pytestmark = pytest.mark.skipif(not UWSGI.exists(), reason="./uwsgi is not built (make build)")

ADD = ["--add-header", "X-Frame-Options: DENY", "--add-header", "X-Served-By:uwsgid",
       "--add-header", "Content-Type: text/x-added"]
# the app's Content-Type goes (any case), the added one of the same name stays, as in uWSGI
DEL = ["--del-header", "content-TYPE", "--rem-header", "X-Not-There"]


def _http(port: int, path: str = "/", method: str = "GET"):
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        s.sendall(f"{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
        return read_response(s.makefile("rb"))


def _uwsgi(port: int, path: str = "/", modifier1: int = 0):
    v = {"REQUEST_METHOD": "GET", "REQUEST_URI": path, "PATH_INFO": path, "QUERY_STRING": "",
         "SCRIPT_NAME": "", "SERVER_NAME": "localhost", "SERVER_PORT": str(port),
         "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1", "HTTP_HOST": "localhost"}
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        s.sendall(uwsgi_packet(v, modifier1))
        return read_response(s.makefile("rb"))


def _check(resp, body: bytes):
    status, headers, data = resp
    assert status == 200 and body in data, resp
    assert headers["x-frame-options"] == "DENY"
    assert headers["x-served-by"] == "uwsgid"
    assert headers["content-type"] == "text/x-added"     # the app's went, the added one stayed
    assert "x-not-there" not in headers


def _app_args(runtime: str, proto: str, port: int) -> list:
    if runtime == "python":
        app = ["--wsgi-file", EXAMPLES / "hello.py"]
        sock = ["--http-socket" if proto == "http" else "--socket", f"127.0.0.1:{port}"]
    else:
        app = ["--lua", EXAMPLES / "pippo.lua"]
        sock = ["--http-socket", f"127.0.0.1:{port}", "--http-socket-modifier1", "6"] if proto == "http" \
            else ["--socket", f"127.0.0.1:{port}"]
    return [*sock, *app]


BODIES = {"python": b"Hello World", "lua": b"Hello Wsapi"}
REAL = "/usr/bin/uwsgi"
REAL_PLUGINS = {"python": "python3", "lua": "lua51"}


def _server(binary: str, runtime: str, args: list, port: int) -> Server:
    if binary == "ours":
        return Server(args, port)
    plugin = REAL_PLUGINS[runtime]
    if not (os.path.exists(REAL) and os.path.exists(f"/usr/lib/uwsgi/plugins/{plugin}_plugin.so")):
        pytest.skip(f"Debian's uWSGI with its {plugin} plugin is not installed")
    return Server(["--plugin", plugin, *args], port, binary=REAL)


@pytest.mark.parametrize("binary", ["ours", "uwsgi"])
@pytest.mark.parametrize("runtime", ["python", "lua"])
@pytest.mark.parametrize("proto", ["http", "uwsgi"])
def test_headers_added_and_removed(runtime, proto, binary, tmp_path):
    port = free_port()
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "f.txt").write_bytes(b"static body\n")
    args = [*_app_args(runtime, proto, port), *ADD, *DEL, "--static-map", f"/s={tmp_path / 'www'}"]
    with _server(binary, runtime, args, port) as srv:
        if proto == "http":
            _check(_http(port), BODIES[runtime])
            _check(_http(port, "/s/f.txt"), b"static body\n")    # static files too, as uWSGI
            status, headers, data = _http(port, method="HEAD")
            assert (status, headers["x-frame-options"]) == (200, "DENY")
            assert data == b"" or binary == "uwsgi"      # uWSGI's HTTP socket sends HEAD a body
        else:
            m1 = 6 if runtime == "lua" else 0
            _check(_uwsgi(port, modifier1=m1), BODIES[runtime])
            _check(_uwsgi(port, "/s/f.txt", modifier1=m1), b"static body\n")
        # the request log counts the headers sent, the added ones included (uWSGI's header_cnt)
        srv.wait_log(" => generated ")
        line = [ln for ln in srv.log().splitlines() if ln.startswith("[pid:")][0]
        assert " 3 headers in " in line, line


def test_headers_through_the_http_router():
    port = free_port()
    args = ["--master", "--http", f"127.0.0.1:{port}", "--wsgi-file", EXAMPLES / "hello.py", *ADD, *DEL]
    with Server(args, port) as srv:
        srv.wait_log("spawned uWSGI http 1")
        _check(_http(port), b"Hello World")


def test_without_the_options_the_app_headers_are_untouched():
    port = free_port()
    with Server(_app_args("python", "http", port), port):
        status, headers, data = _http(port)
        assert (status, data) == (200, b"Hello World")
        assert headers["content-type"] == "text/html"
        assert "x-frame-options" not in headers


def test_deleting_the_app_content_length_lets_the_server_frame_the_body(tmp_path):
    app = tmp_path / "app.py"
    app.write_text("def application(env, sr):\n"
                   "    sr('200 OK', [('Content-Type', 'text/plain'), ('Content-Length', '5')])\n"
                   "    return [b'hello']\n")
    port = free_port()
    with Server(["--http-socket", f"127.0.0.1:{port}", "--wsgi-file", app, "--del-header", "Content-Length",
                 "--add-header", "X-A: 1"], port):
        status, headers, data = _http(port)
        assert (status, data, headers["x-a"]) == (200, b"hello", "1")
        assert headers["content-length"] == "5"     # ours, from the body


@pytest.mark.parametrize("args, message", [
    (["--add-header", "NoColon"], "--add-header 'NoColon': expected 'Name: value'"),
    (["--add-header", ": empty name"], "--add-header ': empty name': expected 'Name: value'"),
    (["--add-header", "Bad Name: x"], "--add-header 'Bad Name: x': expected 'Name: value'"),
    (["--del-header", "X-A: 1"], "--del-header 'X-A: 1': expected a header name"),
])
def test_bad_values_stop_the_start_with_one_line(args, message):
    port = free_port()
    r = run_uwsgi(["--http-socket", f"127.0.0.1:{port}", "--wsgi-file", EXAMPLES / "hello.py", *args])
    assert r.returncode == 1, r.stderr
    lines = [ln for ln in (r.stdout + r.stderr).splitlines() if message in ln]
    assert len(lines) == 1, r.stdout + r.stderr
    assert "Traceback" not in r.stdout + r.stderr
