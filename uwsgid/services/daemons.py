"""External daemons attached to the master (uWSGI's core/daemons.c, docs "Managing external
daemons/services"):

    --attach-daemon CMD                  a foreground command; respawned when it dies
    --attach-control-daemon CMD          the same, and its death stops the instance
    --smart-attach-daemon PIDFILE[,FREQ] CMD    governed by its pidfile (it daemonizes itself)
    --smart-attach-daemon2 PIDFILE[,FREQ] CMD   the same, the master daemonizes it and writes the pidfile
    --attach-daemon2 cmd=..,freq=..,pidfile=..,control=..,daemonize=..,touch=F1;F2,stopsignal=..,
                     reloadsignal=..,stdin=..,uid=..,gid=..,ns_pid=..,chdir=..,max_throttle=..,notifypid=..
    --daemons-honour-stdin               keep the master's stdin (else /dev/null)

Each runs as `/bin/sh -c CMD` in its own session (its process group is signalled), output in the
log. The master starts them at its first tick (after the apps are loaded and the workers forked,
as uWSGI's master loop does), sees a dumb daemon die through the child_exited hook and respawns
it (uWSGI's throttle: a daemon dying within 3 s of its spawn waits 1 s and more before the next),
checks the pidfile of a smart daemon each second (a dead pid is respawned, after FREQ checks for
one that has not written its pidfile yet), and kills a daemon whose touch= file changed (then
respawned). On a stop or a reload (SIGHUP, which re-execs the master) a dumb daemon gets its
stopsignal (reloadsignal on a reload, when set), resent each second, then SIGKILL after
--reload-mercy (3 s when unset); the new master starts it again. A dumb daemon also dies with
the master, even a SIGKILL'd one (PR_SET_PDEATHSIG on the daemon's process; a command that is
one program is run as `exec CMD`, so that process is the program itself, not a shell waiting for
it; the further processes of a compound command (`a; b`, `a | b`) are left to finish then).

Smart daemons (with a pidfile) are deliberately left running across reloads and stops, as in
uWSGI (for a database, a cache: a brutal kill could lose data): the next master adopts the pid
its pidfile names. notifypid=1 sends them the stopsignal on a stop, reloadsignal (else SIGHUP)
on a reload. The legion forms are refused: there are no legions here.
"""

from __future__ import annotations

import os
import signal
import time

from uwsgid.config.options import Option, declare
from uwsgid.services import commands
from uwsgid.util import hooks
from uwsgid.util.log import log, log_exception
from uwsgid.util.process import die_with_parent
from uwsgid.util.touch import TouchFiles

declare(
    Option("attach-daemon", needs_master=True, kind="str", multi=True, group="core", metavar="CMD",
           help="run CMD (a shell command that stays in the foreground) beside the instance: respawned "
                "when it dies, stopped with the instance"),
    Option("attach-control-daemon", needs_master=True, kind="str", multi=True, group="core", metavar="CMD",
           help="as --attach-daemon, and the instance stops when CMD dies"),
    Option("smart-attach-daemon", needs_master=True, kind="str", multi=True, group="core",
           metavar="PIDFILE[,FREQ] CMD",
           help="run CMD, which daemonizes and writes PIDFILE; respawned when that pid dies; left running "
                "across reloads and stops (adopted again through PIDFILE)"),
    Option("smart-attach-daemon2", needs_master=True, kind="str", multi=True, group="core",
           metavar="PIDFILE[,FREQ] CMD",
           help="as --smart-attach-daemon for a CMD that does not daemonize: the master daemonizes it "
                "and writes PIDFILE"),
    Option("attach-daemon2", needs_master=True, kind="str", multi=True, group="core",
           metavar="cmd=CMD[,pidfile=F][,daemonize=1][,freq=N][,control=1][,touch=F1;F2][,stopsignal=N]...",
           help="attach a daemon, key=value form: cmd, freq, pidfile, control, daemonize, touch, "
                "stopsignal, reloadsignal, stdin, uid, gid, ns_pid, chdir, max_throttle, notifypid"),
    Option("daemons-honour-stdin", needs_master=True, kind="flag", group="core",
           help="give the attached daemons the master's stdin instead of /dev/null"),
    Option("legion-attach-daemon", kind="str", multi=True, group="core", metavar="LEGION CMD",
           help="refused: there are no legions here (use --attach-daemon)"),
    Option("legion-smart-attach-daemon", kind="str", multi=True, group="core", metavar="LEGION PIDFILE CMD",
           help="refused: there are no legions here (use --smart-attach-daemon)"),
    Option("legion-smart-attach-daemon2", kind="str", multi=True, group="core", metavar="LEGION PIDFILE CMD",
           help="refused: there are no legions here (use --smart-attach-daemon2)"),
)

