"""The ./uwsgi executable: the launcher (core/main.c + cffi embedding + uwsgid/embed.py),
embedded vs NAME_plugin.so plugins, and end to end with the real server (lua, luap profiles).

Profiles are built into build/tests/<profile>/ (never over the main ./uwsgi)."""

import os
import subprocess
import sys

import pytest
from build_helpers import ROOT, built, entry_env, serve_and_get
from helpers import free_port


def run(exe, *args, env=None, cwd=None, timeout=30):
    return subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True, env=env,
                          cwd=cwd or ROOT, timeout=timeout, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def core():
    return built("core") / "uwsgi"


@pytest.fixture(scope="module")
def luap():
    return built("luap")


@pytest.fixture
def env(tmp_path):
    return entry_env(tmp_path / "entry")


def test_is_native_and_linked_to_libpython(core):
    assert core.read_bytes()[:4] == b"\x7fELF"
    ldd = subprocess.run(["ldd", str(core)], capture_output=True, text=True).stdout
    assert "libpython3" in ldd and "not found" not in ldd


def test_argv_and_exit_codes(core, env):
    r = run(core, "argv", "--x=1", "é", env=env)
    assert r.returncode == 0, r.stderr
    argv_line, sys_argv_line = r.stdout.splitlines()
    assert eval(argv_line) == ["argv", "--x=1", "é"]
    assert eval(sys_argv_line) == [str(core), "argv", "--x=1", "é"]
    assert run(core, "rc", "3", env=env).returncode == 3
    assert run(core, "exit", "0", env=env).returncode == 0
    assert run(core, "exit", "22", env=env).returncode == 22
    r = run(core, "exit", "a message", env=env)
    assert r.returncode == 1 and "a message" in r.stderr
    r = run(core, "raise", env=env)
    assert r.returncode == 1
    assert "Traceback" in r.stderr and "entry point failed on purpose" in r.stderr


def test_home_and_uwsgi_module(core, env):
    r = run(core, "info", env=env)
    assert r.returncode == 0, r.stderr
    out = dict(line.split(" ", 1) for line in r.stdout.splitlines())
    assert out["prefix"] == str(ROOT / ".venv")
    assert out["endswith"] == "1 0"            # _uwsgi.lib.uwsgi_endswith(b'foobar', b'bar') == 1
    assert out["proctitle"] == "True"
    assert out["embedded"] == f"True {core}"


def test_cffi_home(core, env, tmp_path):
    venv = ROOT / ".venv"
    for args in (["--cffi-home", venv], [f"--cffi-home={venv}"]):
        r = run(core, "info", *args, env=env)
        assert r.returncode == 0 and f"prefix {venv}" in r.stdout, r.stderr
    r = run(core, "info", env={**env, "UWSGI_CFFI_HOME": str(venv)})
    assert r.returncode == 0, r.stderr
    r = run(core, "info", "--cffi-home", tmp_path / "nothere", env=env)
    assert r.returncode == 1
    assert r.stderr.strip() == f"uwsgi: --cffi-home {tmp_path / 'nothere'}: no such directory"
    r = run(core, "info", "--cffi-home", tmp_path, env=env)
    assert r.returncode == 1
    assert r.stderr.strip().startswith(f"uwsgi: --cffi-home {tmp_path}: neither a virtualenv")


def test_proctitle(core, env):
    r = run(core, "title", "uwsgi worker 1", env=env)
    assert r.returncode == 0, r.stderr
    assert "cmdline uwsgi worker 1" in r.stdout
    assert "comm uwsgi worker 1" in r.stdout
    # a title longer than the argv area is truncated, never overflows
    r = run(core, "title", "uwsgi " + "x" * 5000, env=env)
    assert r.returncode == 0 and "cmdline uwsgi xxx" in r.stdout


def test_core_profile_has_no_embedded_plugin(core, env):
    r = run(core, "plugins", env=env)
    assert r.returncode == 0 and "describe []" in r.stdout, r.stdout + r.stderr


def test_luap_loads_lua_plugin_so(luap, env, tmp_path):
    exe = luap / "uwsgi"
    so = luap / "build" / "plugins" / "lua_plugin.so"
    assert so.is_file()
    r = run(exe, "plugin", "lua", env=env, cwd=tmp_path)    # found in the build's plugin_dir
    assert r.returncode == 0, r.stderr
    assert "plugin lua 6" in r.stdout
    assert f"describe [('lua', '{so}')]" in r.stdout
    r = run(exe, "plugin", "0:lua51", env=env, cwd=tmp_path)     # uWSGI's name, modifier override
    assert r.returncode == 0 and "plugin lua 0" in r.stdout, r.stderr
    r = run(exe, "plugin", "nosuch", str(tmp_path), env=env, cwd=tmp_path)
    assert r.returncode == 1
    assert "plugin nosuch not found" in r.stderr and str(tmp_path) in r.stderr and str(so.parent) in r.stderr


# --- with the real server (needs uwsgid.main/cli and the Lua plugin of the other helpers) -----

def _version_ok(exe):
    r = run(exe, "--version")
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip()


def test_version(core):
    _version_ok(core)


PIPPO = ROOT / "examples" / "pippo.lua"


def _serve_pippo(exe, *extra):
    port = free_port()
    args = ["--http-socket", f"127.0.0.1:{port}", "--http-socket-modifier1", "6", *extra, "--lua", PIPPO]
    status, body, log = serve_and_get(exe, args, port)
    assert status == 200, f"{body!r}\n{log}"
    return body


def test_lua_profile_serves_pippo():
    body = _serve_pippo(built("lua") / "uwsgi")
    assert b"<p>Hello Wsapi!</p>" in body and b"<p>PATH_INFO: /</p>" in body


def test_luap_profile_serves_pippo(luap):
    body = _serve_pippo(luap / "uwsgi", "--plugins", "lua")
    assert b"<p>Hello Wsapi!</p>" in body


def test_plugin_dir_and_missing_plugin_through_cli(core, luap, tmp_path):
    exe = core                                 # built without lua_plugin.so beside it
    r = run(exe, "--plugins", "lua", "--plugins-list", cwd=tmp_path)
    assert r.returncode == 1
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and "plugin lua not found" in err[0] and str(tmp_path) in err[0], r.stderr
    plugin_dir = luap / "build" / "plugins"
    r = run(exe, "--plugin-dir", plugin_dir, "--plugins", "lua", "--plugins-list", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "lua" in r.stdout and str(plugin_dir / "lua_plugin.so") in r.stdout + r.stderr


def test_a_built_plugin_never_shadows_its_python_package(luap):
    """The build's output dir is the project root in a normal build, which is on sys.path: a
    lua_plugin.so there was imported instead of the package lua_plugin by every Python run in it."""
    assert not list(luap.glob("*_plugin.so"))
    path = os.pathsep.join([str(luap), str(ROOT / "plugins" / "lua"), str(ROOT)])
    r = subprocess.run([sys.executable, "-c", "import lua_plugin; print(lua_plugin.__file__)"], cwd=luap,
                       env={**os.environ, "PYTHONPATH": path}, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().endswith("lua_plugin/__init__.py")


def test_default_build_lists_both_plugins():
    exe = ROOT / "uwsgi"
    if not exe.exists():
        pytest.skip("make build has not run")
    r = run(exe, "--plugins-list")
    assert r.returncode == 0, r.stderr
    assert "lua (embedded)" in r.stdout and "cffi (embedded)" in r.stdout
