"""Held sends of uwsgi.tcp() (lua_plugin/cosocket_ffi.lua): under --async a small send is held
until the end of the loop turn and the turn's held sends go out together. Whatever the app
does next, what it sent reaches the backend, in order: a receive (its recv waits for the
flush), close(), setkeepalive() without reading, connecting again, a socket left open, a big
send after small ones. The same app under --threads (sends go out at once) and on the other
engines (cosocket.py's operations, which hold nothing) gives the same answers."""

from __future__ import annotations

import textwrap

import pytest
from helpers import Server, free_port, http_get

from tests.plugins.lua.test_cosocket import Backend  # NOTE x recorded, ECHO x answered

pytest.importorskip("lupa")

APP = textwrap.dedent('''
    local function arg(env, name) return env.QUERY_STRING:match(name .. "=([^&]+)") end

    local function body(env)
      local port = tonumber(arg(env, "port"))
      local path = env.PATH_INFO
      local s = uwsgi.tcp()
      assert(s:connect("127.0.0.1", port))
      if path == "/close" then                    -- sent, then closed before any read
        local n = s:send("NOTE close\\n")
        return tostring(n) .. "|" .. tostring(s:close())
      elseif path == "/pool" then                 -- sent, then pooled without reading
        local n = s:send("NOTE pooled\\n")
        return tostring(n) .. "|" .. tostring(s:setkeepalive(0, 4))
      elseif path == "/reuse" then
        local reused = s:getreusedtimes()
        s:send("ECHO again\\n")
        local line = s:receive()
        s:setkeepalive(0, 4)
        return tostring(reused) .. "|" .. tostring(line)
      elseif path == "/leave" then                -- sent, the socket left open
        return tostring(s:send("NOTE left\\n"))
      elseif path == "/reconnect" then            -- sent, then connecting again closes it
        s:send("NOTE first\\n")
        assert(s:connect("127.0.0.1", port))
        s:send("ECHO second\\n")
        return tostring(s:receive()) .. "|" .. tostring(s:getreusedtimes())
      elseif path == "/order" then                -- small sends, a big one, small ones again
        local big = string.rep("b", 10000)
        local sent = { s:send("ECHO "), s:send("a"), s:send(big), s:send({ "c", "d" }), s:send("\\n") }
        local line = s:receive()
        s:close()
        return table.concat(sent, ",") .. "|" .. tostring(#line) .. "|" ..
               tostring(line == "echo a" .. big .. "cd")
      elseif path == "/two" then                  -- two sockets held in one turn
        local t = uwsgi.tcp()
        assert(t:connect("127.0.0.1", port))
        s:send("NOTE one\\n")
        t:send("ECHO two\\n")
        local a = t:receive()
        s:send("ECHO one\\n")
        local b = s:receive()
        s:close()
        t:close()
        return tostring(a) .. "|" .. tostring(b)
      end
      return "unknown path " .. path
    end

    return function(env)
      return 200, {["Content-Type"] = "text/plain"}, coroutine.wrap(function()
        coroutine.yield(body(env))
      end)
    end
''')


@pytest.fixture
def backend():
    b = Backend()
    yield b
    b.close()


@pytest.fixture(params=["luajit21", "lua54"])     # holding (cosocket_ffi.lua), and none (cosocket.py)
def engine(request):
    return request.param


@pytest.fixture(params=[("--async", "4"), ("--threads", "2")], ids=["async", "threads"])
def mode(request):
    return request.param


def get(port, path) -> str:
    status, _, data = http_get(port, path)
    assert status == 200, (status, data)
    return data.decode()


def test_what_was_sent_reaches_the_backend_whatever_comes_next(tmp_path, backend, engine, mode):
    (tmp_path / "app.lua").write_text(APP)
    port = free_port()
    with Server(["--http-socket", f"127.0.0.1:{port}", "--http-socket-modifier1", "6",
                 "--lua", tmp_path / "app.lua", "--lua-engine", engine, *mode], port) as s:
        q = f"?port={backend.port}"
        assert get(port, "/close" + q) == "11|1"
        assert backend.noted(b"close")
        assert get(port, "/pool" + q) == "12|1"
        assert backend.noted(b"pooled")
        assert get(port, "/reuse" + q) in ("1|echo again", "0|echo again")    # (--threads: another thread's pool)
        assert get(port, "/leave" + q) == "10"
        assert backend.noted(b"left")
        assert get(port, "/reconnect" + q) == "echo second|0"
        assert backend.noted(b"first")
        assert get(port, "/order" + q) == "5,1,10000,2,1|10008|true"
        assert get(port, "/two" + q) == "echo two|echo one"
        assert backend.noted(b"one")
    assert "Traceback" not in s.log()


@pytest.mark.parametrize("run", range(3))
def test_many_requests_with_held_sends_keep_the_state_sound(tmp_path, backend, run):
    """Each flush runs Lua from the loop's turn end (M.turn_end): across GC cycles, with sockets
    left open and closed by the next request, no request fails and the worker does not crash."""
    (tmp_path / "app.lua").write_text(APP)
    port = free_port()
    with Server(["--http-socket", f"127.0.0.1:{port}", "--http-socket-modifier1", "6",
                 "--lua", tmp_path / "app.lua", "--async", "2"], port) as s:
        for i in range(40):
            assert get(port, f"/leave?port={backend.port}") == "10"
            assert get(port, f"/two?port={backend.port}") == "echo two|echo one"
    assert "Traceback" not in s.log()


def test_held_data_of_a_socket_left_open_goes_out_when_the_next_request_closes_it(tmp_path, backend):
    """Pipelined requests on one connection: the second one's uwsgi.tcp() closes the socket the
    first left open with its send held; the data reaches the backend all the same. (The case
    this guards, a core's next request starting in the same loop turn, before the turn-end
    flush, depends on two clients' requests landing in one epoll batch; not forced here.)"""
    from helpers import raw
    (tmp_path / "app.lua").write_text(APP)
    port = free_port()
    with Server(["--http-socket", f"127.0.0.1:{port}", "--http-socket-modifier1", "6",
                 "--lua", tmp_path / "app.lua", "--async", "2"], port) as s:
        q = f"?port={backend.port}"
        out = raw(f"127.0.0.1:{port}",
                  f"GET /leave{q} HTTP/1.1\r\nHost: x\r\n\r\n"
                  f"GET /close{q} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode(),
                  half_close=False)
        assert out.count(b"200 OK") == 2, out
        assert backend.noted(b"left")
        assert backend.noted(b"close")
    assert "Traceback" not in s.log()
