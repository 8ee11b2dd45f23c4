"""Helpers of the build tests (tests/test_build_*.py): build profiles into temporary output
dirs (UWSGI_BUILD_DIR) so the main ./uwsgi other tests use is never clobbered, and a tiny
stand-in entry point for exercising the launcher (UWSGI_EMBED_MAIN)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from helpers import Server, http_get

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable

ENTRY = '''
import os, sys
def main(argv):
    cmd = argv[0] if argv else ""
    if cmd == "argv":
        print(repr(argv)); print(repr(sys.argv)); return 0
    if cmd == "rc":
        return int(argv[1])
    if cmd == "exit":
        sys.exit(int(argv[1]) if argv[1].isdigit() else argv[1])
    if cmd == "raise":
        raise RuntimeError("entry point failed on purpose")
    if cmd == "info":
        import _uwsgi
        print("prefix", sys.prefix)
        print("endswith", _uwsgi.lib.uwsgi_endswith(b"foobar", b"bar"), _uwsgi.lib.uwsgi_endswith(b"foobar", b"foo"))
        print("proctitle", hasattr(_uwsgi.lib, "uwsgi_set_proctitle"))
        from uwsgid.util import binary
        print("embedded", binary.active(), binary.executable())
        return 0
    if cmd == "title":
        from uwsgid.util import binary
        binary.set_proctitle(argv[1])
        with open(f"/proc/{os.getpid()}/cmdline", "rb") as f:
            print("cmdline", f.read().split(b"\\0")[0].decode())
        with open(f"/proc/{os.getpid()}/comm") as f:
            print("comm", f.read().strip())
        return 0
    if cmd == "plugin":
        import pkgutil
        from uwsgid.plugins import loader as L
        p = L.load_plugin(argv[1], argv[2:])
        mod = __import__(p.name + "_plugin")
        print("plugin", p.name, p.modifier1, type(mod.__loader__).__name__)
        print("describe", L.describe())
        return 0
    if cmd == "plugins":
        from uwsgid.plugins import loader as L
        print("describe", L.describe())
        return 0
    print("unknown test command", cmd)
    return 2
'''


def entry_env(tmp: Path, extra: dict | None = None) -> dict:
    """Environment that makes ./uwsgi run the stand-in entry point instead of uwsgid.main."""
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "build_test_entry.py").write_text(ENTRY)
    env = dict(os.environ)
    env["PYTHONPATH"] = str(tmp)
    env["UWSGI_EMBED_MAIN"] = "build_test_entry:main"
    env.pop("UWSGI_CFFI_HOME", None)
    if extra:
        env.update(extra)
    return env


def uwsgiconfig(*args, env: dict | None = None, out: Path | None = None, timeout: float = 180):
    full = dict(os.environ)
    for k in ("UWSGI_PROFILE", "UWSGI_EMBED_PLUGINS", "UWSGI_BUILD_DIR", "CC", "CFLAGS", "LDFLAGS"):
        full.pop(k, None)
    if out is not None:
        full["UWSGI_BUILD_DIR"] = str(out)
    if env:
        full.update(env)
    return subprocess.run([PY, str(ROOT / "uwsgiconfig.py"), *map(str, args)], capture_output=True,
                          text=True, cwd=ROOT, env=full, timeout=timeout)


def build_profile(profile: str, out: Path) -> Path:
    r = uwsgiconfig("--build", profile, out=out)
    assert r.returncode == 0, r.stdout + r.stderr
    return out / "uwsgi"


def test_build_dir(profile: str) -> Path:
    """A persistent per-profile output dir under build/ (removed by make clean): the build's
    object cache makes re-running the tests fast."""
    return ROOT / "build" / "tests" / profile


_built: dict[str, Path] = {}


def built(profile: str) -> Path:
    """The output dir of `profile`, built (or brought up to date) once per test session."""
    if profile not in _built:
        out = test_build_dir(profile)
        build_profile(profile, out)
        _built[profile] = out
    return _built[profile]


def serve_and_get(exe: Path, args: list, port: int, path: str = "/"):
    """Start exe ARGS, GET http://127.0.0.1:port/path once it listens, stop it by PID.
    Returns (status, body, log); status None (body: why) when it never served."""
    server = Server(args, port, binary=exe)
    try:
        with server:
            status, _, body = http_get(port, path)
    except (RuntimeError, OSError) as e:
        status, body = None, str(e).encode()
    return status, body, server.log()