_KEYS2 = ("command", "cmd", "exec", "freq", "pidfile", "control", "daemonize", "daemon", "touch",
          "stopsignal", "stop_signal", "reloadsignal", "reload_signal", "stdin", "uid", "gid", "ns_pid",
          "chdir", "max_throttle", "notifypid", "legion")
_GRACE_DEFAULT = 3          # uWSGI: --reload-mercy, else 3 seconds
_THROTTLE_MAX = 300


class Daemon:
    __slots__ = ("command", "pidfile", "freq", "daemonize", "control", "stop_signal", "reload_signal",
                 "honour_stdin", "uid", "gid", "ns_pid", "chdir", "max_throttle", "notifypid", "touch",
                 "pid", "status", "registered", "respawns", "last_spawn", "has_daemonized",
                 "pidfile_checks", "touches")

    def __init__(self, command: str, pidfile: str | None = None, freq: int = 10, daemonize: bool = False,
                 control: bool = False, stop_signal: int = signal.SIGTERM, reload_signal: int = 0,
                 honour_stdin: bool = False, uid: int = 0, gid: int = 0, ns_pid: bool = False,
                 chdir: str | None = None, max_throttle: int = 0, notifypid: bool = False, touch=()):
        self.command = command
        self.pidfile = pidfile
        self.freq = freq
        self.daemonize = daemonize
        self.control = control
        self.stop_signal = int(stop_signal)
        self.reload_signal = int(reload_signal)
        self.honour_stdin = honour_stdin
        self.uid, self.gid = uid, gid
        self.ns_pid = ns_pid
        self.chdir = chdir
        self.max_throttle = max_throttle
        self.notifypid = notifypid
        self.touch = list(touch)
        self.pid = 0                    # > 0: the process we watch (our child, or the pidfile's pid)
        self.status = 0                 # 0 never started, 1 just started, 2 seen alive in its pidfile
        self.registered = False         # False: never (re)spawned (before the first tick, after the stop)
        self.respawns = 0               # spawns so far, uWSGI's counter (the first one included)
        self.last_spawn = 0
        self.has_daemonized = False     # the child we forked exited (a smart daemon forking away)
        self.pidfile_checks = 0
        self.touches = TouchFiles(self.touch, log)    # the first look at the files


_daemons: list[Daemon] = []
_honour_stdin = False
_shell = "/bin/sh"
_started = False


# ---- the option values ------------------------------------------------------------------------

def parse_simple(option: str, value: str) -> Daemon:
    """--attach-daemon / --attach-control-daemon CMD, --smart-attach-daemon[2] PIDFILE[,FREQ] CMD."""
    value = value.strip()
    if not value:
        raise ValueError(f"--{option}: no command")
    if not option.startswith("smart-"):
        return Daemon(value, control=option == "attach-control-daemon")
    head, sep, command = value.partition(" ")
    if not sep or not command.strip():
        raise ValueError(f"--{option} {value!r}: invalid syntax, expected PIDFILE[,FREQ] COMMAND")
    pidfile, comma, freq = head.partition(",")
    return Daemon(command.strip(), pidfile=os.path.abspath(pidfile),
                  freq=commands.integer(freq, option, "FREQ", 1) if comma else 10,
                  daemonize=option == "smart-attach-daemon2")


