"""The uWSGI spooler: task files in a directory (uwsgi.spool() writes them; spool_file.py has
the format) run by spooler processes the master forks beside the workers.

This module holds the options, the spool directories and their process slots, what the
processes and the apps share, spool() and what apps ask about the spoolers, and the language
plugins' spooler hooks (register_plugin). The processes' life in the master is
spooler_master.py (imported only when a spooler is configured), a spooler process's loop
spooler_process.py.

What the processes and the apps share lives in one MAP_SHARED block made before the first fork:
per slot its pid, whether a task is running, the tasks run, the respawns, the harakiri deadline,
the last task's time; and the frequency uwsgi.set_spooler_frequency() sets. uwsgi.spool() wakes
the idle processes of its directory at once with SIGUSR1, as uWSGI does; signals for target
"spooler" go down one socket pair every spooler process polls (one of them takes each).
"""

from __future__ import annotations

import mmap
import os
import signal
import struct

from uwsgid.config.options import Option, declare
from uwsgid.services import spool_file
from uwsgid.util.log import log

SPOOL_OK, SPOOL_RETRY, SPOOL_IGNORE = -2, -1, 0

declare(
    Option("spooler", "Q", needs_master=True, kind="str", multi=True, group="core", metavar="DIR",
           help="run a spooler on DIR (created if missing; several allowed): a process running the "
                "tasks uwsgi.spool() writes there"),
    Option("spooler-external", needs_master=True, kind="str", multi=True, group="core", metavar="DIR",
           help="spool tasks to DIR, managed by another instance's spooler (no process here)"),
    Option("spooler-processes", needs_master=True, kind="int", default=1, group="core", metavar="N",
           help="run N spooler processes on each --spooler DIR (they share its tasks, none runs twice)"),
    Option("spooler-frequency", needs_master=True, kind="int", default=30, group="core", metavar="SECS",
           aliases=("spooler-freq",),
           help="scan the spool dirs every SECS seconds (uwsgi.spool() wakes the spooler at once)"),
    Option("spooler-import", needs_master=True, kind="str", multi=True, group="core", metavar="MODULE|FILE",
           aliases=("spooler-pyimport", "spooler-py-import", "spooler-python-import"),
           help="import a Python module (or .py file) or run a .lua file in the spooler processes"),
    Option("spooler-chdir", needs_master=True, kind="str", group="core", metavar="DIR",
           help="chdir() to DIR before each spooler task"),
    Option("spooler-max-tasks", needs_master=True, kind="int", default=0, group="core", metavar="N",
           help="recycle a spooler process after N tasks (0 = never)"),
    Option("spooler-harakiri", needs_master=True, kind="int", default=0, group="core", metavar="SECS",
           help="kill a spooler process whose task (or signal handler) runs longer than SECS"),
    Option("spooler-ordered", needs_master=True, kind="flag", group="core",
           help="run the tasks in order: priority subdirectories (lowest number first), then by name"),
    Option("spooler-quiet", needs_master=True, kind="flag", group="core",
           help="do not log each spooled and each run task"),
    Option("spooler-signal-as-task", needs_master=True, kind="flag", group="core",
           help="count the signals a spooler handles as tasks (for --spooler-max-tasks)"),
    Option("spooler-cheap", needs_master=True, kind="flag", group="core",
           help="start a spooler only when its dir has tasks, and stop it when a scan finds none"),
    Option("touch-spoolers-reload", needs_master=True, kind="str", multi=True, group="core", metavar="FILE",
           help="restart the spooler processes (each after its current task) when FILE is touched"),
)

_HEAD = struct.Struct("<i4x")        # the frequency set by uwsgi.set_spooler_frequency (0: the option's)
_SLOT = struct.Struct("<iiqqqq")     # pid, running, tasks, respawns, harakiri deadline, last task (Unix s)
PID, RUNNING, TASKS, RESPAWNS, HARAKIRI, LAST_TASK = range(6)


class Settings:
    """The options, checked (setup)."""

    def __init__(self, opts=None):
        get = (lambda n, d: opts.get(n, d)) if opts is not None else (lambda n, d: d)
        self.processes = _int_opt(get, "spooler-processes", 1, 1)
        self.frequency = _int_opt(get, "spooler-frequency", 30, 1)
        self.max_tasks = _int_opt(get, "spooler-max-tasks", 0, 0)
        self.harakiri = _int_opt(get, "spooler-harakiri", 0, 0)
        self.chdir = get("spooler-chdir", None) or None
        self.imports = list(get("spooler-import", []) or [])
        self.ordered = bool(get("spooler-ordered", False))
        self.quiet = bool(get("spooler-quiet", False))
        self.signal_as_task = bool(get("spooler-signal-as-task", False))
        self.cheap = bool(get("spooler-cheap", False))
        self.touch = list(get("touch-spoolers-reload", []) or [])
        self.reload_mercy = _int_opt(get, "worker-reload-mercy", 60, 1)


