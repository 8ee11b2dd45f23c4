"""YAML configs (PyYAML): `uwsgi:` mapping, lists for repeated options. Loaded with
BaseLoader so every scalar stays the string the user wrote (`chmod-socket: 0660` must not
become the octal number 432, `master: yes` is handled by the flag converter)."""

from __future__ import annotations

from uwsgid.config import structured
from uwsgid.config.entries import ConfigError


def parse(text: str, section: str, name: str) -> list[tuple[str, str]]:
    try:
        import yaml
    except ImportError:
        raise ConfigError(f"{name}: yaml configs need PyYAML (pip install PyYAML)") from None
    try:
        doc = yaml.load(text, Loader=yaml.BaseLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{name}: invalid YAML{where}: {problem}") from None
    if doc is None:
        raise ConfigError(f"{name}: empty YAML document")
    return structured.items(doc, section, name)
