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

    return function(env)
      local port = tonumber(arg(env, "port"))
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


def lua_server(tmp_path, *extra):
    (tmp_path / "app.lua").write_text(APP)
    port = free_port()
    return Server(["--http-socket", f"127.0.0.1:{port}", "--http-socket-modifier1", "6",
                   "--lua", tmp_path / "app.lua", *extra], port)


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


def test_sockets_left_open_are_closed_by_the_next_request_of_their_core(tmp_path, backend):
    with lua_server(tmp_path, "--async", "2") as s:
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


def test_a_pooled_connection_the_backend_closed_is_not_reused(tmp_path, backend):
    with lua_server(tmp_path, "--async", "2") as s:
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
