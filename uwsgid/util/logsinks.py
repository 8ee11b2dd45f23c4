"""Where the log master writes: uWSGI's logger plugins (`--logger [ID ]PLUGIN[:ARGS]`), with
uWSGI's argument syntax.

    file:PATH  file:logfile=PATH,maxsize=BYTES,backupname=NAME   (logfile plugin)
    fd:N                                  write to an inherited file descriptor
    stdio                                 the instance's own log (--logto/--daemonize or stderr)
    syslog[:IDENT[,FACILITY]]             the local syslog (ident "uwsgi", facility daemon)
    socket:ADDR[,PREFIX]                  one datagram per message: HOST:PORT (udp) or a unix path
    rsyslog:HOST[:PORT][,IDENT[,PRI]]     RFC 3164 datagrams (<29>Mmm dd hh:mm:ss IDENT: msg)
    pipe:COMMAND                          the stdin of a command (respawned when it goes away)

Every sink is built (files opened, sockets made) when the log master starts, so a bad argument
is one line at start-up, not a lost log later. Only the log master's thread writes to them.
"""

from __future__ import annotations

import os
import time

_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_APPEND
_FILE_MODE = 0o640          # uWSGI's S_IRUSR|S_IWUSR|S_IRGRP


class LogSinkError(Exception):
    """A bad --logger/--log-encoder/--log-route value: one line naming it."""


def ctime_now() -> str:
    return time.ctime()


def open_file(path: str, truncate: bool = False) -> int:
    flags = (os.O_WRONLY | os.O_CREAT | os.O_TRUNC) if truncate else _FILE_FLAGS
    return os.open(path, flags, _FILE_MODE)


def backup_name(path: str, backupname: str | None) -> str:
    """uWSGI's rotated name: --log-backupname as given, else PATH.<unix time>; a second
    rotation within the same second gets .1, .2 ... rather than overwriting the first."""
    if backupname:
        return backupname
    base = f"{path}.{int(time.time())}"
    name, n = base, 0
    while os.path.lexists(name):
        n += 1
        name = f"{base}.{n}"
    return name


class RotatingFile:
    """A log file kept at a fixed fd number (dup2 on rotation and reopen, so whoever holds the
    number writes to the new file). path None: not a file (stderr, a udp address): never rotated."""

    def __init__(self, fd: int, path: str | None, maxsize: int = 0, backupname: str | None = None,
                 chmod: int | None = None, chown: tuple[int, int] | None = None):
        self.fd = fd
        self.path = path
        self.maxsize = maxsize
        self.backupname = backupname
        self.chmod = chmod
        self.chown = chown

    def write(self, data: bytes) -> None:
        _write_all(self.fd, data)
        if self.maxsize and self.path is not None and self.size() > self.maxsize:
            self.rotate()

    def size(self) -> int:
        try:
            return os.lseek(self.fd, 0, os.SEEK_CUR)
        except OSError:
            return 0

    def _fix(self, fd: int) -> None:
        try:
            if self.chmod is not None:
                os.fchmod(fd, self.chmod)
            if self.chown is not None:
                os.fchown(fd, *self.chown)
        except OSError:
            pass

    def _replace(self, truncate: bool) -> bool:
        try:
            fd = open_file(self.path, truncate)
        except OSError as e:
            _write_all(self.fd, f"{ctime_now()} - cannot open {self.path}: {e.strerror}\n".encode())
            return False
        self._fix(fd)
        os.dup2(fd, self.fd)
        os.close(fd)
        return True

    def rotate(self) -> bool:
        """uWSGI's uwsgi_log_do_rotate: a line in the old file, rename, a new empty file."""
        if self.path is None:
            return False
        target = backup_name(self.path, self.backupname)
        _write_all(self.fd, f"{ctime_now()} - logsize: {self.size()}, triggering rotation to {target}...\n".encode())
        try:
            os.rename(self.path, target)
        except OSError as e:
            _write_all(self.fd, f"{ctime_now()} - unable to rotate log: rename(): {e.strerror}\n".encode())
            return False
        return self._replace(truncate=True)

    def reopen(self) -> bool:
        """uWSGI's uwsgi_log_reopen: the path again (an outside logrotate moved the file)."""
        if self.path is None:
            return False
        _write_all(self.fd, f"[{int(time.time())}] logsize: {self.size()}, triggering log-reopen...\n".encode())
        if not self._replace(truncate=False):
            return False
        _write_all(self.fd, f"[{int(time.time())}] {self.path} reopened.\n".encode())
        return True

    def close(self) -> None:
        pass        # the main log's fd outlives the log master; file loggers close it themselves


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except InterruptedError:
            continue
        except OSError:
            return      # a full disk or a closed reader: nothing better to tell it to
        view = view[n:]


