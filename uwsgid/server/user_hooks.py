"""uWSGI's hooks (core/hooks.c, docs "Hooks"): ACTION:ARG lines run at given moments of the
server's life, and the --exec-* (a shell command) and --call-* (a function) shortcuts.

    phase            when, where                                          exec-/call-
    asap             right after the options are read (every start)       yes
    pre-jail         after asap, on the first start only (not on reloads) yes
    in-jail          after pre-jail, every start                          yes
    as-root          just before the privileges drop (started as root)    yes (call- failure not fatal)
    as-user          just after it (started as root)                      yes
    pre-app/post-app around the apps' loading (the master; each worker with --lazy-apps)
    post-fork        in each worker after its fork
    accepting        in each worker when it starts accepting; accepting1 worker 1 only;
                     -once: the first time only, not after a respawn (again after a reload)
    master-start     in the master, once its workers are spawned
    as-gateway       in the --http router process
    as-mule          in each mule process (uwsgid.services.mules)
    as-user-atexit   in the master, before it exits or re-execs (failures not fatal)
    touch FILE ACTION  in the master, when FILE's mtime changes (failures not fatal)

In order: the --hook-PHASE lines, then --exec-PHASE, then --call-PHASE. A failure stops the
start (exit 1) in every phase but the three said; in a worker or the master it destroys the
instance ("FATAL hook failed"), as in uWSGI. `!ACTION:ARG` keeps the line out of the log.
Actions: uwsgid.server.hook_actions. The Emperor's and vassals' hooks are refused (there is
no Emperor here); post-jail never runs (there is no jail), as in uWSGI without one.
"""

from __future__ import annotations

import os
import signal

from uwsgid.config.options import Option, declare
from uwsgid.server import hook_actions
from uwsgid.server.hook_actions import HookExit
from uwsgid.util.log import log
from uwsgid.util.touch import TouchFiles

# phase -> (label in the log, has --exec-/--call- forms, failures fatal, --call- failures fatal)
PHASES = {
    "asap": ("asap", True, True, True),
    "pre-jail": ("pre-jail", True, True, True),
    "in-jail": ("in-jail", True, True, True),
    "as-root": ("as root", True, True, False),
    "as-user": ("as user", True, True, True),
    "as-user-atexit": ("atexit", True, False, False),
    "pre-app": ("pre app", True, True, True),
    "post-app": ("post app", True, True, True),
    "post-fork": ("post-fork", False, True, True),
    "accepting": ("accepting", False, True, True),
    "accepting1": ("accepting1", False, True, True),
    "accepting-once": ("accepting-once", False, True, True),
    "accepting1-once": ("accepting1-once", False, True, True),
    "master-start": ("master-start", False, True, True),
    "as-gateway": ("as-gateway", False, True, True),
    "as-mule": ("as-mule", False, True, True),
}
NEVER_RUN = ("hook-post-jail", "exec-post-jail", "call-post-jail")
EMPEROR = ("hook-emperor-start", "hook-emperor-stop", "hook-emperor-reload", "hook-emperor-lost",
           "hook-as-vassal", "hook-as-emperor", "hook-as-on-demand-vassal", "hook-as-on-config-vassal",
           "hook-as-emperor-before-vassal", "hook-as-vassal-before-drop", "hook-as-emperor-setns",
           "exec-as-vassal", "exec-as-emperor", "call-as-vassal", "call-as-vassal1", "call-as-vassal3",
           "call-as-emperor", "call-as-emperor1", "call-as-emperor2", "call-as-emperor4")


WHEN = {
    "asap": "as soon as the options are read",
    "pre-jail": "early on the first start (not on reloads)",
    "in-jail": "early on every start",
    "as-root": "before the privileges drop (only when started as root)",
    "as-user": "after the privileges drop (only when started as root)",
    "as-user-atexit": "when the master exits or reloads",
    "pre-app": "before the apps load (in each worker with --lazy-apps)",
    "post-app": "after the apps load (in each worker with --lazy-apps)",
    "post-fork": "in each worker after its fork",
    "accepting": "in each worker when it starts accepting",
    "accepting1": "in worker 1 when it starts accepting",
    "accepting-once": "in each worker when it starts accepting, not after a respawn",
    "accepting1-once": "in worker 1 when it starts accepting, not after a respawn",
    "master-start": "in the master once it runs",
    "as-gateway": "in the --http router process",
    "as-mule": "in each mule",
}


