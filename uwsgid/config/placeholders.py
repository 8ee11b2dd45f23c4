"""Placeholder expansion in option values, as uWSGI does it:

  %(name)        the first value given for option/placeholder `name` anywhere in the
                 configuration (command line, env, files); left as is when unknown, so
                 `log-format = %(addr) %(uri)` survives
  %(a + 1)       uWSGI's placeholder math: space-separated tokens, numbers, names,
                 + - * / (integer), ++ and --; names and numbers are concatenated otherwise
  $(NAME)        the environment variable NAME; left as is when unset
  @(path)        the contents of the file at path, without its trailing newline
"""

from __future__ import annotations

import os

from uwsgid.config.entries import ConfigError

TYPE_CHECKING = False
if TYPE_CHECKING:      # annotations only: importing typing costs start-up time
    from collections.abc import Callable

_TOKEN = r"([%$@])\(([^()]*)\)"     # re is imported where a value holds one: --version does without it
_MAX_DEPTH = 16


def _math(expr: str, lookup: Callable[[str], str | None]) -> str:
    current: str | None = None
    op = None
    for tok in expr.split():
        if tok in ("+", "-", "*", "/"):
            op = tok
            continue
        if tok in ("++", "--"):
            if current is not None:
                current = str(_int(current) + (1 if tok == "++" else -1))
            op = None
            continue
        value = tok if tok.isdigit() else (lookup(tok) or "")
        if op is None:
            current = (current or "") + value
        else:
            a, b = _int(current or ""), _int(value)
            if op == "+":
                current = str(a + b)
            elif op == "-":
                current = str(a - b)
            elif op == "*":
                current = str(a * b)
            else:
                current = str(int(a / b)) if b else "0"   # C division truncates toward 0
        op = None
    return current or ""


def _int(s: str) -> int:
    import re
    m = re.match(r"\s*([+-]?\d+)", s)
    return int(m.group(1)) if m else 0


def read_at_file(path: str) -> str:
    try:
        with open(path, "rb") as f:
            data = f.read().decode("utf-8", "surrogateescape")
    except OSError as e:
        raise ConfigError(f"cannot read @({path}): {e.strerror or e}") from None
    except ValueError:      # a NUL byte in the name
        raise ConfigError(f"cannot read @({path!r}): a file name cannot contain a NUL byte") from None
    if data.endswith("\n"):
        data = data[:-1]
    return data


def expand(value: str, lookup: Callable[[str], str | None], environ=os.environ, depth: int = 0) -> str:
    """Expand placeholders in one value. `lookup(name)` returns the (already expanded) value
    of an option or placeholder, or None."""
    if "(" not in value:
        return value
    if depth > _MAX_DEPTH:
        return value

    import re

    def sub(m: re.Match) -> str:
        sigil, body = m.group(1), m.group(2)
        if sigil == "$":
            env = environ.get(body)
            return m.group(0) if env is None else env
        if sigil == "@":
            return read_at_file(body)
        if " " in body.strip():
            return _math(body, lookup)
        found = lookup(body.strip())
        return m.group(0) if found is None else found

    return re.sub(_TOKEN, sub, value)
