"""The services' touch files, checked at each master tick (the rules of a touch:
uwsgid.util.touch; the master's own: uwsgid.server.master_touch):

    --touch-mules-reload FILE    the mules get SIGHUP, which ends them; each is respawned
    --touch-exec "FILE COMMAND"  run COMMAND with the shell (not waited for: the master reaps it)
    --touch-signal "FILE NUM"    raise uWSGI signal NUM, as uwsgi.signal(NUM) would
"""

from __future__ import annotations

from uwsgid.config.options import Option, declare
from uwsgid.util import hooks
from uwsgid.util.log import log
from uwsgid.util.touch import TouchFiles

declare(
    Option("touch-mules-reload", needs_master=True, kind="str", multi=True, group="core", metavar="FILE",
           help="reload the mules (SIGHUP, then respawned) when FILE is modified or touched"),
    Option("touch-exec", needs_master=True, kind="str", multi=True, group="core", metavar="FILE COMMAND",
           help="run COMMAND (with the shell) when FILE is modified or touched"),
    Option("touch-signal", needs_master=True, kind="str", multi=True, group="core", metavar="FILE SIGNAL",
           help="raise uWSGI signal SIGNAL (0-255) when FILE is modified or touched"),
)


class TouchError(ValueError):
    """A bad --touch-exec / --touch-signal value (one line at start-up, exit 1)."""


def _pairs(values, option: str, what: str) -> list[tuple[str, str]]:
    """"FILE REST" values: (FILE, REST)."""
    out = []
    for v in values or ():
        path, _, rest = v.strip().partition(" ")
        if not rest.strip():
            raise TouchError(f"--{option} {v!r}: expected FILE {what}")
        out.append((path, rest.strip()))
    return out


def _signal_pairs(values) -> list[tuple[str, int]]:
    out = []
    for path, num in _pairs(values, "touch-signal", "SIGNAL"):
        if not num.isdigit() or int(num) > 255:
            raise TouchError(f"--touch-signal {path} {num}: the signal is a number from 0 to 255")
        out.append((path, int(num)))
    return out


def check(opts) -> None:
    """Before anything runs (uwsgid.main): the values that name a file and something else."""
    _pairs(opts.get("touch-exec"), "touch-exec", "COMMAND")
    _signal_pairs(opts.get("touch-signal"))


_touches = None     # (mules, exec, signal) TouchFiles, from the master's start


def _master_start(server) -> None:
    global _touches
    opts = server.opts
    if opts.get("touch-mules-reload") or opts.get("touch-exec") or opts.get("touch-signal"):
        _touches = (TouchFiles(opts.get("touch-mules-reload") or (), log),
                    TouchFiles(_pairs(opts.get("touch-exec"), "touch-exec", "COMMAND"), log),
                    TouchFiles(_signal_pairs(opts.get("touch-signal")), log))


def _master_tick(server) -> None:
    if _touches is None or getattr(server.master, "state", "running") != "running":
        return
    mules_touch, exec_touch, signal_touch = _touches
    touched = mules_touch.changed()
    if touched:
        from uwsgid.services import mules
        log(f"*** {touched} has been touched... mules reload !!! ***")
        mules.reload()
        return
    command = exec_touch.changed()
    if command:
        from uwsgid.services import commands
        try:
            commands.spawn(command, commands.shell(server.opts), failed="[uwsgi-touch-exec] unable to run")
            log(f"[uwsgi-touch-exec] running {command}")
        except OSError as e:
            log(f"[uwsgi-touch-exec] cannot run {command!r}: {e.strerror or e}")
    num = signal_touch.changed()
    if num is not None:
        from uwsgid.services import signals
        signals.raise_signal(num)
        log(f"[uwsgi-touch-signal] raising {num}")


hooks.register("master_start", _master_start)
hooks.register("master_tick", _master_tick)
