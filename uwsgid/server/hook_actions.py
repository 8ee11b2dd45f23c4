"""The actions of uWSGI's hooks (core/hooks.c), `ACTION:ARG` in --hook-* options.

Each action is fn(arg, ctx) -> int: 0 success, else failure (the caller decides whether a
failure is fatal, as uWSGI's phases do). `ctx` is uwsgid.server.user_hooks.Context.

    exec:CMD  safeexec:CMD (its failure ignored)        /bin/sh -c CMD, waited for
    call:FUNC [ARG]  callret  callint:FUNC N  callintret
        FUNC is one of the master's named actions (uwsgid.server.master_actions: in the
        master only), a Python callable `package.module.func` (called with ARG when given),
        or a C function of the process (found with dlsym, as uWSGI does: `void f(char *)`).
        The *ret forms fail when the function returns non-zero.
    cd/chdir:DIR  mkdir:DIR  putenv:K=V  chmod:FILE MODE  chown:FILE USER GROUP
    chown2:FILE UID GID  sticky:FILE  create/creat:FILE  unlink:FILE
    write:FILE TEXT  writen (adds a newline)  append  appendn  writefifo:FIFO TEXT (no reader: no error)
    hostname:NAME (root only)  print/log:TEXT  exit[:CODE]
    unix_signal:SIGNUM FUNC   FUNC handles the signal from now on (in the master: a named
        action such as gracefully_kill_them_all, or a Python callable given the signal number)
    wait_for_fs/wait_for_file/wait_for_dir:PATH  wait_for_socket:ADDR   (up to
        --wait-for-fs-timeout / --wait-for-socket-timeout: uwsgid.server.waits)
    spinningfifo:FIFO TEXT    writefifo that waits until a reader appears
    rpc:FUNC[@NODE] ARGS...   retryrpc (every 2 s until it succeeds): given by a higher layer
        through register() (uwsgid.main registers the shared services' RPC)
    alarm:NAME MESSAGE        raise an --alarm (registered by uwsgid.services.alarm)
"""

from __future__ import annotations

import errno
import os
import signal
import time

from uwsgid.server import master_actions, waits
from uwsgid.util.log import log

# Known to uWSGI, not done here: refused at start with the reason.
REFUSED = {
    "mount": "mounting filesystems is not supported: mount them before starting the server",
    "umount": "unmounting filesystems is not supported: unmount them from the service manager",
}


class HookExit(Exception):
    """The exit action: the process ends with `code`."""

    def __init__(self, code: int):
        super().__init__(code)
        self.code = code


def _two(arg: str, action: str, syntax: str) -> tuple[str, str] | None:
    first, sep, rest = arg.partition(" ")
    if not sep:
        log(f"invalid hook {action} syntax, must be: {syntax}")
        return None
    return first, rest


def _fail(action: str, what: str, e: OSError) -> int:
    log(f"uwsgi: hook {action} {what}: {e.strerror or e}")
    return -1


# ---- processes and functions ------------------------------------------------------------------

def run_command(cmd: str) -> int:
    """/bin/sh -c CMD, waited for: its exit status (128+N when killed by signal N)."""
    import subprocess  # only hooks need it
    try:
        rc = subprocess.call(["/bin/sh", "-c", cmd], close_fds=True)
    except OSError as e:
        log(f"uwsgi: cannot run \"{cmd}\": {e.strerror}")
        return -1
    return 128 - rc if rc < 0 else rc


def _exec(arg: str, ctx) -> int:
    rc = run_command(arg)
    if rc != 0:
        log(f"command \"{arg}\" exited with non-zero code: {rc}")
    return rc


def _safeexec(arg: str, ctx) -> int:
    _exec(arg, ctx)
    return 0


def resolve(name: str, ctx, c_restype=None):
    """FUNC of a call/unix_signal hook -> a callable taking positional args, or None.
    Master actions (in the master) take no argument."""
    action = master_actions.ACTIONS.get(name)
    if action is not None:
        master = ctx.master()
        if master is None:
            log(f"uwsgi: {name} is an action of the master: only hooks run by the master may call it")
            return None
        return lambda *args: action(master)
    if "." in name:
        return _python_callable(name)
    import ctypes  # only hooks calling C need it
    try:
        fn = getattr(ctypes.CDLL(None), name)
    except (AttributeError, OSError):
        return None
    fn.restype = c_restype
    return fn


