"""Cosocket fds on the wait path (plugins/lua/lua_plugin/cosocket.py with uwsgid/net/loop.py
kept fds): a socket stays registered with its core's epoll across waits and in the keepalive
pool, so closing one must unregister it first. Checked against a real backend: sockets left
open by requests are closed (not leaked) when their core makes the next one, a pooled
connection the backend closed while idle is not reused, and fd numbers reused after all that
still wake their waits."""

from __future__ import annotations

import socket
import textwrap
import threading

import pytest
from helpers import Server, free_port, http_get

APP = textwrap.dedent('''
    local function arg(env, name) return env.QUERY_STRING:match(name .. "=([^&]+)") end

    -- the pool's limits: two connections kept with size 1 (one is closed), or kept `ms`
    local function pool_limits(env, port)
      if env.PATH_INFO == "/two" then
        local a, b = uwsgi.tcp(), uwsgi.tcp()
        assert(a:connect("127.0.0.1", port))
        assert(b:connect("127.0.0.1", port))
        a:send("PING\\n"); a:receive()
        b:send("PING\\n"); b:receive()
        return tostring(a:setkeepalive(0, 1)) .. "|" .. tostring(b:setkeepalive(0, 1))
      end
      local s = uwsgi.tcp()
      assert(s:connect("127.0.0.1", port))
      local reused = s:getreusedtimes()
      s:send("PING\\n"); s:receive()
      s:setkeepalive(tonumber(arg(env, "ms")), 4)
      return tostring(reused)
    end

    -- 40 connections, every other one closed, the rest left open (the request's list is pruned)
    local function many(port)
      local n = 0
      for i = 1, 40 do
        local s = uwsgi.tcp()
        assert(s:connect("127.0.0.1", port))
        s:send("PING\\n")
        if s:receive() then n = n + 1 end
        if i % 2 == 0 then s:close() end
      end
      return tostring(n)
    end

    return function(env)
      local port = tonumber(arg(env, "port"))
      if env.PATH_INFO == "/many" then
        return 200, {}, coroutine.wrap(function() coroutine.yield(many(port)) end)
      end
      if env.PATH_INFO == "/kind" then      -- which back end serves uwsgi.tcp() in this state
        return 200, {}, type(rawget(uwsgi.tcp(), "fd")) == "number" and "ffi" or "python"
      end
      if env.PATH_INFO == "/two" or env.PATH_INFO == "/idle" then
        return 200, {}, coroutine.wrap(function() coroutine.yield(pool_limits(env, port)) end)
      end
      return 200, {["Content-Type"] = "text/plain"}, coroutine.wrap(function()
        local s = uwsgi.tcp()
        local ok, err = s:connect("127.0.0.1", port)
        if not ok then coroutine.yield("connect: " .. tostring(err)); return end
        s:send("PING\\n")
        local line, rerr = s:receive()          -- waits on the socket's (kept) fd
        local reused = s:getreusedtimes()
        if env.PATH_INFO == "/pool" and line then
          s:setkeepalive(0, 4)
        elseif env.PATH_INFO == "/close" then
          s:close()
        end                                     -- /leak: left open on purpose
        coroutine.yield(tostring(line) .. "|" .. tostring(rerr) .. "|" .. tostring(reused))
      end)
    end
''')


