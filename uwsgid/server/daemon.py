"""Process set-up around the master: stdin, --logto, --daemonize, --pidfile, --uid/--gid, --vacuum.

Errors a user can cause raise DaemonError with one line; main prints it and exits 1.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat

from uwsgid.util import loggers
from uwsgid.util.log import early_lines, log, replay_early
from uwsgid.util.logsinks import PLUGINS, LogSinkError, RsyslogSink


class DaemonError(Exception):
    pass


# Options that need uWSGI's log master (its UWSGI_OPT_LOG_MASTER / UWSGI_OPT_REQ_LOG_MASTER flags)
LOG_MASTER_OPTIONS = ("log_master", "threaded_logger", "logger", "req_logger", "log_syslog", "log_socket",
                      "log_maxsize", "touch_logrotate", "touch_logreopen", "log_encoder", "log_req_encoder",
                      "log_drain", "log_filter", "log_route", "log_req_route", "log_alarm", "not_log_alarm",
                      "alarm_segfault", "worker_logger", "worker_logger_req", "worker_log_encoder",
                      "worker_log_req_encoder")


class _LogFiles:
    """How log files are opened: set from the options by open_logs."""
    chmod: int | None = None        # --logfile-chmod
    chown: tuple[int, int] | None = None    # --logfile-chown: (uid, gid), -1 = unchanged
    truncate = False                # --log-truncate (first start only)
    keep_inherited = False          # a reload without --log-reopen: the open log stays


def _open_log(path: str) -> int:
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | (os.O_TRUNC if _LogFiles.truncate else 0)
    try:
        fd = os.open(path, flags, 0o640)
    except OSError as e:
        raise DaemonError(f"cannot open log file {path}: {e.strerror}") from None
    try:
        if _LogFiles.chmod is not None:
            os.fchmod(fd, _LogFiles.chmod)
        if _LogFiles.chown is not None:
            os.fchown(fd, *_LogFiles.chown)
    except OSError as e:
        os.close(fd)
        raise DaemonError(f"cannot {'chmod' if _LogFiles.chown is None else 'chmod/chown'} log file "
                          f"{path}: {e.strerror}") from None
    return fd


def _is_udp(target: str) -> bool:
    return "/" not in target and ":" in target and target.rsplit(":", 1)[1].isdigit()


def wants_log_master(opts) -> bool:
    return any(opts.get(name.replace("_", "-")) for name in LOG_MASTER_OPTIONS)


def _logfile_chmod(value: str | None) -> int | None:
    if value is None:
        return None
    if len(value) != 3 or any(c not in "01234567" for c in value):
        raise DaemonError(f"--logfile-chmod {value}: invalid chmod value (three octal digits, e.g. 640)")
    return int(value, 8)


def _logfile_owner(opts) -> tuple[int, int] | None:
    if not opts.logfile_chown or not (opts.uid or opts.gid):
        return None
    uid, gid = -1, -1
    if opts.uid:
        uid, user_gid, _ = _resolve_uid(opts.uid)
        gid = user_gid if user_gid is not None else -1
    if opts.gid:
        gid = _resolve_gid(opts.gid)
    return uid, gid


def open_logs(opts, reloading: bool) -> None:
    """--logto (not again on a reload unless --log-reopen: the open file is inherited, as in
    uWSGI), then the log master when an option needs it (uwsgid.util.loggers)."""
    _LogFiles.chmod = _logfile_chmod(opts.logfile_chmod)
    _LogFiles.chown = _logfile_owner(opts)
    _LogFiles.truncate = bool(opts.log_truncate) and not reloading
    _LogFiles.keep_inherited = reloading and not opts.log_reopen
    want = wants_log_master(opts)
    handed_over = loggers.ENV in os.environ
    if handed_over and not want:
        loggers.release_inherited()
        handed_over = False
    for target in (opts.logto, opts.daemonize):
        if target and not _is_udp(target):
            loggers.logfile = target
            break
    if opts.logto:
        if not reloading or (opts.log_reopen and not handed_over):
            redirect_log(opts.logto)
    elif opts.daemonize and reloading and opts.log_reopen and not handed_over:
        redirect_log(opts.daemonize)
    elif opts.daemonize and not reloading and loggers.logfile:
        try:        # daemonize() opened it before these options were read
            if _LogFiles.chmod is not None:
                os.fchmod(2, _LogFiles.chmod)
            if _LogFiles.chown is not None:
                os.fchown(2, *_LogFiles.chown)
        except OSError as e:
            raise DaemonError(f"cannot chmod/chown log file {loggers.logfile}: {e.strerror}") from None
    later_file = opts.daemonize2 or (opts.logto2 and not _is_udp(opts.logto2))
    if (opts.log_maxsize or opts.touch_logrotate) and not (loggers.logfile or later_file):
        log("*** WARNING: --log-maxsize / --touch-logrotate: the log is not a file, nothing will be "
            "rotated (give --logto FILE or --daemonize FILE) ***")
    if opts.loggers_list:
        log("\n*** uWSGI loaded loggers ***\n" + "\n".join(PLUGINS) + "\n--- end of loggers list ---\n")
    if not want:
        return
    RsyslogSink.packet_size = max(64, int(opts.rsyslog_packet_size or 1024))
    RsyslogSink.split = bool(opts.rsyslog_split_messages)
    try:
        loggers.start(
            loggers=[*opts.logger, *opts.worker_logger, *(f"syslog:{v}" for v in opts.log_syslog),
                     *(f"socket:{v}" for v in opts.log_socket)],
            req_loggers=[*opts.req_logger, *opts.worker_logger_req], routes=opts.log_route,
            req_routes=opts.log_req_route,
            drains=opts.log_drain, filters=opts.log_filter, encoders=[*opts.log_encoder, *opts.worker_log_encoder],
            req_encoders=[*opts.log_req_encoder, *opts.worker_log_req_encoder], maxsize=int(opts.log_maxsize or 0),
            backupname=opts.log_backupname, touch_rotate=opts.touch_logrotate,
            touch_reopen=opts.touch_logreopen, bufsize=int(opts.log_master_bufsize or 0),
            chmod=_LogFiles.chmod, chown=_LogFiles.chown, reopen_main=bool(opts.log_reopen),
            early=early_lines())
    except LogSinkError as e:
        raise DaemonError(str(e)) from None
    except OSError as e:
        raise DaemonError(f"cannot start the log master: {e.strerror or e}") from None
    for value in [*opts.log_encoder, *opts.worker_log_encoder]:
        log(f"[log-encoder] registered {value}")        # uWSGI's start-up lines
    for value in [*opts.log_req_encoder, *opts.worker_log_req_encoder]:
        log(f"[log-req-encoder] registered {value}")
    from uwsgid.util import hooks
    hooks.register("master_tick", loggers.check_touches)


def _udp_log(addr: str) -> int:
    """--logto HOST:PORT (no slash, has a colon): each log write becomes one UDP datagram."""
    import socket  # --logto HOST:PORT only: --version and --help do without socket
    host, _, port = addr.rpartition(":")
    try:
        s = socket.socket(socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET, socket.SOCK_DGRAM)
        s.connect((host.strip("[]") or "127.0.0.1", int(port)))
    except (OSError, ValueError) as e:
        raise DaemonError(f"cannot log to udp {addr}: {e}") from None
    return s.detach()


def redirect_log(target: str) -> None:
    """Send fd 2 (everything uwsgid.util.log writes) and fd 1 to a file or a udp address; with
    a log master, make it the log master's log file instead (fd 2 stays its socket)."""
    if _LogFiles.keep_inherited:
        if not _is_udp(target):
            loggers.logfile = target     # --logto2 on a reload: already open, inherited
        return
    udp = _is_udp(target)
    fd = _udp_log(target) if udp else _open_log(target)
    if loggers.active():
        loggers.set_main(fd, None if udp else target)
        return
    loggers.logfile = None if udp else target
    os.dup2(fd, 2)
    os.dup2(fd, 1)
    os.close(fd)
    replay_early()


