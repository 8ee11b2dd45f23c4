"""A start that fails exits non-zero with one line that says what to fix, like uWSGI's exits:
1 for a plugin, an option value, a socket, a file or directory, an interpreter home that cannot
start; 22 for an app that fails to load with --need-app (the default). Each test checks the
status, that exactly one line starts with `uwsgi: ` and names the problem, and no traceback.

Run against build/tests/<profile> executables (core: no plugin; lua: Lua embedded), never the
main ./uwsgi. Cases tested elsewhere (listed, not repeated): an unknown option, a bad value
(--processes many) and a missing config file in tests/config/test_cli_e2e.py; a --cffi-home that
does not exist or is no Python home, and `--plugins lua` with no lua_plugin.so, in
tests/building/test_build_binary.py."""

from __future__ import annotations

import ctypes
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from build_helpers import ROOT, built
from helpers import free_port

PIPPO = ROOT / "examples" / "pippo.lua"
PR_CAPBSET_DROP = 24
CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_NET_BIND_SERVICE = 1, 2, 10


@pytest.fixture(scope="module")
def core() -> Path:
    return built("core") / "uwsgi"


@pytest.fixture(scope="module")
def lua() -> Path:
    return built("lua") / "uwsgi"


def run(exe, *args, env=None, preexec_fn=None, timeout=60):
    full = {k: v for k, v in os.environ.items() if not k.startswith("UWSGI_")}
    full.update(env or {})
    return subprocess.run([str(exe), *map(str, args)], check=False, capture_output=True, text=True, env=full, cwd=ROOT,
                          timeout=timeout, stdin=subprocess.DEVNULL, preexec_fn=preexec_fn)


def error_line(r, status: int = 1) -> str:
    """The one `uwsgi: ` line of a failed start (a stale-build warning aside), once the status
    is checked and no traceback was printed."""
    out = r.stdout + r.stderr
    assert r.returncode == status, out
    assert "Traceback" not in out and "Returning 0" not in out, out
    lines = [ln for ln in out.splitlines() if ln.startswith("uwsgi: ") and "changed since it was built" not in ln]
    assert len(lines) == 1, out
    return lines[0]