def _int_opt(get, name: str, default: int, minimum: int) -> int:
    value = get(name, default)
    try:
        n = int(default if value is None else value)
    except (TypeError, ValueError):
        raise ValueError(f"--{name} {value!r}: not a number") from None
    if n < minimum:
        raise ValueError(f"--{name} {n}: must be >= {minimum}")
    return n


class _Plugin:
    def __init__(self, name: str, order: int, run, start=None, load=None):
        self.name, self.order, self.run, self.start, self.load = name, order, run, start, load


settings = Settings()
dirs: list[str] = []                 # per slot: the spool dir (realpath)
external: list[bool] = []            # per slot: --spooler-external (no process)
_plugins: list[_Plugin] = []
_shm: mmap.mmap | None = None
_signal_pair = None                  # (the master's end, the spoolers' end)
_priority_warned = False
me = -1                              # in a spooler process: its slot


# ---- plugins ---------------------------------------------------------------------------------

def register_plugin(name: str, order: int, run, start=None, load=None) -> None:
    """A language plugin's spooler hooks (uWSGI's plugin .spooler and .spooler_init), called in
    the spooler processes, plugins by `order` (the modifier1: Python before Lua):
      run(task_name: bytes, args: {bytes: bytes}, body: bytes | None) -> int: SPOOL_OK (done,
          the file goes), SPOOL_RETRY (kept for the next scan), SPOOL_IGNORE (not this
          plugin's: the next plugin is asked); the plugin logs its app's errors
      start(): once when the process starts (load what the app needs)
      load(spec) -> bool: run a --spooler-import value if it is of this plugin's kind
    Registering a name again replaces it."""
    _plugins[:] = [p for p in _plugins if p.name != name]
    _plugins.append(_Plugin(name, order, run, start, load))
    _plugins.sort(key=lambda p: p.order)


def plugins() -> list[_Plugin]:
    return list(_plugins)


# ---- set up (master, before the first fork) -----------------------------------------------------

def setup(opts, cwd: str | None = None) -> None:
    """Check the options, create the spool dirs and the shared block. ValueError: one line."""
    global settings, _shm, _signal_pair
    wanted = list(opts.get("spooler", []) or []) if opts is not None else []
    wanted_ext = list(opts.get("spooler-external", []) or []) if opts is not None else []
    if not wanted and not wanted_ext or dirs:
        return
    settings = Settings(opts)
    base = cwd or os.getcwd()
    if settings.chdir and not os.path.isdir(settings.chdir):
        raise ValueError(f"--spooler-chdir {settings.chdir}: no such directory")
    for i, spec in enumerate(settings.imports):
        if "/" in spec or spec.endswith((".py", ".lua")):
            path = os.path.join(base, spec)
            if not os.path.isfile(path):
                raise ValueError(f"--spooler-import {spec}: no such file")
            settings.imports[i] = path      # the spooler runs it after any --chdir
    for option, given, is_ext in [("spooler", d, False) for d in wanted] + [("spooler-external", d, True)
                                                                          for d in wanted_ext]:
        path = _make_dir(option, os.path.join(base, given))
        for _ in range(1 if is_ext else settings.processes):
            dirs.append(path)
            external.append(is_ext)
    _shm = mmap.mmap(-1, _HEAD.size + _SLOT.size * len(dirs), mmap.MAP_SHARED | mmap.MAP_ANONYMOUS)
    from uwsgid.services import channels, signals
    _signal_pair = channels.pair()
    signals.add_target("spooler", _deliver_signal)


def _make_dir(option: str, path: str) -> str:
    if not os.path.exists(path):
        try:
            os.mkdir(path, 0o750)        # uWSGI's mode for a spool dir it creates
        except OSError as exc:
            raise ValueError(f"--{option} {path}: cannot create it: {exc.strerror}") from None
    if not os.path.isdir(path):
        raise ValueError(f"--{option} {path}: not a directory")
    if not os.access(path, os.R_OK | os.W_OK | os.X_OK):
        raise ValueError(f"--{option} {path}: not readable, writable and searchable by this user")
    return os.path.realpath(path)


def configured() -> bool:
    return bool(dirs)


# ---- the shared block ---------------------------------------------------------------------------

def slot_get(idx: int, field: int) -> int:
    return _SLOT.unpack_from(_shm, _HEAD.size + _SLOT.size * idx)[field]