def stdin_to_devnull() -> None:
    fd = os.open(os.devnull, os.O_RDONLY)
    if fd != 0:
        os.dup2(fd, 0)
        os.close(fd)


def daemonize(logfile: str | None) -> None:
    """Detach (double fork + setsid); the grandchild continues, logging to `logfile`."""
    fd = _open_log(logfile) if logfile else os.open(os.devnull, os.O_WRONLY)
    log_master = loggers.active()       # --daemonize2: its thread is stopped across the forks
    if log_master:
        loggers.before_fork_self()
    if os.fork():
        os._exit(0)
    os.setsid()
    if os.fork():
        os._exit(0)
    stdin_to_devnull()
    if log_master:
        loggers.set_main(fd, logfile)
        loggers.after_fork_self()
        return
    if logfile:
        loggers.logfile = logfile
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    if fd > 2:
        os.close(fd)
    if logfile:
        replay_early()


def write_pidfile(path: str, pid: int | None = None) -> None:
    try:
        with open(path, "w") as f:
            f.write(f"{pid or os.getpid()}\n")
    except OSError as e:
        raise DaemonError(f"cannot write pidfile {path}: {e.strerror}") from None


def remove_file(path: str | None) -> None:
    if path:
        try:
            os.unlink(path)
        except OSError:
            pass


