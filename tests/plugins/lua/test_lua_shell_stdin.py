"""`--lua-shell` needs no `--honour-stdin` (issue 21, item 10): a shell implies it (uwsgid/main.py),
and the plugin's README says so instead of asking for the option."""

from __future__ import annotations

import time

import pytest
from helpers import ROOT, UWSGI, Server, free_port, http_get

pytestmark = pytest.mark.skipif(not UWSGI.exists(), reason="./uwsgi is not built (make build)")


def test_lua_shell_reads_stdin_without_honour_stdin(tmp_path):
    script = tmp_path / "shell-input.lua"
    script.write_text('print("shell says " .. 6 * 7)\nshell_var = "set from the shell"\n')
    app = tmp_path / "app.lua"
    app.write_text('return function() return 200, {}, tostring(shell_var) end\n')
    port = free_port()
    with open(script, "rb") as stdin:
        srv = Server(["--http-socket", f"127.0.0.1:{port}", "--http-socket-modifier1", "6",
                      "--lua", app, "--lua-shell"], port, stdin=stdin)
        with srv:
            deadline = time.monotonic() + 10
            while "has been resumed" not in srv.log() and time.monotonic() < deadline:
                time.sleep(0.1)
            assert http_get(port, "/")[2] == b"set from the shell", srv.log()
            assert "shell says 42" in srv.log()


def test_lua_readme_does_not_ask_for_honour_stdin():
    readme = (ROOT / "plugins" / "lua" / "lua_plugin" / "README.md").read_text()
    line = next(line for line in readme.splitlines() if line.startswith("| `--lua-shell`"))
    assert "with `--honour-stdin`" not in line and "no `--honour-stdin` needed" in line, line
