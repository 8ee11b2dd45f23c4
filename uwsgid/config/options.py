"""Option declarations: one `Option` per setting feeds the parser, `--help` and the docs.

Every module that owns a concern declares its options next to its code:

    from uwsgid.config.options import Option, declare
    declare(Option("harakiri", "t", kind="int", default=0, group="core",
                   help="harakiri timeout in seconds: kill a worker stuck in one request"))

Plugins list theirs in `Plugin.options` (their `group` is the plugin's name); the
plugin loader registers them with `declare` when the plugin is loaded.

Parsed values live in an `Options` object: `opts.harakiri`, `opts.lua_gc_freq`
(dashes become underscores). Repeatable options (`multi=True`) are lists in the
order given. Unset options hold their default (flags: False). An option whose
name is also a method of Options (`set`) is read with `opts.get("set")`.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:      # annotations only: importing typing costs start-up time
    from typing import Any

# Argument kinds:
#   flag      no argument; `--opt` sets True; `--opt=false|0|no|off` sets False
#   str/int/float/size  one argument converted to that type (size accepts 64k/1m/1g)
#   optional  the argument may be omitted (`--chmod-socket` or `--chmod-socket=660`): `const` when omitted
KINDS = ("flag", "str", "int", "float", "size", "optional")


class Option:
    """One setting. A plain class with __slots__ rather than a dataclass: `dataclasses` pulls
    inspect/ast/dis/tokenize into every worker (~1.5 MB of RSS each)."""

    __slots__ = ("name", "short", "kind", "default", "help", "group", "multi", "const", "aliases",
                 "metavar", "needs_master")

    def __init__(self, name: str, short: str | None = None, kind: str = "str", default: Any = None,
                 help: str = "", group: str = "core", multi: bool = False, const: Any = None,
                 aliases: tuple[str, ...] = (), metavar: str = "", needs_master: bool = False):
        self.name = name              # long name without dashes: "lua-gc-freq"
        self.short = short            # one letter: "p" for -p
        self.kind = kind
        self.default = default
        self.help = help
        self.group = group            # "core" or the owning plugin's name
        self.multi = multi            # repeatable: values collected into a list
        self.const = const            # value of a kind="optional" option given without argument
        self.aliases = aliases        # other long names for the same setting ("workers" for "processes")
        self.metavar = metavar
        self.needs_master = needs_master   # setting it turns --master on (uWSGI's UWSGI_OPT_MASTER)
        if kind not in KINDS:
            raise ValueError(f"option {name}: unknown kind {kind!r}")
        if multi and default is None:
            self.default = []
        if kind == "flag" and default is None:
            self.default = False

    def _fields(self) -> tuple:
        return tuple(getattr(self, f) for f in self.__slots__)

    def __eq__(self, other):
        # equal when every field is (a plugin re-declaring the same option is not an error)
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._fields() == other._fields()

    __hash__ = None   # mutable and compared by value, as the dataclass it replaces

    def __repr__(self) -> str:
        args = ", ".join(f"{f}={getattr(self, f)!r}" for f in self.__slots__)
        return f"Option({args})"

    @property
    def attr(self) -> str:
        return self.name.replace("-", "_")


_registry: dict[str, Option] = {}   # every long name and alias -> Option
_order: list[Option] = []           # declaration order, for --help


def declare(*options: Option) -> None:
    for opt in options:
        # new unless its name is taken (by itself, or by an equal declaration: a plugin
        # re-declaring the same option). Not `opt in _order`: that compares every field of
        # every option declared so far, O(n^2) over ~700 options (tens of ms of start-up).
        new = _registry.get(opt.name) is None
        for name in (opt.name, *opt.aliases):
            existing = _registry.get(name)
            if existing is not None and existing is not opt:
                if existing == opt:
                    continue
                raise ValueError(f"option --{name} declared twice ({existing.group} and {opt.group})")
            _registry[name] = opt
        if new:
            _order.append(opt)


def lookup(name: str) -> Option | None:
    return _registry.get(name)


def by_short(letter: str) -> Option | None:
    for opt in _order:
        if opt.short == letter:
            return opt
    return None


def all_options() -> list[Option]:
    return list(_order)


class Options:
    """Parsed settings: attribute access by underscore name, defaults for what was not set."""

    def __init__(self):
        self._set: dict[str, Any] = {}
        # Filled by uwsgid.config.cli.parse: the plugins loaded for this run (embedded first, then
        # --plugins, in order), and every config item as (key, expanded value) in the order
        # given, placeholders included (value None: a flag given without a value).
        self.plugins_loaded: list = []
        self.exported: list[tuple[str, str | None]] = []

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("_"):
            raise AttributeError(attr)
        return self._value(attr)

    def _value(self, attr: str) -> Any:
        try:
            return self._set[attr]
        except KeyError:
            pass
        opt = _registry.get(attr.replace("_", "-"))
        if opt is None:
            raise AttributeError(f"no option named {attr!r}")
        return list(opt.default) if opt.multi else opt.default

    def set(self, opt: Option, value: Any) -> None:
        if opt.needs_master and value not in (False, None):
            self._set["master"] = True      # the feature lives in the master (uWSGI does the same)
        if opt.multi:
            self._set.setdefault(opt.attr, []).append(value)
        else:
            self._set[opt.attr] = value

    def is_set(self, name: str) -> bool:
        return name.replace("-", "_") in self._set

    def get(self, name: str, default: Any = None) -> Any:
        # not getattr: an option may share a method's name (--set is `opts.get("set")`)
        try:
            return self._value(name.replace("-", "_"))
        except AttributeError:
            return default

    def opt_dict(self) -> dict[str, Any]:
        """`uwsgi.opt` as uWSGI builds it: key -> value as given (placeholders included, True
        for a flag given without a value), a list of values for a key given more than once."""
        out: dict[str, Any] = {}
        for key, value in self.exported:
            value = True if value is None else value
            if key in out:
                prev = out[key]
                out[key] = (prev if isinstance(prev, list) else [prev]) + [value]
            else:
                out[key] = value
        return out

    def items(self):
        """The explicitly set options as (name, converted value); `opt_dict()` is `uwsgi.opt`."""
        return [(k.replace("_", "-"), v) for k, v in self._set.items()]


def value(opts, attr: str, default: Any) -> Any:
    """opts.<attr>, or `default` when it is unset (None) or unknown to `opts` (tests pass
    plain namespaces): for components that accept partial option objects."""
    try:
        v = getattr(opts, attr)
    except AttributeError:
        return default
    return default if v is None else v
