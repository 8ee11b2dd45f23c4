"""The --http router's uWSGI options: --http-timeout (a silent worker: 504 before the response, a
closed connection during it), --http-headers-timeout (a client's head: 408), --http-keepalive N
(0: close after each response; N > 1: an idle client is closed after N seconds; an ini value
as uWSGI reads it), --http-auto-chunked (accepted: always on), bad values refused with one line."""

from __future__ import annotations

import socket
import time

import pytest
from helpers import UWSGI, Server, free_port, read_head, read_response, run_uwsgi

pytestmark = pytest.mark.skipif(not UWSGI.exists(), reason="./uwsgi is not built (make build)")

APP = '''
import time

def application(env, start_response):
    path, qs = env["PATH_INFO"], env.get("QUERY_STRING") or "0"
    start_response("200 OK", [("Content-Type", "text/plain")])
    if path == "/sleep":
        time.sleep(float(qs))
        return [b"slept"]
    if path == "/stall":
        def body():
            yield b"first;"
            time.sleep(float(qs))
            yield b"second;"
        return body()
    return [b"hello"]
'''


def _router(tmp_path, *extra) -> tuple[Server, int]:
    app = tmp_path / "app.py"
    app.write_text(APP)
    port = free_port()
    srv = Server(["--master", "--processes", "2", "--http", f"127.0.0.1:{port}", "--wsgi-file", app, *extra],
                 port, log_path=tmp_path / "log")
    srv.start()
    srv.wait_log("spawned uWSGI http 1")
    return srv, port


def _send(port: int, path: str, keep: bool = False) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=20)
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n{'' if keep else 'Connection: close'}\r\n\r\n".encode())
    return s


def _closed_after(s: socket.socket, limit: float) -> float:
    """Seconds until the peer closes s (reading and dropping what comes); fails past `limit`."""
    t0 = time.monotonic()
    s.settimeout(limit)
    while s.recv(65536):
        pass
    return time.monotonic() - t0


@pytest.fixture(scope="module")
def timeouts(tmp_path_factory):
    srv, port = _router(tmp_path_factory.mktemp("router-timeouts"), "--http-timeout", "1",
                        "--http-headers-timeout", "1", "--http-keepalive=2", "--http-auto-chunked")
    with srv:
        yield srv, port


def test_a_worker_silent_past_http_timeout_gets_504(timeouts):
    srv, port = timeouts
    with _send(port, "/sleep?3") as s:
        t0 = time.monotonic()
        status, _, body = read_response(s.makefile("rb"))
        took = time.monotonic() - t0
    assert status == 504, body
    assert took < 2.9, took                 # the router did not wait for the worker's answer
    srv.wait_log("504 127.0.0.1:")
    assert "no response from the workers in 1s (--http-timeout) for GET /sleep?3" in srv.log()
    with _send(port, "/sleep?0") as s:       # a prompt answer passes
        assert read_response(s.makefile("rb"))[::2] == (200, b"slept")


def test_a_body_stalled_past_http_timeout_closes_the_client(timeouts):
    srv, port = timeouts
    with _send(port, "/stall?3", keep=True) as s:
        f = s.makefile("rb")
        status, headers = read_head(f)
        assert (status, headers["transfer-encoding"]) == (200, "chunked")
        rest = f.read()                      # until the router closes
    assert b"first;" in rest and b"second;" not in rest
    assert not rest.endswith(b"0\r\n\r\n")   # no last chunk: the client sees the truncation
    srv.wait_log("response stalled from the workers in 1s (--http-timeout) for GET /stall?3")


def test_a_slow_head_gets_408_after_http_headers_timeout(timeouts):
    srv, port = timeouts
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        t0 = time.monotonic()
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")           # never finished
        s.settimeout(20)
        data = s.recv(65536)
        took = time.monotonic() - t0
    assert data.startswith(b"HTTP/1.1 408"), data
    assert 0.5 < took < 15, took             # 1 s, not --http-timeout's default 60
    assert "(--http-headers-timeout)" in srv.log()


