"""uWSGI's configuration logic: `for`/`endfor` and `if-*`/`else`/`endif` blocks.

    for = 3031 3032            socket = 127.0.0.1:%(_)     endfor =
    if-env = PORT              http-socket = :%(_)         endif =
    if-exists = %dlocal.ini    ini = %(_)                  else =  ...  endif =

While a block is open, each following item is passed through the block: a `for` repeats it
once per value with `%(_)` replaced, an `if-*` keeps it (with `%(_)` = the tested value) only
when its condition holds, `else` keeps it only when the condition failed. Blocks do not nest
(uWSGI exits on recursive logic; so do we, with a message). Declared here because this module
gives them their meaning; the collector in uwsgid/config/cli.py drives them."""

from __future__ import annotations

import os

from uwsgid.config.entries import ConfigError
from uwsgid.config.options import Option, declare

TYPE_CHECKING = False
if TYPE_CHECKING:      # annotations only: importing typing costs start-up time
    from collections.abc import Callable

FOR = ("for", "for-glob", "for-times", "for-readline")
IF = ("if-env", "if-not-env", "if-opt", "if-not-opt", "if-exists", "if-not-exists",
      "if-file", "if-not-file", "if-dir", "if-not-dir", "if-directory", "if-hostname", "if-not-hostname",
      "if-hostname-match", "if-not-hostname-match", "if-plugin", "if-not-plugin",
      "if-reload", "if-not-reload")
END = ("endfor", "end-for", "endif", "end-if", "end")
ELSE = "else"

declare(
    Option("for", metavar="WORDS", help="repeat the following options for each space-separated word (%(_)), up to endfor"),
    Option("for-glob", metavar="PATTERN", help="repeat the following options for each file matching PATTERN"),
    Option("for-times", metavar="N", help="repeat the following options N times (%(_) = 1..N)"),
    Option("for-readline", metavar="FILE", help="repeat the following options for each line of FILE"),
    Option("if-env", metavar="VAR[=VALUE]", help="apply the following options if the env var is set (and equals VALUE)"),
    Option("if-not-env", metavar="VAR[=VALUE]", help="apply the following options if the env var is unset (or differs)"),
    Option("if-opt", metavar="OPT[=VALUE]", help="apply the following options if option/placeholder OPT is set (to VALUE)"),
    Option("if-not-opt", metavar="OPT[=VALUE]", help="apply the following options if OPT is not set (or differs)"),
    Option("if-exists", metavar="PATH", help="apply the following options if PATH exists"),
    Option("if-not-exists", metavar="PATH", help="apply the following options if PATH does not exist"),
    Option("if-file", metavar="PATH", help="apply the following options if PATH is a regular file"),
    Option("if-not-file", metavar="PATH", help="apply the following options if PATH is not a regular file"),
    Option("if-dir", metavar="PATH", aliases=("if-directory",), help="apply the following options if PATH is a directory"),
    Option("if-not-dir", metavar="PATH", help="apply the following options if PATH is not a directory"),
    Option("if-hostname", metavar="NAME", help="apply the following options if the hostname is NAME"),
    Option("if-not-hostname", metavar="NAME", help="apply the following options if the hostname is not NAME"),
    Option("if-hostname-match", metavar="REGEXP", help="apply the following options if the hostname matches REGEXP"),
    Option("if-not-hostname-match", metavar="REGEXP", help="apply the following options if the hostname does not match REGEXP"),
    Option("if-plugin", metavar="NAME", help="apply the following options if plugin NAME is loaded"),
    Option("if-not-plugin", metavar="NAME", help="apply the following options if plugin NAME is not loaded"),
    Option("if-reload", kind="optional", const="", help="apply the following options only when the master re-executes itself for a reload"),
    Option("if-not-reload", kind="optional", const="", help="apply the following options only on a first start"),
    Option("else", kind="optional", const="", help="apply the following options if the last if-* failed (newer uWSGI)"),
    Option("endfor", kind="optional", const="", aliases=("end-for",), help="end a for block"),
    Option("endif", kind="optional", const="", aliases=("end-if",), help="end an if block"),
    Option("end", kind="optional", const="", help="end a for or if block (newer uWSGI)"),
)