def slot_set(idx: int, field: int, value: int) -> None:
    off = _HEAD.size + _SLOT.size * idx
    values = list(_SLOT.unpack_from(_shm, off))
    values[field] = int(value)
    _SLOT.pack_into(_shm, off, *values)


def frequency() -> int:
    override = _HEAD.unpack_from(_shm, 0)[0] if _shm is not None else 0
    return override if override > 0 else settings.frequency


def set_frequency(secs: int) -> bool:
    """uwsgi.set_spooler_frequency(n): every spooler scans every n seconds from its next wait."""
    if secs < 1:
        raise ValueError(f"set_spooler_frequency: must be >= 1 second (got {secs})")
    if _shm is None:
        raise ValueError("set_spooler_frequency: no spooler is configured (--spooler DIR)")
    _HEAD.pack_into(_shm, 0, secs)
    return True


def spoolers_end():
    """In a spooler: the end of the signal pair it polls."""
    return _signal_pair[1]


def _deliver_signal(msg: bytes) -> int:
    from uwsgid.services import channels
    return int(channels.send(_signal_pair[0], msg, "the spooler"))


# ---- what apps call -----------------------------------------------------------------------------

def _target_dir(name: bytes | None) -> str:
    if not dirs:
        raise ValueError("spool: no spooler is configured (--spooler DIR)")
    if not name:
        return dirs[0]
    wanted = os.fsdecode(name)
    for d in dirs:
        if d == wanted:
            return d
    real = os.path.realpath(wanted)
    for d in dirs:
        if d == real:
            return d
    raise ValueError(f'spool: unable to find spooler "{wanted}" (the spoolers: {", ".join(sorted(set(dirs)))})')


def spool(args: dict[bytes, bytes], body: bytes | None = None) -> bytes:
    """Write a task (args: bytes -> bytes, `body` apart) and wake the spoolers of its dir; the
    task file's path. ValueError: a bad task, no such spooler, the dir refused the file."""
    global _priority_warned
    directory = _target_dir(args.get(b"spooler"))
    priority = args.get(b"priority") or None
    if priority is not None and not priority.isdigit():
        raise ValueError(f"spool: priority must be a number (a subdirectory of the spool dir), not {priority!r}")
    if priority is not None and not settings.ordered and not _priority_warned:
        _priority_warned = True
        log("[uwsgi-spooler] warning: tasks with a priority wait in a subdirectory that only a spooler "
            "started with --spooler-ordered runs (as uWSGI)")
    at = spool_file.parse_at(args[b"at"]) if b"at" in args else 0
    packed = spool_file.pack_vars(args.items())
    try:
        path = spool_file.write(directory, packed, body or b"", priority, at)
    except OSError as exc:
        raise ValueError(f"spool: cannot write a task in {directory}: {exc.strerror or exc}") from None
    if not settings.quiet:
        log(f"[spooler] written {len(packed) + len(body or b'') + 4} bytes to file {path}")
    wake(directory)
    return os.fsencode(path)


def wake(directory: str) -> None:
    """SIGUSR1 to the idle spoolers of `directory` (they scan at once)."""
    for idx, d in enumerate(dirs):
        if d != directory or external[idx]:
            continue
        pid = slot_get(idx, PID)
        if pid > 0 and not slot_get(idx, RUNNING) and pid != os.getpid():
            try:
                os.kill(pid, signal.SIGUSR1)
            except (ProcessLookupError, PermissionError):
                pass


def first_pid() -> int:
    return slot_get(0, PID) if dirs else 0


def all_pids() -> list[int]:
    return [slot_get(i, PID) for i in range(len(dirs))]


def jobs() -> list[bytes]:
    """The task files waiting in the first spool dir (uwsgi.spooler_jobs())."""
    return [os.fsencode(p) for p in spool_file.jobs(dirs[0])] if dirs else []


def in_spooler() -> bool:
    return me >= 0


def stats() -> list[dict]:
    """The stats JSON's "spoolers", as uWSGI's."""
    return [{"dir": d, "pid": slot_get(i, PID), "tasks": slot_get(i, TASKS),
             "respawns": slot_get(i, RESPAWNS), "running": slot_get(i, RUNNING)}
            for i, d in enumerate(dirs)]


def _reset_for_tests() -> None:
    global settings, _shm, _signal_pair, me, _priority_warned
    settings = Settings()
    dirs.clear()
    external.clear()
    if _signal_pair is not None:
        for s in _signal_pair:
            s.close()
    _shm = _signal_pair = None
    _priority_warned = False
    me = -1
