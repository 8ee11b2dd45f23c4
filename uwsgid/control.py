"""uWSGI's options that act on a running instance and exit, without starting a server:

    --stop PIDFILE      SIGTERM to the master whose pid PIDFILE holds: a graceful stop (the
                        workers finish their requests). uWSGI's --stop sends SIGINT, an immediate
                        kill of the whole stack (core/uwsgi.c); ours is graceful on purpose
                        (`kill -INT $(cat PIDFILE)` still stops at once)
    --reload PIDFILE    SIGHUP: a graceful reload
    --pause PIDFILE     SIGTSTP: the master pauses its workers (they stop accepting) or, when
    --suspend PIDFILE   paused, resumes them. uWSGI sends SIGTSTP for all three: the master
    --resume PIDFILE    toggles, whichever name was used
    --signal ADDR,NUM   raise uwsgi signal NUM on the instance whose uwsgi socket is ADDR (the
                        remote signal packet, modifier1 110: uwsgid.services.remote_signals)

    act(opts) -> exit code, or None when none was given (the start-up goes on)

Called by main right after the options are parsed. With several, the first given acts (uWSGI
acts on each as its parser meets it, and exits). On success the pidfile actions print nothing
and exit 0, as uWSGI's do; --signal says "signal N delivered to node ADDR".
Failures are one line on stderr and uWSGI's exit codes:

    1    the pidfile cannot be read; --signal without ADDR,NUM, with a bad ADDR, or undelivered
    2    --signal: the node rejected the signal (no handler registered for it there)
    3    --signal: NUM is not a signal number (0-255)
    255  the pidfile holds no pid, or the process cannot be signalled (not running, or exited
         and not yet reaped: a stale pidfile; or another user's). uWSGI exits with -1 there.

Stricter than uWSGI: a pidfile must hold a positive decimal pid and nothing else (uWSGI's atoi
makes "x" pid 0 and "-5" pid -5: kill() would signal the caller's own process group, or group
5), and --signal's NUM must be a number (atoi makes "x" signal 0).
"""

from __future__ import annotations

import os
import signal
import sys

from uwsgid.config.options import Option, declare, lookup

EXIT_UNREADABLE = 1
EXIT_REJECTED = 2
EXIT_BAD_SIGNUM = 3
EXIT_NOT_SIGNALLED = 255

# option -> the Unix signal sent to the master (uWSGI's core/uwsgi.c, uwsgi_opt_pidfile_signal)
PIDFILE_SIGNALS = {
    "stop": signal.SIGTERM,
    "reload": signal.SIGHUP,
    "pause": signal.SIGTSTP,
    "suspend": signal.SIGTSTP,
    "resume": signal.SIGTSTP,
}

declare(
    Option("stop", metavar="PIDFILE",
           help="gracefully stop the instance whose master pid PIDFILE holds (SIGTERM), then exit"),
    Option("reload", metavar="PIDFILE",
           help="gracefully reload the instance whose master pid PIDFILE holds (SIGHUP), then exit"),
    Option("pause", metavar="PIDFILE",
           help="pause the instance of PIDFILE, its workers stop accepting (SIGTSTP: resumes it when paused), then exit"),
    Option("suspend", metavar="PIDFILE", help="same as --pause"),
    Option("resume", metavar="PIDFILE",
           help="resume the paused instance of PIDFILE (SIGTSTP: pauses it when running), then exit"),
    Option("signal", metavar="ADDR,NUM",
           help="raise uwsgi signal NUM on the instance listening on uwsgi socket ADDR, then exit"),
)

_ACTIONS = (*PIDFILE_SIGNALS, "signal")


def act(opts) -> int | None:
    """The first control option given acts; its exit code. None: none was given."""
    for key, value in opts.exported:
        opt = lookup(key)
        if opt is None or opt.name not in _ACTIONS:
            continue
        if opt.name == "signal":
            return send_uwsgi_signal(value or "")
        return signal_pidfile(opt.name, value or "")
    return None


def _fail(message: str, code: int) -> int:
    # one line whatever the file or value held (a newline in a path is shown escaped)
    line = "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)
    sys.stderr.write(f"uwsgi: {line}\n")
    sys.stderr.flush()
    return code


def read_pid(path: str) -> int:
    """The pid a pidfile holds. OSError when it cannot be read, ValueError when it holds no pid."""
    with open(path, "rb") as f:
        data = f.read(64)
    text = data.decode("ascii", "replace").strip()
    if not text.isdigit() or not text.isascii() or int(text) <= 0:
        shown = repr(text[:20]) if text else "nothing"
        raise ValueError(f"holds {shown}, not a process id")
    return int(text)


def _exited(pid: int) -> bool:
    """The process has exited and waits to be reaped (a zombie: kill() still succeeds on it)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return False
    return data.rpartition(b")")[2].split()[:1] == [b"Z"]


def signal_pidfile(name: str, path: str) -> int:
    """--stop/--reload/--pause/--suspend/--resume PIDFILE: send the option's signal to the pid."""
    what = f"--{name} {path}"
    if not path:
        return _fail(f"--{name} needs the instance's pidfile (--pidfile of the running master)", EXIT_UNREADABLE)
    try:
        pid = read_pid(path)
    except OSError as e:
        return _fail(f"{what}: cannot read the pidfile: {e.strerror or e}", EXIT_UNREADABLE)
    except ValueError as e:
        return _fail(f"{what}: invalid pidfile: it {e}", EXIT_NOT_SIGNALLED)
    sig = PIDFILE_SIGNALS[name]
    not_running = f"{what}: no process {pid} (the instance is not running: a stale pidfile?)"
    if _exited(pid):
        return _fail(not_running, EXIT_NOT_SIGNALLED)
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return _fail(not_running, EXIT_NOT_SIGNALLED)
    except PermissionError:
        return _fail(f"{what}: not allowed to send {sig.name} to process {pid} (another user's process)",
                     EXIT_NOT_SIGNALLED)
    except OSError as e:
        return _fail(f"{what}: cannot send {sig.name} to process {pid}: {e.strerror or e}", EXIT_NOT_SIGNALLED)
    return 0


def _valid_node(addr: str) -> bool:
    if addr.startswith(("/", "@")):
        return len(addr) > 1
    _host, sep, port = addr.rpartition(":")
    return bool(sep) and port.isdigit() and port.isascii() and 0 < int(port) < 65536


def send_uwsgi_signal(value: str) -> int:
    """--signal ADDR,NUM: the remote signal packet to ADDR, as `uwsgi --signal` does."""
    addr, comma, num_text = value.rpartition(",")
    if not comma or not addr:
        return _fail(f"--signal {value}: expected ADDR,NUM (the uwsgi socket of the instance and a "
                     f"signal number, e.g. 127.0.0.1:3031,30)", EXIT_UNREADABLE)
    num_text = num_text.strip()
    if not (num_text.isdigit() and num_text.isascii()) or int(num_text) > 255:
        return _fail(f"--signal {value}: invalid signal number {num_text!r} (0-255)", EXIT_BAD_SIGNUM)
    num = int(num_text)
    if not _valid_node(addr):
        return _fail(f"--signal {value}: invalid address {addr!r} (host:port, /unix/path or @abstract)",
                     EXIT_UNREADABLE)
    from uwsgid.services import remote_signals
    try:
        remote_signals.send_remote(addr, num)
    except OSError as e:
        return _fail(str(e), EXIT_UNREADABLE)
    except ValueError as e:
        return _fail(f"{e} (no handler registered for it there)", EXIT_REJECTED)
    sys.stderr.write(f"signal {num} delivered to node {addr}\n")
    sys.stderr.flush()
    return 0
