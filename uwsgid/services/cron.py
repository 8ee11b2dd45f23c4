"""Command crons (uWSGI's core/cron.c): shell commands the master runs at given times.

    --cron "MIN HOUR MDAY MON WDAY COMMAND"     -1 = any, -N = every N (uWSGI's crontab form)
    --unique-cron "..."                         the same, not started again while the last run lives
    --cron2 "minute=M,hour=H,day=D,month=O,week=W,unique=1,harakiri=S COMMAND"  (absent keys = any)
    --cron-harakiri SECS                        kill a command still running after SECS

As uWSGI: the master checks the table about once a second (master_tick); a cron whose time
matches (timers.cron_matches, the same matcher as uwsgi.add_cron) runs when its last run is 60 s
old or more, so an every-minute cron first runs at start-up, then every 60 s. A command runs as
`/bin/sh -c COMMAND` in its own session, its output in the log, stdin /dev/null; it is logged
when it starts (`[uwsgi-cron] running "..." (pid N)`) and when it exits (`... exited after N
second(s)`, seen through the child_exited hook). Harakiri SIGKILLs its process group.
A cron is not interrupted by a reload or a stop (uWSGI leaves it running too); the re-exec'd
master does not know a run started by the previous one, so --unique-cron holds within one
master's life only. The legion forms are refused: there are no legions here.
"""

from __future__ import annotations

import os
import signal
import time

from uwsgid.config.options import Option, declare
from uwsgid.services import commands
from uwsgid.util import hooks
from uwsgid.util.log import log

declare(
    Option("cron", needs_master=True, kind="str", multi=True, group="core",
           metavar="MIN HOUR MDAY MON WDAY COMMAND",
           help="run COMMAND (a shell command) from the master when the time matches "
                "(-1 = any, -N = every N; weekday 0-7, 0 and 7 = Sunday)"),
    Option("cron2", needs_master=True, kind="str", multi=True, group="core",
           metavar="[minute=M,hour=H,day=D,month=O,week=W,unique=1,harakiri=S ]COMMAND",
           help="add a cron task, key=value form (absent keys = any; harakiri=0 disables --cron-harakiri)"),
    Option("unique-cron", needs_master=True, kind="str", multi=True, group="core",
           metavar="MIN HOUR MDAY MON WDAY COMMAND",
           help="as --cron, but never started again while its previous run is still alive"),
    Option("cron-harakiri", kind="int", default=0, group="core", metavar="SECS",
           help="kill (SIGKILL to its process group) a cron command running longer than SECS"),
    Option("legion-cron", kind="str", multi=True, group="core", aliases=("cron-legion",),
           metavar="LEGION CRON", help="refused: there are no legions here (use --cron)"),
    Option("unique-legion-cron", kind="str", multi=True, group="core", aliases=("unique-cron-legion",),
           metavar="LEGION CRON", help="refused: there are no legions here (use --unique-cron)"),
)

_CRON2_KEYS = ("minute", "hour", "day", "month", "week", "unique", "harakiri", "legion")


class Cron:
    __slots__ = ("fields", "command", "unique", "mercy", "pid", "started_at", "last_job", "deadline")

    def __init__(self, fields: tuple, command: str, unique: bool = False, mercy: int = 0):
        self.fields = fields            # (minute, hour, day, month, week)
        self.command = command
        self.unique = unique
        self.mercy = mercy              # cron2 harakiri=: > 0 seconds, -1 = none, 0 = --cron-harakiri
        self.pid = -1                   # the running command, -1 = none
        self.started_at = 0
        self.last_job = 0               # wall time of the last run (0: never, so due at once)
        self.deadline = 0               # harakiri time of the running command, 0 = none


_crons: list[Cron] = []
clock = time.time               # the wall clock crons follow (tests set a fake one)
_harakiri = 0
_shell = "/bin/sh"


# ---- the option values ------------------------------------------------------------------------

def parse_cron(value: str, option: str = "cron", unique: bool = False) -> Cron:
    """`MIN HOUR MDAY MON WDAY COMMAND` as uWSGI's sscanf("%d %d %d %d %d %n") reads it."""
    parts = value.split(None, 5)
    try:
        fields = tuple(int(p) for p in parts[:5])
    except ValueError:
        fields = ()
    if len(fields) != 5 or len(parts) < 6 or not parts[5].strip():
        raise ValueError(f"--{option} {value!r}: invalid cron syntax, expected MIN HOUR MDAY MON WDAY COMMAND "
                         "(numbers; -1 = any, -N = every N)")
    _check_fields(fields, option, value)
    return Cron(fields, parts[5].strip(), unique=unique)


def parse_cron2(value: str, option: str = "cron2") -> Cron:
    """uWSGI's --cron2: `key=val,... COMMAND`; a value without a space whose first word has no
    `=` is the command alone (every minute)."""
    head, sep, rest = value.strip().partition(" ")
    if sep and "=" in head:
        keys, command = commands.kvlist(head, option, _CRON2_KEYS), rest.strip()
    elif not sep and "=" in head:
        raise ValueError(f"--{option} {value!r}: a cron needs a command after its key=value list")
    else:
        keys, command = {}, value.strip()
    if not command:
        raise ValueError(f"--{option} {value!r}: no command")
    if "legion" in keys:
        raise commands.Refused(f"--{option} {value}: not supported: there are no legions here, so this "
                               "cron never runs; drop legion= (every instance then runs it)")
    fields = tuple(commands.integer(keys[k], option, k) if k in keys else -1
                   for k in ("minute", "hour", "day", "month", "week"))
    _check_fields(fields, option, value)
    unique = commands.integer(keys["unique"], option, "unique", 0) > 0 if "unique" in keys else False
    mercy = 0
    if "harakiri" in keys:
        secs = commands.integer(keys["harakiri"], option, "harakiri", 0)
        mercy = secs if secs > 0 else -1
    return Cron(fields, command, unique=unique, mercy=mercy)


