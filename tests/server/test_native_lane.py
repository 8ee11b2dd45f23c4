"""The native lane (core/cpython/lane.c, uwsgid/server/native_lane.py): a uwsgi-socket request
served in C around the WSGI call answers exactly as the Python path does, hands every other
shape back to it at the point it stopped, and keeps the counters, --max-requests, the scoreboard
(stats, harakiri) and the error lines of the Python path."""

from __future__ import annotations

import json
import os
import socket
import textwrap
import time

import pytest

from tests.helpers import Server, free_port, send_paced, uwsgi_packet, uwsgi_request
from tests.lane_helpers import lane_env, log_lines, start_pair
from tests.master_helpers import read_stats

native = pytest.importorskip("_uwsgi_native")
if not hasattr(native, "Lane"):
    pytest.skip("the native module has no lane (an old build)", allow_module_level=True)

APP = textwrap.dedent('''
    import os, sys, time
    import uwsgi

    def lazy(start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield b"lazy "
        yield b"body"

    def lazy_write(start_response):
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        yield b""
        write(b"written later ")
        yield b"then yielded"

    closed = []     # the query string of each request whose body was closed

    class Body:
        """a framework's body (werkzeug's ClosingIterator): an iterator with close()"""
        def __init__(self, items, close_raises=False, tag=""):
            self.items = iter(items)
            self.close_raises = close_raises
            self.tag = tag
        def __iter__(self):
            return self
        def __next__(self):
            item = next(self.items)
            if isinstance(item, Exception):
                raise item
            return item
        def close(self):
            closed.append(self.tag)
            if self.close_raises:
                raise ValueError("boom in close")

    def declared(start_response, items, length, **kw):
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(length))])
        return Body(items, **kw)

    def lazy_declared(start_response):
        start_response("200 OK", [("Content-Length", "4")])
        yield b"lazy"

    ITERS = {
        "/it": ([b"framework"], 9), "/it-short": ([b"abcd"], 10), "/it-two": ([b"ab", b"cd"], 4),
        "/it-extra": ([b"abc", b"def"], 3), "/it-raise-first": ([RuntimeError("boom first")], 5),
        "/it-raise-after": ([b"abc", RuntimeError("boom after")], 3), "/it-str": (["abc"], 3),
        "/it-none": ([None], 3), "/it-empty-first": ([b"", b"abc"], 3), "/it-bytearray": ([bytearray(b"abc")], 3),
        "/it-zero": ([], 0), "/it-missing": ([], 5),
    }

    def application(env, start_response):
        p = env["PATH_INFO"]
        tag = env["QUERY_STRING"]
        if p in ITERS:
            return declared(start_response, *ITERS[p], tag=tag)
        if p == "/it-close-raises":
            return declared(start_response, [b"abc"], 3, close_raises=True, tag=tag)
        if p == "/it-end":      # no length declared, and no item: the body is known (empty)
            start_response("200 OK", [("Content-Type", "text/plain")])
            return Body([], tag=tag)
        if p == "/it-paced":    # declared, in two chunks with a pause: the first must not wait
            ack = os.path.join(os.path.dirname(__file__), "ack-" + env["QUERY_STRING"])
            def paced():
                yield b"first "
                end = time.monotonic() + 10     # until the client got it (held, it comes 10 s late)
                while not os.path.exists(ack) and time.monotonic() < end:
                    time.sleep(0.005)
                yield b"second"
            start_response("200 OK", [("Content-Length", "12")])
            return Body(paced())
        if p == "/it-wait":     # a wait armed before the body: the core steps it once it fired
            uwsgi.async_sleep(0.05)
            return declared(start_response, [b"waited"], 6, tag=tag)
        if p == "/lazydeclared":
            return lazy_declared(start_response)
        if p == "/closed":      # the bodies closed of the requests whose query string starts so
            start_response("200 OK", [])
            return [" ".join(t for t in closed if t.startswith(env["QUERY_STRING"])).encode()]
        if p == "/gen":
            start_response("200 OK", [("Content-Type", "text/plain")])
            return (c for c in [b"a", b"b", b"c"])
        if p == "/lazygen":     # start_response on the generator's first step (PEP 3333 allows it)
            return lazy(start_response)
        if p == "/lazywrite":   # write() kept and called while the Python path iterates
            return lazy_write(start_response)
        if p == "/write":
            w = start_response("200 OK", [("Content-Type", "text/plain")])
            w(b"written-")
            return [b"returned"]
        if p == "/raise":
            raise RuntimeError("boom in the lane app")
        if p == "/badheader":
            start_response("200 OK", [("X-Bad", "a\\nb")])
            return [b"never"]
        if p == "/twice":
            start_response("200 OK", [])
            start_response("200 OK", [])
            return [b"never"]
        if p == "/excinfo":
            start_response("200 OK", [("X-First", "1")])
            try:
                1 / 0
            except ZeroDivisionError:
                start_response("503 Replaced", [("X-Second", "2")], sys.exc_info())
            return [b"replaced"]
        if p == "/str":
            start_response("200 OK", [])
            return ["a str item"]
        if p == "/listheaders":
            start_response("201 Created", [["X-List", "yes"]])
            return (b"tuple body",)
        if p == "/big":
            start_response("200 OK", [("Content-Type", "application/octet-stream")])
            return [b"x" * 300000]
        if p == "/file":
            start_response("200 OK", [("Content-Type", "text/x-python")])
            return env["wsgi.file_wrapper"](open(__file__, "rb"))
        if p == "/empty":
            start_response("204 No Content", [])
            return []
        if p == "/api":
            uwsgi.set_logvar("lane", "taken")
            start_response("200 OK", [])
            return [uwsgi.get_logvar("lane").encode() if isinstance(uwsgi.get_logvar("lane"), str)
                    else uwsgi.get_logvar("lane")]
        if p == "/env":
            start_response("200 OK", [("Content-Type", "text/plain")])
            keep = sorted((k, v) for k, v in env.items() if type(v) is str)
            return [repr(keep).encode()]
        if p == "/pid":
            start_response("200 OK", [])
            return [str(os.getpid()).encode()]
        if p == "/sleep":
            time.sleep(float(env["QUERY_STRING"]))
            start_response("200 OK", [])
            return [b"slept"]
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"hello " + p.encode("latin-1")]
''')

