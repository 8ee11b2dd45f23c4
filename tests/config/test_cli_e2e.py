"""The options system through the real ./uwsgi: one-line errors with exit 1, --help and
--version output, and a server configured by an ini file with placeholders, magic vars and
an env var."""

from __future__ import annotations

import textwrap
import time

from helpers import EXAMPLES, Server, free_port, http_get, run_uwsgi


def _error_line(stderr: str) -> str:
    lines = [l for l in stderr.splitlines() if l.startswith("uwsgi: ") and "changed since it was built" not in l]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr, stderr
    return lines[0]


def test_unknown_option_one_line_exit_1():
    r = run_uwsgi(["--lua-gc-frq", "1"])
    assert r.returncode == 1
    assert _error_line(r.stderr) == "uwsgi: unknown option --lua-gc-frq (did you mean --lua-gc-freq?)"


def test_bad_values_and_files_exit_1(tmp_path):
    r = run_uwsgi(["--processes", "many"])
    assert r.returncode == 1
    assert _error_line(r.stderr) == "uwsgi: option --processes: invalid integer 'many'"
    r = run_uwsgi([tmp_path / "missing.ini"])
    assert r.returncode == 1
    assert _error_line(r.stderr) == f"uwsgi: cannot read config file {tmp_path / 'missing.ini'}: No such file or directory"
    r = run_uwsgi(["--socket"])
    assert r.returncode == 1
    assert _error_line(r.stderr) == "uwsgi: option --socket requires an argument"


def test_help_groups_core_then_plugins():
    r = run_uwsgi(["--help"])
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert out.index("core options:") < out.index("lua options:")
    lua = out[out.index("lua options:"):]
    lua = lua[:lua.index("\n\n")]
    assert "--lua-gc-freq" in lua and "--lua " in lua
    assert "    -s|--socket" in out and "    -p|--processes" in out


def test_version():
    r = run_uwsgi(["--version"])
    assert r.returncode == 0 and r.stdout.strip().startswith("2.0.21")


def test_server_from_ini_with_placeholders(tmp_path):
    port = free_port()
    cfg = tmp_path / "pippo.ini"
    cfg.write_text(textwrap.dedent(f"""
        [uwsgi]
        examples = {EXAMPLES}
        http-socket = 127.0.0.1:%(port)
        http-socket-modifier1 = 6
        lua = %(examples)/pippo.lua
        master = $(CLI_TEST_MASTER)
        processes = %(base_procs + 1)
        disable-logging = true
    """))
    env = {"UWSGI_PORT": str(port), "CLI_TEST_MASTER": "true", "UWSGI_BASE_PROCS": "1"}
    with Server([cfg], port, env=env) as s:
        status, _, body = http_get(port, "/")
        assert status == 200, s.log()
        assert body
        # master = $(CLI_TEST_MASTER) and processes = %(base_procs + 1) took effect
        deadline = time.monotonic() + 10
        while "spawned uWSGI worker 2" not in s.log() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "spawned uWSGI master process" in s.log() and "spawned uWSGI worker 2" in s.log(), s.log()


def test_plugins_list_and_config_only_invocation(tmp_path):
    r = run_uwsgi(["--plugins-list"])
    assert r.returncode == 0, r.stderr
    assert "*** uWSGI loaded request plugins ***" in r.stdout and "6: lua" in r.stdout
    cfg = tmp_path / "v.json"
    cfg.write_text('{"uwsgi": {"version": true}}')
    r = run_uwsgi([cfg])
    assert r.returncode == 0 and r.stdout.strip().startswith("2.0.21")
