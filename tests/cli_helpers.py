"""Helpers for the cli tests: a fake plugin loader (no lupa/cffi import, options of our own)
and a snapshot of the option registry so a test's declarations do not leak into the next."""

from __future__ import annotations

import sys
import types

import pytest

import uwsgid
import uwsgid.cli  # noqa: F401  (declares the core options before the snapshot)
from uwsgid import options
from uwsgid.options import Option, declare
from uwsgid.plugin import Plugin


class PluginNotFound(Exception):
    pass


class FakePlugin(Plugin):
    def __init__(self, name: str, modifier1: int, opts: list[Option]):
        self.name = name
        self.modifier1 = modifier1
        self.options = opts


def make_loader(embedded=(), available=()):
    """A stand-in for uwsgid.plugins_loader: `embedded` plugins are always there, `available`
    ones load by name; anything else raises PluginNotFound naming the dirs searched."""
    mod = types.ModuleType("uwsgid.plugins_loader")
    mod.PluginError = Exception
    mod.PluginNotFound = PluginNotFound
    mod.calls = []
    by_name = {p.name: p for p in (*embedded, *available)}

    def embedded_plugins():
        for p in embedded:
            declare(*p.options)
        return list(embedded)

    def load_plugin(spec, dirs):
        mod.calls.append((spec, list(dirs)))
        name = spec.split(":", 1)[-1]
        if name not in by_name:
            raise PluginNotFound(f"plugin {name} not found (searched {', '.join(dirs) or '.'})")
        declare(*by_name[name].options)
        return by_name[name]

    def describe():
        return [(p.name, "embedded") for p in embedded]

    mod.embedded_plugins = embedded_plugins
    mod.load_plugin = load_plugin
    mod.describe = describe
    return mod


TLUA = FakePlugin("tlua", 6, [
    Option("tlua", kind="str", multi=True, group="tlua", metavar="FILE", help="load a test lua app"),
    Option("tlua-gc-freq", kind="int", default=0, group="tlua", help="test gc frequency"),
])
TPY = FakePlugin("tpy", 0, [
    Option("tpy-module", kind="str", group="tpy", help="test wsgi module"),
])


@pytest.fixture(autouse=True)
def registry_snapshot():
    """Each test sees only the core's options (plugins declared by earlier tests in the same
    session are hidden) and leaves the registry as it found it."""
    reg, order = dict(options._registry), list(options._order)
    options._registry.clear()
    options._registry.update({k: o for k, o in reg.items() if o.group == "core"})
    options._order[:] = [o for o in order if o.group == "core"]
    yield
    options._registry.clear()
    options._registry.update(reg)
    options._order[:] = order


@pytest.fixture
def loader(monkeypatch, no_loader):
    """Install a fake loader: TPY embedded, TLUA loadable with --plugins tlua."""
    mod = make_loader(embedded=[TPY], available=[TLUA])
    monkeypatch.setitem(sys.modules, "uwsgid.plugins_loader", mod)
    monkeypatch.setattr(uwsgid, "plugins_loader", mod, raising=False)
    return mod


@pytest.fixture(autouse=True)
def no_loader(monkeypatch):
    """By default no plugins at all (tests that want some use `loader`, which overrides)."""
    mod = make_loader()
    monkeypatch.setitem(sys.modules, "uwsgid.plugins_loader", mod)
    monkeypatch.setattr(uwsgid, "plugins_loader", mod, raising=False)
    return mod


# ------------------------------------------------------------------ real ./uwsgi processes
# (own copies: tests/helpers.py's Server cannot be imported while its class body shadows the
# `signal` module with its `signal` method)

import http.client  # noqa: E402
import os  # noqa: E402
import signal as _signal  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
UWSGI = ROOT / "uwsgi"
EXAMPLES = ROOT / "examples"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_uwsgi(args, timeout: float = 60.0, env=None):
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run([str(UWSGI), *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT, env=full_env, stdin=subprocess.DEVNULL)


class Running:
    """./uwsgi in its own session, stopped by its PID (then its process group) on exit."""

    def __init__(self, args, port: int, env=None, log_path: Path | None = None):
        self.args, self.port, self.env = [str(a) for a in args], port, env or {}
        self.log_path = log_path or Path(os.environ.get("TMPDIR", "/tmp")) / f"cli-e2e-{os.getpid()}-{port}.log"

    def __enter__(self):
        env = dict(os.environ)
        env.update(self.env)
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([str(UWSGI), *self.args], stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, cwd=ROOT, env=env, start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.__exit__()
                raise RuntimeError(f"./uwsgi exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        self.__exit__()
        raise RuntimeError(f"./uwsgi never listened on {self.port}:\n{self.log()}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, _signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, _signal.SIGKILL)     # the session we started, by our child's PID
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait(5)
        self._log.close()
        try:
            self.log_path.unlink()
        except OSError:
            pass


def http_get(port: int, path: str = "/"):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()