def _resolve_gid(value: str) -> int:
    if value.isdigit():
        return int(value)
    try:
        return grp.getgrnam(value).gr_gid
    except KeyError:
        raise DaemonError(f"--gid: unknown group {value}") from None


def _resolve_uid(value: str) -> tuple[int, int | None, str | None]:
    """(uid, primary gid, user name) of a user name or number."""
    if value.isdigit():
        uid = int(value)
        try:
            pw = pwd.getpwuid(uid)
            return uid, pw.pw_gid, pw.pw_name
        except KeyError:
            return uid, None, None
    try:
        pw = pwd.getpwnam(value)
    except KeyError:
        raise DaemonError(f"--uid: unknown user {value}") from None
    return pw.pw_uid, pw.pw_gid, pw.pw_name


def drop_privileges(uid: str | None, gid: str | None, log) -> list[str]:
    """setgid then setuid (order matters: after setuid we may no longer change groups).
    Returns the module directories (sys.path) the new user cannot read, after warning once."""
    if not uid and not gid:
        return []
    target_gid = _resolve_gid(gid) if gid else None
    target_uid = user = None
    if uid:
        target_uid, user_gid, user = _resolve_uid(uid)
        if target_gid is None:
            target_gid = user_gid
    try:
        if target_gid is not None and target_gid != os.getgid():
            if user and os.getuid() == 0:
                os.initgroups(user, target_gid)
            elif os.getuid() == 0:
                os.setgroups([target_gid])
            os.setgid(target_gid)
            log(f"setgid() to {target_gid}")
        if target_uid is not None and target_uid != os.getuid():
            os.setuid(target_uid)
            log(f"setuid() to {target_uid}")
    except PermissionError as e:
        raise DaemonError(f"cannot drop privileges to uid={uid} gid={gid}: {e.strerror}") from None
    unreadable = unreadable_module_dirs()
    if unreadable:
        log(f"*** WARNING: {unreadable_hint(unreadable)} ***")
    return unreadable


def unreadable_module_dirs() -> list[str]:
    """The directories of sys.path that this process (its real uid/gid) cannot read: modules
    first imported after a privileges drop are not found there."""
    import sys
    out = []
    for path in sys.path:
        try:
            st = os.stat(path or ".")
        except PermissionError:         # under a directory we may not enter
            out.append(path)
            continue
        except OSError:                 # missing: nothing to read there anyway
            continue
        if stat.S_ISDIR(st.st_mode) and not os.access(path or ".", os.R_OK | os.X_OK):
            out.append(path)
    return out


def unreadable_hint(dirs: list[str]) -> str:
    shown = ", ".join(dirs[:3]) + (f" and {len(dirs) - 3} more" if len(dirs) > 3 else "")
    return (f"uid {os.getuid()} cannot read {shown} (Python's module path): a module first imported "
            f"after the privileges drop, by an app, is not found there; make those directories and "
            f"their parents readable by that user, or run an interpreter installed where it can read")