VARS = {"REQUEST_METHOD": "GET", "SERVER_PROTOCOL": "HTTP/1.1", "SERVER_NAME": "localhost",
        "SERVER_PORT": "80", "REMOTE_ADDR": "127.0.0.1", "REMOTE_PORT": "5555", "HTTP_HOST": "example.org",
        "QUERY_STRING": ""}


def _vars(path: str, **more) -> dict:
    v = dict(VARS, REQUEST_URI=path, PATH_INFO=path.split("?")[0], QUERY_STRING=path.partition("?")[2])
    v.update(more)
    return v


@pytest.fixture(scope="module")
def app_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("lane") / "lane_app.py"
    path.write_text(APP)
    return path


def _server(app_file, *extra, lane=True, port=None):
    port = port or free_port()
    env = lane_env(lane)
    return Server(["--master", "--processes", "1", "--disable-logging", "--socket", f"127.0.0.1:{port}",
                   "--wsgi-file", app_file, *extra], port, env=env)


@pytest.fixture(scope="module", params=[(), ("--async", "4"), ("--threads", "4")], ids=["sync", "async", "threads"])
def pair(app_file, request):
    """The same app behind the lane and behind the Python path (one core, --async cores, and
    --threads under the default --thread-slots gate)."""
    with _server(app_file, *request.param) as lane, _server(app_file, *request.param, lane=False) as python:
        yield lane, python


SHAPES = ["/", "/gen", "/lazygen", "/lazywrite", "/write", "/raise", "/badheader", "/twice", "/excinfo", "/str",
          "/listheaders", "/big",
          "/file", "/empty", "/api", "/env", "/env?a=1&b=%20"]
ITER_SHAPES = ["/it", "/it-wait", "/it-short", "/it-two", "/it-extra", "/it-raise-first", "/it-raise-after", "/it-str", "/it-none",
               "/it-empty-first", "/it-bytearray", "/it-zero", "/it-missing", "/it-close-raises", "/it-end",
               "/lazydeclared"]
SHAPES += ITER_SHAPES


@pytest.mark.parametrize("path", SHAPES)
def test_the_lane_answers_as_the_python_path(pair, path):
    lane, python = pair
    a = uwsgi_request(lane.port, _vars(path))
    b = uwsgi_request(python.port, _vars(path))
    assert a == b
    assert a.startswith(b"HTTP/1.1 ")


