"""An app that no socket can reach: said once at start-up with the option that fixes it, and
each 503 names the modifier1 asked for and the apps that are loaded, in the words users know.
Through the real ./uwsgi."""

from __future__ import annotations

import time

from helpers import EXAMPLES, Server, free_port, http_get

PIPPO = ["--lua", EXAMPLES / "pippo.lua"]


def _warnings(log: str) -> list[str]:
    return [line for line in log.splitlines() if line.startswith("*** WARNING: the ")]


def _log_when(s: Server, text: str, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while text not in s.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    return s.log()


def test_a_lua_app_behind_an_http_socket_without_its_modifier1():
    port = free_port()
    with Server(["--http-socket", f"127.0.0.1:{port}", *PIPPO], port) as s:
        assert http_get(port, "/")[0] == 503
        log = _log_when(s, "--- no ")
    assert _warnings(log) == [
        "*** WARNING: the Lua (WSAPI) app is loaded, but no socket sends its modifier1 6 (they send 0): "
        "add --http-socket-modifier1 6, or put it behind nginx on a --socket with uwsgi_modifier1 6 ***"]
    line = next(l for l in log.splitlines() if l.startswith("--- no "))
    assert line.startswith("--- no Python (WSGI) app is loaded for modifier1 0 (GET /); "
                           "loaded: Lua (WSAPI) on modifier1 6;")
    assert "cffi" not in line


def test_the_router_names_its_own_option():
    port = free_port()
    with Server(["--master", "--http", f"127.0.0.1:{port}", *PIPPO], port) as s:
        log = _log_when(s, "*** WARNING: the ")
    assert "add --http-modifier1 6," in _warnings(log)[0]


def test_no_warning_when_a_socket_reaches_the_app():
    for args in (["--http-socket-modifier1", "6"], ["--socket", f"127.0.0.1:{free_port()}"]):
        port = free_port()
        with Server(["--http-socket", f"127.0.0.1:{port}", *PIPPO, *args], port) as s:
            log = _log_when(s, "spawned uWSGI worker 1")
        assert _warnings(log) == [], log