DIRECTIVES = frozenset((*FOR, *IF, *END, ELSE))
_MAX_ITEMS = 100_000       # a for-times typo must not build a billion-item list


def _hostname() -> str:
    import socket  # if-hostname only: --version and --help do without socket
    return socket.gethostname()


class Block:
    """The open block of one collector. `plugins`: names of the loaded plugins (if-plugin);
    `reloading`: this start is a reload (if-reload)."""

    def __init__(self, plugins=frozenset(), reloading: bool = False):
        self.plugins = frozenset(plugins)
        self.reloading = reloading
        self.kind: str | None = None
        self.arg = ""
        self.failed = False
        self.running = False      # items added by the block itself pass straight through

    @property
    def open(self) -> bool:
        return self.kind is not None and not self.running

    def directive(self, key: str, arg: str, where: str) -> None:
        if key in END:
            self.kind, self.arg, self.failed = None, "", False
            return
        if key == ELSE:
            self.kind = ELSE         # keeps `failed` from the if
            return
        if self.kind is not None:
            raise ConfigError(f"{key} inside a {self.kind} block{where}: config logic blocks do not nest")
        self.kind, self.arg, self.failed = key, arg, False

    def apply(self, key: str, value: str | None, emit: Callable[[str, str | None], None],
              opt_value: Callable[[str], str | None], environ, where: str) -> None:
        self.running = True
        try:
            self._apply(key, value, emit, opt_value, environ, where)
        finally:
            self.running = False

    def _apply(self, key, value, emit, opt_value, environ, where):
        kind, arg = self.kind, self.arg

        def sub(data: str | None) -> str | None:
            return value if value is None or data is None else value.replace("%(_)", data)

        if kind in FOR:
            for item in self._items(kind, arg, where):
                emit(key, sub(item))
            return
        if kind == ELSE:
            if self.failed:
                emit(key, value)
            return
        ok, data = self._test(kind, arg, opt_value, environ)
        self.failed = not ok
        if ok:
            emit(key, sub(data))

    @staticmethod
    def _items(kind: str, arg: str, where: str) -> list[str]:
        if kind == "for":
            return arg.split()
        if kind == "for-glob":
            import glob  # only for-glob needs it: not carried into every worker
            found = sorted(p + "/" if os.path.isdir(p) else p for p in glob.glob(arg))
            return found or [arg]          # GLOB_NOCHECK, as uWSGI
        if kind == "for-times":
            try:
                times = int(arg)
            except ValueError:
                raise ConfigError(f"for-times needs a number, got {arg!r}{where}") from None
            if times > _MAX_ITEMS:
                raise ConfigError(f"for-times {times}: more than {_MAX_ITEMS} repetitions{where}")
            return [str(i) for i in range(1, times + 1)]
        try:
            with open(arg, encoding="utf-8", errors="surrogateescape") as f:
                return [line.rstrip("\r\n") for line in f]
        except OSError as e:
            raise ConfigError(f"for-readline: cannot read {arg}: {e.strerror or e}{where}") from None
        except ValueError:
            raise ConfigError(f"for-readline: {arg!r}: a file name cannot contain a NUL byte{where}") from None

    def _test(self, kind: str, arg: str, opt_value, environ) -> tuple[bool, str | None]:
        negate = kind.startswith("if-not-")
        test = kind.replace("if-not-", "if-")
        if test == "if-reload":
            return self.reloading != negate, None
        if test == "if-plugin":
            return (arg in self.plugins) != negate, arg
        if test == "if-hostname-match":
            import re
            try:
                ok = re.search(arg, _hostname()) is not None
            except re.error as e:
                raise ConfigError(f"{kind}: bad regular expression {arg!r}: {e}") from None
            return ok != negate, arg
        if test in ("if-env", "if-opt"):
            name, eq, wanted = arg.partition("=")
            found = environ.get(name) if test == "if-env" else opt_value(name)
            if found is None:
                return negate, None
            if eq:
                return (found == wanted) != negate, found
            return not negate, found
        if test == "if-exists":
            ok = "\0" not in arg and os.access(arg, os.R_OK)
        elif test == "if-file":
            ok = os.path.isfile(arg)
        elif test in ("if-dir", "if-directory"):
            ok = os.path.isdir(arg)
        else:
            ok = _hostname() == arg
        return ok != negate, arg