def _python_callable(dotted: str):
    import importlib
    parts = dotted.split(".")
    for i in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        try:
            for attr in parts[i:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return None
        return obj if callable(obj) else None
    return None


def _call(arg: str, ctx, want_ret: bool = False, int_arg: bool = False) -> int:
    import ctypes
    name, sep, param = arg.partition(" ")
    fn = resolve(name, ctx, ctypes.c_int if want_ret else None)
    shown = f"{name}({param})" if sep else name
    if fn is None:
        log(f"unable to call function \"{shown}\"")
        return -1
    is_c = isinstance(fn, ctypes._CFuncPtr)
    if sep:
        try:
            value = int(param) if int_arg else (param.encode() if is_c else param)
        except ValueError:
            log(f"unable to call function \"{shown}\": {param!r} is not a number")
            return -1
        args = (value,)
    else:
        args = ()
    try:
        ret = fn(*args)
    except HookExit:
        raise
    except Exception as e:
        log(f"uwsgi: function \"{shown}\" failed: {e.__class__.__name__}: {e}")
        return -1
    if not want_ret:
        return 0
    try:
        return int(ret or 0)
    except (TypeError, ValueError):
        return 0 if ret else -1


# ---- files and the environment ----------------------------------------------------------------

def _chdir(arg: str, ctx) -> int:
    try:
        os.chdir(arg)
    except OSError as e:
        return _fail("chdir", arg, e)
    return 0


def _mkdir(arg: str, ctx) -> int:
    try:
        os.mkdir(arg, 0o777)
    except OSError as e:
        return _fail("mkdir", arg, e)
    return 0


def _putenv(arg: str, ctx) -> int:
    key, sep, value = arg.partition("=")
    if not key:
        log(f"invalid hook putenv syntax, must be: KEY=VALUE (got {arg!r})")
        return -1
    if sep:
        os.environ[key] = value
    else:
        os.environ.pop(key, None)      # glibc's putenv("KEY") removes KEY
    return 0


def _chmod(arg: str, ctx) -> int:
    parts = _two(arg, "chmod", "<file> <mode>")
    if parts is None:
        return -1
    try:
        mode = int(parts[1], 8)
    except ValueError:
        log(f"invalid hook chmod mask: {parts[1]}")
        return -1
    try:
        os.chmod(parts[0], mode)
    except OSError as e:
        return _fail("chmod", parts[0], e)
    return 0


def _chown(arg: str, ctx, numeric: bool = False) -> int:
    action = "chown2" if numeric else "chown"
    parts = arg.split(" ")
    if len(parts) != 3:
        log(f"invalid hook {action} syntax, must be: <file> <uid> <gid>")
        return -1
    path, user, group = parts
    if numeric:
        if not (user.isdigit() and group.isdigit()):
            log(f"invalid hook chown2 syntax, uid and gid must be numbers (got {user} {group})")
            return -1
        uid, gid = int(user), int(group)
    else:
        import grp
        import pwd
        try:
            uid = pwd.getpwnam(user).pw_uid
        except KeyError:
            log(f"unable to find uid {user}")
            return -1
        try:
            gid = grp.getgrnam(group).gr_gid
        except KeyError:
            log(f"unable to find gid {group}")
            return -1
    try:
        os.chown(path, uid, gid)
    except OSError as e:
        return _fail(action, path, e)
    return 0


def _sticky(arg: str, ctx) -> int:
    import stat
    try:
        os.chmod(arg, os.stat(arg).st_mode | stat.S_ISVTX)
    except OSError as e:
        return _fail("sticky", arg, e)
    return 0


def _write_file(action: str, path: str, data: bytes, flags: int) -> int:
    try:
        fd = os.open(path, flags | os.O_CLOEXEC, 0o666)
    except OSError as e:
        return _fail(action, path, e)
    try:
        if data and os.write(fd, data) != len(data):
            log(f"uwsgi: hook {action} {path}: short write")
            return -1
    except OSError as e:
        return _fail(action, path, e)
    finally:
        os.close(fd)
    return 0


def _writer(action: str, flags: int, newline: bool, optional_text: bool = False):
    def run(arg: str, ctx) -> int:
        path, sep, text = arg.partition(" ")
        if not sep and not optional_text:
            log(f"invalid hook {action} syntax, must be: <file> <string>")
            return -1
        data = text.encode() + (b"\n" if newline else b"")
        return _write_file(action, path, data, flags)
    return run


def _create(arg: str, ctx) -> int:
    return _write_file("create", arg, b"", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)


def _unlink(arg: str, ctx) -> int:
    try:
        os.unlink(arg)
    except OSError as e:
        return _fail("unlink", arg, e)
    return 0


def _writefifo(arg: str, ctx, spin: bool = False) -> int:
    action = "spinningfifo" if spin else "writefifo"
    parts = _two(arg, action, "<file> <string>")
    if parts is None:
        return -1
    path, text = parts
    while True:
        if spin:
            log(f"waiting for {path} ...")
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            break
        except OSError as e:
            no_reader = e.errno in (errno.ENXIO, errno.ENODEV)
            if spin and (no_reader or e.errno == errno.ENOENT):
                time.sleep(1)
                continue
            if no_reader:
                return 0       # nobody reads it: nothing to tell (uWSGI's behaviour)
            return _fail(action, path, e)
    try:
        os.write(fd, text.encode())
    except OSError as e:
        return _fail(action, path, e)
    finally:
        os.close(fd)
    return 0


def _hostname(arg: str, ctx) -> int:
    if os.geteuid() != 0:
        log(f"uwsgi: hook hostname {arg}: only root may set the hostname")
        return -1
    import socket
    try:
        socket.sethostname(arg)
    except OSError as e:
        return _fail("hostname", arg, e)
    return 0


# ---- the rest ---------------------------------------------------------------------------------

def _print(arg: str, ctx) -> int:
    log(arg)
    return 0


def _exit(arg: str, ctx) -> int:
    try:
        code = int(arg) if arg else 0
    except ValueError:
        log(f"invalid hook exit syntax, must be: exit[:CODE] (got {arg!r})")
        return -1
    raise HookExit(code)


def _unix_signal(arg: str, ctx) -> int:
    parts = _two(arg, "unix_signal", "<signum> <func>")
    if parts is None:
        return -1
    num, name = parts
    try:
        signum = int(num)
        signal.Signals(signum)
    except ValueError:
        log(f"invalid unix_signal signal number: {num}")
        return -1
    if signum in (signal.SIGKILL, signal.SIGSTOP, signal.SIGCHLD):
        log(f"uwsgi: unix_signal: signal {signum} cannot be handled by a hook")
        return -1
    if name in master_actions.ACTIONS:
        if not ctx.may_be_master():
            log(f"uwsgi: unix_signal:{arg}: {name} is an action of the master, this process is not it")
            return -1
        ctx.set_master_signal(signum, master_actions.ACTIONS[name])
        return 0
    fn = resolve(name, ctx)
    if fn is None:
        log(f"unable to find function \"{name}\"")
        return -1
    if ctx.may_be_master():
        ctx.set_master_signal(signum, lambda master, fn=fn, signum=signum: fn(signum))
    else:
        signal.signal(signum, lambda s, frame, fn=fn: fn(s))
    return 0


def _wait_for(arg: str, ctx, kind: str) -> int:
    timeout = int(ctx.opts.get("wait-for-fs-timeout", 0) or 0) or 60
    try:
        waits.path(arg, timeout, kind)
    except waits.WaitTimeout as e:
        log(str(e))
        return -1
    return 0


def _wait_for_socket(arg: str, ctx) -> int:
    timeout = int(ctx.opts.get("wait-for-socket-timeout", 0) or 0) or 60
    try:
        waits.socket_ready(arg, timeout)
    except waits.WaitTimeout as e:
        log(str(e))
        return -1
    return 0


ACTIONS = {
    "exec": _exec,
    "safeexec": _safeexec,
    "call": _call,
    "callret": lambda arg, ctx: _call(arg, ctx, want_ret=True),
    "callint": lambda arg, ctx: _call(arg, ctx, int_arg=True),
    "callintret": lambda arg, ctx: _call(arg, ctx, want_ret=True, int_arg=True),
    "cd": _chdir,
    "chdir": _chdir,
    "mkdir": _mkdir,
    "putenv": _putenv,
    "chmod": _chmod,
    "chown": _chown,
    "chown2": lambda arg, ctx: _chown(arg, ctx, numeric=True),
    "sticky": _sticky,
    "create": _create,
    "creat": _create,
    "write": _writer("write", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, False),
    "writen": _writer("writen", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, True),
    "append": _writer("append", os.O_WRONLY | os.O_CREAT | os.O_APPEND, False),
    "appendn": _writer("appendn", os.O_WRONLY | os.O_CREAT | os.O_APPEND, True, optional_text=True),
    "writefifo": _writefifo,
    "spinningfifo": lambda arg, ctx: _writefifo(arg, ctx, spin=True),
    "unlink": _unlink,
    "hostname": _hostname,
    "print": _print,
    "log": _print,
    "exit": _exit,
    "unix_signal": _unix_signal,
    "wait_for_fs": lambda arg, ctx: _wait_for(arg, ctx, "any"),
    "wait_for_file": lambda arg, ctx: _wait_for(arg, ctx, "file"),
    "wait_for_dir": lambda arg, ctx: _wait_for(arg, ctx, "dir"),
    "wait_for_socket": _wait_for_socket,
}


def register(name: str, fn) -> None:
    """An action a higher layer provides (uWSGI's uwsgi_register_hook): fn(arg, ctx) -> int."""
    ACTIONS[name] = fn