class Sink:
    """One --logger destination. `id` names it for --log-route (then it gets only routed lines)."""
    id: str | None = None
    spec = ""

    def write(self, data: bytes) -> None:
        raise NotImplementedError

    def rotate(self) -> None:
        pass

    def reopen(self) -> None:
        pass

    def close(self) -> None:
        pass


class FileSink(Sink):
    def __init__(self, arg: str, chmod=None, chown=None):
        path, maxsize, backupname = arg, 0, None
        if "=" in arg:
            kv = _kvlist(arg, ("logfile", "maxsize", "backupname"))
            path = kv.get("logfile")
            if not path:
                raise LogSinkError("missing the logfile key")
            try:
                maxsize = int(kv.get("maxsize") or 0)
            except ValueError:
                raise LogSinkError("maxsize must be a number of bytes") from None
            backupname = kv.get("backupname")
        if not path:
            raise LogSinkError("needs a path (file:PATH)")
        try:
            fd = open_file(path)
        except OSError as e:
            raise LogSinkError(f"cannot open {path}: {e.strerror}") from None
        self.file = RotatingFile(fd, path, maxsize, backupname, chmod, chown)
        self.file._fix(fd)

    def write(self, data: bytes) -> None:
        self.file.write(data)

    def rotate(self) -> None:
        self.file.rotate()

    def reopen(self) -> None:
        self.file.reopen()

    def close(self) -> None:
        try:
            os.close(self.file.fd)
        except OSError:
            pass


class FdSink(Sink):
    def __init__(self, arg: str):
        try:
            self.fd = int(arg)
            os.fstat(self.fd)
        except (TypeError, ValueError):
            raise LogSinkError("needs a file descriptor number (fd:N)") from None
        except OSError:
            raise LogSinkError(f"file descriptor {arg} is not open") from None

    def write(self, data: bytes) -> None:
        _write_all(self.fd, data)


class StdioSink(Sink):
    """The instance's own log: what --logto/--daemonize opened, else the original stderr."""

    def __init__(self, main: RotatingFile):
        self.main = main

    def write(self, data: bytes) -> None:
        self.main.write(data)


_FACILITIES = ("auth", "authpriv", "cron", "daemon", "ftp", "kern", "lpr", "mail", "news", "syslog",
               "user", "uucp", "local0", "local1", "local2", "local3", "local4", "local5", "local6",
               "local7")


class SyslogSink(Sink):
    def __init__(self, arg: str | None):
        import syslog
        ident, facility = "uwsgi", syslog.LOG_DAEMON
        if arg:
            ident, comma, fac = arg.partition(",")
            if comma:
                if fac == "security":            # uWSGI's deprecated alias
                    fac = "auth"
                if fac not in _FACILITIES or not hasattr(syslog, "LOG_" + fac.upper()):
                    raise LogSinkError(f"unknown facility {fac!r} "
                                       f"(one of {', '.join(_FACILITIES)})")
                facility = getattr(syslog, "LOG_" + fac.upper())
        self._syslog = syslog
        syslog.openlog(ident, 0, facility)

    def write(self, data: bytes) -> None:
        text = data.rstrip(b"\n").decode("utf-8", "backslashreplace").replace("\x00", "")
        self._syslog.syslog(self._syslog.LOG_INFO, text)


def _dgram_socket(addr: str, default_port: int | None = None):
    """A datagram socket and its destination: HOST:PORT (udp) or a unix path."""
    import socket
    if ":" in addr or (default_port is not None and not addr.startswith("/")):
        host, _, port = addr.rpartition(":") if ":" in addr else (addr, "", str(default_port))
        host = host.strip("[]") or "127.0.0.1"
        try:
            infos = socket.getaddrinfo(host, int(port), type=socket.SOCK_DGRAM)
        except (OSError, ValueError) as e:
            raise LogSinkError(f"cannot resolve {addr}: {e}") from None
        family, _, _, _, dest = infos[0]
        sock = socket.socket(family, socket.SOCK_DGRAM)
    else:
        sock, dest = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM), addr
    # a full unix peer (10 datagrams queued by default) gets a second to read, then the line is
    # dropped: a reader that stopped must not hold the log thread (udp never waits)
    sock.settimeout(1.0)
    return sock, dest


