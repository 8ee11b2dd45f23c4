"""ASGI apps on the cffi plugin (--asgi, and ASGI callables given to --mount), against real
./uwsgi processes: HTTP over --http-socket, --socket (uwsgi protocol) and the --http router,
lifespan, streaming both ways, client disconnects, errors, recycling, graceful stop, and an
ASGI app next to WSGI and Lua apps in one instance. The apps are tests/plugins/cffi/asgi_apps.py."""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from pathlib import Path

import pytest
from helpers import (
    EXAMPLES,
    Server,
    free_port,
    http_get,
    http_request,
    read_response,
    run_uwsgi,
    uwsgi_http_get,
    wait_file,
)

APPS = Path(__file__).resolve().parent
BASE = ["--pythonpath", APPS, "--async", "20"]


@pytest.fixture(scope="module")
def marks(tmp_path_factory):
    return tmp_path_factory.mktemp("asgi-marks")


@pytest.fixture(scope="module")
def srv(marks):
    http_port, uwsgi_port = free_port(), free_port()
    args = ["--master", "--http-socket", f"127.0.0.1:{http_port}", "--socket", f"127.0.0.1:{uwsgi_port}",
            "--asgi", "asgi_apps:raw", *BASE]
    with Server(args, http_port, env={"MARKS": str(marks)}) as s:
        s.uwsgi_port = uwsgi_port
        s.wait_log("lifespan startup complete")
        yield s


def test_hello_and_request_log(srv):
    status, headers, body = http_get(srv.port, "/hi?x=1")
    assert (status, body) == (200, b"hello from asgi /hi")
    assert headers["x-app"] == "raw" and headers["content-length"] == "19"
    log = srv.wait_log("GET /hi?x=1 => generated 19 bytes")
    assert "|app: 0|" in log


