"""Process log output. Everything (request lines, errors, plugin messages) goes to fd 2;
--logto and --daemonize redirect fd 2 to their file, so this module never needs to know.

--log-date dates the server's messages (`log`), as uWSGI's uwsgi_log does; request lines
(`log_request`) carry their own date and are written as they are, as uWSGI's request logger does."""

from __future__ import annotations

import os
import time

_TRUE = {"", "true", "1", "on", "yes"}
_FALSE = {"false", "0", "off", "no"}
_date_format: str | None = None     # None: no date; "": ctime; else a strftime format


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


def _write(data: bytes) -> None:
    if not data.endswith(b"\n"):
        data += b"\n"
    try:
        os.write(2, data)
    except OSError:
        pass


# The request logger's lines: written as they are (their format has its own date).
log_request = _write


def log_exception(prefix: str = "") -> None:
    """The current exception's traceback, one log write."""
    import traceback   # here: it pulls linecache/tokenize/textwrap into every worker otherwise
    text = traceback.format_exc()
    log(f"{prefix}\n{text}" if prefix else text)