class Backend:
    """A line server: answers each line with "PONG n"; counts open connections; close_idle()
    closes every connection that is not in a request (the pool's idle ones)."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.lock = threading.Lock()
        self.open: set[socket.socket] = set()
        self.accepts = 0
        self.answered = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.open.add(c)
                self.accepts += 1
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        try:
            f = c.makefile("rb")
            for line in f:
                with self.lock:
                    self.answered += 1
                    n = self.answered
                c.sendall(b"PONG %d\n" % n)
        except (OSError, ValueError):
            pass
        finally:
            with self.lock:
                self.open.discard(c)
            c.close()

    def close_idle(self):
        with self.lock:
            conns = list(self.open)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def count_open(self) -> int:
        with self.lock:
            return len(self.open)

    def close(self):
        self.sock.close()
        self.close_idle()


@pytest.fixture
def backend():
    b = Backend()
    yield b
    b.close()


@pytest.fixture(params=["luajit21", "lua54"])     # cosocket_ffi.lua's fds, and cosocket.py's
def engine(request):
    return request.param


def lua_server(tmp_path, *extra, engine="luajit21"):
    (tmp_path / "app.lua").write_text(APP)
    port = free_port()
    return Server(["--http-socket", f"127.0.0.1:{port}", "--http-socket-modifier1", "6",
                   "--lua", tmp_path / "app.lua", "--lua-engine", engine, *extra], port)


def get(port, path) -> str:
    status, _, data = http_get(port, path)
    assert status == 200, (status, data)
    return data.decode()


def wait_until(cond, timeout=5.0):
    import time
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return cond()


def test_sockets_left_open_are_closed_by_the_next_request_of_their_core(tmp_path, backend, engine):
    with lua_server(tmp_path, "--async", "2", engine=engine) as s:
        for i in range(30):
            body = get(s.port, f"/leak?port={backend.port}")
            assert body.startswith("PONG ") and body.endswith("|nil|0"), body
        # one core serves these sequential requests: each closes its predecessor's socket
        assert wait_until(lambda: backend.count_open() <= 2), backend.count_open()
        assert backend.accepts == 30
        for i in range(10):     # closed and leaked sockets mixed: fds reused, waits still woken
            path = "/close" if i % 2 else "/leak"
            assert get(s.port, f"{path}?port={backend.port}").startswith("PONG ")
    assert "Traceback" not in s.log()


def test_many_sockets_in_one_request_the_open_ones_closed_by_the_next(tmp_path, backend, engine):
    """None is closed while its request runs: the first one opens before the request's first
    wait, which on the native lane is where the core starts counting the request."""
    with lua_server(tmp_path, "--async", "2", engine=engine) as s:
        assert get(s.port, f"/many?port={backend.port}") == "40"
        assert wait_until(lambda: backend.count_open() == 20), backend.count_open()
        assert get(s.port, f"/close?port={backend.port}").startswith("PONG ")
        assert wait_until(lambda: backend.count_open() == 0), backend.count_open()
    assert "Traceback" not in s.log()


def test_a_pooled_connection_the_backend_closed_is_not_reused(tmp_path, backend, engine):
    with lua_server(tmp_path, "--async", "2", engine=engine) as s:
        assert get(s.port, f"/pool?port={backend.port}").endswith("|nil|0")
        assert get(s.port, f"/pool?port={backend.port}").endswith("|nil|1")
        assert backend.accepts == 1
        backend.close_idle()                # the pooled connection dies while idle
        assert wait_until(lambda: backend.count_open() == 0)
        body = get(s.port, f"/pool?port={backend.port}")
        assert body.startswith("PONG ") and body.endswith("|nil|0"), body   # a fresh connection
        assert backend.accepts == 2
        assert get(s.port, f"/pool?port={backend.port}").endswith("|nil|1")
    assert "Traceback" not in s.log()


def test_luajit_runs_the_ffi_back_end_other_engines_the_python_one(tmp_path, engine):
    with lua_server(tmp_path, "--async", "2", engine=engine) as s:
        assert get(s.port, "/kind?port=1") == ("ffi" if engine == "luajit21" else "python")
    assert "Traceback" not in s.log()


def test_the_pool_keeps_size_connections_per_key_each_for_its_timeout(tmp_path, backend, engine):
    import time
    with lua_server(tmp_path, "--async", "2", engine=engine) as s:
        assert get(s.port, f"/two?port={backend.port}") == "1|1"
        assert backend.accepts == 2
        # size 1: the second one kept closed the first (the least recently used)
        assert wait_until(lambda: backend.count_open() == 1), backend.count_open()
        assert get(s.port, f"/idle?port={backend.port}&ms=150") == "1"   # the kept one, reused
        time.sleep(0.4)                                                   # past its 150 ms
        assert get(s.port, f"/idle?port={backend.port}&ms=0") == "0"      # expired: a new one
        assert backend.accepts == 3
        assert wait_until(lambda: backend.count_open() == 1), backend.count_open()
    assert "Traceback" not in s.log()


def test_release_closes_only_handed_over_fds_and_forgets_them_in_their_loop():
    """cosocket.release (the LuaJIT back end closing a connection): out of the loop that kept
    it, then closed; an fd number it never handed over, or gave back already, is left alone."""
    import os

    from lua_plugin import cosocket
    from uwsgid.net.loop import Loop

    loop = Loop()
    a, b = socket.socketpair()
    other, other_peer = socket.socketpair()
    try:
        fd = a.detach()
        loop.keep(fd)
        loop.add_reader(fd, lambda: None)
        loop.remove_reader(fd)                      # kept: still registered with epoll
        assert fd in loop._masks
        cosocket._handed()[fd] = loop
        cosocket.release(fd)
        assert fd not in loop._kept and fd not in loop._masks
        with pytest.raises(OSError):
            os.fstat(fd)
        cosocket.release(other.fileno())           # not handed over: not closed
        cosocket.release(fd)                        # given back twice: nothing happens
        os.fstat(other.fileno())
    finally:
        for s in (b, other, other_peer):
            s.close()
        loop.close()
