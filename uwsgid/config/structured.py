"""The shared shape of json and yaml configs: {section: {key: value | [values]}}."""

from __future__ import annotations

from uwsgid.config.entries import ConfigError


def _scalar(value, key: str, name: str) -> str | None:
    if value is None:
        return None
    # as uWSGI's json loader: true is "1", false is "0" (so %(master) reads the same)
    if value is True:
        return "1"
    if value is False:
        return "0"
    if isinstance(value, (int, float, str)):
        return str(value)
    raise ConfigError(f"{name}: option {key!r} has a nested {type(value).__name__}, "
                      f"expected a string, number, boolean or list of them")


def items(doc, section: str, name: str) -> list[tuple[str, str]]:
    if not isinstance(doc, dict):
        raise ConfigError(f"{name}: expected a mapping with a {section!r} section at the top level")
    if section not in doc:
        raise ConfigError(f"{name}: no {section!r} section")
    body = doc[section]
    if body is None:
        return []
    if not isinstance(body, dict):
        raise ConfigError(f"{name}: section {section!r} must be a mapping of options")
    out: list[tuple[str, str]] = []
    for key, value in body.items():
        key = str(key)
        values = value if isinstance(value, list) else [value]
        for v in values:
            s = _scalar(v, key, name)
            if s is not None:      # null: the option is left out
                out.append((key, s))
    return out
