"""Raw TCP handlers (--raw-socket with --python-raw / --lua-raw, uwsgid/net/raw.py): the
examples (line echo, the Redis-protocol server) in both runtimes, driven by real clients;
cooperative under --async, parallel under --threads; errors, timeouts, reloads, logging and
stats; the uWSGI form of a --python-raw handler (a file descriptor) against real uWSGI."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time

import pytest

from tests.helpers import EXAMPLES, Server, free_port, run_uwsgi

RUNTIMES = {
    "python": lambda name: ["--python-raw", EXAMPLES / f"{name}.py"],
    "lua": lambda name: ["--raw-modifier1", "6", "--lua-raw", EXAMPLES / f"{name}.lua"],
}
CACHE = ["--cache2", "name=redis,items=100,blocksize=65536"]


def raw_server(port, *args, **kw) -> Server:
    return Server(["--raw-socket", f"127.0.0.1:{port}", "--master", "--processes", "1", *args], port, **kw)


def connect(port: int, timeout: float = 10.0) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=timeout)


def read_until(s: socket.socket, want: bytes, timeout: float = 10.0) -> bytes:
    s.settimeout(timeout)
    data = b""
    while not data.endswith(want):
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def echo(port: int, lines=(b"hello\n", b"world\n")) -> bytes:
    with connect(port) as s:
        out = b""
        for line in lines:
            s.sendall(line)
            out += read_until(s, b"\n")
        return out


@pytest.mark.parametrize("runtime", sorted(RUNTIMES))
def test_echo_logs_and_counts_each_connection(runtime, tmp_path):
    port, stats = free_port(), free_port()
    with raw_server(port, *RUNTIMES[runtime]("raw_echo"), "--stats", f"127.0.0.1:{stats}") as srv:
        assert echo(port) == b"hello\nworld\n"
        big = b"x" * 3_000_000 + b"\n"        # more than the socket buffers: sends wait for the client
        assert echo(port, [big]) == big
        log = srv.wait_log("(RAW 200)", count=2)
        assert f"RAW 127.0.0.1:{port} => generated 12 bytes" in log
        # one request per connection, each with its log line: these two and the start-up probe
        # of Server.wait_port (whose empty connection may still be in its handler at first)
        deadline = time.monotonic() + 10
        while True:
            with socket.create_connection(("127.0.0.1", stats), timeout=10) as s:
                requests = json.loads(read_until(s, b"}"))["workers"][0]["requests"]
            lines = srv.log().count("(RAW ")
            if requests == lines == 3 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        # the probe closes at once: if it was gone before its handler looked, it may count as
        # nothing; each connection served is counted once and logged once all the same
        assert requests == lines and lines in (2, 3), (requests, lines)


@pytest.mark.parametrize("runtime", sorted(RUNTIMES))
def test_async_slow_clients_do_not_block_others(runtime):
    """8 connections waiting in the middle of a line hold 8 cores of one worker's 16, not the
    worker: a 9th is served at once, and the 8 get their echo once their lines end."""
    port = free_port()
    extra = ["--greenlet"] if runtime == "python" else []
    with raw_server(port, *RUNTIMES[runtime]("raw_echo"), "--async", "16", *extra, "--socket-timeout", "30"):
        slow = [connect(port) for _ in range(8)]
        for i, s in enumerate(slow):
            s.sendall(b"slow %d" % i)
        time.sleep(0.3)
        t0 = time.monotonic()
        assert echo(port, [b"fast\n"]) == b"fast\n"
        assert time.monotonic() - t0 < 5
        for i, s in enumerate(slow):
            s.sendall(b"\n")
            assert read_until(s, b"\n") == b"slow %d\n" % i
            s.close()


def test_threads_serve_connections_in_parallel():
    port = free_port()
    with raw_server(port, *RUNTIMES["python"]("raw_echo"), "--threads", "4", "--socket-timeout", "30"):
        slow = [connect(port) for _ in range(3)]
        for s in slow:
            s.sendall(b"wait")
        time.sleep(0.3)
        assert echo(port, [b"fast\n"]) == b"fast\n"
        for s in slow:
            s.sendall(b"ed\n")
            assert read_until(s, b"\n") == b"waited\n"
            s.close()


def _redis_client(port):
    redis = pytest.importorskip("redis")
    return redis.Redis(port=port, protocol=2, socket_timeout=10)


@pytest.mark.parametrize("runtime", sorted(RUNTIMES))
def test_redis_example_with_the_redis_package(runtime):
    port = free_port()
    with raw_server(port, *RUNTIMES[runtime]("raw_redis"), *CACHE, "--async", "8",
                    *(["--greenlet"] if runtime == "python" else [])) as srv:
        r = _redis_client(port)
        assert r.ping() is True
        assert r.get("missing") is None
        assert r.set("greeting", "héllo") is True
        assert r.get("greeting") == "héllo".encode()
        assert r.set("big", b"\x00\r\n" * 1000) is True
        assert r.get("big") == b"\x00\r\n" * 1000
        assert r.set("short", "v", ex=1) is True
        assert r.delete("greeting", "nothing") == 1
        assert r.get("greeting") is None
        with pytest.raises(Exception, match="unknown command 'FLUSHALL'"):
            r.execute_command("FLUSHALL")
        with pytest.raises(Exception, match="wrong number of arguments"):
            r.execute_command("GET", "a", "b")
        assert r.ping() is True         # the connection survived the errors
        time.sleep(2.2)
        assert r.get("short") is None   # EX 1 expired
        r.close()
        # strict parsing: a protocol error is an -ERR line, then the connection closes
        for bad in (b"*x\r\n", b"*1\r\n$4\r\nPINGxx", b"*1\r\n#4\r\n"):
            with connect(port) as s:
                s.sendall(bad)
                reply = read_until(s, b"\r\n")
                assert reply.startswith(b"-ERR Protocol error"), reply
                assert s.recv(10) == b""
        with connect(port) as s:        # inline commands, as redis-cli's pipes send them
            s.sendall(b"PING\r\nSET k v\r\nGET k\r\nQUIT\r\n")
            assert read_until(s, b"+OK\r\n$1\r\nv\r\n+OK\r\n") == b"+PONG\r\n+OK\r\n$1\r\nv\r\n+OK\r\n"
        assert "Traceback" not in srv.log() and "error in the raw handler" not in srv.log()


@pytest.mark.skipif(shutil.which("redis-cli") is None, reason="redis-cli (Debian's redis-tools) is not installed")
@pytest.mark.parametrize("runtime", sorted(RUNTIMES))
def test_redis_example_with_redis_cli(runtime):
    port = free_port()
    with raw_server(port, *RUNTIMES[runtime]("raw_redis"), *CACHE):
        def cli(*args):
            return subprocess.run(["redis-cli", "-p", str(port), *args], capture_output=True, text=True,
                                  timeout=20).stdout.strip()
        assert cli("PING") == "PONG"
        assert cli("SET", "name", runtime) == "OK"
        assert cli("GET", "name") == runtime
        assert cli("DEL", "name") == "1"
        assert cli("GET", "name") == ""
        assert "unknown command" in cli("INCR", "x")


HANDLERS = {
    "python": ("boom.py", "def application(sock):\n    sock.sendall(sock.recv(100))\n    1 / 0\n"),
    "lua": ("boom.lua", "return function(sock)\n  sock:sendall(sock:recv(100))\n  error('boom in lua')\nend\n"),
}


@pytest.mark.parametrize("runtime", sorted(HANDLERS))
def test_a_handler_that_raises(runtime, tmp_path):
    name, code = HANDLERS[runtime]
    (tmp_path / name).write_text(code)
    port = free_port()
    opt = ["--python-raw"] if runtime == "python" else ["--raw-modifier1", "6", "--lua-raw"]
    with raw_server(port, *opt, tmp_path / name) as srv:
        for i in range(2):
            with connect(port) as s:
                s.sendall(b"ping %d" % i)
                assert read_until(s, b"%d" % i) == b"ping %d" % i
                assert s.recv(10) == b""        # closed after the error
        log = srv.wait_log("(RAW 500)", count=2)
        assert ("ZeroDivisionError" if runtime == "python" else "boom in lua") in log
        assert "Traceback" in log if runtime == "python" else "stack traceback" in log
        assert log.count("spawned uWSGI worker 1") == 1     # the worker lived on


def test_silent_client_times_out():
    port = free_port()
    with raw_server(port, *RUNTIMES["lua"]("raw_echo"), "--socket-timeout", "1") as srv:
        with connect(port) as s:
            t0 = time.monotonic()
            assert s.recv(10) == b""
            assert 0.8 < time.monotonic() - t0 < 10
        srv.wait_log("(RAW 408)")
    with raw_server(port, *RUNTIMES["python"]("raw_echo"), "--socket-timeout", "1") as srv:
        with connect(port) as s:
            assert s.recv(10) == b""
        log = srv.wait_log("(RAW 408)")
        assert "raw connection from 127.0.0.1" in log and "(--socket-timeout)" in log
        assert "Traceback" not in log


def test_preread_is_a_peek(tmp_path):
    """preread holds what had arrived when the handler started, and recv still returns it."""
    (tmp_path / "peek.py").write_text(
        "def application(sock):\n"
        "    first = sock.preread\n"
        "    line = sock.recvline()\n"
        "    sock.sendall(b'preread=%r recv=%r peer=%s\\n' % (first, line, sock.peer.encode()))\n")
    port = free_port()
    with raw_server(port, "--python-raw", tmp_path / "peek.py", "--socket-timeout", "30"):
        busy = connect(port)            # holds the only core: the next connection waits in the queue
        time.sleep(0.3)
        with connect(port) as s:
            s.sendall(b"SSH-2.0 hi\n")
            time.sleep(0.3)
            busy.sendall(b"done\n")
            assert read_until(busy, b"\n").startswith(b"preread=")
            busy.close()
            reply = read_until(s, b"\n")
        assert reply.startswith(b"preread=b'SSH-2.0 hi\\n' recv=b'SSH-2.0 hi\\n' peer=127.0.0.1:"), reply


def test_no_raw_handler_is_logged_and_closed():
    port, http = free_port(), free_port()
    with raw_server(port, "--http-socket", f"127.0.0.1:{http}", "--wsgi-file", EXAMPLES / "hello.py") as srv:
        with connect(port) as s:
            s.sendall(b"x")
            try:
                assert s.recv(10) == b""
            except ConnectionResetError:
                pass        # closed with the byte unread: a reset
        log = srv.wait_log("no raw handler")
        assert "(RAW 503)" in srv.wait_log("(RAW 503)")
        assert "--python-raw" in log


def test_bad_options_are_one_line():
    res = run_uwsgi(["--raw-socket", "127.0.0.1:0", "--lua-raw", "/nonexistent.lua"])
    assert res.returncode == 22 and "--lua-raw /nonexistent.lua: no such file" in res.stdout + res.stderr
    res = run_uwsgi(["--raw-socket", "127.0.0.1:0", "--python-raw", "/nonexistent.py"])
    assert res.returncode == 22 and "--python-raw /nonexistent.py" in res.stdout + res.stderr


def test_reload_under_load():
    """SIGHUP while clients keep connecting: the socket is handed over, no connection fails."""
    port = free_port()
    errors, done = [], []
    stop = threading.Event()

    def client():
        while not stop.is_set():
            try:
                assert echo(port, [b"x\n"]) == b"x\n"
                done.append(1)
            except Exception as e:      # noqa: BLE001  (collected: the assertion below shows them)
                errors.append(repr(e))

    with raw_server(port, *RUNTIMES["python"]("raw_echo"), "--processes", "2") as srv:
        threads = [threading.Thread(target=client) for _ in range(4)]
        for t in threads:
            t.start()
        time.sleep(0.5)
        srv.signal(signal.SIGHUP)
        srv.wait_log("spawned uWSGI worker 2", count=2, timeout=60)
        time.sleep(0.5)
        stop.set()
        for t in threads:
            t.join(30)
        assert not errors, errors[:5]
        assert len(done) > 20


# ---- uWSGI's --python-raw form: the callable gets a file descriptor ------------------------------

FD_HANDLER = """\
import os
import select


