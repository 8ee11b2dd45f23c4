"""uWSGI's alarms (core/alarm.c): `--alarm "NAME PLUGIN:ARGS"` makes an alarm; these raise it:

    --log-alarm / --alarm-log "NAME[,NAME...] REGEXP"   a log line matches (request lines too unless
                                                        a --req-logger takes them; the log master is
                                                        turned on); --not-log-alarm
                                                        "NAME REGEXP": a matching line raises none
                                                        of the rules after it (uWSGI's order kept)
    --alarm-fd "NAME FD[:N] MESSAGE"                    FD turns readable (N bytes read, 8 for an eventfd)
    --alarm-backlog NAME (--lq-alarm ...)               a listen queue is full (checked every second)
    --alarm-segfault NAME                               a worker is killed by SIGSEGV (the master's line)
    the internal routing's alarm:NAME MESSAGE action, the hooks' alarm:NAME MESSAGE (from
    --hook-master-start on), and trigger() from any process

The actions uWSGI ships without plugins:
    cmd:COMMAND    run by /bin/sh -c (or --binsh), the message on its stdin
    signal:NUM     the uWSGI signal NUM, routed to its registered target
    log:[TEXT]     the log line "DATE - ALARM: TEXT MESSAGE"
    mule:[N]       the message to mule N (0 or nothing: the first mule that asks)

Anti-loop (uwsgi_alarm_run): an alarm given the same message as the last time it ran, within
--alarm-freq seconds (3), does nothing. A message over --alarm-msg-size (8192) is dropped.

Design. Every alarm runs in the master's main loop: a datagram socket pair made before the first
fork carries `NAME\\0MESSAGE` from any process (a worker's route, the log master's thread) to a
reader the master watches (server.master.add_reader), which also watches the --alarm-fd
descriptors. So a command is forked from the master's main thread (services.commands.spawn, as
the crons), and a slow action never holds the log master's thread or a worker. uWSGI runs them
in a thread of its own; the outcome is the same.
"""

from __future__ import annotations

import os
import socket
import time

from uwsgid.config.options import Option, declare, lookup
from uwsgid.server import hook_actions
from uwsgid.util import hooks, loggers
from uwsgid.util.log import log

declare(
    Option("alarm", needs_master=True, kind="str", multi=True, metavar="NAME PLUGIN:ARGS",
           help="create an alarm: NAME cmd:COMMAND (the message on its stdin), signal:NUM, log:[TEXT] "
                "or mule:[N]; raised by --log-alarm, --alarm-fd, --alarm-backlog, --alarm-segfault and the "
                "routing's alarm: action"),
    Option("log-alarm", needs_master=True, kind="str", multi=True, aliases=("alarm-log",),
           metavar="NAME[,NAME] REGEXP",
           help="raise the alarms when a log line matches REGEXP (turns the log master on; request lines "
                "are seen too unless --req-logger takes them, as in uWSGI)"),
    Option("not-log-alarm", needs_master=True, kind="str", multi=True, aliases=("not-alarm-log",),
           metavar="NAME[,NAME] REGEXP",
           help="a log line matching REGEXP raises none of the --log-alarm rules given after this one"),
    Option("alarm-freq", kind="int", default=3, metavar="SECS",
           help="anti-loop: an alarm raised again with the same message within SECS seconds does nothing"),
    Option("alarm-fd", needs_master=True, kind="str", multi=True, metavar="NAME FD[:N] MESSAGE",
           help="raise the alarm with MESSAGE when FD is readable (N bytes are read, default 1, 8 for an eventfd)"),
    Option("alarm-backlog", needs_master=True, kind="str", multi=True, metavar="NAME",
           aliases=("backlog-alarm", "lq-alarm", "alarm-lq", "alarm-listen-queue", "listen-queue-alarm"),
           help="raise the alarm when a socket's listen queue is full (checked every second)"),
    Option("alarm-segfault", needs_master=True, kind="str", multi=True, metavar="NAME",
           aliases=("segfault-alarm",),
           help="raise the alarm when a worker is killed by SIGSEGV (with the master's line as the "
                "message; turns the log master on)"),
    Option("alarm-msg-size", kind="size", default=8192, metavar="BYTES",
           help="the largest alarm message: a longer one is dropped"),
    Option("alarm-list", kind="flag", aliases=("alarms-list",), help="list the alarm plugins at start-up"),
    Option("alarm-cheap", kind="flag",
           help="accepted for compatibility: always the case here: every alarm runs in the master's "
                "loop (uWSGI's option moves its curl alarms there; curl alarms do not exist here)"),
)

PLUGINS = ("signal", "cmd", "mule", "log")
_SEGFAULT = rb"died, killed by signal 11 "       # the master's line for a worker's SIGSEGV


