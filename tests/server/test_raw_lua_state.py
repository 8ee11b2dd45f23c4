"""--lua-raw in the thread's lua_State (issue 20: one state per thread, shared by its async
cores; plugins/lua/lua_plugin/raw_tcp.py): the connections of one worker's cores run in one
state, each in a coroutine of its own, and with a --lua app that state is the app's."""

from __future__ import annotations

import socket
import textwrap
import time

from tests.helpers import Server, free_port

APP = textwrap.dedent('''
    marker = "set by the app"
    return function(env)
      return 200, {["Content-Type"] = "text/plain"}, coroutine.wrap(function() coroutine.yield("ok") end)
    end
''')

RAW = textwrap.dedent('''
    served = 0
    return function(sock)
      served = served + 1
      local mine = served
      local line = sock:recvline()
      if not line then return end
      sock:sendall(line .. " " .. mine .. " " .. tostring(marker) .. "\\n")
    end
''')


def _serve(tmp_path, *extra):
    (tmp_path / "raw.lua").write_text(RAW)
    (tmp_path / "app.lua").write_text(APP)
    port = free_port()
    srv = Server(["--raw-socket", f"127.0.0.1:{port}", "--master", "--processes", "1", "--async", "4",
                  "--raw-modifier1", "6", "--lua-raw", tmp_path / "raw.lua", "--socket-timeout", "20", *extra], port)
    return srv, port


def _three_at_once(port):
    """Three connections held open together (three cores), then answered one by one."""
    socks = [socket.create_connection(("127.0.0.1", port), timeout=20) for _ in range(3)]
    try:
        for s in socks:
            s.sendall(b"x")     # each handler has started (and counted) before any line ends
        time.sleep(0.3)
        out = []
        for i, s in enumerate(socks):
            s.sendall(b"%d\n" % i)
            data = b""
            while not data.endswith(b"\n"):
                chunk = s.recv(4096)
                assert chunk, data
                data += chunk
            out.append(data.decode().split())
        return out
    finally:
        for s in socks:
            s.close()


def test_cores_share_the_thread_state(tmp_path):
    srv, port = _serve(tmp_path)
    with srv:
        out = _three_at_once(port)
    counts = [int(o[1]) for o in out]
    # one state: the three handlers counted in one global (per-core states would each say 1 or so)
    assert len(set(counts)) == 3 and max(counts) - min(counts) == 2, out
    assert [o[0] for o in out] == ["x0", "x1", "x2"] and all(o[2] == "nil" for o in out), out


def test_with_a_lua_app_the_state_is_the_apps(tmp_path):
    srv, port = _serve(tmp_path, "--lua", tmp_path / "app.lua")
    with srv:
        out = _three_at_once(port)
    assert all(" ".join(o[2:]) == "set by the app" for o in out), out