def test_requests_wait_without_holding_the_worker(srv):
    results = []

    def get():
        results.append(http_get(srv.port, "/sleep")[2])
    threads = [threading.Thread(target=get) for _ in range(8)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    elapsed = time.monotonic() - t0
    assert results == [b"slept"] * 8
    assert elapsed < 1.2, f"8 x 0.2 s took {elapsed:.2f}s: the requests did not overlap"


def test_streamed_response_arrives_as_sent(srv):
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    t0 = time.monotonic()
    s.sendall(b"GET /stream HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    first = s.recv(65536)
    t_first = time.monotonic() - t0
    rest = b""
    while chunk := s.recv(65536):
        rest += chunk
    total = time.monotonic() - t0
    s.close()
    assert b"Transfer-Encoding: chunked" in first and b"chunk0" in first
    assert t_first < 0.25 < 0.8 < total, (t_first, total)
    assert b"chunk2" in rest and rest.endswith(b"end\n\r\n0\r\n\r\n")


def test_large_response_with_back_pressure(srv):
    status, _, body = http_get(srv.port, "/big")
    assert status == 200 and len(body) == 20 << 20


def test_slow_reader_makes_send_wait(srv, marks):
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    s.sendall(b"GET /flood HTTP/1.1\r\nHost: x\r\n\r\n")
    wait_file(marks / "http-flood")
    time.sleep(1.5)
    lines = (marks / "http-flood").read_text().split("\n")[:-1]
    n, rss = map(int, lines[-1].split())
    # 2000 x 1 MB if send() did not wait for the client; the kernel's buffers hold a few MB
    assert n < 40, f"{n} MB sent to a client that reads nothing"
    assert rss - int(lines[0].split()[1]) < 30 * 1024, lines
    s.close()
    assert wait_file(marks / "http-flood-end").startswith("OSError")


def test_upload_50mb_at_flat_rss(srv):
    data = os.urandom(1 << 20) * 50
    import hashlib
    status, _, body = http_request(srv.port, "POST", "/upload", body=data,
                                   headers={"Content-Type": "application/octet-stream"}, timeout=60)
    assert status == 200
    got = json.loads(body)
    assert got["size"] == len(data) and got["md5"] == hashlib.md5(data).hexdigest()
    assert got["chunks"] > 10, "a spooled body comes in chunks (more_body)"
    assert got["rss_after"] - got["rss_before"] < 20 * 1024, got


def test_client_disconnect_seen_by_receive(srv, marks):
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    s.sendall(b"GET /wait-disconnect HTTP/1.1\r\nHost: x\r\n\r\n")
    time.sleep(0.3)
    s.close()
    assert wait_file(marks / "disconnect").strip() == "http.disconnect"


def test_send_after_disconnect_raises_oserror(srv, marks):
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    s.sendall(b"GET /stream-forever HTTP/1.1\r\nHost: x\r\n\r\n")
    assert b"tick" in s.recv(4096)
    s.close()
    assert wait_file(marks / "send-error").strip() == "ClientDisconnected"


def test_core_serves_again_after_a_client_left_a_parked_request(srv):
    """The client leaves while the request is parked on its core (a streamed response): the
    core's next requests (given by the native lane, which starts them without Core.run) answer."""
    for _ in range(3):
        s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
        s.sendall(b"GET /stream-forever HTTP/1.1\r\nHost: x\r\n\r\n")
        assert b"tick" in s.recv(4096)
        s.close()
        time.sleep(0.2)
        for path in ("/boom", "/again", "/sleep"):
            assert http_get(srv.port, path, timeout=5)[0] in (200, 500), path


def test_app_error_is_a_500_with_the_traceback_logged(srv):
    status, _, body = http_get(srv.port, "/boom")
    assert status == 500
    srv.wait_log("RuntimeError: boom in the app")
    assert http_get(srv.port, "/after")[0] == 200    # the worker goes on


def test_plain_requests_answered_by_the_native_lane(srv):
    """What the lane reads and answers itself (asgi_lane.py): HEAD, HTTP/1.0, a non-ASCII path
    (its scope built in Python), an app error after a complete response, a bad header."""
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    f = s.makefile("rb")
    s.sendall(b"HEAD /head HTTP/1.1\r\nHost: x\r\n\r\n")
    status, headers, _ = read_head_only(f)
    assert status == 200 and headers["content-length"] == "21"
    s.sendall(b"GET /again HTTP/1.1\r\nHost: x\r\n\r\n")      # the same connection goes on
    assert read_response(f)[2] == b"hello from asgi /again"
    s.close()
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    s.sendall(b"GET /ten HTTP/1.0\r\n\r\n")
    data = b""
    while chunk := s.recv(65536):       # HTTP/1.0 without keep-alive: closed after the response
        data += chunk
    s.close()
    assert data.startswith(b"HTTP/1.1 200") and data.endswith(b"hello from asgi /ten")
    scope = json.loads(http_get(srv.port, "/scope/%C3%A9")[2])
    assert scope["path"] == "/scope/\u00e9" and scope["raw_path"] == "/scope/%C3%A9"
    assert http_get(srv.port, "/boom-after")[:3:2] == (200, b"sent")
    srv.wait_log("error in the app after its response (GET /boom-after)")
    assert http_get(srv.port, "/bad-header")[0] == 500
    assert http_get(srv.port, "/after-bad")[0] == 200


def read_head_only(f):
    line = f.readline()
    status = int(line.split()[1])
    headers = {}
    while (line := f.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, None


def test_idle_after_asyncio_prunes_its_timers(srv):
    """asyncio replaces its timer heap when most of it is cancelled: the worker's loop must
    follow the new one (following the old one, it kicked asyncio at once, again and again)."""
    pid = int(http_get(srv.port, "/prune")[2])
    time.sleep(0.3)
    before = worker_cpu(pid)
    time.sleep(1.0)
    assert worker_cpu(pid) - before < 0.5, "the idle worker spins"


def worker_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_current_task_from_the_first_step(srv):
    assert http_get(srv.port, "/task")[2] == b"True True"


def test_scope(srv):
    status, _, body = http_get(srv.port, "/scope/a%20b?q=1&r=%2F", headers={"X-Custom": "yes"})
    scope = json.loads(body)
    assert scope["type"] == "http" and scope["asgi"]["version"] == "3.0"
    assert scope["method"] == "GET" and scope["http_version"] == "1.1" and scope["scheme"] == "http"
    assert scope["path"] == "/scope/a b" and scope["raw_path"] == "/scope/a%20b" and scope["query_string"] == "q=1&r=%2F"
    assert scope["root_path"] == ""
    assert ["x-custom", "yes"] in scope["headers"] and scope["client"][0] == "127.0.0.1"
    assert scope["server"][1] == srv.port
    assert scope["state"]["started"] > 0     # the lifespan's state, per request


def test_uwsgi_protocol_socket(srv):
    status, body = uwsgi_http_get(srv.uwsgi_port, "/via-uwsgi", 0)
    assert (status, body) == (200, b"hello from asgi /via-uwsgi")


def test_keepalive_connection_serves_several_requests(srv):
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    f = s.makefile("rb")
    for i in range(3):
        s.sendall(b"GET /k%d HTTP/1.1\r\nHost: x\r\n\r\n" % i)
        status, _, body = read_response(f)
        assert (status, body) == (200, b"hello from asgi /k%d" % i)
    s.close()


# ---- lifespan, stop, recycling ---------------------------------------------------------------

def test_lifespan_and_graceful_stop_drain_inflight_requests(tmp_path):
    port = free_port()
    with Server(["--master", "--http-socket", f"127.0.0.1:{port}", "--asgi", "asgi_apps:raw", *BASE], port,
                env={"MARKS": str(tmp_path)}, stop_signal=signal.SIGTERM) as s:
        s.wait_log("lifespan startup complete")
        got = []
        t = threading.Thread(target=lambda: got.append(http_get(port, "/sleep")))
        t.start()
        wait_file(tmp_path / "sleeping")    # in the app's asyncio.sleep(0.2)
        s.signal(signal.SIGTERM)
        t.join(20)
        assert got and got[0][0] == 200 and got[0][2] == b"slept"
        # it exits by itself: a second SIGTERM (stop()'s) could land while Python finalizes
        assert s.proc.wait(20) == 0
    pids = (tmp_path / "startup").read_text().split()
    assert len(pids) == 1 and (tmp_path / "shutdown").read_text().split() == pids


@pytest.mark.parametrize("app,line", [
    ("asgi_apps:failing", "lifespan startup failed: the database is down"),
    ("asgi_apps:raising", "lifespan startup failed: RuntimeError: cannot reach the cache"),
])
@pytest.mark.parametrize("master", [True, False])
def test_lifespan_failure_exits_non_zero_with_one_line(app, line, master):
    port = free_port()
    res = run_uwsgi([*(["--master"] if master else []), "--http-socket", f"127.0.0.1:{port}",
                     "--asgi", app, *BASE], timeout=60)
    out = res.stdout + res.stderr
    assert res.returncode == 22, out
    assert sum(line in ln for ln in out.splitlines()) == 1, out


def test_refusals_name_the_option():
    port = free_port()
    res = run_uwsgi(["--http-socket", f"127.0.0.1:{port}", "--pythonpath", APPS, "--asgi", "asgi_apps:raw"])
    assert res.returncode == 1 and "give --async N" in res.stdout + res.stderr
    res = run_uwsgi(["--http-socket", f"127.0.0.1:{port}", "--asgi", "asgi_apps:raw", "--threads", "2", *BASE])
    assert res.returncode == 1 and "--threads: ASGI apps run on one asyncio loop" in res.stdout + res.stderr
    pytest.importorskip("gevent")
    res = run_uwsgi(["--http-socket", f"127.0.0.1:{port}", "--asgi", "asgi_apps:raw", "--gevent", "4", *BASE])
    out = res.stdout + res.stderr
    assert res.returncode == 1 and "--gevent: asgi_apps:raw" in out and "is an ASGI app" in out, out


def test_max_requests_recycles_the_worker(tmp_path):
    port = free_port()
    with Server(["--master", "--http-socket", f"127.0.0.1:{port}", "--asgi", "asgi_apps:raw",
                 "--max-requests", "3", "--min-worker-lifetime", "0", *BASE], port, env={"MARKS": str(tmp_path)}) as s:
        pids = set()
        for _ in range(8):
            status, _, body = http_get(port, "/pid")
            assert status == 200
            pids.add(body)
            time.sleep(0.05)
        assert len(pids) >= 2, s.log()
        s.wait_log("lifespan startup complete", count=2)


def test_asgi2_app_with_the_asgi_option():
    port = free_port()
    with Server(["--http-socket", f"127.0.0.1:{port}", "--asgi", "asgi_apps:Asgi2", *BASE], port) as s:
        assert http_get(port, "/two") == (200, http_get(port, "/two")[1], b"asgi2 /two")
        assert "lifespan' protocol appears unsupported" in s.log()


def test_http_router_and_side_by_side_with_wsgi_and_lua(tmp_path):
    """--http router -> uwsgi socket; ASGI and WSGI mounted by path (both modifier1 0), Lua
    (modifier1 6) on the same instance."""
    http_port, uwsgi_port = free_port(), free_port()
    args = ["--master", "--http", f"127.0.0.1:{http_port}", "--socket", f"127.0.0.1:{uwsgi_port}",
            "--mount", "/a=asgi_apps:raw", "--mount", "/w=asgi_apps:wsgi", "--manage-script-name",
            "--lua", EXAMPLES / "pippo.lua", *BASE]
    with Server(args, http_port, env={"MARKS": str(tmp_path)}) as s:
        s.wait_port(uwsgi_port)
        assert http_get(http_port, "/a/x")[2] == b"hello from asgi /a/x"   # ASGI's path is the full path
        assert http_get(http_port, "/w/y")[2] == b"hello from wsgi /y"
        # the ASGI apps' loop is not left running in the thread while a WSGI app may run there
        assert http_get(http_port, "/w/asyncio-run")[2] == b"asyncio.run in wsgi"
        assert http_get(http_port, "/a/z")[2] == b"hello from asgi /a/z"
        assert http_get(http_port, "/w/asyncio-run")[2] == b"asyncio.run in wsgi"
        scope = json.loads(http_get(http_port, "/a/scope")[2])
        assert scope["root_path"] == "/a" and scope["path"] == "/a/scope"
        status, body = uwsgi_http_get(uwsgi_port, "/", 6)
        assert status == 200 and body
        assert "ASGI app 0 (mountpoint='/a')" in s.log() and "WSGI app 1 (mountpoint='/w')" in s.log()