class AlarmError(ValueError):
    """A bad alarm option: one line naming it."""


class Alarm:
    """One --alarm instance: its action and the anti-loop memory (uWSGI's uwsgi_alarm_instance)."""

    def __init__(self, name: str, plugin: str, arg: str, run):
        self.name = name
        self.plugin = plugin
        self.arg = arg
        self.run = run                  # fn(message: bytes)
        self.last_msg: bytes | None = None
        self.last_run = 0.0


class _State:
    alarms: dict[str, Alarm] = {}
    rules: list = []                    # (compiled bytes regexp, [alarm names], negate)
    reader: socket.socket | None = None
    writer: socket.socket | None = None
    freq = 3
    msg_size = 8192
    backlog: list[str] = []
    fds: dict[int, list] = {}           # fd -> [(alarm name, bytes to read, message)]
    own_lines: list[bytes] = []         # log: lines this module wrote (never raise alarms)
    server = None


# ---- configuration --------------------------------------------------------------------------

def _action(value: str, server) -> Alarm:
    name, space, rest = value.strip().partition(" ")
    plugin, colon, arg = rest.strip().partition(":")
    if not space or not name or not colon:
        raise AlarmError(f"--alarm {value}: invalid alarm syntax, must be NAME PLUGIN:ARGS (e.g. "
                         f"'mail cmd:mail -s alarm ops@example.com')")
    if plugin == "cmd":
        if not arg.strip():
            raise AlarmError(f"--alarm {value}: cmd: needs a command")
        return Alarm(name, plugin, arg, _cmd(arg, server))
    if plugin == "signal":
        try:
            num = int(arg)
            if not 0 <= num <= 255:
                raise ValueError
        except ValueError:
            raise AlarmError(f"--alarm {value}: signal: needs a uWSGI signal number 0..255") from None
        return Alarm(name, plugin, arg, _signal(num))
    if plugin == "log":
        return Alarm(name, plugin, arg, _log(arg))
    if plugin == "mule":
        return Alarm(name, plugin, arg, _mule(value, arg))
    raise AlarmError(f"--alarm {value}: unknown alarm plugin {plugin!r} (here: {', '.join(PLUGINS)}; uWSGI's "
                     f"curl, xmpp and mail alarms are not available: use cmd:COMMAND with curl or sendmail)")


def _cmd(command: str, server):
    from uwsgid.services import commands
    sh = commands.shell(getattr(server, "opts", None))

    def run(msg: bytes) -> None:
        r, w = os.pipe()
        try:
            os.write(w, msg[:60000])        # under the pipe's buffer: the write never waits
            os.close(w)
            w = -1
            commands.spawn(command, sh, failed="[uwsgi-alarm] unable to run", stdin=r)
        except OSError as e:
            _say(f"[uwsgi-alarm] cannot run {command!r}: {e.strerror or e}")
        finally:
            os.close(r)
            if w >= 0:
                os.close(w)
    return run          # the master reaps it (its child_exited for an unknown pid)


def _signal(num: int):
    def run(msg: bytes) -> None:
        from uwsgid.services import signals
        signals.route(num)
    return run


def _log(text: str):
    def run(msg: bytes) -> None:
        head = f"{time.ctime()} - ALARM: " + (f"{text} " if text else "")
        line = head.encode("utf-8", "backslashreplace") + msg
        if not line.endswith(b"\n"):
            line += b"\n"
        _write_own(line)
    return run


def _mule(value: str, arg: str):
    from uwsgid.services import mules
    mid = int(arg) if arg.strip().isdigit() else 0
    nmules = mules.count()
    if not nmules:
        raise AlarmError(f"--alarm {value}: there are no mules (add --mules N or --mule FILE)")
    if mid > nmules:
        log(f"[uwsgi-alarm] invalid mule_id ({nmules} mules available), fallback to 0")
        mid = 0

    def run(msg: bytes) -> None:
        try:
            mules.mule_msg(msg, mid or None)
        except ValueError as e:
            _say(f"[uwsgi-alarm] {e}")
    return run


