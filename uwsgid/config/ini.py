"""uWSGI's ini dialect: `[section]` headers, `key = value` (repeated keys repeat the option),
`;` and `#` comment lines, a key without `=` has the empty value (a flag set to true).
No quoting, no inline comments, no interpolation here: that is uWSGI's format, not configparser's."""

from __future__ import annotations

from uwsgid.config.entries import ConfigError


def parse(text: str, section: str, name: str) -> list[tuple[str, str]]:
    items: list[tuple[str, str]] = []
    current = ""
    found = False
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip(" \t\r")
        if not line or line[0] in ";#":
            continue
        if line[0] == "[":
            if not line.endswith("]"):
                raise ConfigError(f"{name}:{lineno}: malformed section header {line!r}")
            current = line[1:-1].strip()
            if current == section:
                found = True
            continue
        if current != section:
            continue
        key, _, value = line.partition("=")
        key = key.strip(" \t")
        if not key:
            raise ConfigError(f"{name}:{lineno}: line without an option name: {line!r}")
        items.append((key, value.strip(" \t\r")))
    if not found:
        raise ConfigError(f"{name}: no [{section}] section")
    return items
