"""Socket options as uWSGI reads them: --protocol / --socket-protocol (the protocol of --socket;
--uwsgi-socket stays uwsgi), --http11-socket, --so-keepalive (the kernel's keep-alive timer on accepted
connections), and the options accepted because their effect is always on here (--thunder-lock,
--tcp-nodelay, --single-interpreter / -i, --http-auto-chunked, --ignore-sigpipe,
--disable-write-exception)."""

from __future__ import annotations

import socket
import time

import pytest
from helpers import EXAMPLES, UWSGI, Server, free_port, read_response, run_uwsgi, uwsgi_packet

pytestmark = pytest.mark.skipif(not UWSGI.exists(), reason="./uwsgi is not built (make build)")

HELLO = ["--wsgi-file", EXAMPLES / "hello.py"]


def _http(port: int) -> tuple:
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        return read_response(s.makefile("rb"))


def _uwsgi(port: int) -> bytes:
    v = {"REQUEST_METHOD": "GET", "REQUEST_URI": "/", "PATH_INFO": "/", "QUERY_STRING": "",
         "SERVER_NAME": "localhost", "SERVER_PORT": str(port), "SERVER_PROTOCOL": "HTTP/1.1",
         "REMOTE_ADDR": "127.0.0.1"}
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        s.sendall(uwsgi_packet(v))
        s.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
        return data


@pytest.mark.parametrize("option, value", [("--protocol", "http"), ("--socket-protocol", "http11")])
def test_protocol_http_makes_socket_speak_http(option, value):
    port, raw_port = free_port(), free_port()
    args = ["--socket", f"127.0.0.1:{port}", "--uwsgi-socket", f"127.0.0.1:{raw_port}", option, value, *HELLO]
    with Server(args, port) as srv:
        status, _, body = _http(port)
        assert (status, body) == (200, b"Hello World")
        # --uwsgi-socket is uwsgi whatever --protocol says (as in uWSGI)
        assert _uwsgi(raw_port).endswith(b"Hello World")
        assert "unknown option" not in srv.log()


def test_protocol_http_socket_takes_the_http_socket_modifiers():
    """As uWSGI's --http-socket-modifier1, which applies to every HTTP socket: the Lua app."""
    port = free_port()
    args = ["--socket", f"127.0.0.1:{port}", "--protocol", "http", "--http-socket-modifier1", "6",
            "--lua", EXAMPLES / "pippo.lua"]
    with Server(args, port):
        status, _, body = _http(port)
        assert status == 200 and b"Hello Wsapi" in body


def test_http11_socket_is_an_http_socket():
    port = free_port()
    with Server(["--http11-socket", f"127.0.0.1:{port}", *HELLO], port):
        with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
            f = s.makefile("rb")
            for _ in range(2):      # kept alive
                s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
                assert read_response(f)[::2] == (200, b"Hello World")


def test_protocol_uwsgi_is_the_default():
    port = free_port()
    with Server(["--socket", f"127.0.0.1:{port}", "--protocol", "uwsgi", *HELLO], port):
        assert _uwsgi(port).startswith(b"HTTP/1.1 200")


def test_protocol_http_socket_behind_the_router_gets_an_internal_uwsgi_socket():
    """--http forwards over uwsgi: with --socket made HTTP, the router gets its own uwsgi socket."""
    port, sock_port = free_port(), free_port()
    args = ["--master", "--http", f"127.0.0.1:{port}", "--socket", f"127.0.0.1:{sock_port}",
            "--protocol", "http", *HELLO]
    with Server(args, port) as srv:
        srv.wait_log("spawned uWSGI http 1")
        assert _http(port)[::2] == (200, b"Hello World")
        assert _http(sock_port)[::2] == (200, b"Hello World")


@pytest.mark.parametrize("value, message", [
    ("fastcgi", "--protocol fastcgi: not supported here (uwsgi, http, http11 and raw are)"),
    ("gopher", "--protocol gopher: unknown protocol (uwsgi, http, http11 or raw)"),
])
def test_unsupported_protocols_stop_the_start_with_one_line(value, message):
    r = run_uwsgi(["--socket", f"127.0.0.1:{free_port()}", "--protocol", value, *HELLO])
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    assert len([ln for ln in out.splitlines() if message in ln]) == 1, out


def _timer_of_server_side(server_port: int, client_port: int) -> int:
    """The `tr` field of /proc/net/tcp for the server's end of the connection (2 = keep-alive timer)."""
    want = (f"{server_port:04X}", f"{client_port:04X}")
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            local, remote, timer = fields[1].split(":")[1], fields[2].split(":")[1], fields[5]
            if (local, remote) == want:
                return int(timer.split(":")[0], 16)
    raise AssertionError(f"no server-side socket for {server_port} <- {client_port}")


@pytest.mark.parametrize("enabled", [True, False])
def test_so_keepalive_arms_the_keepalive_timer_on_accepted_connections(enabled):
    port = free_port()
    args = ["--http-socket", f"127.0.0.1:{port}", *HELLO, *(["--so-keepalive"] if enabled else [])]
    with Server(args, port):
        with socket.create_connection(("127.0.0.1", port), timeout=20) as c:
            c.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")     # a kept-alive connection
            assert read_response(c.makefile("rb"))[::2] == (200, b"Hello World")
            time.sleep(0.2)
            timer = _timer_of_server_side(port, c.getsockname()[1])
    assert timer == (2 if enabled else 0), timer


def test_options_whose_effect_is_always_on_are_accepted_quietly():
    port = free_port()
    args = ["--http-socket", f"127.0.0.1:{port}", *HELLO, "--thunder-lock", "--tcp-nodelay",
            "--single-interpreter", "-i", "--http-auto-chunked", "--ignore-sigpipe",
            "--disable-write-exception"]
    with Server(args, port) as srv:
        assert _http(port)[::2] == (200, b"Hello World")
        log = srv.log()
    assert "unknown option" not in log and "WARNING: ignoring" not in log, log


WRITER = '''
import sys, time

def application(env, start_response):
    write = start_response("200 OK", [("Content-Type", "text/plain")])
    try:
        for _ in range(30):
            write(b"x" * 65536)
            time.sleep(0.02)
    except BaseException as e:
        print("APP RAISED", type(e).__name__, file=sys.stderr, flush=True)
        raise
    print("APP FINISHED", file=sys.stderr, flush=True)
    return []
'''


def test_disable_write_exception_is_how_writes_behave_here(tmp_path):
    """uWSGI raises OSError in the app's write() once the client is gone, unless
    --disable-write-exception: here it never raises (the flag is accepted, its effect always on)."""
    app = tmp_path / "w.py"
    app.write_text(WRITER)
    port = free_port()
    with Server(["--http-socket", f"127.0.0.1:{port}", "--wsgi-file", app, "--disable-write-exception"],
                port) as srv:
        c = socket.create_connection(("127.0.0.1", port), timeout=20)
        c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        c.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        c.recv(1000)
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        c.close()                                # a reset: the next writes fail
        log = srv.wait_log("APP ", timeout=30)
    assert "APP FINISHED" in log and "APP RAISED" not in log, log
