"""Reading config files: FILE[:SECTION] specs, the type from --ini/--json/--yaml or the
extension, magic variables on the raw text, and includes (`ini = other.ini` inside a file)
expanded in place, as uWSGI does (an include is applied at the position it appears)."""

from __future__ import annotations

import os
import sys

from uwsgid.config.entries import ConfigError

TYPE_CHECKING = False
if TYPE_CHECKING:      # annotations only: importing typing costs start-up time
    from collections.abc import Callable

# kind -> the module whose parse(text, section, path) reads it: imported when such a file is read
PARSERS = {"ini": "uwsgid.config.ini", "json": "uwsgid.config.jsonfile", "yaml": "uwsgid.config.yamlfile"}
EXTENSIONS = {".ini": "ini", ".json": "json", ".js": "json", ".yaml": "yaml", ".yml": "yaml"}
_MAX_DEPTH = 32


def kind_of(path: str) -> str | None:
    return EXTENSIONS.get(os.path.splitext(path)[1].lower())


def split_spec(spec: str) -> tuple[str, str | None]:
    """`app.ini:section` -> ("app.ini", "section"); `:section` keeps the path empty (= last file)."""
    path, colon, section = spec.rpartition(":")
    if not colon or "/" in section:
        return spec, None
    return path, (section or None)


class Loader:
    """Loads config files for one parse. `on_item(key, value, origin)` receives every item in
    order; it calls `include` back for ini/json/yaml/inherit keys."""

    def __init__(self, on_item: Callable[[str, str, str], None], cache: dict | None = None):
        self.on_item = on_item
        # path -> text, shared by the parse's two passes: stdin can be read only once
        self.cache = {} if cache is None else cache
        self.last_file: str | None = None
        self.first_file: str | None = None
        self.stack: list[tuple[str, str]] = []

    def include(self, spec: str, kind: str | None) -> None:
        path, section = split_spec(spec)
        if not path:
            if self.last_file is None:
                raise ConfigError(f"{spec}: no previous config file to take section {section!r} from")
            path = self.last_file
        if "\0" in path:
            raise ConfigError(f"{path!r}: a file name cannot contain a NUL byte")
        kind = kind or kind_of(path)
        if kind is None:
            raise ConfigError(f"{path}: unknown config file type (name it .ini, .json, .yaml or .yml, "
                              f"or load it with --ini/--json/--yaml)")
        section = section or "uwsgi"
        key = (os.path.realpath(path) if path != "-" else "-", section)
        if key in self.stack:
            chain = " -> ".join(p for p, _ in self.stack + [key])
            raise ConfigError(f"config include loop: {chain}")
        if len(self.stack) >= _MAX_DEPTH:
            raise ConfigError(f"{path}: config files nested more than {_MAX_DEPTH} deep")
        if path not in self.cache:
            self.cache[path] = self._read(path)
        text = self.cache[path]
        if self.first_file is None and path != "-":
            self.first_file = path
        self.last_file = path
        import importlib

        from uwsgid.config import magic  # config files only: not for a command line alone
        text = magic.magic_sub(text, magic.magic_table(path, section, self.first_file))
        items = importlib.import_module(PARSERS[kind]).parse(text, section, path)
        self.stack.append(key)
        try:
            for k, v in items:
                self.on_item(k, v, path)
        finally:
            self.stack.pop()

    @staticmethod
    def _read(path: str) -> str:
        import re
        if re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", path):
            raise ConfigError(f"{path}: config sources with a scheme (http://, exec://, fd://...) "
                              f"are not supported; give a file path")
        try:
            if path == "-":
                return sys.stdin.read()
            with open(path, "rb") as f:
                data = f.read()
        except IsADirectoryError:
            raise ConfigError(f"cannot read config file {path}: it is a directory") from None
        except OSError as e:
            raise ConfigError(f"cannot read config file {path}: {e.strerror or e}") from None
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ConfigError(f"{path}: not UTF-8 text (byte {e.start})") from None