def application(fd):
    select.select([fd], [], [], 5)
    data = os.read(fd, 100)
    os.write(fd, data.upper())
    return [b"!", b"\\n"]
"""


def _fd_exchange(port) -> bytes:
    with connect(port) as s:
        s.sendall(b"hello")
        return read_until(s, b"\n")


def test_uwsgi_fd_handlers_run_unchanged(tmp_path):
    (tmp_path / "fdraw.py").write_text(FD_HANDLER)
    port = free_port()
    with raw_server(port, "--python-raw", tmp_path / "fdraw.py"):
        assert _fd_exchange(port) == b"HELLO!\n"


@pytest.mark.skipif(not os.path.exists("/usr/bin/uwsgi"), reason="Debian's uwsgi is not installed")
def test_same_answer_as_real_uwsgi(tmp_path):
    (tmp_path / "fdraw.py").write_text(FD_HANDLER)
    port = free_port()
    args = ["--plugin-dir", "/usr/lib/uwsgi/plugins", "--plugin", "python3", "--python-raw", tmp_path / "fdraw.py",
            "--raw-socket", f"127.0.0.1:{port}", "--master", "--processes", "1"]
    with Server(args, port, binary="/usr/bin/uwsgi"):
        assert _fd_exchange(port) == b"HELLO!\n"
