"""Helpers for the services tests: a fresh in-process services state, forked children that
report through a pipe, a redis-server on a free port, a server instance with both plugins."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys

from helpers import ROOT, Server, free_port


def reset_services(opts=None):
    """Throw away every service's state and set them up again from opts (an Options)."""
    import uwsgid.services as services
    from uwsgid.services import cache, channels, metrics, rpc, signal_receiver, signals, timers
    timers._reset_for_tests()
    signal_receiver._reset_for_tests()
    signals._reset_for_tests()
    channels._reset_for_tests()       # the channels, and "set up once" back to not done
    cache._reset_for_tests()
    metrics._reset_for_tests()
    rpc._table.clear()
    if opts is not None:
        services.setup(opts)


def make_opts(**values):
    """An Options with the given values (underscored names), the rest at their defaults."""
    import uwsgid.config.core_options  # noqa: F401
    import uwsgid.services  # noqa: F401  (declares the services options)
    from uwsgid.config.options import Options, lookup
    o = Options()
    for k, v in values.items():
        opt = lookup(k.replace("_", "-"))
        if opt is None:
            o._set[k] = v
        elif opt.multi:
            for item in (v if isinstance(v, list) else [v]):
                o.set(opt, item)
        else:
            o.set(opt, v)
    return o


def fork_children(n, body):
    """Run body(i) in n forked children; returns their exit codes (0 = body returned)."""
    pids = []
    for i in range(n):
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                body(i)
            except BaseException:
                import traceback
                traceback.print_exc()
                code = 1
            os._exit(code)
        pids.append(pid)
    codes = []
    for pid in pids:
        _, status = os.waitpid(pid, 0)
        codes.append(os.waitstatus_to_exitcode(status))
    return codes


class RedisServer(Server):
    """redis-server on a free loopback port, no persistence, stopped by PID (SIGTERM)."""

    def __init__(self):
        exe = shutil.which("redis-server")
        if exe is None:
            raise RuntimeError("redis-server is not installed (Debian package redis-server)")
        port = free_port()
        super().__init__(["--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                          "--daemonize", "no"], port, binary=exe, stop_signal=signal.SIGTERM)

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}/0"


def uwsgi_command() -> list[str]:
    """./uwsgi when it runs (with both language plugins), else the in-process launcher."""
    exe = ROOT / "uwsgi"
    if exe.exists():
        try:
            r = subprocess.run([str(exe), "--version"], capture_output=True, timeout=30, cwd=ROOT,
                               stdin=subprocess.DEVNULL)
            if r.returncode == 0:
                return [str(exe), "--plugins", "lua,cffi"]
        except (OSError, subprocess.TimeoutExpired):
            pass
    return [sys.executable, str(ROOT / "tests" / "services_launcher.py")]


def instance(args, port, log_path, env=None) -> Server:
    """One server (uwsgi_command() ARGS) in its own session, log in a file, stopped by PID."""
    return Server(args, port, command=uwsgi_command(), log_path=log_path, env=env)