def parse_keyval(value: str, option: str = "attach-daemon2") -> Daemon:
    kv = commands.kvlist(value, option, _KEYS2)
    command = kv.get("command") or kv.get("cmd") or kv.get("exec")
    if not command or not command.strip():
        raise ValueError(f"--{option} {value}: a 'cmd' key is needed")
    if "legion" in kv:
        raise commands.Refused(f"--{option} {value}: not supported: there are no legions here, so this daemon "
                               "never runs; drop legion= (every instance then runs it)")

    def flag(*keys: str) -> bool:
        return any(commands.boolean(kv[k], option, k) for k in keys if k in kv)

    def sig(*keys: str, default: int) -> int:
        for k in keys:
            if k in kv:
                return commands.signal_number(kv[k], option, k)
        return default

    pidfile = kv.get("pidfile")
    d = Daemon(command.strip(), pidfile=os.path.abspath(pidfile) if pidfile else None,
               freq=commands.integer(kv["freq"], option, "freq", 1) if "freq" in kv else 10,
               daemonize=flag("daemonize", "daemon"), control=flag("control"),
               stop_signal=sig("stopsignal", "stop_signal", default=signal.SIGTERM),
               reload_signal=sig("reloadsignal", "reload_signal", default=0),
               honour_stdin=flag("stdin"),
               uid=commands.user_id(kv["uid"], option) if kv.get("uid") else 0,
               gid=commands.group_id(kv["gid"], option) if kv.get("gid") else 0,
               ns_pid=flag("ns_pid"), chdir=kv.get("chdir") or None,
               max_throttle=commands.integer(kv["max_throttle"], option, "max_throttle", 0)
               if "max_throttle" in kv else 0,
               notifypid=flag("notifypid"),
               touch=[p for p in kv.get("touch", "").split(";") if p.strip()])
    if d.daemonize and not d.pidfile:
        raise ValueError(f"--{option} {value}: daemonize=1 needs pidfile= (the master finds the "
                         "daemonized process through it)")
    if d.control and d.pidfile:
        raise ValueError(f"--{option} {value}: control=1 applies to a daemon without pidfile= "
                         "(uWSGI ignores it on a smart daemon)")
    if d.chdir and not os.path.isdir(d.chdir):
        raise ValueError(f"--{option} {value}: chdir={d.chdir}: no such directory")
    return d


def configure(opts) -> list[Daemon]:
    """Read the options into the table (ValueError naming the first bad one; the legion forms
    are refused: commands.refuse_or_warn)."""
    global _honour_stdin, _shell
    table = []
    for option in ("attach-daemon", "attach-control-daemon", "smart-attach-daemon", "smart-attach-daemon2"):
        table += [parse_simple(option, v) for v in opts.get(option, []) or []]
    for v in opts.get("attach-daemon2", []) or []:
        try:
            table.append(parse_keyval(v))
        except commands.Refused as exc:
            commands.refuse_or_warn(opts, str(exc))
    for name in ("legion-attach-daemon", "legion-smart-attach-daemon", "legion-smart-attach-daemon2"):
        for v in opts.get(name, []) or []:
            commands.refuse_or_warn(opts, f"--{name} {v}: not supported: there are no legions here, so this "
                                          f"daemon never runs; use --{name[len('legion-'):]} (every instance runs it)")
    _daemons[:] = table
    _honour_stdin = bool(opts.get("daemons-honour-stdin", False))
    _shell = commands.shell(opts)
    return table


# ---- starting one ------------------------------------------------------------------------------

def throttle_for(d: Daemon, now: int) -> int:
    """Seconds the next spawn waits (uWSGI's): none unless the last spawn was 3 s ago or less,
    then the spawns so far minus the seconds since the last one, at least 1, at most
    max_throttle (else 300)."""
    if now - d.last_spawn > 3:
        return 0
    throttle = max(1, d.respawns - (now - d.last_spawn))
    return min(throttle, d.max_throttle if d.max_throttle > 0 else _THROTTLE_MAX)


def spawn(d: Daemon, now: int | None = None) -> None:
    """uWSGI's uwsgi_spawn_daemon: fork; the child waits out the throttle, then execs."""
    if not d.registered:
        return
    now = int(time.time()) if now is None else now
    throttle = throttle_for(d, now)
    respawning = d.respawns > 0
    master_pid = os.getpid()

    def prepare() -> None:
        _prepare_child(d, master_pid, throttle, respawning)

    # a dumb daemon dies with the master: its program has to be the process that is told
    command = d.command if d.pidfile else commands.exec_form(d.command)
    try:
        pid = commands.spawn(command, _shell, prepare, "[uwsgi-daemons] unable to spawn")
    except OSError as exc:
        log(f"[uwsgi-daemons] fork() for \"{d.command}\": {exc.strerror or exc}")
        return
    d.has_daemonized = False
    d.pid = pid
    d.status = 1
    d.pidfile_checks = 0
    d.respawns += 1
    d.last_spawn = now