def make_venv(where: Path) -> Path:
    """A throw-away virtualenv of the Python the executables embed, with nothing installed."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True, timeout=120)
    return where


def site_packages(venv: Path) -> Path:
    return venv / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages"


def without_caps(*caps):
    """A preexec_fn that takes `caps` away from a child run as root (so that it meets the
    permission errors an unprivileged user meets); None when not root (nothing to take)."""
    if os.geteuid() != 0:
        return None
    libc = ctypes.CDLL(None, use_errno=True)

    def drop():
        for cap in caps:
            if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
                raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")

    try:
        subprocess.run(["true"], preexec_fn=drop, check=True, timeout=30)
    except (subprocess.SubprocessError, OSError) as e:
        pytest.skip(f"cannot drop capabilities here ({e})")
    return drop


# --- the interpreter home (--cffi-home / $UWSGI_CFFI_HOME) ------------------------------------

def test_cffi_home_without_cffi(core, tmp_path):
    """cffi's embedding init used to fail with "initialization code failed. Returning 0." and
    the process exited 0."""
    venv = make_venv(tmp_path / "venv")
    r = run(core, "--cffi-home", venv, "--version")
    line = error_line(r)
    assert line.startswith("uwsgi: the Python at ") and venv.name in line, line
    assert line.endswith("(--cffi-home) cannot import cffi: pip install cffi in it, "
                         "or point --cffi-home at a virtualenv that has it"), line


def test_cffi_home_from_the_environment(core, tmp_path):
    venv = make_venv(tmp_path / "venv")
    line = error_line(run(core, "--version", env={"UWSGI_CFFI_HOME": str(venv)}))
    assert "($UWSGI_CFFI_HOME) cannot import cffi" in line and "point $UWSGI_CFFI_HOME at" in line, line
    line = error_line(run(core, "--version", env={"UWSGI_CFFI_HOME": str(tmp_path / "nothere")}))
    assert line == f"uwsgi: $UWSGI_CFFI_HOME {tmp_path / 'nothere'}: no such directory"


def test_cffi_home_whose_cffi_cannot_start_the_module(core, tmp_path):
    """_cffi_backend imports but cannot initialise the embedding module (here a stand-in; in
    life a cffi too old for the build): cffi_start_python() fails, and main.c says so."""
    venv = make_venv(tmp_path / "venv")
    (site_packages(venv) / "_cffi_backend.py").write_text('__version__ = "0.1"\n')
    line = error_line(run(core, "--cffi-home", venv, "--version"))
    assert "cannot start uwsgi's _uwsgi module (AttributeError: " in line, line
    assert "it has cffi 0.1, uwsgi was built with cffi" in line and "pip install cffi==" in line, line


def test_cffi_home_of_another_python(core, tmp_path):
    venv = make_venv(tmp_path / "venv")
    cfg = venv / "pyvenv.cfg"
    cfg.write_text("".join("version = 3.99.0\n" if ln.startswith("version") else ln
                           for ln in cfg.read_text().splitlines(keepends=True)))
    line = error_line(run(core, "--cffi-home", venv, "--version"))
    assert line == (f"uwsgi: --cffi-home {venv}: a Python 3.99 virtualenv, but this uwsgi embeds Python "
                    f"{sys.version_info[0]}.{sys.version_info[1]}: make one with python{sys.version_info[0]}."
                    f"{sys.version_info[1]} -m venv, or rebuild uwsgi with Python 3.99")


def test_cffi_home_without_a_server_dependency(lua, tmp_path):
    """A virtualenv with cffi only: the server's own imports (httptools, ...) name what is missing."""
    import _cffi_backend
    import cffi
    venv = make_venv(tmp_path / "venv")
    shutil.copy(_cffi_backend.__file__, site_packages(venv))
    shutil.copytree(Path(cffi.__file__).parent, site_packages(venv) / "cffi")
    r = run(lua, "--cffi-home", venv, "--http-socket", f"127.0.0.1:{free_port()}", "--lua", PIPPO)
    line = error_line(r)
    assert line.startswith("uwsgi: the Python at ") and "(--cffi-home) cannot import " in line, line
    assert ": pip install " in line and line.endswith("in it, or point --cffi-home at a virtualenv that has it"), line


# --- plugins ----------------------------------------------------------------------------------

def test_plugin_that_is_not_there(core):
    line = error_line(run(core, "--plugins", "nosuch", "--http-socket", f"127.0.0.1:{free_port()}"))
    assert line.startswith("uwsgi: plugin nosuch not found: no nosuch_plugin.so in "), line


@pytest.mark.parametrize("kind", ["junk", "elf"])
def test_plugin_so_that_does_not_load(core, tmp_path, kind):
    so = tmp_path / "broken_plugin.so"
    if kind == "junk":
        so.write_bytes(b"not an ELF file\n")
    else:       # a real shared object, but no uwsgi plugin
        src = tmp_path / "broken.c"
        src.write_text("int broken(void) { return 1; }\n")
        subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(so), str(src)], check=True, timeout=60)
    line = error_line(run(core, "--plugins", so, "--http-socket", f"127.0.0.1:{free_port()}"))
    assert line.startswith(f"uwsgi: {so} is not a uwsgi plugin: "), line


def test_plugin_whose_init_fails(lua, tmp_path):
    """The Lua plugin in a home where lupa does not import: a venv that sees the project's
    packages (a .pth) but whose own site-packages shadows lupa with one that fails."""
    import cffi
    venv = make_venv(tmp_path / "venv")
    sp = site_packages(venv)
    (sp / "project.pth").write_text(str(Path(cffi.__file__).parent.parent) + "\n")
    (sp / "lupa").mkdir()
    (sp / "lupa" / "__init__.py").write_text("raise ImportError(\"No module named 'lupa'\", name='lupa')\n")
    r = run(lua, "--cffi-home", venv, "--http-socket", f"127.0.0.1:{free_port()}", "--lua", PIPPO)
    line = error_line(r)
    assert line.startswith("uwsgi: lupa is not installed") and line.endswith("pip install lupa"), line


# --- apps (--need-app, the default: 22) ---------------------------------------------------------

