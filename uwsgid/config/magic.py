"""uWSGI's magic variables (%d %n %p %s %e %c %h %k ...), substituted in a config file's text
before it is parsed, exactly as uWSGI's magic_sub: `%X` with X in the table becomes its value,
`%%` is `%`, `%(` is left for placeholders, and any other `%X` becomes the empty string."""

from __future__ import annotations

import grp
import os
import pwd
import time

import uwsgid

_START = time.time()   # %t / %T: "unix time gathered at instance startup"


def _hostname() -> str:
    import socket  # config files only: --version and --help do without socket
    return socket.gethostname()


def _djb33x(data: bytes) -> int:
    h = 5381
    for b in data:
        h = ((h << 5) + h) ^ b
        h &= 0xFFFFFFFF
    return h


def _file_vars(path: str) -> dict[str, str]:
    """The per-file letters: o p s d e n c x i j and 0..9 (directory components)."""
    table = {"o": path}
    if path == "-":
        return table
    full = os.path.abspath(path)
    if not os.path.islink(path):
        full = os.path.realpath(path)
    directory, name = os.path.split(full)
    table["p"] = full
    table["s"] = name
    table["d"] = directory.rstrip("/") + "/"
    table["c"] = os.path.basename(directory.rstrip("/"))
    for i, part in enumerate([p for p in directory.split("/") if p][:10]):
        table[str(i)] = part
    base = os.path.basename(path)
    if "." in base:
        table["e"] = base.rsplit(".", 1)[1]
    if "." in name:
        table["n"] = name.rsplit(".", 1)[0]
    else:
        table["n"] = name
    try:
        table["i"] = str(os.stat(full).st_ino)
    except OSError:
        pass
    table["j"] = format(_djb33x(full.encode()), "x")
    return table


def _process_vars() -> dict[str, str]:
    uid, gid = os.getuid(), os.getgid()
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = str(uid)
    try:
        group = grp.getgrgid(gid).gr_name
    except KeyError:
        group = str(gid)
    return {
        "v": os.getcwd(), "V": uwsgid.__version__, "h": _hostname(),
        "k": str(os.cpu_count() or 1), "u": str(uid), "U": user, "g": str(gid), "G": group,
        "t": str(int(_START)), "T": str(int(_START * 1_000_000)), "[": "\033",
        "%": "%", "(": "%(",
    }


def magic_table(path: str, section: str = "", first: str | None = None) -> dict[str, str]:
    """Letters for one config file; capitals (O P S D E N C X I J) describe the first
    (non-template) config file loaded, `first`, or this one if it is the first."""
    table = _process_vars()
    own = _file_vars(path)
    own["x"] = f"{os.path.basename(path)}:{section}" if section else os.path.basename(path)
    table.update(own)
    first_vars = _file_vars(first) if first else own
    if first:
        first_vars["x"] = os.path.basename(first)
    for letter in "opsdencxij":
        if letter in first_vars:
            table[letter.upper()] = first_vars[letter]
    return table


def magic_sub(text: str, table: dict[str, str]) -> str:
    out = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        # a `%` ending a line stays (uWSGI would eat the newline and merge two lines)
        if ch == "%" and i + 1 < n and text[i + 1] != "\n":
            out.append(table.get(text[i + 1], ""))
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)
