"""Process log output. Everything (request lines, errors, plugin messages) goes to fd 2;
--logto and --daemonize redirect fd 2 to their file, so this module never needs to know."""

from __future__ import annotations

import os
import traceback


def log(line: str | bytes) -> None:
    data = line if isinstance(line, bytes) else line.encode("utf-8", "backslashreplace")
    if not data.endswith(b"\n"):
        data += b"\n"
    try:
        os.write(2, data)
    except OSError:
        pass


def log_exception(prefix: str = "") -> None:
    """The current exception's traceback, one log write."""
    text = traceback.format_exc()
    log(f"{prefix}\n{text}" if prefix else text)