def _log_rules(opts) -> list:
    """--log-alarm and --not-log-alarm in the order given (uWSGI keeps them in one list)."""
    import re
    ordered = []
    for key, value in getattr(opts, "exported", None) or ():
        opt = lookup(key.replace("_", "-"))
        if opt is not None and opt.name in ("log-alarm", "not-log-alarm") and value is not None:
            ordered.append((opt.name == "not-log-alarm", value))
    if not ordered:     # options set without a config source (tests): both lists, negations first
        ordered = [(True, v) for v in opts.get("not-log-alarm", []) or []] + \
                  [(False, v) for v in opts.get("log-alarm", []) or []]
    rules = []
    for negate, value in ordered:
        shown = "--not-log-alarm" if negate else "--log-alarm"
        names, space, pattern = value.strip().partition(" ")
        if not space or not pattern.strip():
            raise AlarmError(f"{shown} {value}: invalid log-alarm syntax, must be NAME[,NAME] REGEXP")
        listed = [n for n in names.split(",") if n]
        for n in listed:
            if n not in _State.alarms:
                raise AlarmError(f"{shown} {value}: no alarm named {n!r} (create it with --alarm \"{n} PLUGIN:ARGS\")")
        try:
            rx = re.compile(pattern.strip().encode("utf-8", "surrogateescape"))
        except re.error as e:
            raise AlarmError(f"{shown} {value}: bad regexp: {e}") from None
        rules.append((rx, listed, negate))
    for value in opts.get("alarm-segfault", []) or []:
        for n in (x for x in value.split(",") if x):
            if n not in _State.alarms:
                raise AlarmError(f"--alarm-segfault {value}: no alarm named {n!r}")
        rules.append((re.compile(re.escape(_SEGFAULT)), [x for x in value.split(",") if x], False))
    return rules


def _alarm_fds(opts) -> dict:
    fds = {}
    for value in opts.get("alarm-fd", []) or []:
        name, _, rest = value.strip().partition(" ")
        spec, space, msg = rest.strip().partition(" ")
        fd_text, colon, size = spec.partition(":")
        if not space or not name or not fd_text:
            raise AlarmError(f"--alarm-fd {value}: invalid alarm-fd syntax, must be NAME FD[:N] MESSAGE")
        if name not in _State.alarms:
            raise AlarmError(f"--alarm-fd {value}: no alarm named {name!r}")
        try:
            fd, n = int(fd_text), int(size) if colon else 1
            os.fstat(fd)
        except ValueError:
            raise AlarmError(f"--alarm-fd {value}: FD and N must be numbers") from None
        except OSError:
            raise AlarmError(f"--alarm-fd {value}: file descriptor {fd_text} is not open") from None
        fds.setdefault(fd, []).append((name, max(1, n), msg.encode("utf-8", "surrogateescape")))
    return fds


def configure(server) -> bool:
    """Build the alarms and what raises them (master, before the first fork); False: none."""
    opts = server.opts
    if opts.get("alarm-list", False):
        log("\n*** uWSGI loaded alarms ***\n" + "\n".join(PLUGINS) + "\n--- end of alarms list ---\n")
    specs = opts.get("alarm", []) or []
    raisers = [n for n in ("log-alarm", "not-log-alarm", "alarm-fd", "alarm-backlog", "alarm-segfault")
               if opts.get(n)]
    if not specs:
        if raisers:
            raise AlarmError(f"--{raisers[0]} needs an alarm: create it with --alarm \"NAME PLUGIN:ARGS\"")
        return False
    _State.alarms = {}
    for value in specs:
        a = _action(value, server)
        if a.name in _State.alarms:
            raise AlarmError(f"--alarm {value}: an alarm named {a.name!r} exists already")
        _State.alarms[a.name] = a
    _State.freq = int(opts.get("alarm-freq", 3) or 0)
    _State.msg_size = int(opts.get("alarm-msg-size", 8192) or 8192)
    _State.rules = _log_rules(opts)
    _State.fds = _alarm_fds(opts)
    _State.backlog = []
    for value in opts.get("alarm-backlog", []) or []:
        for n in (x for x in value.split(",") if x):
            if n not in _State.alarms:
                raise AlarmError(f"--alarm-backlog {value}: no alarm named {n!r}")
            _State.backlog.append(n)
    _State.server = server
    reader, writer = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    writer.setblocking(False)
    reader.setblocking(False)
    bufsize = max(65536, 4 * (_State.msg_size + 256))
    for s, opt in ((reader, socket.SO_RCVBUF), (writer, socket.SO_SNDBUF)):
        try:
            s.setsockopt(socket.SOL_SOCKET, opt, bufsize)
        except OSError:
            pass
    _State.reader, _State.writer = reader, writer
    return True


# ---- raising --------------------------------------------------------------------------------

def trigger(name: str, msg: bytes) -> bool:
    """Raise alarm `name` with `msg` from any process of the instance (uWSGI's uwsgi_alarm_trigger):
    False when there is no such alarm, the message is too long or the queue is full."""
    w = _State.writer
    if w is None or name not in _State.alarms or len(msg) > _State.msg_size:
        return False
    try:
        w.send(name.encode() + b"\0" + msg)
        return True
    except BlockingIOError:
        return False        # the master is behind: uWSGI drops the alarm too
    except OSError:
        return False


def names() -> list[str]:
    return list(_State.alarms)