def test_http_keepalive_n_closes_an_idle_client_after_n_seconds(timeouts):
    srv, port = timeouts
    with _send(port, "/", keep=True) as s:
        f = s.makefile("rb")
        status, headers, body = read_response(f)
        assert (status, body, headers["connection"]) == (200, b"hello", "keep-alive")
        took = _closed_after(s, 30)
    assert 1.5 < took < 15, took             # 2 s (the --http-timeout of 1 s does not apply)


def test_http_keepalive_0_closes_after_each_response(tmp_path):
    ini = tmp_path / "u.ini"
    port = free_port()
    app = tmp_path / "app.py"
    app.write_text(APP)
    ini.write_text(f"[uwsgi]\nmaster = true\nhttp = 127.0.0.1:{port}\nwsgi-file = {app}\nhttp-keepalive = 0\n")
    with Server(["--ini", ini], port, log_path=tmp_path / "log") as srv:
        srv.wait_log("spawned uWSGI http 1")
        with _send(port, "/", keep=True) as s:
            status, headers, body = read_response(s.makefile("rb"))
            assert (status, body, headers["connection"]) == (200, b"hello", "close")
            assert _closed_after(s, 10) < 10


def test_http_keepalive_1_in_an_ini_keeps_the_connection(tmp_path):
    port = free_port()
    app = tmp_path / "app.py"
    app.write_text(APP)
    ini = tmp_path / "u.ini"
    ini.write_text(f"[uwsgi]\nmaster = true\nhttp = 127.0.0.1:{port}\nwsgi-file = {app}\nhttp-keepalive = 1\n")
    with Server(["--ini", ini], port, log_path=tmp_path / "log") as srv:
        srv.wait_log("spawned uWSGI http 1")
        with _send(port, "/", keep=True) as s:
            f = s.makefile("rb")
            for _ in range(2):
                status, headers, body = read_response(f)
                assert (status, body, headers["connection"]) == (200, b"hello", "keep-alive")
                s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert "unknown option" not in srv.log()


def test_workers_unreachable_past_http_connect_timeout_get_502(tmp_path):
    """The one worker is busy and its socket's accept queue (--listen 1) is full: the router's
    connect() waits --http-connect-timeout (not --http-timeout, 60 s), then answers 502."""
    sock_port = free_port()
    srv, port = _router(tmp_path, "--processes", "1", "--socket", f"127.0.0.1:{sock_port}", "--listen", "1",
                        "--no-defer-accept", "--http-connect-timeout", "1")
    fillers = []
    with srv:
        busy = _send(port, "/sleep?8")
        time.sleep(1.0)                          # the worker is in the request
        for _ in range(4):                       # more than the accept queue holds
            f = socket.socket()
            f.setblocking(False)
            try:
                f.connect(("127.0.0.1", sock_port))
            except BlockingIOError:
                pass
            fillers.append(f)
        time.sleep(0.3)
        t0 = time.monotonic()
        with _send(port, "/") as s:
            status, _, body = read_response(s.makefile("rb"))
        took = time.monotonic() - t0
        for f in [busy, *fillers]:
            f.close()
    assert status == 502, body
    assert took < 10, took
    assert "no connection in 1s (--http-connect-timeout)" in srv.log()


@pytest.mark.parametrize("args, message", [
    (["--http-keepalive=maybe"], "--http-keepalive 'maybe': expected a number"),
    (["--http-timeout", "-1"], "--http-timeout -1: expected seconds"),
    (["--http-headers-timeout", "-5"], "--http-headers-timeout -5: expected seconds"),
])
def test_bad_values_stop_the_start_with_one_line(args, message, tmp_path):
    port = free_port()
    r = run_uwsgi(["--master", "--http", f"127.0.0.1:{port}", "--wsgi-file", tmp_path / "none.py", *args])
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    assert len([ln for ln in out.splitlines() if message in ln]) == 1, out
    assert "Traceback" not in out
