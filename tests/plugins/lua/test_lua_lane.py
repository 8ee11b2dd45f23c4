"""The Lua app on the native lane (plugins/lua/lua_plugin/lane.py): every response shape answers
byte for byte as on the Python path, over --socket (modifier1 6) and --http-socket, on new and
kept-alive connections, with the request handed to the Python path when the app needs it."""

from __future__ import annotations

import re
import textwrap

import pytest

from tests.helpers import Server, free_port, raw, send_paced, uwsgi_packet
from tests.lane_helpers import log_lines, start_pair

native = pytest.importorskip("_uwsgi_native")
if not hasattr(native, "LANE_HTTP"):
    pytest.skip("the native module has no lane (an old build)", allow_module_level=True)

APP = textwrap.dedent('''
    local function app(env)
      local p = env.PATH_INFO
      if p == "/co" then
        return 200, {["Content-Type"] = "text/plain"}, coroutine.wrap(function()
          coroutine.yield("a") coroutine.yield("b") coroutine.yield("c")
        end)
      elseif p == "/slow" then
        return 200, {["Content-Type"] = "text/plain"}, coroutine.wrap(function()
          coroutine.yield("first ")
          os.execute("sleep 0.2")
          coroutine.yield("second")
        end)
      elseif p == "/err" then
        error("boom in the lua lane app")
      elseif p == "/bodyerr" then
        return 200, {}, coroutine.wrap(function() coroutine.yield("x") error("boom in the body") end)
      elseif p == "/badstatus" then
        return "abc", {}, "never"
      elseif p == "/input" then
        local data = env.input:read()
        return 200, {}, "input: " .. tostring(data)
      elseif p == "/logvar" then
        uwsgi.set_logvar("lane", "taken")
        return 200, {}, "logvar"
      elseif p == "/headers" then
        -- one name: the order of a table's keys may differ between two processes (LuaJIT's
        -- string hashes are seeded per process)
        return 201, {["X-Many"] = {"a", "b"}}, "created"
      elseif p == "/empty" then
        return 204, {}, ""
      elseif p == "/env" then
        local keys = {}
        for k, v in pairs(env) do
          if type(v) == "string" and k ~= "REMOTE_PORT" and k ~= "SERVER_PORT" then
            keys[#keys + 1] = k .. "=" .. v
          end
        end
        table.sort(keys)
        return 200, {["Content-Type"] = "text/plain"}, table.concat(keys, "\\n")
      end
      return 200, {["Content-Type"] = "text/plain"}, "hello " .. p
    end
    return app
''')


@pytest.fixture(scope="module")
def app_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("lua_lane") / "lane.lua"
    path.write_text(APP)
    return path


def _servers(app_file, sock, *extra):
    return start_pair(lambda port: ["--master", "--processes", "1", "--disable-logging", sock, f"127.0.0.1:{port}",
                                    *extra, "--lua", app_file])


@pytest.fixture(scope="module")
def uwsgi_pair(app_file):
    servers = _servers(app_file, "--socket")
    yield servers
    for s in servers:
        s.stop()


@pytest.fixture(scope="module", params=[(), ("--threads", "4")], ids=["sync", "threads"])
def http_pair(app_file, request):
    servers = _servers(app_file, "--http-socket", "--http-socket-modifier1", "6", *request.param)
    yield servers
    for s in servers:
        s.stop()


def exchange(port: int, data: bytes) -> bytes:
    return raw(f"127.0.0.1:{port}", data, half_close=False)


def _norm(answer: bytes) -> bytes:
    answer = re.sub(rb"(REMOTE|SERVER)_PORT=[0-9]+", b"PORT", answer)
    return re.sub(rb"Content-Length: [0-9]+", b"Content-Length: N", answer)


PATHS = ["/", "/co", "/slow", "/err", "/bodyerr", "/badstatus", "/input", "/logvar", "/headers", "/empty", "/env",
         "/env?x=%41"]


def _vars(path: str, **more) -> dict:
    v = {"REQUEST_METHOD": "GET", "REQUEST_URI": path, "PATH_INFO": path.split("?")[0],
         "QUERY_STRING": path.partition("?")[2], "SERVER_PROTOCOL": "HTTP/1.1", "SERVER_NAME": "localhost",
         "SERVER_PORT": "80", "REMOTE_ADDR": "127.0.0.1", "HTTP_HOST": "example.org", "SCRIPT_NAME": ""}
    v.update(more)
    return v


@pytest.mark.parametrize("path", PATHS)
def test_uwsgi_socket_answers_as_the_python_path(uwsgi_pair, path):
    lane, python = uwsgi_pair
    data = uwsgi_packet(_vars(path), modifier1=6)
    a, b = exchange(lane.port, data), exchange(python.port, data)
    assert _norm(a) == _norm(b)
    assert a.startswith(b"HTTP/1.1 ")


