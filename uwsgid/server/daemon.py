"""Process set-up around the master: stdin, --logto, --daemonize, --pidfile, --uid/--gid, --vacuum.

Errors a user can cause raise DaemonError with one line; main prints it and exits 1.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat

from uwsgid.util.log import replay_early


class DaemonError(Exception):
    pass


def _open_log(path: str) -> int:
    try:
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
    except OSError as e:
        raise DaemonError(f"cannot open log file {path}: {e.strerror}") from None


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
    """Send fd 2 (everything uwsgid.util.log writes) and fd 1 to a file or a udp address."""
    if "/" not in target and ":" in target and target.rsplit(":", 1)[1].isdigit():
        fd = _udp_log(target)
    else:
        fd = _open_log(target)
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
    if os.fork():
        os._exit(0)
    os.setsid()
    if os.fork():
        os._exit(0)
    stdin_to_devnull()
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
