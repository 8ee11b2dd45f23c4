"""The forms values take where they enter the services: uWSGI's `key=value,key=value` option
values (--cache2, --metric), split one way for all, and the keys, values and arguments apps give
from either runtime, turned into bytes one way for all."""

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


def to_bytes(value, what: str = "value") -> bytes:
    """bytes for a key/value/argument given by an app in either runtime."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, bool):
        raise ValueError(f"{what} must be a string or bytes, not a boolean")
    if isinstance(value, int):
        return str(value).encode()
    if isinstance(value, float):
        # Lua prints integral floats without ".0" (5.1/LuaJIT): follow lua_tolstring
        return (str(int(value)) if value.is_integer() else repr(value)).encode()
    raise ValueError(f"{what} must be a string or bytes, not {type(value).__name__}")