class SocketSink(Sink):
    def __init__(self, arg: str | None):
        if not arg:
            raise LogSinkError("needs an address (socket:HOST:PORT or socket:/path)")
        addr, comma, prefix = arg.partition(",")
        self.prefix = prefix.encode() if comma else b""
        self.sock, self.dest = _dgram_socket(addr)

    def write(self, data: bytes) -> None:
        try:
            self.sock.sendto(self.prefix + data, self.dest)
        except OSError:
            pass    # nobody listening (unix) or a full buffer: datagram logging drops, as uWSGI's

    def close(self) -> None:
        self.sock.close()


class RsyslogSink(Sink):
    packet_size = 1024          # --rsyslog-packet-size
    split = False               # --rsyslog-split-messages

    def __init__(self, arg: str | None):
        if not arg:
            raise LogSinkError("needs an address (rsyslog:HOST[:PORT][,IDENT[,PRI]])")
        addr, _, rest = arg.partition(",")
        ident, _, prisev = rest.partition(",")
        if not rest:
            import socket
            ident = f"{socket.gethostname()} uwsgi"
        try:
            self.pri = int(prisev) if prisev else 29
        except ValueError:
            raise LogSinkError("the priority must be a number") from None
        self.ident = ident
        self.sock, self.dest = _dgram_socket(addr, default_port=514)

    def write(self, data: bytes) -> None:
        if data.endswith(b"\n"):
            data = data[:-1]
        stamp = time.ctime()[4:19]
        head = f"<{self.pri}>{stamp} {self.ident}: ".encode()
        room = max(1, self.packet_size - 30)
        for pos in range(0, max(len(data), 1), room):
            try:
                self.sock.sendto(head + data[pos:pos + room], self.dest)
            except OSError:
                return
            if not self.split:
                return

    def close(self) -> None:
        self.sock.close()


class PipeSink(Sink):
    """pipe:COMMAND: each message to the stdin of COMMAND (run by /bin/sh, in its own session,
    its own output going to the instance's log file so that it cannot loop back)."""

    def __init__(self, arg: str | None, main: RotatingFile):
        if not arg:
            raise LogSinkError("needs a command (pipe:COMMAND)")
        self.command = arg
        self.main = main
        self.proc = None
        self._spawn()

    def _spawn(self) -> None:
        import subprocess
        try:
            self.proc = subprocess.Popen(["/bin/sh", "-c", self.command], stdin=subprocess.PIPE,
                                         stdout=self.main.fd, stderr=self.main.fd, start_new_session=True)
        except OSError as e:
            raise LogSinkError(f"cannot run it: {e.strerror or e}") from None

    def write(self, data: bytes) -> None:
        try:
            if self.proc is None or self.proc.stdin is None:
                self._spawn()
            os.write(self.proc.stdin.fileno(), data)
        except (OSError, LogSinkError, ValueError):
            # the command went away: the next message starts it again (uWSGI's behaviour)
            self._drop()

    def _drop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.stdin is not None:
            try:
                proc.stdin.close()
            except OSError:
                pass

    def close(self) -> None:
        self._drop()


def _kvlist(arg: str, keys: tuple) -> dict:
    out = {}
    for item in arg.split(","):
        key, eq, value = item.partition("=")
        if not eq or key not in keys:
            raise LogSinkError(f"invalid key=value item {item!r} "
                               f"(keys: {', '.join(keys)})")
        out[key] = value
    return out


PLUGINS = ("file", "fd", "stdio", "syslog", "socket", "rsyslog", "pipe")


def parse_logger(spec: str, main: RotatingFile, option: str = "--logger", chmod=None, chown=None) -> Sink:
    """uWSGI's setup_chosen_logger: "[ID ]PLUGIN[:ARGS]" (ID: letters and digits, then a space)."""
    rest, ident = spec, None
    head, space, tail = spec.partition(" ")
    if space and head and head.isalnum():
        ident, rest = head, tail
    name, colon, arg = rest.partition(":")
    arg_or_none = arg if colon and arg else None
    try:
        if name == "file":
            sink = FileSink(arg, chmod, chown)
        elif name == "fd":
            sink = FdSink(arg)
        elif name == "stdio":
            sink = StdioSink(main)
        elif name == "syslog":
            sink = SyslogSink(arg_or_none)
        elif name == "socket":
            sink = SocketSink(arg_or_none)
        elif name == "rsyslog":
            sink = RsyslogSink(arg_or_none)
        elif name == "pipe":
            sink = PipeSink(arg_or_none, main)
        else:
            raise LogSinkError(f"unable to find logger {name!r} (loggers here: {', '.join(PLUGINS)})")
    except LogSinkError as e:
        raise LogSinkError(f"{option} {spec}: {e}") from None
    sink.id = ident
    sink.spec = spec
    return sink
