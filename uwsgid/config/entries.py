"""One configuration item as read from any source, before conversion to its option's type."""

from __future__ import annotations

from dataclasses import dataclass


class ConfigError(Exception):
    """A bad config file or value: the message is one line naming the file and the problem."""


def normalize_key(key: str) -> str:
    # uWSGI env vars map `_` to `-`; we accept `max_requests` in files too, and placeholder
    # lookups normalise the same way, so `%(base_dir)` finds `base-dir`.
    return key.strip().replace("_", "-")


@dataclass
class Entry:
    key: str                  # normalised name: "socket", "lua-gc-freq", or a placeholder name
    value: str | None         # None: a command-line flag given without a value
    origin: str               # "command line", "environment", or the config file's name
    strict: bool = False      # an unknown key is an error (the command line), else a placeholder
    placeholder_only: bool = False   # from --set-placeholder: never applied as an option
    display: str = ""         # how the user wrote it ("--socket", "-s"), for messages

    def __post_init__(self):
        self.key = normalize_key(self.key)
        if not self.display:
            self.display = f"--{self.key}"

    def where(self) -> str:
        return "" if self.origin == "command line" else f" (in {self.origin})"
