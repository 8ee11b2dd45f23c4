"""uwsgi.tcp() (lua_plugin/cosocket.lua + cosocket.py): Lua cosockets against a small TCP backend
this test runs in threads (and a real redis-server when installed). Under --async a cosocket
call suspends only its core; receive patterns, timeouts, the keepalive pool, nil-err errors."""

from __future__ import annotations

import shutil
import socket
import textwrap
import threading
import time

import pytest
from helpers import Server, free_port, http_get, raw

pytest.importorskip("lupa")

APP = textwrap.dedent('''
    local function arg(env, name) return env.QUERY_STRING:match(name .. "=([^&]+)") end

    local function body(env)
      local port = tonumber(arg(env, "port"))
      local path = env.PATH_INFO
      local out = {}
      local function say(...)
        local t = {...}
        for i = 1, select("#", ...) do t[i] = tostring(t[i]) end
        out[#out + 1] = table.concat(t, ",")
      end
      if path == "/slow" then
        local s = uwsgi.tcp()
        assert(s:connect("127.0.0.1", port))
        s:send("SLOW 0.2\\n")
        say(s:receive())
        s:close()
      elseif path == "/patterns" then
        local s = uwsgi.tcp()
        assert(s:connect("localhost", port))
        say(s:send({"MULTI", "\\n"}))
        say(s:receive())
        say(s:receive("*l"))
        say(s:receive(4))
        say(s:receive("6"))
        say(s:receive("*a"))
        say(s:receive())
        say(s:close())
      elseif path == "/timeout" then
        local s = uwsgi.tcp()
        s:settimeout(200)
        assert(s:connect("127.0.0.1", port))
        s:send("PARTIAL\\n")
        local t0 = uwsgi.micros()
        local data, err, partial = s:receive()
        say(data, err, partial, math.floor((uwsgi.micros() - t0) / 100000 + 0.5))
        s:settimeouts(1000, 1000, 0)            -- reads: no limit
        s:send("ECHO again\\n")
        say(s:receive())
        s:close()
      elseif path == "/keepalive" then
        local s = uwsgi.tcp()
        assert(s:connect("127.0.0.1", port))
        say(s:getreusedtimes())
        s:send("ECHO ka\\n")
        say(s:receive())
        say(s:setkeepalive(10000, 4))
        say(s:send("x"))                         -- the object is closed now
      elseif path == "/big" then               -- MBs both ways: partial sends, reads in parts
        local s = uwsgi.tcp()
        assert(s:connect("127.0.0.1", port))
        local n = 8 * 1024 * 1024 + 7
        say(s:send("SINK " .. n .. "\\n" .. string.rep("s", n)))
        say(s:receive())
        s:send("BIG " .. n .. "\\n")
        local data = s:receive(n)
        say(#data, data == string.rep("b", n))
        say(s:receive(0), s:receive())
        s:send("BIG 1000000\\nQUIT\\n")
        data = s:receive("*a")
        say(#data, data:sub(-3, -2))
        say(s:receive())
      elseif path == "/dubious" then
        local s = uwsgi.tcp()
        assert(s:connect("127.0.0.1", port))
        s:send("MULTI\\n")
        s:receive()
        say(s:setkeepalive())
        s:close()
      elseif path == "/errors" then
        local s = uwsgi.tcp()
        say(s:connect("127.0.0.1", tonumber(arg(env, "dead"))))
        say(s:send("x"))
        say(s:receive())
        say(s:close())
        say(uwsgi.tcp():connect("no-such-host.invalid", 80) == nil)
        say(pcall(s.receive, s, "*x"))
        say(pcall(s.connect, s, "127.0.0.1", "port"))
      end
      return table.concat(out, "|")
    end

    return function(env)
      if env.PATH_INFO == "/inline" then       -- outside the body's coroutine: blocks in place
        local s = uwsgi.tcp()
        assert(s:connect("127.0.0.1", tonumber(arg(env, "port"))))
        s:send("ECHO inline\\n")
        local line = s:receive()
        s:close()
        return 200, {["Content-Type"] = "text/plain"}, line
      end
      return 200, {["Content-Type"] = "text/plain"}, coroutine.wrap(function()
        coroutine.yield(body(env))
      end)
    end
''')

REDIS_APP = textwrap.dedent('''
    return function(env)
      local port = tonumber(env.QUERY_STRING:match("port=(%d+)"))
      return 200, {["Content-Type"] = "text/plain"}, coroutine.wrap(function()
        local r = uwsgi.tcp()
        assert(r:connect("127.0.0.1", port))
        r:send("*2\\r\\n$3\\r\\nGET\\r\\n$5\\r\\ngreet\\r\\n")
        local head = r:receive()
        local n = tonumber(head:sub(2))
        local value = r:receive(n + 2):sub(1, n)
        local reused = r:getreusedtimes()
        r:setkeepalive(0, 8)
        coroutine.yield(head .. " " .. value .. " reused=" .. tostring(reused))
      end)
    end
''')


