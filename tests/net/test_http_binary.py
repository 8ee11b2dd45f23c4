"""The data plane through the real ./uwsgi: both runtimes behind one --socket (modifier1 dispatch),
--http-socket framing and keep-alive, the default log line, hostile input, graceful stop."""

from __future__ import annotations

import re
import signal
import socket
import textwrap
import threading
import time

import pytest
from helpers import EXAMPLES, UWSGI, Server, connect, free_port, raw, read_response, uwsgi_packet
from nginx import AVAILABLE as NGINX_AVAILABLE
from nginx import Nginx, uwsgi_pass_conf

pytestmark = pytest.mark.skipif(not UWSGI.exists(), reason="./uwsgi is not built")

LOG_LINE = re.compile(
    r"\[pid: \d+\|app: -?\d+\|req: \d+/\d+\] \S* \(\S*\) \{\d+ vars in \d+ bytes\} "
    r"\[\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}\] GET /logged => generated \d+ bytes in \d+ msecs "
    r"\(HTTP/1\.1 200\) \d+ headers in \d+ bytes \(\d+ switches on core \d+\)")

SLOW_APP = textwrap.dedent("""
    import os, time
    def application(env, start_response):
        if env["PATH_INFO"] == "/slow":
            os.write(2, b"slow request in flight\\n")
            time.sleep(1.0)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"py:" + env["PATH_INFO"].encode()]
""")


@pytest.fixture()
def app(tmp_path):
    p = tmp_path / "app.py"
    p.write_text(SLOW_APP)
    return p


def test_both_runtimes_on_one_uwsgi_socket(app):
    uport, hport = free_port(), free_port()
    args = ["--socket", f"127.0.0.1:{uport}", "--http-socket", f"127.0.0.1:{hport}", "--master", "-p", "2",
            "--wsgi-file", app, "--lua", EXAMPLES / "pippo.lua"]
    with Server(args, hport) as s:
        base = {"REQUEST_METHOD": "GET", "REQUEST_URI": "/x", "PATH_INFO": "/x", "QUERY_STRING": "",
                "SERVER_PROTOCOL": "HTTP/1.1", "SERVER_NAME": "t", "SERVER_PORT": "80", "REMOTE_ADDR": "1.2.3.4",
                "HTTP_HOST": "t"}
        lua = raw(f"127.0.0.1:{uport}", uwsgi_packet(base, modifier1=6))
        py = raw(f"127.0.0.1:{uport}", uwsgi_packet(base, modifier1=0))
        assert lua.startswith(b"HTTP/1.1 200") and b"Hello Wsapi" in lua, s.log()
        assert py.startswith(b"HTTP/1.1 200") and py.endswith(b"py:/x")
        none = raw(f"127.0.0.1:{uport}", uwsgi_packet(base, modifier1=33))
        assert none.startswith(b"HTTP/1.1 503")
        # the http-socket serves modifier1 0 with keep-alive and Content-Length
        c = connect(f"127.0.0.1:{hport}")
        f = c.makefile("rb")
        for _ in range(3):
            c.sendall(b"GET /logged HTTP/1.1\r\nHost: x\r\n\r\n")
            status, headers, body = read_response(f)
            assert (status, body, headers["content-length"]) == (200, b"py:/logged", "10")
        c.close()
        assert raw(f"127.0.0.1:{hport}", b"GARBAGE\r\n\r\n").startswith(b"HTTP/1.1 400")
        deadline = time.monotonic() + 20      # the request line is logged after the response
        while not LOG_LINE.search(s.log()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert LOG_LINE.search(s.log()), s.log()


def test_sigterm_finishes_in_flight_request(app):
    hport = free_port()
    with Server(["--http-socket", f"127.0.0.1:{hport}", "--master", "-p", "1", "--wsgi-file", app], hport) as s:
        result = {}

        def slow():
            c = connect(f"127.0.0.1:{hport}")
            c.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
            result["r"] = read_response(c.makefile("rb"))
            c.close()
        t = threading.Thread(target=slow)
        t.start()
        s.wait_log("slow request in flight")
        s.signal(signal.SIGTERM)
        t.join(15)
        assert result["r"][0] == 200 and result["r"][2] == b"py:/slow"
        assert s.proc.wait(15) == 0


def test_bind_error_is_one_line():
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        import subprocess
        r = subprocess.run([str(UWSGI), "--http-socket", f"127.0.0.1:{port}", "--lua", str(EXAMPLES / "pippo.lua")],
                           capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
        assert r.returncode == 1
        assert f"127.0.0.1:{port}" in r.stderr + r.stdout
        assert "Traceback" not in r.stderr + r.stdout
    finally:
        taken.close()


STREAM_APP = textwrap.dedent("""
    def application(env, start_response):
        body = env["wsgi.input"].read()
        start_response("200 OK", [("Content-Type", "text/plain")])
        if env["PATH_INFO"].endswith("/stream"):
            return (b"part%d;" % i for i in range(50))
        return [b"py:" + env["PATH_INFO"].encode() + b":" + env["SCRIPT_NAME"].encode() + b":" + body]
""")


@pytest.mark.skipif(not NGINX_AVAILABLE, reason="nginx is not installed")
def test_nginx_both_runtimes_one_socket(tmp_path):
    """nginx + Debian's stock uwsgi_params (no SCRIPT_NAME) in front of one --socket serving Lua
    (uwsgi_modifier1 6) and Python (0): plain, streamed and POST bodies pass through intact."""
    import os
    app = tmp_path / "stream.py"
    app.write_text(STREAM_APP)
    up, ngx_port = free_port(), free_port()
    prefix = tmp_path / "nginx"
    # bodies in memory: nginx's workers may not be able to write temp files in the test's directory
    conf = uwsgi_pass_conf(prefix, ngx_port, up, {"/lua/": 6, "/": 0},
                           "client_body_buffer_size 1m; uwsgi_max_temp_file_size 0;")
    with Server(["--socket", f"127.0.0.1:{up}", "--master", "-p", "2", "--async", "4",
                 "--wsgi-file", app, "--lua", EXAMPLES / "pippo.lua"], up) as s:
        with Nginx(prefix, conf, ngx_port):
            addr = f"127.0.0.1:{ngx_port}"
            lua = raw(addr, b"GET /lua/x HTTP/1.0\r\nHost: t\r\n\r\n", half_close=False)
            assert lua.startswith(b"HTTP/1.1 200") and b"Hello Wsapi" in lua and b"PATH_INFO: /lua/x" in lua, s.log()
            py = raw(addr, b"POST /py HTTP/1.0\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello", half_close=False)
            assert py.split(b"\r\n\r\n", 1)[1] == b"py:/py::hello"
            st = raw(addr, b"GET /stream HTTP/1.0\r\nHost: t\r\n\r\n", half_close=False)
            assert st.split(b"\r\n\r\n", 1)[1] == b"".join(b"part%d;" % i for i in range(50))
            big = os.urandom(300000)
            py = raw(addr, b"POST /big HTTP/1.0\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % len(big) + big,
                     half_close=False)
            assert py.split(b"\r\n\r\n", 1)[1] == b"py:/big::" + big, (py[:300], s.log()[-2000:])
