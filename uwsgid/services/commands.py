"""Shell commands the master starts for --cron and --attach-daemon (uWSGI's uwsgi_run_command and
uwsgi_spawn_daemon): how their key=value option values are read, and how a command is forked
and exec'd (`/bin/sh -c COMMAND`, or the first executable --binsh) in a clean child.

The child drops the master's signal set-up (handlers back to their defaults, nothing blocked:
exec keeps an ignored signal ignored and the mask as it is) and every fd above 2 (the listening
sockets, the master's pipes), so only stdin, stdout and stderr (the log) reach the command.
What else the child does before exec (a new session, chdir, uid, the parent-death signal, ...)
is the caller's `prepare`, run in the child. Then what the master asks of those processes: the
live pid a pidfile names, a signal to a process group, a non-blocking reap.
"""

from __future__ import annotations

import os
import signal

_TRUE = {"", "1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class Refused(ValueError):
    """An option uWSGI has whose feature does not exist here (the legions): refuse_or_warn."""


def refuse_or_warn(opts, line: str) -> None:
    """The issue's rule for a refused option: exit 1 with --strict, else a loud warning that
    names the lost behaviour (`line` says what is lost and what to use instead)."""
    from uwsgid.util.log import log
    if opts is not None and opts.get("strict", False):
        log(f"uwsgi: {line} (--strict)")
        raise SystemExit(1)
    log(f"*** WARNING: {line} ***")


def master_state(server) -> str | None:
    """The master's state (uwsgid.server.master: running, reloading, stopping, killing), None
    without a master: crons and daemons start only while it runs."""
    return getattr(getattr(server, "master", None), "state", None)


def master_running(server) -> bool:
    """The master runs (neither reloading nor stopping): crons fire and daemons start only then."""
    from uwsgid.server.master_actions import RUNNING
    return master_state(server) == RUNNING


def configure_at_start(server, configure, option: str):
    """master_start of crons and daemons: configure(opts)'s table, a bad value being one line
    and exit 1, and a table needing the master (need_master); None when there are no opts."""
    opts = getattr(server, "opts", None)
    if opts is None:
        return None
    try:
        table = configure(opts)
    except ValueError as exc:
        from uwsgid.util.log import log
        log(f"uwsgi: {exc}")
        raise SystemExit(1) from None
    if table:
        need_master(server, option)
    return table


def need_master(server, option: str) -> None:
    """These options turn the master on; a later --master=false turns it off again, and uWSGI
    then silently never runs them: here, one line and exit 1."""
    if getattr(server, "master", None) is None:
        from uwsgid.util.log import log
        log(f"uwsgi: --{option} needs the master process, and --master is off (remove master = false)")
        raise SystemExit(1)


def kvlist(value: str, option: str, keys: tuple[str, ...]) -> dict[str, str]:
    """uWSGI's key=value,key=value list (uwsgi_kvlist_parse): a backslash escapes the next
    character (so `\\,` is a comma inside a value), the value is everything after the first
    `=`. Unlike uWSGI, a key it does not know is an error rather than silently dropped."""
    items, cur, escaped = [], [], False
    for ch in value:
        if escaped:
            cur.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == ",":
            items.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    if cur:
        items.append("".join(cur))
    out: dict[str, str] = {}
    for item in items:
        if not item.strip():
            continue
        key, sep, val = item.partition("=")
        key = key.strip()
        if not sep:
            raise ValueError(f"--{option} {value}: expected key=value, got {item!r}")
        if key not in keys:
            raise ValueError(f"--{option} {value}: unknown key {key!r} (keys: {', '.join(keys)})")
        out[key] = val
    return out


def boolean(value: str, option: str, key: str) -> bool:
    v = value.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise ValueError(f"--{option}: {key}={value!r} is not a boolean (1/0, true/false, yes/no)")


def integer(value: str, option: str, what: str, minimum: int | None = None) -> int:
    try:
        n = int(value.strip())
    except ValueError:
        raise ValueError(f"--{option}: {what} must be an integer (got {value!r})") from None
    if minimum is not None and n < minimum:
        raise ValueError(f"--{option}: {what} must be >= {minimum} (got {n})")
    return n


def signal_number(value: str, option: str, what: str) -> int:
    """A signal given as uWSGI does (a number), or by name (TERM, SIGTERM): uWSGI's atoi
    would turn a name into 0 and send nothing."""
    v = value.strip()
    if v.lstrip("-").isdigit():
        n = int(v)
    else:
        name = v.upper() if v.upper().startswith("SIG") else "SIG" + v.upper()
        n = getattr(signal.Signals, name, None)
        if n is None:
            raise ValueError(f"--{option}: {what}={value!r} is not a signal (a number or a name like TERM)")
        n = int(n)
    if n not in {int(s) for s in signal.valid_signals()}:
        raise ValueError(f"--{option}: {what}={value!r} is not a valid signal number")
    return n


def user_id(value: str, option: str) -> int:
    v = value.strip()
    if v.isdigit():
        return int(v)
    import pwd
    try:
        return pwd.getpwnam(v).pw_uid
    except KeyError:
        raise ValueError(f"--{option}: uid={value!r}: no such user") from None


def group_id(value: str, option: str) -> int:
    v = value.strip()
    if v.isdigit():
        return int(v)
    import grp
    try:
        return grp.getgrnam(v).gr_gid
    except KeyError:
        raise ValueError(f"--{option}: gid={value!r}: no such group") from None


def shell(opts) -> str:
    """uWSGI's uwsgi_binsh: the first executable --binsh, else /bin/sh."""
    for path in (opts.get("binsh", None) if opts is not None else None) or ():
        if os.access(path, os.X_OK):
            return path
    return "/bin/sh"


# what keeps a command from being one program run by the shell: control operators, grouping,
# substitutions, line breaks; and first words that are the shell's own (keywords, builtins)
_COMPOUND = set(";&|()`\n")
_SHELL_WORDS = {"!", "{", "}", ".", ":", "[", "[[", "alias", "bg", "break", "case", "cd", "command",
                "continue", "do", "done", "echo", "elif", "else", "esac", "eval", "exec", "exit", "export",
                "false", "fc", "fg", "fi", "for", "function", "getopts", "hash", "if", "jobs", "kill", "local",
                "printf", "pwd", "read", "readonly", "return", "select", "set", "shift", "source", "test",
                "then", "time", "times", "trap", "true", "type", "ulimit", "umask", "unalias", "unset",
                "until", "wait", "while"}


def exec_form(command: str) -> str:
    """`exec COMMAND` when COMMAND is one external program with its arguments (and maybe
    redirections), so the shell becomes that program (bash does it by itself, dash does not):
    a signal or a parent-death signal then reaches the program, not only a shell waiting for
    it. Anything else (a list, a pipeline, a builtin, an assignment) is left as it is."""
    text = command.strip()
    words = text.split()
    import re  # here: this module is imported by every start-up (crons' and daemons' options)
    bare = re.sub(r"\d*[<>]&\d*-?", "", text)       # 2>&1, >&2: redirections, not a background &
    if not words or _COMPOUND & set(bare) or words[0] in _SHELL_WORDS or "=" in words[0]:
        return command
    return "exec " + text


def _fd_limit() -> int:
    try:
        return max(256, os.sysconf("SC_OPEN_MAX"))
    except (ValueError, OSError):
        return 65536


def spawn(command: str, sh: str, prepare=None, failed: str = "[uwsgi] unable to run", stdin: int = -1) -> int:
    """fork; in the child: clean signals and fds (stdin: an fd put on 0 first), prepare() (may
    fork again or sleep), then exec `sh -c command` (on failure, `failed "command": why` on
    stderr, exit 1). Returns the child's pid (the caller reaps it); OSError if fork fails.
    Call from the master's main thread: a parent-death signal follows the forking thread."""
    all_signals = signal.valid_signals()
    old = signal.pthread_sigmask(signal.SIG_BLOCK, all_signals)
    try:
        pid = os.fork()
    except OSError:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
        raise
    if pid:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
        return pid
    try:
        try:
            signal.set_wakeup_fd(-1)
        except ValueError:
            pass
        for sig in all_signals:
            if sig in (signal.SIGKILL, signal.SIGSTOP):
                continue
            try:
                signal.signal(sig, signal.SIG_DFL)
            except (OSError, ValueError, RuntimeError):
                pass
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        if stdin >= 0:
            os.dup2(stdin, 0)
        os.closerange(3, _fd_limit())
        if prepare is not None:
            prepare()
        os.execv(sh, [sh, "-c", command])
    except BaseException as exc:    # noqa: BLE001 - the child must never return into the master's code
        detail = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        try:
            os.write(2, f"{failed} \"{command}\": {detail}\n".encode("utf-8", "replace"))
        except OSError:
            pass
    os._exit(1)


def stdin_devnull() -> None:
    fd = os.open(os.devnull, os.O_RDONLY)
    if fd != 0:
        os.dup2(fd, 0)
        os.close(fd)


def stdin_valid() -> bool:
    try:
        os.fstat(0)
        return True
    except OSError:
        return False


_libc = None


def load_libc():
    """libc through ctypes, loaded in the child only (the master and the workers do not carry
    ctypes), and before any uid change: the new user may not read the interpreter's files."""
    global _libc
    if _libc is None:
        import ctypes
        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def unshare_pid_namespace() -> None:
    """unshare(CLONE_NEWPID): this process's next child is pid 1 of a new pid namespace."""
    import ctypes
    if load_libc().unshare(0x20000000) != 0:       # CLONE_NEWPID
        err = ctypes.get_errno()
        raise OSError(err, f"unshare(CLONE_NEWPID): {os.strerror(err)}")


# ---- the processes started: their pidfiles, signals and ends ----------------------------------

def read_pidfile(path: str) -> int:
    """The live pid a pidfile names, else -1 (uWSGI's uwsgi_check_pidfile; unlike it, a pid we
    may not signal (EPERM) is alive, and a zombie is dead: an orphan's zombie stays when pid 1
    does not reap, as in a container without an init)."""
    try:
        with open(path, "rb") as f:
            pid = int(f.read(64).split()[0])
    except (OSError, ValueError, IndexError):
        return -1
    if pid <= 0:
        return -1
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return -1
    except PermissionError:
        pass
    return -1 if _zombie(pid) else pid


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rpartition(b")")[2].split()[0] == b"Z"
    except (OSError, IndexError):
        return False


def signal_group(pid: int, sig: int) -> bool:
    """sig to pid's process group (the daemon's session), else to pid alone; False: gone."""
    try:
        os.killpg(pid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        pass
    try:
        os.kill(pid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def reaped(pid: int) -> bool:
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True         # not (or no longer) our child: gone for us
    return done != 0
