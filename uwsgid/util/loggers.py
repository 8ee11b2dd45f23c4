"""The log master: uWSGI's --log-master, turned on by any option that needs it (--logger,
--req-logger, --log-maxsize, --touch-logrotate, --log-route, --log-encoder, ...).

Design. The master makes a SOCK_SEQPACKET socket pair and puts its writing end on fd 1 and
fd 2 before anything forks; every process it starts (workers, the router, mules, daemons)
inherits it, so whatever any of them writes to stdout/stderr, C or Python, reaches the master.
A thread of the master reads it and writes each message to the loggers, the log file, and
rotates or reopens the log file, all in one place. This was chosen over "every process reopens
the file on a shared generation counter" because:
  * a rotation is one rename + one dup2 in one process: no worker can go on writing to the old
    file, and none has to notice anything (daemons and C code write to fd 2 blindly);
  * a SEQPACKET socket keeps each write() a separate message: lines from several processes are
    never interleaved mid-line, and a reader never sees half a message (a pipe only promises
    that for writes up to 4 KB);
  * the writers' end stays blocking, so a line waits rather than being dropped when the thread
    is behind; the thread (not the master loop) does every write, so a slow disk or syslog never
    stalls the master's loop, only, at worst, the processes that log faster than it can write.
--req-logger gets a second pair: request lines (util.log.log_request) go there, and only there.

Reloads. The master re-execs itself on SIGHUP. Right before that (stop_for_exec) the thread
drains what was written and stops; the reading ends and the real log file stay open across exec (their numbers in $UWSGID_LOG_MASTER) and the new master adopts them, so a line
written while the master re-execs waits in the socket and is not lost. On the final stop an
atexit handler drains the last lines and puts the log file back on fd 1 and 2.

reopen() / rotate() (the master FIFO's `l` / `L`, --touch-logreopen / --touch-logrotate) hand
the job to the thread. Without a log master they act on this process's fd 2 only, as uWSGI's do.
"""

from __future__ import annotations

import os

from uwsgid.util.logencoders import Encoder
from uwsgid.util.logsinks import LogSinkError, RotatingFile, ctime_now, open_file, parse_logger
from uwsgid.util.touch import TouchFiles

ENV = "UWSGID_LOG_MASTER"
READ_SIZE = 1 << 18         # over any socket buffer: a SEQPACKET read never truncates a message

request_fd = 2              # where util.log.log_request writes (the --req-logger socket when set)
logfile: str | None = None  # the --logto/--daemonize file (what rotate() and reopen() act on)
_master: LogMaster | None = None
# fn(message) for every server message the log master reads, before --log-drain and the others
# (uWSGI's uwsgi_alarm_log_check): --log-alarm (uwsgid.services.alarm) watches the log so
_watchers: list = []


