"""One configuration item as read from any source, before conversion to its option's type."""

from __future__ import annotations


class ConfigError(Exception):
    """A bad config file or value: the message is one line naming the file and the problem."""


def normalize_key(key: str) -> str:
    # uWSGI env vars map `_` to `-`; we accept `max_requests` in files too, and placeholder
    # lookups normalise the same way, so `%(base_dir)` finds `base-dir`.
    return key.strip().replace("_", "-")


class Entry:
    # A plain class, not a dataclass: `dataclasses` costs every worker ~1.5 MB (inspect, ast...).
    __slots__ = ("key", "value", "origin", "strict", "placeholder_only", "display")

    def __init__(self, key: str, value: str | None, origin: str, strict: bool = False,
                 placeholder_only: bool = False, display: str = ""):
        self.key = normalize_key(key)  # normalised name: "socket", "lua-gc-freq", or a placeholder name
        self.value = value             # None: a command-line flag given without a value
        self.origin = origin           # "command line", "environment", or the config file's name
        self.strict = strict           # an unknown key is an error (the command line), else a placeholder
        self.placeholder_only = placeholder_only   # from --set-placeholder: never applied as an option
        self.display = display or f"--{self.key}"  # how the user wrote it ("--socket", "-s"), for messages

    def _fields(self) -> tuple:
        return tuple(getattr(self, f) for f in self.__slots__)

    def __eq__(self, other):
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._fields() == other._fields()

    __hash__ = None   # compared by value, as the dataclass it replaces

    def __repr__(self) -> str:
        return "Entry(" + ", ".join(f"{f}={getattr(self, f)!r}" for f in self.__slots__) + ")"

    def where(self) -> str:
        return "" if self.origin == "command line" else f" (in {self.origin})"
