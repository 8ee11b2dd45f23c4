"""Process log output. Everything (errors, plugin messages) goes to fd 2; --logto and
--daemonize redirect fd 2 to their file, and with a log master (uwsgid.util.loggers) fd 2 is its
socket, so this module never needs to know. Request lines go to fd 2 too, or to the
--req-logger socket (loggers.request_fd). One message is one write: a log master receives it
whole, never mixed with another process's line.

Lines logged while the server starts (the config's warnings come before --logto or --daemonize
can open their file) are also kept, and written again into each log file opened during the
start-up (replay_early), as uWSGI's log has them: a systemd or Docker operator reads only the
file. The start-up ends the keeping (forget_early), before any fork.

--log-date dates the server's messages (`log`), as uWSGI's uwsgi_log does; request lines
(`log_request`) carry their own date and are written as they are, as uWSGI's request logger does."""

from __future__ import annotations

import os
import time

from uwsgid.util import loggers

_TRUE = {"", "true", "1", "on", "yes"}
_FALSE = {"false", "0", "off", "no"}
_date_format: str | None = None     # None: no date; "": ctime; else a strftime format
_early: list[bytes] | None = []     # lines logged during the start-up (None once it is over)
_EARLY_MAX = 1000


def set_date_format(value: str | None) -> None:
    """--log-date's value: None (not given) or false/0/off/no: no date; no value or
    true/1/on/yes: ctime ("Sat Nov 21 21:48:18 2026"); anything else: a strftime format."""
    global _date_format
    if value is None or value.strip().lower() in _FALSE:
        _date_format = None
    else:
        _date_format = "" if value.strip().lower() in _TRUE else value


def _date_prefix() -> bytes:
    fmt = _date_format
    text = time.ctime() if fmt == "" else time.strftime(fmt)
    return (text + " - ").encode("utf-8", "backslashreplace")


def log(line: str | bytes) -> None:
    data = line if isinstance(line, bytes) else line.encode("utf-8", "backslashreplace")
    if _date_format is not None:
        data = _date_prefix() + data
    _write(data)


_MAX_WRITE = 1 << 16     # under a log master's socket buffer: a longer text goes as several messages


def _write(data: bytes, fd: int = 2) -> None:
    if not data.endswith(b"\n"):
        data += b"\n"
    try:
        if len(data) <= _MAX_WRITE:
            os.write(fd, data)
        else:
            _write_long(fd, data)
    except OSError:
        pass
    early = _early
    if early is not None and len(early) < _EARLY_MAX:
        early.append(data)


def _identity(fd: int):
    try:
        st = os.fstat(fd)
    except OSError:
        return None
    return st.st_dev, st.st_ino


_has_early: set = {_identity(2)}     # files that got the start-up's lines: stderr as started


def replay_early() -> None:
    """fd 2 now goes to a new log file: write into it what the start-up logged so far (once
    per file: --logto2 may name --logto's file again)."""
    ident = _identity(2)
    if _early and ident not in _has_early:
        _has_early.add(ident)
        try:
            os.write(2, b"".join(_early))
        except OSError:
            pass


def early_lines() -> bytes:
    """What the start-up logged so far (for loggers set up after it)."""
    return b"".join(_early or ())


def forget_early() -> None:
    """The start-up is over: stop keeping its lines."""
    global _early
    _early = None


def _write_long(fd: int, data: bytes) -> None:
    """A long text (a traceback) in pieces cut after a newline where there is one."""
    pos = 0
    while pos < len(data):
        end = pos + _MAX_WRITE
        if end < len(data):
            cut = data.rfind(b"\n", pos, end)
            end = cut + 1 if cut > pos else end
        chunk = memoryview(data)[pos:end]
        while chunk:
            chunk = chunk[os.write(fd, chunk):]
        pos = end


def log_request(data: bytes) -> None:
    """A request line, written as it is (its format has its own date)."""
    if not data.endswith(b"\n"):
        data += b"\n"
    try:
        os.write(loggers.request_fd, data)
    except OSError:
        pass


def reopen() -> bool:
    """Reopen the log file now (the master FIFO's `l`); False when there is no log file."""
    return loggers.reopen()


def rotate() -> bool:
    """Rotate the log file now (the master FIFO's `L`): renamed to --log-backupname or
    FILE.<unix time>, a new file opened; False when there is no log file."""
    return loggers.rotate()


def log_exception(prefix: str = "") -> None:
    """The current exception's traceback, one log write."""
    import traceback  # here: it pulls linecache/tokenize/textwrap into every worker otherwise
    text = traceback.format_exc()
    log(f"{prefix}\n{text}" if prefix else text)
