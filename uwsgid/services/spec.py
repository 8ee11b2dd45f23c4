"""uWSGI's `key=value,key=value` option values (--cache2, --metric), split one way for all."""

from __future__ import annotations


def keyvals(spec: str, option: str, error: type[Exception]):
    """(key, value) pairs of `spec`; keys stripped with dashes as underscores, empty parts
    skipped; a part without '=' raises `error` naming the option."""
    for part in spec.split(","):
        if not part.strip():
            continue
        k, sep, v = part.partition("=")
        if not sep:
            raise error(f"--{option} {spec}: expected key=value, got {part!r}")
        yield k.strip().replace("-", "_"), v