def _prepare_child(d: Daemon, master_pid: int, throttle: int, respawning: bool) -> None:
    """In the forked child, uWSGI's order: chdir, pid namespace, gid/uid, daemonize + pidfile,
    stdin, new session, parent-death signal (after the uid change, which clears it), throttle."""
    if not d.pidfile or d.ns_pid:
        commands.load_libc()
    if d.chdir:
        os.chdir(d.chdir)
    parent = master_pid
    if d.ns_pid:
        os.setsid()
        commands.unshare_pid_namespace()
        inner = os.fork()
        if inner:
            # this process stands for the daemon: it dies with the master, SIGTERM ends it
            # (the namespace's pid 1 follows through its own parent-death signal)
            die_with_parent(master_pid)
            signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals() - {signal.SIGTERM})
            os.waitpid(inner, 0)
            os._exit(0)
        parent = None       # pid 1 of the namespace: its parent's pid reads 0 from here
    if d.gid:
        os.setgid(d.gid)
        if os.getuid() == 0:
            os.setgroups([d.gid])
    if d.uid:
        os.setuid(d.uid)
    if d.daemonize:
        if os.fork():
            os._exit(0)
        with open(d.pidfile, "w") as f:
            f.write(f"{os.getpid()}\n")
    if not (_honour_stdin or d.honour_stdin):
        commands.stdin_devnull()
    os.setsid()
    if not d.pidfile:
        die_with_parent(parent)
    if throttle:
        log(f"[uwsgi-daemons] throttling \"{d.command}\" for {throttle} seconds")
        time.sleep(throttle)
    log(f"[uwsgi-daemons] {'re' if respawning else ''}spawning \"{d.command}\" "
        f"(uid: {os.getuid()} gid: {os.getgid()})")


# ---- the master's work ------------------------------------------------------------------------

def spawn_all(now: int | None = None) -> None:
    """First tick (uwsgi_daemons_spawn_all): start each daemon, or adopt the live pid its
    pidfile names (a smart daemon left running by the previous master)."""
    for d in _daemons:
        if d.registered:
            continue
        d.registered = True
        if d.pidfile:
            alive = commands.read_pidfile(d.pidfile)
            if alive > 0:
                d.pid = alive
                log(f"[uwsgi-daemons] found valid/active pidfile for \"{d.command}\" (pid: {alive})")
                continue
        spawn(d, now)


def smart_check(now: int | None = None) -> None:
    """Each second (uwsgi_daemons_smart_check): follow the pidfiles of the smart daemons."""
    for d in _daemons:
        if not d.pidfile or not d.registered:
            continue
        alive = commands.read_pidfile(d.pidfile)
        if alive <= 0:
            if d.status == 2:
                spawn(d, now)
                continue
            d.pidfile_checks += 1
            if d.pidfile_checks >= d.freq:
                if not d.has_daemonized:
                    log(f"[uwsgi-daemons] \"{d.command}\" (pid: {d.pid}) did not daemonize !!!")
                    d.pidfile_checks = 0
                else:
                    log(f"[uwsgi-daemons] found changed pidfile for \"{d.command}\" "
                        f"(old_pid: {d.pid} new_pid: {alive})")
                    spawn(d, now)
        elif alive != d.pid:
            log(f"[uwsgi-daemons] found changed pid for \"{d.command}\" (old_pid: {d.pid} new_pid: {alive})")
            d.pid = alive
        else:
            d.status = 2


def check_touches() -> None:
    """A daemon whose touch= file changed gets its stopsignal (and is respawned when it dies)."""
    for d in _daemons:
        if d.pid <= 0 or not d.touch:
            continue
        path = d.touches.changed()
        if path is not None:
            log(f"*** {path} has been touched... reloading daemon \"{d.command}\" (pid: {d.pid}) !!! ***")
            commands.signal_group(d.pid, d.stop_signal)