@pytest.mark.parametrize("path", PATHS)
def test_http_socket_answers_as_the_python_path(http_pair, path):
    lane, python = http_pair
    data = b"GET %b HTTP/1.1\r\nHost: example.org\r\nConnection: close\r\n\r\n" % path.encode()
    a, b = exchange(lane.port, data), exchange(python.port, data)
    assert _norm(a) == _norm(b)


def test_head_and_http10(http_pair):
    lane, python = http_pair
    for data in (b"HEAD /headers HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", b"GET /co HTTP/1.0\r\n\r\n"):
        assert _norm(exchange(lane.port, data)) == _norm(exchange(python.port, data))


@pytest.mark.parametrize("path", ["/", "/co", "/slow", "/err", "/logvar"])
def test_kept_alive_connection(http_pair, path):
    req = b"GET %b HTTP/1.1\r\nHost: x\r\n\r\n" % path.encode()
    last = b"GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    answers = [send_paced(srv.port, (req, req, last), 0.3 if path == "/slow" else 0.05) for srv in http_pair]
    assert answers[0] == answers[1]
    assert answers[0].endswith(b"hello /last")


def test_both_runtimes_on_one_uwsgi_socket(app_file, tmp_path):
    """modifier1 0 to the WSGI app, 6 to the Lua app, both on the lane of one loop."""
    wsgi = tmp_path / "app.py"
    wsgi.write_text("def application(env, start_response):\n"
                    "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
                    "    return [b'python ' + env['PATH_INFO'].encode()]\n")
    port = free_port()
    with Server(["--master", "--processes", "1", "--disable-logging", "--socket", f"127.0.0.1:{port}",
                 "--wsgi-file", wsgi, "--lua", app_file], port):
        for i in range(20):
            assert exchange(port, uwsgi_packet(_vars(f"/p{i}"), modifier1=0)).endswith(b"python /p%d" % i)
            assert exchange(port, uwsgi_packet(_vars(f"/l{i}"), modifier1=6)).endswith(b"hello /l%d" % i)


def test_errors_are_logged(uwsgi_pair):
    lane, _ = uwsgi_pair
    exchange(lane.port, uwsgi_packet(_vars("/err"), modifier1=6))
    lane.wait_log("boom in the lua lane app")


@pytest.mark.parametrize("sock", ["--socket", "--http-socket"])
def test_the_request_log_line_is_the_python_paths(app_file, sock):
    extra = ["--http-socket-modifier1", "6"] if sock == "--http-socket" else []
    servers = start_pair(lambda port: ["--master", "--processes", "1", sock, f"127.0.0.1:{port}", *extra,
                                       "--lua", app_file])
    try:
        paths = ["/logged", "/co?logged", "/err?logged", "/empty?logged"]
        for srv in servers:
            for path in paths:
                if sock == "--socket":
                    exchange(srv.port, uwsgi_packet(_vars(path), modifier1=6))
                else:
                    exchange(srv.port, b"GET %b HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n" % path.encode())
        lane, python = (log_lines(s, "logged", len(paths)) for s in servers)
        assert lane == python and len(lane) == len(paths)
    finally:
        for s in servers:
            s.stop()


def test_async_cores_share_the_lane(tmp_path):
    """--async 8: eight concurrent sleeping requests (generators resumed on the Python path, each
    on its own core) and plain requests on the lane meanwhile; every answer whole."""
    from tests.helpers import parallel_get
    app = tmp_path / "async.lua"
    app.write_text(textwrap.dedent('''
        return function(env)
          if env.PATH_INFO == "/sleep" then
            return 200, {}, coroutine.wrap(function()
              coroutine.yield("core " .. uwsgi.async_id() .. " ")
              uwsgi.async_sleep(0.5)
              coroutine.yield()
              coroutine.yield("woke")
            end)
          end
          return 200, {}, "fast " .. env.PATH_INFO
        end
    '''))
    port = free_port()
    with Server(["--master", "--processes", "1", "--disable-logging", "--http-socket", f"127.0.0.1:{port}",
                 "--http-socket-modifier1", "6", "--async", "8", "--lua", app], port):
        answers, took = parallel_get(port, ["/sleep"] * 8 + [f"/f{i}" for i in range(8)])
        bodies = [a.partition(b"\r\n\r\n")[2] for a in answers]
        sleepers = [b for b in bodies if b.startswith(b"core ")]
        assert len(sleepers) == 8 and all(b.endswith(b"woke") for b in sleepers)
        assert len({b.split()[1] for b in sleepers}) == 8      # eight cores at once
        assert sorted(b for b in bodies if b.startswith(b"fast")) == sorted(b"fast /f%d" % i for i in range(8))
        assert took < 8 * 0.5       # not one after the other