@pytest.mark.parametrize("master", [[], ["--master"]])
def test_app_that_fails_to_load(lua, tmp_path, master):
    bad = tmp_path / "bad.lua"
    bad.write_text("return function( end")
    r = run(lua, *master, "--http-socket", f"127.0.0.1:{free_port()}", "--lua", bad)
    line = error_line(r, status=22)
    assert line.startswith(f"uwsgi: unable to load Lua app {bad}: ") and "expected near 'end'" in line, line
    assert "GAME OVER" in r.stderr
    r = run(lua, *master, "--http-socket", f"127.0.0.1:{free_port()}", "--lua", tmp_path / "missing.lua")
    assert str(tmp_path / "missing.lua") in error_line(r, status=22)


# --- sockets ----------------------------------------------------------------------------------

def test_address_in_use(lua):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for option in ("--http-socket", "--socket", "--http"):
            line = error_line(run(lua, option, f"127.0.0.1:{port}", "--lua", PIPPO))
            assert line == f"uwsgi: cannot bind 127.0.0.1:{port}: Address already in use", (option, line)


def _free_privileged_port() -> int:
    with open("/proc/sys/net/ipv4/ip_unprivileged_port_start") as f:
        start = int(f.read())
    for port in range(min(start, 1024) - 1, 0, -1):
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
                return port
            except PermissionError:
                break           # not root: any one will do, none can be tried
            except OSError:
                continue
    if os.geteuid() != 0 and start > 1:
        return start - 1
    pytest.skip("no privileged port to try here")


def test_privileged_port_without_the_right(lua):
    port = _free_privileged_port()
    r = run(lua, "--http-socket", f"127.0.0.1:{port}", "--lua", PIPPO, preexec_fn=without_caps(CAP_NET_BIND_SERVICE))
    assert error_line(r) == f"uwsgi: cannot bind 127.0.0.1:{port}: Permission denied"


@pytest.mark.parametrize("address,message", [
    ("127.0.0.1:99999", "uwsgi: invalid port in socket address '127.0.0.1:99999'"),
    ("127.0.0.1:http", "uwsgi: invalid port in socket address '127.0.0.1:http'"),
    ("/nonexistent-dir/uwsgi.sock", "uwsgi: cannot bind /nonexistent-dir/uwsgi.sock: No such file or directory"),
])
def test_bad_address(lua, address, message):
    assert error_line(run(lua, "--socket", address, "--lua", PIPPO)) == message


def test_bind_error_goes_to_the_log_file(lua, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        log = tmp_path / "uwsgi.log"
        r = run(lua, "--logto", log, "--http-socket", f"127.0.0.1:{port}", "--lua", PIPPO)
    assert r.returncode == 1
    assert "Traceback" not in log.read_text()
    lines = [ln for ln in log.read_text().splitlines() if ln.startswith("uwsgi: ")]
    assert lines == [f"uwsgi: cannot bind 127.0.0.1:{port}: Address already in use"], log.read_text()


# --- files and directories ----------------------------------------------------------------------

def test_config_file_that_cannot_be_read(core, tmp_path):
    line = error_line(run(core, "--ini", tmp_path))
    assert line == f"uwsgi: cannot read config file {tmp_path}: it is a directory"
    secret = tmp_path / "secret.ini"
    secret.write_text("[uwsgi]\nsocket = 127.0.0.1:0\n")
    secret.chmod(0)
    r = run(core, "--ini", secret, preexec_fn=without_caps(CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH))
    assert error_line(r) == f"uwsgi: cannot read config file {secret}: Permission denied"


def test_chdir_to_a_missing_directory(lua, tmp_path):
    missing = tmp_path / "nothere"
    r = run(lua, "--chdir", missing, "--http-socket", f"127.0.0.1:{free_port()}", "--lua", PIPPO)
    assert error_line(r) == f"uwsgi: chdir() to {missing}: No such file or directory"


def test_pidfile_in_a_missing_directory(lua, tmp_path):
    pidfile = tmp_path / "nothere" / "uwsgi.pid"
    r = run(lua, "--pidfile", pidfile, "--http-socket", f"127.0.0.1:{free_port()}", "--lua", PIPPO)
    assert error_line(r) == f"uwsgi: cannot write pidfile {pidfile}: No such file or directory"