@pytest.mark.parametrize("more", [
    {"SCRIPT_NAME": "/"}, {"SCRIPT_NAME": "/app//"}, {"HTTPS": "on"}, {"HTTPS": "off"}, {"UWSGI_SCHEME": "https"},
    {"HTTP_CONTENT_TYPE": "text/x", "CONTENT_TYPE": "text/y"}, {"HTTP_CONTENT_LENGTH": "3", "CONTENT_LENGTH": ""},
    {"HTTP_X_LATIN": "caf\xe9"}, {"SERVER_PROTOCOL": "HTTP/1.0"},
])
def test_the_environ_is_the_python_paths(pair, more):
    lane, python = pair
    v = _vars("/env", **more)
    assert uwsgi_request(lane.port, v) == uwsgi_request(python.port, v)


def test_head_and_http10_framing(pair):
    lane, python = pair
    for path in ("/", "/it", "/it-short", "/lazydeclared"):
        for more in ({"REQUEST_METHOD": "HEAD"}, {"SERVER_PROTOCOL": "HTTP/1.0"}):
            v = _vars(path, **more)
            a = uwsgi_request(lane.port, v)
            assert a == uwsgi_request(python.port, v)
    assert uwsgi_request(lane.port, _vars("/", REQUEST_METHOD="HEAD")).endswith(b"\r\n\r\n")


def test_iterable_bodies_are_closed_once(pair):
    """Whether the lane sends an iterable body itself (lane_iter.c) or hands it on after its
    first step, the body's close() is called once, as on the Python path."""
    body_paths = [p for p in ITER_SHAPES if p != "/lazydeclared"]
    for n, srv in enumerate(pair):
        # each request tagged by its query string: close() may run after the response is out
        # (PEP 3333; the lane's FIN goes first), so under --threads the /closed request can be
        # served before the last close() ran: wait for every tag, then count them
        run = f"closes{n}-{time.monotonic_ns()}"
        tags = []
        for path in body_paths:
            for method in ("GET", "HEAD"):
                tags.append(f"{run}-{path[1:]}-{method}")
                uwsgi_request(srv.port, _vars(f"{path}?{tags[-1]}", REQUEST_METHOD=method))
        deadline = time.monotonic() + 10
        while True:
            seen = uwsgi_request(srv.port, _vars(f"/closed?{run}")).rsplit(b"\r\n\r\n", 1)[1].decode().split()
            if set(seen) >= set(tags) or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        assert sorted(seen) == sorted(tags), ("lane", "python path")[n]


def test_errors_after_an_iterable_body_went_out(pair):
    """A step after the declared length, or close(), raising: logged as the Python path logs it."""
    for srv in pair:
        assert uwsgi_request(srv.port, _vars("/it-raise-after")).endswith(b"\r\n\r\nabc")
        log = srv.wait_log("boom after")
        assert "error while serving GET /it-raise-after (modifier1 0):" in log and "RuntimeError" in log
        assert uwsgi_request(srv.port, _vars("/it-close-raises")).endswith(b"\r\n\r\nabc")
        log = srv.wait_log("boom in close")
        assert "[cffi] error in the response's close()" in log and "ValueError" in log


def test_shapes_the_lane_leaves_to_python(pair):
    """A body, another modifier1, a ping, an HTTP request, a bad packet: the Python path's answers."""
    lane, python = pair
    body = uwsgi_packet(_vars("/", REQUEST_METHOD="POST", CONTENT_LENGTH="4"), body=b"abcd")
    cases = [body, uwsgi_packet(_vars("/"), modifier1=6), b"\x64\x00\x00\x00",
             b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"\x00\x08\x00\x00\x05\x00ab"]
    for data in cases:
        answers = []
        for srv in (lane, python):
            with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
                s.sendall(data)
                s.shutdown(socket.SHUT_WR)
                out = b""
                while chunk := s.recv(65536):
                    out += chunk
            answers.append(out)
        assert answers[0] == answers[1], data


def test_a_packet_in_pieces(pair):
    """The first read has half a packet: the Python path reads the rest."""
    lane, _ = pair
    data = uwsgi_packet(_vars("/pieces"))
    out = send_paced(lane.port, (data[:7], data[7:]), 0.2)
    assert out.endswith(b"hello /pieces")


def test_errors_are_logged_with_their_traceback(pair):
    lane, _ = pair
    uwsgi_request(lane.port, _vars("/raise"))
    log = lane.wait_log("boom in the lane app")
    assert "RuntimeError" in log and "lane_app.py" in log


def test_counters_and_stats(app_file):
    stats = free_port()
    with _server(app_file, "--stats", f"127.0.0.1:{stats}") as srv:
        for i in range(25):
            assert uwsgi_request(srv.port, _vars(f"/n{i}")).endswith(b"hello /n%d" % i)
        uwsgi_request(srv.port, _vars("/gen"))      # resumed in Python: counted once too
        deadline = time.monotonic() + 10
        while True:
            doc = json.loads(read_stats(stats))
            w = doc["workers"][0]
            if w["requests"] == 26 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert w["requests"] == 26
        assert w["apps"][0]["requests"] == 26
        assert w["cores"][0]["requests"] == 26


