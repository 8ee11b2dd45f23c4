"""uWSGI's ini dialect, as core/ini.c reads it (not configparser's):
- lines end at "\\n" only; spaces, tabs and "\\r" around a line, a key and a value are dropped;
- a line whose first character is `;` or `#` is a comment; there are no inline comments: the
  value is everything after the first `=` (uWSGI reads numbers with strtol, so `workers = 4 # x`
  works there: the parser drops such a comment after numbers and booleans, see cli.convert);
- `[name]` starts a section, its name taken as written between the brackets (`[ uwsgi ]` is the
  section " uwsgi "); only the asked-for section's items count (default `uwsgi`,
  `file.ini:name` asks for another), items before the first header belong to no section;
- `key = value`: repeated keys repeat the option (a repeatable one collects, a single one takes
  the last); a key without `=` is given the empty value (a flag: true);
- `%(name)`, `$(ENV)`, `@(file)` and `%d`-style magic are left to the placeholder and magic
  passes: nothing is quoted, escaped or interpolated here.
Where this differs from uWSGI it is louder: a header without its `]` and a file without the
asked-for section are errors (uWSGI warns and runs without the file's options), and a UTF-8
byte-order mark (from Windows editors) is skipped rather than hiding the first header."""

from __future__ import annotations

from uwsgid.config.entries import ConfigError

_BLANK = " \t\r"


def parse(text: str, section: str, name: str) -> list[tuple[str, str]]:
    items: list[tuple[str, str]] = []
    current = ""
    sections: list[str] = []
    if text.startswith("\ufeff"):
        text = text[1:]
    for lineno, raw in enumerate(text.split("\n"), 1):
        line = raw.strip(_BLANK)
        if not line or line[0] in ";#":
            continue
        if line[0] == "[":
            if not line.endswith("]"):
                raise ConfigError(f"{name}:{lineno}: malformed section header {line!r} (no closing ])")
            current = line[1:-1]
            sections.append(current)
            continue
        if current != section:
            continue
        key, _, value = line.partition("=")
        key = key.rstrip(_BLANK)
        if not key:
            raise ConfigError(f"{name}:{lineno}: line without an option name: {line!r}")
        items.append((key, value.strip(_BLANK)))
    if section not in sections:
        near = [s for s in sections if s.strip(_BLANK) == section]
        hint = f" (there is [{near[0]}]: section names are not trimmed)" if near else ""
        raise ConfigError(f"{name}: no [{section}] section{hint}")
    return items


def uncommented(value: str) -> str:
    """`64   # max` -> `64`: the value of a number or boolean option without a trailing comment.
    uWSGI's reader keeps the whole value, but it reads a number with strtol (the comment is never
    looked at) and a flag as "anything but false/off/no/0", so such a comment works there, and
    here. A string keeps it, as in uWSGI (`env = A=b # c` sets A to `b # c`)."""
    import re
    return re.sub(r"\s+[#;].*\Z", "", value, flags=re.S)