def _declare() -> None:
    opts = []
    for phase, (_, exec_call, _, _) in PHASES.items():
        when = WHEN[phase]
        opts.append(Option(f"hook-{phase}", kind="str", multi=True, metavar="ACTION:ARG",
                           help=f"run the hook action {when} (exec, call, mkdir, write, unix_signal, print, ...)"))
        if exec_call:
            opts.append(Option(f"exec-{phase}", kind="str", multi=True, metavar="CMD",
                               help=f"run the shell command {when}"))
            opts.append(Option(f"call-{phase}", kind="str", multi=True, metavar="FUNC",
                               help=f"call the function (a Python package.module.func, or a C symbol) {when}"))
    opts.append(Option("hook-touch", kind="str", multi=True, needs_master=True, metavar="FILE ACTION:ARG",
                       help="run the hook action when FILE is modified or touched"))
    for name in NEVER_RUN:
        opts.append(Option(name, kind="str", multi=True, help="never runs here: there is no jail (as uWSGI without one)"))
    for name in EMPEROR:
        opts.append(Option(name, kind="str", multi=True, help="refused: there is no Emperor here"))
    declare(*opts)


_declare()


class HookFailed(Exception):
    """A fatal hook failed: the start stops (exit `code`), or the instance is destroyed."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


# signal number -> fn(master): set by unix_signal hooks of the master process (Master.handle_signal)
_master_signals: dict[int, object] = {}
_skipped: set[str] = set()        # hook lines refused at start (the warning said so): not run


def master_signal(signum: int):
    return _master_signals.get(signum)


class Context:
    """What an action may need to know about the process running it."""

    def __init__(self, opts, server=None, worker=None):
        self.opts = opts
        self.server = server
        self.worker = worker

    def master(self):
        server = self.server
        if server is None or self.worker is not None:
            return None
        master = getattr(server, "master", None)
        return master if master is not None and os.getpid() == server.master_pid else None

    def may_be_master(self) -> bool:
        """This process is the master, or will be (a hook run before the master exists)."""
        if self.worker is not None:
            return False
        if self.server is None:
            return bool(self.opts.master)
        return self.master() is not None or (getattr(self.server, "master", None) is None and bool(self.opts.master))

    def set_master_signal(self, signum: int, fn) -> None:
        _master_signals[signum] = fn
        # the master's signal handlers only wake its loop (uwsgid.server.master); a signal it
        # does not handle itself gets the same kind of handler, so that the loop hears it
        if signal.getsignal(signum) in (signal.SIG_DFL, signal.SIG_IGN, None):
            signal.signal(signum, lambda s, f: None)


# ---- checking the lines at start ------------------------------------------------------------------

def _split(spec: str) -> tuple[str, str, bool]:
    """'ACTION:ARG' -> (action, arg, private)."""
    action, sep, arg = spec.partition(":")
    if not sep or not action:
        raise HookFailed(f"invalid hook syntax, must be hook:args (got {spec!r})")
    private = action.startswith("!")
    return action[1:] if private else action, arg, private


def _check_line(option: str, spec: str) -> str | None:
    """None when the line can run; else why it is refused. Raises HookFailed on a bad line."""
    try:
        action, _, _ = _split(spec)
    except HookFailed as e:
        raise HookFailed(f"--{option} {spec}: {e}") from None
    if action in hook_actions.REFUSED:
        return f"--{option} {spec}: not run: {hook_actions.REFUSED[action]}"
    if action not in hook_actions.ACTIONS:
        raise HookFailed(f"--{option} {spec}: hook action not found: {action}")
    return None


def check(opts) -> list[str]:
    """Validate every hook line before anything runs. Raises HookFailed (exit 1) on a bad line
    (uWSGI exits too); returns the warnings for lines that will not run (exit 1 with --strict)."""
    warnings = []
    for phase in PHASES:
        for spec in opts.get(f"hook-{phase}") or ():
            why = _check_line(f"hook-{phase}", spec)
            if why:
                _skipped.add(spec)
                warnings.append(why)
    for spec in opts.get("hook-touch") or ():
        path, sep, line = spec.partition(" ")
        if not sep or not line.strip():
            raise HookFailed(f"--hook-touch {spec}: must be <file> <action:arg>")
        why = _check_line("hook-touch", line.strip())
        if why:
            _skipped.add(line.strip())
            warnings.append(why)
    for name in NEVER_RUN:
        for spec in opts.get(name) or ():
            warnings.append(f"--{name} {spec}: never runs: uWSGI runs it only inside a jail, and this server makes none")
    for name in EMPEROR:
        for spec in opts.get(name) or ():
            warnings.append(f"--{name} {spec}: refused: there is no Emperor here (this server runs one instance; "
                            f"use the service manager's start/stop hooks)")
    return warnings


# ---- running ----------------------------------------------------------------------------------------

def has(phase: str, opts) -> bool:
    exec_call = PHASES[phase][1]
    return bool(opts.get(f"hook-{phase}") or (exec_call and (opts.get(f"exec-{phase}") or opts.get(f"call-{phase}"))))


def run_lines(lines, label: str, ctx: Context, fatal: bool) -> bool:
    """Run ACTION:ARG lines; False when one failed (stops at the first failure when fatal)."""
    ok = True
    for spec in lines:
        if spec in _skipped:
            continue
        action, arg, private = _split(spec)
        log(f"running --- PRIVATE HOOK --- ({label})..." if private else f"running \"{spec}\" ({label})...")
        fn = hook_actions.ACTIONS.get(action)
        if fn is None:
            log(f"hook action not found: {action}")
            ret = -1
        else:
            try:
                ret = fn(arg, ctx)
            except HookExit:
                raise
            except Exception as e:      # an action must not take the process down with a traceback
                log(f"uwsgi: hook \"{spec}\" failed: {e.__class__.__name__}: {e}")
                ret = -1
        if ret != 0:
            ok = False
            if fatal:
                return False
    return ok


def run(phase: str, opts, server=None, worker=None) -> None:
    """Run a phase. Raises HookFailed when a fatal one failed, HookExit for the exit action."""
    label, exec_call, fatal, call_fatal = PHASES[phase]
    if not has(phase, opts):
        return
    ctx = Context(opts, server, worker)
    if not run_lines(opts.get(f"hook-{phase}") or (), label, ctx, fatal) and fatal:
        raise HookFailed(f"a --hook-{phase} action failed")
    if not exec_call:
        return
    for cmd in opts.get(f"exec-{phase}") or ():
        if phase in ("as-user", "as-user-atexit"):
            log(f"running \"{cmd}\" (as uid: {os.getuid()} gid: {os.getgid()}) ...")
        else:
            log(f"running \"{cmd}\" ({label})...")
        rc = hook_actions.run_command(cmd)
        if rc != 0:
            log(f"command \"{cmd}\" exited with non-zero code: {rc}")
            if fatal:
                raise HookFailed(f"--exec-{phase} {cmd} failed")
    for name in opts.get(f"call-{phase}") or ():
        if hook_actions.ACTIONS["call"](name, ctx) != 0 and call_fatal:
            raise HookFailed(f"--call-{phase} {name} failed")


def fatal_in_master(master, e) -> None:
    """A fatal hook of the master failed (or the exit action ran): the instance goes."""
    if not isinstance(e, HookExit):
        log("FATAL hook failed, destroying instance")
    master.exit_code = e.code
    master.kill_all()


def fatal_in_child(server, e) -> int:
    """A fatal hook failed in a worker or the router: under a master the whole instance goes
    (uWSGI's way: SIGINT to the master). Returns the process's exit code."""
    if isinstance(e, HookExit):
        return e.code
    log("FATAL hook failed, destroying instance")
    if server is not None and server.master is not None and os.getpid() != server.master_pid:
        try:
            os.kill(server.master_pid, signal.SIGINT)
        except ProcessLookupError:
            pass
    return e.code


class TouchHooks:
    """--hook-touch FILE ACTION: the master runs ACTION when FILE is touched (uwsgid.util.touch)."""

    def __init__(self, opts, server):
        self.ctx = Context(opts, server)
        files: dict[str, list[str]] = {}
        for spec in opts.get("hook-touch") or ():
            path, _, line = spec.partition(" ")
            files.setdefault(path, []).append(line.strip())
        self.touches = TouchFiles(files.items(), log)

    def check(self) -> None:
        while True:
            lines = self.touches.changed()
            if lines is None:
                return
            try:
                run_lines(lines, "touch", self.ctx, fatal=False)
            except HookExit as e:
                fatal_in_master(self.ctx.server.master, e)
                return