def test_max_requests_is_exact(app_file):
    with _server(app_file, "--max-requests", "5", "--min-worker-lifetime", "0") as srv:
        pids = []
        for _ in range(12):
            for _attempt in range(50):
                answer = uwsgi_request(srv.port, _vars("/pid"))
                if answer:
                    break
                time.sleep(0.1)     # between the old worker and the new one
            pids.append(answer.rsplit(b"\r\n\r\n", 1)[1])
        assert len(set(pids[:5])) == 1
        assert pids[5] != pids[0]
        assert len(set(pids[5:10])) == 1
        srv.wait_log("max requests 5")


def test_harakiri_sees_a_request_on_the_lane(app_file):
    with _server(app_file, "--harakiri", "1") as srv:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=20) as s:
            s.sendall(uwsgi_packet(_vars("/sleep?30")))
            s.settimeout(20)
            assert s.recv(100) == b""       # the worker was killed: closed without an answer
        log = srv.wait_log("HARAKIRI ON WORKER 1")
        assert "/sleep?30" in log
        assert uwsgi_request(srv.port, _vars("/after")).endswith(b"hello /after")


def test_the_switch_turns_it_off(app_file):
    """UWSGI_NO_LANE=1: the Python path serves (the hook of take_request is never set)."""
    with _server(app_file, lane=False) as srv:
        assert uwsgi_request(srv.port, _vars("/x")).endswith(b"hello /x")


def test_many_requests_in_a_row(pair):
    lane, _ = pair
    for i in range(300):
        assert uwsgi_request(lane.port, _vars(f"/r{i}")).endswith(b"hello /r%d" % i)



@pytest.mark.parametrize("sock", ["--socket", "--http-socket"])
def test_the_request_log_line_is_the_python_paths(app_file, sock):
    """Logging on: the lane writes uWSGI's default line itself, the same as the Python path's."""
    servers = start_pair(lambda port: ["--master", "--processes", "1", sock, f"127.0.0.1:{port}",
                                       "--wsgi-file", app_file])
    try:
        paths = ["/logged-a", "/logged-b?q=1", "/gen?logged", "/empty?logged", "/raise?logged", "/it?logged",
                 "/it-two?logged"]
        for srv in servers:
            for path in paths:
                if sock == "--socket":
                    uwsgi_request(srv.port, _vars(path, REMOTE_USER="bob"))
                else:
                    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
                        s.sendall(b"GET %b HTTP/1.1\r\nHost: h\r\nX-A: b\r\nConnection: close\r\n\r\n" % path.encode())
                        while s.recv(65536):
                            pass
        lane, python = (log_lines(s, "logged", len(paths)) for s in servers)
        assert lane == python
        assert len(lane) == len(paths)
    finally:
        for s in servers:
            s.stop()


CALLER_APP = textwrap.dedent('''
    import sys
    def application(env, start_response):
        # who called the app: the lane's C is no Python frame, so its caller is the lane driver
        body = sys._getframe(1).f_code.co_filename.encode()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [body]
''')


def test_a_packet_that_comes_after_the_accept_is_served_by_the_lane(tmp_path):
    """A unix socket has no TCP_DEFER_ACCEPT: the worker often accepts before the packet is in
    (nginx connects, then writes). That packet goes to the lane when it comes, not to the
    Python path."""
    app = tmp_path / "caller.py"
    app.write_text(CALLER_APP)
    path = str(tmp_path / "lane.sock")
    with Server(["--master", "--processes", "1", "--socket", path, "--wsgi-file", app]) as srv:
        deadline = time.monotonic() + 20
        while not os.path.exists(path):
            assert time.monotonic() < deadline and srv.proc.poll() is None, srv.log()
            time.sleep(0.05)
        answers = []
        for late in (False, True):
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(10)
                s.connect(path)
                if late:
                    time.sleep(0.2)     # accepted, and its read found nothing
                s.sendall(uwsgi_packet(_vars("/")))
                answers.append(b"".join(iter(lambda: s.recv(65536), b"")))
    assert all(a.startswith(b"HTTP/1.1 200") for a in answers), answers
    assert answers[0].endswith(b"native_lane.py") and answers[1].endswith(b"native_lane.py"), answers