def child_exited(pid: int, status: int, running: bool, stop_instance=None) -> bool:
    """A child of the master died (uwsgi_daemon_check_pid_reload, then _death): respawn a dumb
    daemon while the instance runs (a control daemon stops it instead), else forget it; a smart
    daemon's child exiting means it daemonized."""
    for d in _daemons:
        if d.pid != pid:
            continue
        if d.pidfile:
            if not d.has_daemonized:
                d.has_daemonized = True
            else:
                log(f"[uwsgi-daemons] BUG !!! daemon \"{d.command}\" has already daemonized !!!")
            return True
        if running and d.control:
            log(f"[uwsgi-daemons] control daemon \"{d.command}\" (pid: {pid}) died: stopping the instance")
            if stop_instance is not None:
                stop_instance()
        elif running:
            spawn(d)
            return True
        log(f"daemon \"{d.command}\" (pid: {pid}) annihilated")
        d.pid = -1
        return True
    return False


def stop(reloading: bool, grace: float = _GRACE_DEFAULT) -> None:
    """The instance stops or reloads (uwsgi_detach_daemons): the dumb daemons get their signal
    (each second) until they die or `grace` is over, then SIGKILL; smart ones are left running
    (notifypid=1: told with a signal)."""
    waiting: dict[int, Daemon] = {}
    for d in _daemons:
        if d.pid > 0 and not d.pidfile:
            log(f"[uwsgi-daemons] stopping daemon (pid: {d.pid}): {d.command}")
            waiting[d.pid] = d
        elif d.pid > 0 and d.pidfile and d.notifypid:
            commands.signal_group(d.pid, (d.reload_signal or signal.SIGHUP) if reloading else d.stop_signal)
        d.registered = False            # nothing is respawned from here on
    deadline = time.monotonic() + grace
    next_signal = 0.0
    while waiting:
        now = time.monotonic()
        if now >= next_signal:
            for pid, d in waiting.items():
                commands.signal_group(pid, d.reload_signal if reloading and d.reload_signal > 0 else d.stop_signal)
            next_signal = now + 1.0
        for pid in list(waiting):
            if commands.reaped(pid):
                waiting.pop(pid).pid = -1
        if not waiting:
            break
        if now >= deadline:
            for pid, d in waiting.items():
                log(f"[uwsgi-daemons] daemon did not die in time, killing (pid: {pid}): {d.command}")
                commands.signal_group(pid, signal.SIGKILL)
            # reaped when the kernel is done (bounded: a process in uninterruptible sleep waits)
            end = time.monotonic() + 2.0
            while waiting and time.monotonic() < end:
                for pid in [p for p in waiting if commands.reaped(p)]:
                    waiting.pop(pid).pid = -1
                time.sleep(0.02)
            for d in waiting.values():
                d.pid = -1
            break
        time.sleep(0.05)


def stats() -> list[dict]:
    """uWSGI's "daemons" list of the stats JSON ("respawns": how often it was started again)."""
    return [{"cmd": d.command, "pid": max(d.pid, 0), "respawns": max(d.respawns - 1, 0)} for d in _daemons]


# ---- hooks ------------------------------------------------------------------------------------

def _master_start(server) -> None:
    global _started
    if commands.configure_at_start(server, configure, "attach-daemon") is not None:
        _started = False


def _master_tick(server) -> None:
    global _started
    if not _daemons or not commands.master_running(server):
        return
    if not _started:
        _started = True
        spawn_all()
        return
    smart_check()
    check_touches()


def _child_exited(pid: int, status: int) -> None:
    if not _daemons:
        return
    from uwsgid.plugins import api as core_api
    server = core_api.server
    master = getattr(server, "master", None)
    child_exited(pid, status, commands.master_running(server), getattr(master, "stop_gracefully", None))


def _shutdown(server) -> None:
    if not _daemons:
        return
    from uwsgid.server.master import RELOADING
    opts = server.opts
    grace = opts.reload_mercy if opts.is_set("reload-mercy") and opts.reload_mercy else _GRACE_DEFAULT
    try:
        stop(commands.master_state(server) == RELOADING, grace)
    except Exception:
        log_exception("[uwsgi-daemons] stopping the daemons:")


def _stats(d: dict) -> None:
    if _daemons:
        d["daemons"] = stats()


hooks.register("master_start", _master_start)
hooks.register("master_tick", _master_tick)
hooks.register("child_exited", _child_exited)
hooks.register("stats", _stats)
hooks.register("shutdown", _shutdown)


def _reset_for_tests() -> None:
    global _honour_stdin, _shell, _started
    _daemons.clear()
    _honour_stdin = False
    _shell = "/bin/sh"
    _started = False
