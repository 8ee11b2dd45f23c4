"""YAML configs (PyYAML): `uwsgi:` mapping, lists for repeated options. Loaded with
BaseLoader so every scalar stays the string the user wrote (`chmod-socket: 0660` must not
become the octal number 432, `master: yes` is handled by the flag converter). A key repeated
in one mapping keeps every value, in order, as uWSGI's own yaml reader applies each line."""

from __future__ import annotations

from uwsgid.config import structured
from uwsgid.config.entries import ConfigError

_loader = None


def _make_loader():
    import yaml

    class Loader(yaml.BaseLoader):
        pass

    def mapping(loader, node):
        out: dict = {}
        repeated: set = set()
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            value = loader.construct_object(value_node, deep=True)
            try:
                hash(key)
            except TypeError:
                raise ConfigError(f"a mapping key must be a plain value (line {key_node.start_mark.line + 1})") from None
            if key in out:
                if key not in repeated:
                    prev = out[key]
                    out[key] = list(prev) if isinstance(prev, list) else [prev]
                    repeated.add(key)
                out[key].extend(value if isinstance(value, list) else [value])
            else:
                out[key] = value
        return out

    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    return Loader


def parse(text: str, section: str, name: str) -> list[tuple[str, str]]:
    global _loader
    try:
        import yaml
    except ImportError:
        raise ConfigError(f"{name}: yaml configs need PyYAML (pip install PyYAML)") from None
    if _loader is None:
        _loader = _make_loader()
    try:
        doc = yaml.load(text, Loader=_loader)
    except ConfigError as e:
        raise ConfigError(f"{name}: {e}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{name}: invalid YAML{where}: {problem}") from None
    if doc is None:
        raise ConfigError(f"{name}: empty YAML document")
    return structured.items(doc, section, name)