def _check_log(data: bytes) -> None:
    """The log master's thread, every server message: raise the alarms whose rules match."""
    try:
        if data.startswith(b"[uwsgi-alarm") or data in _State.own_lines:
            return
        for rx, listed, negate in _State.rules:
            if rx.search(data):
                if negate:
                    break
                for name in listed:
                    trigger(name, data[:_State.msg_size])
    except Exception:       # never the log master's problem
        pass


def run(alarm: Alarm, msg: bytes) -> None:
    """uwsgi_alarm_run: the action, unless the same message ran within --alarm-freq seconds."""
    now = time.monotonic()
    if msg == alarm.last_msg and now - alarm.last_run < _State.freq:
        return
    try:
        alarm.run(msg)
    except Exception as e:
        _say(f"[uwsgi-alarm] {alarm.name} ({alarm.plugin}) failed: {e!r}")
    alarm.last_run = time.monotonic()
    alarm.last_msg = msg


def _on_trigger() -> None:
    r = _State.reader
    for _ in range(64):
        try:
            data = r.recv(_State.msg_size + 512)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return
        name, _, msg = data.partition(b"\0")
        alarm = _State.alarms.get(name.decode("utf-8", "replace"))
        if alarm is not None:
            run(alarm, msg)


def _fd_reader(fd: int):
    """uWSGI's alarm thread on an --alarm-fd: the first alarm's N bytes read, every alarm raised."""
    watchers = _State.fds[fd]
    size = watchers[0][1]

    def ready() -> None:
        try:
            got = os.read(fd, size)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            got = b""
        if not got:
            _say(f"[uwsgi-alarm-fd] i will stop monitoring fd {fd}")
            _State.server.master.remove_reader(fd)
            return
        for name, _size, msg in watchers:
            run(_State.alarms[name], msg)
    return ready


def _write_own(line: bytes) -> None:
    own = _State.own_lines
    own.append(line)
    del own[:-32]
    try:
        os.write(2, line)
    except OSError:
        pass


def _say(text: str) -> None:
    _write_own(f"{text}\n".encode("utf-8", "backslashreplace"))


# ---- hooks ----------------------------------------------------------------------------------

def _master_start(server) -> None:
    opts = getattr(server, "opts", None)
    if opts is None or not (opts.get("alarm") or opts.get("alarm-list") or opts.get("log-alarm")
                            or opts.get("alarm-fd") or opts.get("alarm-backlog") or opts.get("alarm-segfault")
                            or opts.get("not-log-alarm")):
        return
    from uwsgid.services import commands
    try:
        if not configure(server):
            return
    except AlarmError as e:
        log(f"uwsgi: {e}")
        raise SystemExit(1) from None
    commands.need_master(server, "alarm")
    master = server.master
    master.add_reader(_State.reader.fileno(), _on_trigger)
    for fd in _State.fds:
        try:
            master.add_reader(fd, _fd_reader(fd))
        except OSError as e:
            log(f"uwsgi: --alarm-fd: file descriptor {fd} cannot be watched ({e.strerror}: a regular file "
                f"or /dev/null is always readable" + ("; stdin is /dev/null without --honour-stdin" if fd == 0 else "")
                + ")")
            raise SystemExit(1) from None
        os.set_blocking(fd, False)
        for _ in _State.fds[fd]:
            log(f"[uwsgi-alarm] added fd {fd}")
    if _State.rules:
        if not loggers.active():
            log("uwsgi: --log-alarm: the log master is not running (it should have been turned on)")
            raise SystemExit(1)
        loggers.watch(_check_log)


def _master_tick(server) -> None:
    """--alarm-backlog: a full listen queue, as uWSGI's master checks it every cycle."""
    if not _State.backlog:
        return
    from uwsgid.observe.stats import listen_queue
    for lst in getattr(server, "listeners", ()):
        queue, max_queue = listen_queue(lst.sock)
        if queue > 0 and queue >= max_queue:
            name = getattr(lst, "address", None) or lst.name
            what = f"listen queue of socket \"{name}\" (fd: {lst.fd}) full !!! ({queue}/{max_queue})"
            log(f"{time.ctime()} - *** uWSGI {what} ***")
            for alarm in _State.backlog:
                run(_State.alarms[alarm], what.encode())


def _hook_alarm(arg: str, ctx) -> int:
    """The hooks' alarm:NAME MESSAGE (uWSGI's uwsgi_hook_alarm)."""
    name, space, msg = arg.partition(" ")
    if not space:
        log("invalid alarm hook syntax, must be: <alarm> <msg>")
        return -1
    if not trigger(name, msg.encode("utf-8", "surrogateescape")):
        why = "no alarm named so" if _State.writer is not None else "the alarms start with the master"
        log(f"[uwsgi-alarm] hook alarm:{arg}: not raised ({why})")
    return 0


hooks.register("master_start", _master_start)
hooks.register("master_tick", _master_tick)
hook_actions.register("alarm", _hook_alarm)