class Backend:
    """A line protocol server in threads: SLOW s, ECHO x, NOTE x (recorded, no answer), MULTI,
    PARTIAL; counts accepts and SLOWs."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32768)   # big sends meet a full buffer
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.accepts = 0
        self.slow_started = 0   # SLOW commands begun: requests waiting on this backend
        self.notes: list[bytes] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.accepts += 1
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        try:
            f = c.makefile("rb")
            for line in f:
                cmd, _, arg = line.strip().partition(b" ")
                if cmd == b"SLOW":
                    self.slow_started += 1
                    time.sleep(float(arg))
                    c.sendall(b"slow done\r\n")
                elif cmd == b"ECHO":
                    c.sendall(b"echo " + arg + b"\n")
                elif cmd == b"NOTE":
                    with self.lock:
                        self.notes.append(arg)
                elif cmd == b"MULTI":
                    c.sendall(b"line1\r\nli\rne2\nABCDEFGHIJtail-until-close")
                    break
                elif cmd == b"SINK":
                    n = int(arg)
                    got = 0
                    while got < n:
                        chunk = f.read1(min(65536, n - got))
                        if not chunk:
                            break
                        got += len(chunk)
                        time.sleep(0.001)       # a slow reader: the sender meets a full buffer
                    c.sendall(b"got %d\n" % got)
                    for line in f:              # the rest of the session on the same buffer
                        cmd2, _, arg2 = line.strip().partition(b" ")
                        if cmd2 == b"BIG":
                            c.sendall(b"b" * int(arg2) + b"\n")
                        elif cmd2 == b"QUIT":
                            break
                    break
                elif cmd == b"PARTIAL":
                    c.sendall(b"abc")
                else:
                    c.sendall(b"x" + arg)
        except OSError:
            pass
        finally:
            c.close()

    def noted(self, what: bytes, timeout: float = 5.0) -> bool:
        """Whether a NOTE `what` came within `timeout`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if what in self.notes:
                    return True
            time.sleep(0.01)
        return False

    def close(self):
        self.sock.close()


@pytest.fixture(scope="module")
def backend():
    b = Backend()
    yield b
    b.close()


@pytest.fixture(scope="module")
def app_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("cosocket")
    (d / "app.lua").write_text(APP)
    (d / "redis.lua").write_text(REDIS_APP)
    return d


# the two back ends of cosocket.lua: LuaJIT's (cosocket_ffi.lua: the I/O and the pool in Lua over
# the FFI) and every other engine's (cosocket.py's operations)
ENGINES = ["luajit21", "lua54"]


@pytest.fixture(params=ENGINES)
def engine(request):
    return request.param


def lua_server(app, *extra, engine="luajit21"):
    port = free_port()
    return Server(["--http-socket", f"127.0.0.1:{port}", "--http-socket-modifier1", "6", "--lua", app,
                   "--lua-engine", engine, *extra], port)


def get(port, path):
    status, _, data = http_get(port, path)
    assert status == 200, (status, data)
    return data.decode()


def parallel(port, paths):
    results = [None] * len(paths)

    def one(i, p):
        results[i] = raw(f"127.0.0.1:{port}", b"GET %b HTTP/1.0\r\n\r\n" % p.encode(), timeout=20)
    threads = [threading.Thread(target=one, args=(i, p)) for i, p in enumerate(paths)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [r.split(b"\r\n\r\n", 1)[1] for r in results], time.monotonic() - t0


def test_async_cores_wait_on_the_backend_together(app_dir, backend, engine):
    with lua_server(app_dir / "app.lua", "--async", "8", engine=engine) as s:
        get(s.port, f"/slow?port={backend.port}")
        bodies, elapsed = parallel(s.port, [f"/slow?port={backend.port}"] * 8)
        assert bodies == [b"slow done"] * 8, bodies
        assert elapsed < 1.0, elapsed       # eight 0.2 s backend calls at once, not 1.6 s
        # outside the body's coroutine it blocks in place, and still works
        assert get(s.port, f"/inline?port={backend.port}") == "echo inline"


def test_patterns_timeouts_pool_and_errors(app_dir, backend, engine):
    with lua_server(app_dir / "app.lua", "--async", "4", engine=engine) as s:
        assert get(s.port, f"/patterns?port={backend.port}") == \
            "6|line1|line2|ABCD|EFGHIJ|tail-until-close|nil,closed|nil,closed"
        assert get(s.port, f"/timeout?port={backend.port}") == "nil,timeout,abc,2|echo again"
        before = backend.accepts
        results = [get(s.port, f"/keepalive?port={backend.port}") for _ in range(3)]
        assert results == ["0|echo ka|1|nil,closed", "1|echo ka|1|nil,closed", "2|echo ka|1|nil,closed"]
        assert backend.accepts == before + 1        # one connection, reused from the pool
        assert get(s.port, f"/dubious?port={backend.port}") == "nil,connection in dubious state"
        n = 8 * 1024 * 1024 + 7
        assert get(s.port, f"/big?port={backend.port}") == \
            f"{n + len(f'SINK {n}') + 1}|got {n}|{n},true|,|1000001,bb|nil,closed"
        out = get(s.port, f"/errors?dead={free_port()}").split("|")
        assert out[:5] == ["nil,connection refused", "nil,closed", "nil,closed", "nil,closed", "true"], out
        assert out[5].startswith("false,") and "invalid pattern *x" in out[5], out
        assert out[6].startswith("false,") and "port number expected" in out[6], out
    assert "Traceback" not in s.log()


def test_threads_block_only_their_thread(app_dir, backend, engine):
    with lua_server(app_dir / "app.lua", "--threads", "4", engine=engine) as s:
        bodies, elapsed = parallel(s.port, [f"/slow?port={backend.port}"] * 4)
        assert bodies == [b"slow done"] * 4, bodies
        assert elapsed < 0.75, elapsed      # four threads, each waiting on its own call


def test_redis_get_through_the_cosocket(app_dir, engine):
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    from services_helpers import RedisServer
    with RedisServer() as redis:
        with socket.create_connection(("127.0.0.1", redis.port), timeout=5) as c:
            c.sendall(b"*3\r\n$3\r\nSET\r\n$5\r\ngreet\r\n$5\r\nhallo\r\n")
            assert c.recv(100) == b"+OK\r\n"
        with lua_server(app_dir / "redis.lua", "--async", "4", engine=engine) as s:
            assert get(s.port, f"/?port={redis.port}") == "$5 hallo reused=0"
            assert get(s.port, f"/?port={redis.port}") == "$5 hallo reused=1"