def _check_fields(fields: tuple, option: str, value: str) -> None:
    from uwsgid.services.timers import check_cron_fields
    try:
        check_cron_fields(fields)
    except ValueError as exc:
        raise ValueError(f"--{option} {value!r}: {exc}") from None


def configure(opts) -> list[Cron]:
    """Read the options into the table (ValueError naming the first bad one; a legion cron is
    refused: commands.refuse_or_warn)."""
    global _harakiri, _shell
    table = [parse_cron(v) for v in opts.get("cron", []) or []]
    table += [parse_cron(v, "unique-cron", unique=True) for v in opts.get("unique-cron", []) or []]
    for v in opts.get("cron2", []) or []:
        try:
            table.append(parse_cron2(v))
        except commands.Refused as exc:
            commands.refuse_or_warn(opts, str(exc))
    for name, instead in (("legion-cron", "--cron"), ("unique-legion-cron", "--unique-cron")):
        for v in opts.get(name, []) or []:
            commands.refuse_or_warn(opts, f"--{name} {v}: not supported: there are no legions here, so "
                                          f"this cron never runs; use {instead} (every instance runs it)")
    harakiri = int(opts.get("cron-harakiri", 0) or 0)
    if harakiri < 0:
        raise ValueError(f"--cron-harakiri {harakiri}: must be >= 0 seconds")
    _crons[:] = table
    _harakiri = harakiri
    _shell = commands.shell(opts)
    return table


# ---- the master's work ------------------------------------------------------------------------

def check(now: float | None = None) -> None:
    """Run the crons due at wall time `now` (uWSGI's uwsgi_manage_command_cron)."""
    from uwsgid.services.timers import cron_matches
    now = int(clock() if now is None else now)
    tm = time.localtime(now)
    for c in _crons:
        if c.unique and c.pid >= 0:
            continue
        if not cron_matches(c.fields, tm) or now - c.last_job < 60:
            continue
        c.last_job = now
        try:
            pid = commands.spawn(c.command, _shell, _prepare_child, "[uwsgi-cron] unable to run")
        except OSError as exc:
            log(f"[uwsgi-cron] fork() for \"{c.command}\": {exc.strerror or exc}")
            continue
        c.pid, c.started_at = pid, now
        log(f"[uwsgi-cron] running \"{c.command}\" (pid {pid})")
        limit = c.mercy if c.mercy > 0 else (_harakiri if c.mercy == 0 else 0)
        c.deadline = now + limit if limit > 0 else 0


def _prepare_child() -> None:
    # uwsgi_run_command: stdin /dev/null when the master has none, a session of its own
    if not commands.stdin_valid():
        commands.stdin_devnull()
    os.setsid()


def check_harakiri(now: float | None = None) -> bool:
    """SIGKILL the process group of each command past its deadline; True when one was killed."""
    now = clock() if now is None else now
    killed = False
    for c in _crons:
        if c.pid >= 0 and c.deadline > 0 and c.deadline < now:
            log(f"*** HARAKIRI ON CRON \"{c.command}\" (pid: {c.pid}) ***")
            commands.signal_group(c.pid, signal.SIGKILL)
            c.deadline = 0          # once: the exit is logged by child_exited
            killed = True
    return killed


def child_exited(pid: int, status: int) -> bool:
    for c in _crons:
        if c.pid == pid:
            log(f"[uwsgi-cron] command \"{c.command}\" running with pid {pid} exited after "
                f"{int(clock()) - c.started_at} second(s)")
            c.pid, c.started_at, c.deadline = -1, 0, 0
            return True
    return False


def stats() -> list[dict]:
    """uWSGI's "crons" list of the stats JSON."""
    return [{"minute": c.fields[0], "hour": c.fields[1], "day": c.fields[2], "month": c.fields[3],
             "week": c.fields[4], "command": c.command, "unique": int(c.unique), "pid": c.pid,
             "started_at": c.started_at} for c in _crons]


# ---- hooks ------------------------------------------------------------------------------------

def _master_start(server) -> None:
    for c in commands.configure_at_start(server, configure, "cron") or ():
        log(f"[uwsgi-cron] command \"{c.command}\" registered as cron task")


def _master_tick(server) -> None:
    if not _crons:
        return
    if commands.master_running(server):
        check()
    check_harakiri()


def _child_exited(pid: int, status: int) -> None:
    if _crons:
        child_exited(pid, status)


def _stats(d: dict) -> None:
    if _crons:
        d["crons"] = stats()


hooks.register("master_start", _master_start)
hooks.register("master_tick", _master_tick)
hooks.register("child_exited", _child_exited)
hooks.register("stats", _stats)


def _reset_for_tests() -> None:
    global _harakiri, _shell
    _crons.clear()
    _harakiri = 0
    _shell = "/bin/sh"