class LogMaster:
    def __init__(self, main: RotatingFile, sinks=(), req_sinks=(), routes=(), req_routes=(),
                 drains=(), filters=(), encoders=(), req_encoders=(), touch_rotate=(),
                 touch_reopen=(), bufsize=0, inherited=None):
        self.main = main
        self.sinks = list(sinks)
        self.req_sinks = list(req_sinks)
        self.routes = list(routes)                  # (compiled bytes regexp, sink)
        self.req_routes = list(req_routes)
        self.drains = list(drains)
        self.filters = list(filters)
        self.encoders = list(encoders)
        self.req_encoders = list(req_encoders)
        self.touch_rotate = TouchFiles(touch_rotate, self._say)
        self.touch_reopen = TouchFiles(touch_reopen, self._say)
        self.actions: list = []
        self.thread = None
        self.owner = os.getpid()
        self.stopping = False
        self.keep_on_fork = False
        self.busy = None                            # held while a message is written (before_fork)
        want_req = bool(self.req_sinks or self.req_routes)
        if inherited is not None:
            self.log_r, self.req_r, self.req_w = inherited
        else:
            self.log_r, log_w = _pair(bufsize)
            os.dup2(log_w, 1)
            os.dup2(log_w, 2)
            os.close(log_w)
            self.req_r = self.req_w = -1
        if want_req and self.req_r < 0:
            self.req_r, self.req_w = _pair(bufsize)
        elif not want_req and self.req_r >= 0:
            self._drain_fd(self.req_r, True)    # a reload dropped --req-logger: its last lines still go out
            for fd in (self.req_r, self.req_w):
                os.close(fd)
            self.req_r = self.req_w = -1
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        for fd in (self.log_r, self.req_r):
            if fd >= 0:
                os.set_blocking(fd, False)
        for fd in (main.fd, self.log_r, self.req_r, self.req_w):    # forks keep them, programs run do not
            if fd > 2:
                os.set_inheritable(fd, False)

    # ---- the thread ---------------------------------------------------------------------------

    def start(self) -> None:
        import threading
        if self.busy is None:
            self.busy = threading.Lock()
        self.stopping = False
        self.owner = os.getpid()
        self.thread = threading.Thread(target=self._run, name="uwsgi-logger", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        """Drain what was written so far and end the thread (the fds stay)."""
        t = self.thread
        if t is None:
            return
        self.stopping = True
        self._wake()
        t.join(10)
        self.thread = None

    def _wake(self) -> None:
        try:
            os.write(self.wake_w, b"x")
        except OSError:
            pass

    def _run(self) -> None:
        import select
        import signal
        signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())   # the main thread's job
        poller = select.poll()
        for fd in (self.log_r, self.req_r, self.wake_r):
            if fd >= 0:
                poller.register(fd, select.POLLIN)
        while True:
            try:
                events = poller.poll()
            except InterruptedError:
                continue
            with self.busy:
                for fd, _ in events:
                    if fd == self.wake_r:
                        try:
                            os.read(self.wake_r, 512)
                        except OSError:
                            pass
                    else:
                        self._drain_fd(fd, fd == self.req_r)
                self._run_actions()
                if self.stopping:
                    self.drain()
                    return

    # A fork made while this thread is inside a C call that holds a libc lock (syslog's, the
    # time zone's in localtime) would leave the child with that lock taken forever: the master
    # forks only between two messages (waiting at most a second for a slow one).
    def before_fork(self) -> None:
        lock = self.busy
        self._fork_locked = (lock is not None and self.thread is not None and os.getpid() == self.owner
                             and lock.acquire(timeout=1.0))

    def after_fork_in_parent(self) -> None:
        if getattr(self, "_fork_locked", False):
            self._fork_locked = False
            self.busy.release()

    def drain(self) -> None:
        self._drain_fd(self.log_r, False)
        if self.req_r >= 0:
            self._drain_fd(self.req_r, True)

    def _drain_fd(self, fd: int, req: bool) -> None:
        while True:
            try:
                data = os.read(fd, READ_SIZE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            if not data:
                return
            try:
                self.dispatch(data, req)
            except Exception as e:      # a broken logger must not end the log: say it in the log file
                self.main.write(f"{ctime_now()} - uwsgi: logger error: {e!r}\n".encode())

    # ---- one message (uWSGI's uwsgi_master_log / uwsgi_master_req_log) -------------------------

    def dispatch(self, data: bytes, req: bool = False, main_too: bool = True) -> None:
        if req:
            routes, sinks, encoders = self.req_routes, self.req_sinks, self.req_encoders
        else:
            for fn in _watchers:
                fn(data)
            for rx in self.drains:
                if rx.search(data):
                    return
            if self.filters and not any(rx.search(data) for rx in self.filters):
                return
            routes, sinks, encoders = self.routes, self.sinks, self.encoders
        routed = False
        for rx, sink in routes:
            if rx.search(data):
                self._emit(sink, data, encoders)
                routed = True
        if routed:
            return
        raw = True
        for sink in sinks:
            if sink.id is None:         # a named logger gets routed lines only
                self._emit(sink, data, encoders)
                raw = False
        if raw and main_too:
            self._emit(None, data, encoders)

    def _emit(self, sink, data: bytes, encoders) -> None:
        for enc in encoders:
            if enc.applies_to(sink):
                data = enc(data)
        if sink is None:
            self.main.write(data)
        else:
            sink.write(data)

    # ---- rotation and reopening (run by the thread) --------------------------------------------

    def request(self, action: str) -> None:
        self.actions.append(action)
        if self.thread is not None:
            self._wake()
        else:
            self._run_actions()

    def _run_actions(self) -> None:
        while self.actions:
            action = self.actions.pop(0)
            try:
                if action == "rotate":
                    self.main.rotate()
                elif action == "reopen":
                    self.main.reopen()
                    for sink in self.sinks + self.req_sinks:
                        sink.reopen()
            except Exception as e:      # the thread must live on: every process's output waits on it
                self.main.write(f"{ctime_now()} - uwsgi: log {action} failed: {e!r}\n".encode())

    def _say(self, line: str) -> None:
        self.main.write(f"{line}\n".encode())

    def check_touches(self, server=None) -> None:
        """The master tick: --touch-logrotate / --touch-logreopen (uwsgid.util.touch)."""
        for touches, action in ((self.touch_rotate, "rotate"), (self.touch_reopen, "reopen")):
            if touches.changed() is not None:
                self.request(action)

    # ---- process life ------------------------------------------------------------------------

    def after_fork_in_child(self) -> None:
        """A process the master forked writes to fd 2; it has no business with the readers."""
        if self.keep_on_fork or os.getpid() == self.owner:
            return
        self._fork_locked = False
        global _master
        for fd in (self.log_r, self.req_r, self.wake_r, self.wake_w):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self.thread = None
        _master = None

    def export(self) -> None:
        """Before the master re-execs itself: what the next master adopts."""
        for fd in (self.main.fd, self.log_r, self.req_r, self.req_w):
            if fd >= 0:
                os.set_inheritable(fd, True)
        os.environ[ENV] = f"{self.main.fd},{self.log_r},{self.req_r},{self.req_w},{self.main.path or ''}"

    def finish(self) -> None:
        """The process exits: the last lines out, fd 1 and 2 back on the log file."""
        if os.getpid() != self.owner:
            return
        self.stop()
        self.drain()
        self._run_actions()
        os.dup2(self.main.fd, 1)
        os.dup2(self.main.fd, 2)
        self.drain()        # what raced the dup2
        for sink in self.sinks + self.req_sinks:
            try:
                sink.close()
            except Exception:
                pass


def _pair(bufsize: int) -> tuple[int, int]:
    import socket
    r, w = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    if bufsize:
        for s, opt in ((r, socket.SO_RCVBUF), (w, socket.SO_SNDBUF)):
            try:
                if s.getsockopt(socket.SOL_SOCKET, opt) < bufsize:
                    s.setsockopt(socket.SOL_SOCKET, opt, bufsize)
            except OSError:
                pass
    return r.detach(), w.detach()


def _regexps(values, option: str, named: bool = False, ids: dict | None = None) -> list:
    import re
    out = []
    for value in values:
        if named:
            ident, space, pattern = value.partition(" ")
            if not space or not pattern:
                raise LogSinkError(f"{option} {value}: must be LOGGER-NAME REGEXP")
            sink = (ids or {}).get(ident)
            if sink is None:
                raise LogSinkError(f"{option} {value}: no --logger named {ident!r} (name one with "
                                   f"--logger \"{ident} PLUGIN:ARGS\")")
        else:
            pattern = value
        try:
            rx = re.compile(pattern.encode("utf-8", "surrogateescape"))
        except re.error as e:
            raise LogSinkError(f"{option} {value}: bad regexp: {e}") from None
        out.append((rx, sink) if named else rx)
    return out


def active() -> bool:
    return _master is not None


def watch(fn) -> None:
    """fn(message: bytes) sees every server log message (not request lines) the log master reads,
    in its thread: fn must be quick and must not log (its own lines would come back to it)."""
    if fn not in _watchers:
        _watchers.append(fn)


def start(*, loggers=(), req_loggers=(), routes=(), req_routes=(), drains=(), filters=(), encoders=(),
          req_encoders=(), maxsize=0, backupname=None, touch_rotate=(), touch_reopen=(), bufsize=0,
          chmod=None, chown=None, reopen_main=False, early=b"") -> LogMaster:
    """Start the log master in this process (the master, before it forks), or adopt the one a
    previous master handed over through exec. `early`: what the start-up logged before, which
    the log file has already and the loggers get now. Raises LogSinkError with one line."""
    global _master, request_fd
    inherited = _inherited()
    main_fd = os.dup(1) if inherited is None else inherited[0]
    if inherited is not None and reopen_main and logfile:
        fd = open_file(logfile)                  # --log-reopen: the path again after a reload
        os.dup2(fd, main_fd)
        os.close(fd)
    main = RotatingFile(main_fd, logfile, maxsize, backupname, chmod, chown)
    try:
        sinks = [parse_logger(s, main, "--logger", chmod, chown) for s in loggers]
        req_sinks = [parse_logger(s, main, "--req-logger", chmod, chown) for s in req_loggers]
        ids = {s.id: s for s in req_sinks + sinks if s.id}
        master = LogMaster(
            main, sinks, req_sinks,
            routes=_regexps(routes, "--log-route", True, ids),
            req_routes=_regexps(req_routes, "--log-req-route", True, ids),
            drains=_regexps(drains, "--log-drain"), filters=_regexps(filters, "--log-filter"),
            encoders=[Encoder(v) for v in encoders],
            req_encoders=[Encoder(v, "--log-req-encoder") for v in req_encoders],
            touch_rotate=touch_rotate, touch_reopen=touch_reopen, bufsize=bufsize,
            inherited=inherited[1:] if inherited is not None else None)
    except BaseException:
        if inherited is None:
            os.close(main_fd)
        raise
    _master = master
    request_fd = master.req_w if master.req_w >= 0 else 2
    if early and inherited is None:
        master.dispatch(early, main_too=False)
    os.register_at_fork(before=master.before_fork, after_in_parent=master.after_fork_in_parent,
                        after_in_child=master.after_fork_in_child)
    import atexit
    atexit.register(_finish_at_exit)
    master.start()
    return master


def _finish_at_exit() -> None:
    if _master is not None:
        _master.finish()


def _inherited():
    """(main fd, log reader, req reader, req writer) a re-exec'd master left us, once."""
    global logfile
    text = os.environ.pop(ENV, None)
    if not text:
        return None
    try:
        main_fd, log_r, req_r, req_w, path = text.split(",", 4)
        fds = (int(main_fd), int(log_r), int(req_r), int(req_w))
        os.fstat(fds[0])
        os.fstat(fds[1])
    except (ValueError, OSError):
        return None
    if logfile is None and path:
        logfile = path
    return fds


def release_inherited() -> None:
    """A re-exec'd master that no longer wants a log master: the last lines out, and the log
    file back on fd 1 and 2."""
    fds = _inherited()
    if fds is None:
        return
    main_fd, log_r, req_r, req_w = fds
    main = RotatingFile(main_fd, None)
    for fd in (log_r, req_r):
        if fd >= 0:
            os.set_blocking(fd, False)
            while True:
                try:
                    data = os.read(fd, READ_SIZE)
                except OSError:
                    break
                if not data:
                    break
                main.write(data)
    os.dup2(main_fd, 1)
    os.dup2(main_fd, 2)
    for fd in (main_fd, log_r, req_r, req_w):
        if fd > 2:
            try:
                os.close(fd)
            except OSError:
                pass


def set_main(fd: int, path: str | None) -> None:
    """--logto2 / --daemonize2 once the log master runs: the log file changes, fd 2 does not."""
    global logfile
    logfile = path
    m = _master
    os.dup2(fd, m.main.fd)
    os.close(fd)
    m.main.path = path


def stop_for_exec() -> None:
    """The master is about to re-exec itself: drain and stop; the next master adopts the fds."""
    m = _master
    if m is not None and os.getpid() == m.owner:
        m.stop()
        m._run_actions()
        m.export()


def before_fork_self() -> None:
    """--daemonize2: this very process goes on in a grandchild; the thread does not survive fork."""
    m = _master
    if m is not None:
        m.stop()
        m.keep_on_fork = True


def after_fork_self() -> None:
    m = _master
    if m is not None:
        m.keep_on_fork = False
        m.start()


def check_touches(server=None) -> None:
    m = _master
    if m is not None:
        m.check_touches()


def rotate() -> bool:
    """Rotate the log file now (uWSGI's uwsgi_log_rotate: the FIFO's `L`)."""
    m = _master
    if m is not None:
        m.request("rotate")
        return True
    return _alone(RotatingFile.rotate)


def reopen() -> bool:
    """Reopen the log file now (uWSGI's uwsgi_log_reopen: the FIFO's `l`), and file loggers."""
    m = _master
    if m is not None:
        m.request("reopen")
        return True
    return _alone(RotatingFile.reopen)


def _alone(action) -> bool:
    """No log master: this process's own fd 1 and 2 only (the others keep the old file)."""
    if not logfile:
        return False
    done = action(RotatingFile(2, logfile))
    if done:
        os.dup2(2, 1)
        try:
            os.write(2, b"only this process writes to the new file: the others keep the previous one "
                        b"until they are respawned (--log-master makes every process follow)\n")
        except OSError:
            pass
    return done
