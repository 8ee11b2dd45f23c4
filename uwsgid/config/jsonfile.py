"""JSON configs: {"uwsgi": {"socket": ":3031", "master": true, "env": ["A=1", "B=2"]}}."""

from __future__ import annotations

from uwsgid.config import structured
from uwsgid.config.entries import ConfigError


def parse(text: str, section: str, name: str) -> list[tuple[str, str]]:
    import json   # only --json configs need it: not carried into every worker
    try:
        # object_pairs_hook keeps repeated keys, which uWSGI's json loader also applies in order
        doc = json.loads(text, object_pairs_hook=_pairs)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{name}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    return structured.items(doc, section, name)


class _Multi(list):
    """Values of a key repeated in one JSON object."""


def _pairs(pairs):
    out: dict = {}
    for k, v in pairs:
        if k in out:
            prev = out[k]
            if not isinstance(prev, _Multi):
                prev = _Multi(prev if isinstance(prev, list) else [prev])
            prev.extend(v if isinstance(v, list) else [v])
            out[k] = prev
        else:
            out[k] = v
    return out
