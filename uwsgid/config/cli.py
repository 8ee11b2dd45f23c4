"""The command line and its config sources, parsed the way uWSGI does it.

Every source produces `Entry(key, value)` items in one ordered list, uWSGI's "exported
options": UWSGI_* environment variables first, then the command line in order, with config
files (--ini/--json/--yaml/--inherit, and `ini = ...` inside files) expanded where they
appear, then positional config files (getopt moves them after the options). Then each entry
is converted to its Option's type and set: scalars take the last value, repeatable options
collect every value in order. Placeholders (`%(name)`, `$(ENV)`, `@(file)`) are expanded
against the whole list, first value wins, as uWSGI's uwsgi_get_exported_opt.

Plugin options are only known once their plugin is loaded, so parsing runs twice: a
tolerant pass finds --plugins/--need-plugin/--plugin-dir (on the command line, in the
environment or in config files) and loads them through the plugin loader, then the strict
pass parses everything with every option declared. The loader sits in a higher layer
(uwsgid.plugins.loader): the entry point hands it over with use_plugin_loader(); without one,
only the options declared so far are known.
"""

from __future__ import annotations

import os
import sys

import uwsgid
import uwsgid.config.core_options  # noqa: F401  (declares the core options)
from uwsgid.config import env as env_source
from uwsgid.config import files, logic, placeholders, uwsgi_catalog  # catalog: no-op flags; table on demand
from uwsgid.config.entries import ConfigError, Entry, normalize_key
from uwsgid.config.options import Option, Options, all_options, by_short, declare, lookup
from uwsgid.util.log import log

declare(Option("show-config", kind="flag",
               help="log the whole configuration as ini (placeholders expanded) at start-up"))
declare(Option("include", kind="str", multi=True, metavar="FILE[:SECTION]",
               help="include a config file here (its type from its extension: .ini, .json, .yaml, .yml)"))

CLI = "command line"
_CONFIG_KINDS = {"ini": "ini", "json": "json", "yaml": "yaml", "inherit": None, "include": None}
_TRUE = {"", "1", "true", "yes", "on", "y", "t", "enable", "enabled"}
_FALSE = {"0", "false", "no", "off", "n", "f", "disable", "disabled"}
# regular expressions: re is imported where they are used (a size, a placeholder...), so that
# --version and --help do without it
_SIZE = r"^\s*(\d+)\s*([kmgKMG]?)[bB]?\s*$"
_PLACEHOLDER_REF = r"%\(([^()]*)\)"


# The plugin loader (uwsgid.plugins.loader, or a stand-in with the same functions in tests).
plugin_loader = None


def use_plugin_loader(loader) -> None:
    global plugin_loader
    plugin_loader = loader


class CliError(Exception):
    """A user error in the options or config: main prints `uwsgi: <message>` and exits 1."""

    def __init__(self, message: str):
        # one line whatever the user typed: control characters (a newline in a file name) escaped
        super().__init__("".join(c if c.isprintable() else repr(c)[1:-1] for c in str(message)))


# --------------------------------------------------------------------------- public API

def parse(argv: list[str], environ=None) -> Options:
    """Parse argv (without the program name) plus UWSGI_* env vars and config files."""
    environ = os.environ if environ is None else environ
    try:
        cache: dict = {}
        prescan = _collect(argv, environ, strict=False, cache=cache)
        plugins = _load_plugins(prescan.entries, environ, prescan.refs)
        final = _collect(argv, environ, strict=True, cache=cache, plugins=plugins)
        opts = Options()
        _apply(final.entries, opts, environ, final.refs)
    except ConfigError as e:
        raise CliError(str(e)) from None
    opts.plugins_loaded = plugins
    return opts


def informational(opts: Options) -> int | None:
    """--version, --help, --plugins-list: print to stdout and return 0; else None.
    --show-config logs the configuration and lets the start-up go on (None)."""
    if opts.help:
        sys.stdout.write(help_text())
        sys.stdout.flush()
        return 0
    if opts.version:
        sys.stdout.write(uwsgid.__version__ + "\n")
        sys.stdout.flush()
        return 0
    if opts.plugins_list:
        sys.stdout.write(plugins_list_text(opts.plugins_loaded))
        sys.stdout.flush()
        return 0
    if opts.show_config:
        log(show_config_text(opts))
    return None


def show_config_text(opts: Options) -> str:
    """uWSGI's --show-config: every item in order, as an ini file that would reproduce it."""
    lines = ["", ";uWSGI instance configuration", "[uwsgi]"]
    lines += [f"{key} = {'true' if value is None else value}" for key, value in opts.exported]
    lines.append(";end of configuration")
    return "\n".join(lines) + "\n"


def help_text(prog: str = "uwsgi") -> str:
    """Every declared option, core first then each plugin's group, one line each, like
    `uwsgi --help`."""
    from uwsgid.config import reference  # --help only
    return reference.help_text(prog)


def plugins_list_text(plugins) -> str:
    """uWSGI's --plugins-list layout, with where each plugin came from."""
    origins = dict(plugin_loader.describe()) if plugin_loader is not None else {}
    lines = ["", "*** uWSGI loaded request plugins ***"]
    for p in plugins or []:
        origin = origins.get(p.name)
        lines.append(f"{p.modifier1}: {p.name}" + (f" ({origin})" if origin else ""))
    lines.append("--- end of request plugins list ---")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- collecting

class _Collector:
    """Builds the ordered entry list from env, argv and config files."""

    def __init__(self, environ, cache: dict | None = None, plugins=()):
        self.environ = environ
        self.entries: list[Entry] = []
        self.refs: set[str] = set()     # names used as %(name) anywhere, for the unknown-key warning
        self.loader = files.Loader(self._file_item, cache)
        self.block = logic.Block({p.name for p in plugins}, _reloading(environ))
        # env vars go through add() like everything else: UWSGI_INI=app.ini loads app.ini
        for e in env_source.entries(environ):
            self.add(lookup(e.key), e.key, e.value, e.origin, display=e.display)

    # A value needed *now* (an include path, a plugin name): expand against what is known so far.
    def expand_now(self, value: str) -> str:
        return placeholders.expand(value, _Resolver(self.entries, self.environ).lookup, self.environ)

    def add(self, opt: Option | None, key: str, value: str | None, origin: str,
            display: str = "") -> None:
        name = normalize_key(key)
        if value and "%(" in value:
            import re
            self.refs.update(normalize_key(w) for body in re.findall(_PLACEHOLDER_REF, value) for w in body.split())
        if name in logic.DIRECTIVES:
            self.block.directive(name, self.expand_now(value or ""), _where(origin))
            return
        if self.block.open:
            self.block.apply(key, value, lambda k, v: self._add(opt, k, v, origin, display),
                             self._opt_value, self.environ, _where(origin))
            return
        self._add(opt, key, value, origin, display)

    def _opt_value(self, name: str) -> str | None:
        return _Resolver(self.entries, self.environ).lookup(name)

    def _add(self, opt: Option | None, key: str, value: str | None, origin: str, display: str) -> None:
        strict = origin == CLI
        if opt is not None and opt.name in ("set", "set-placeholder"):
            self.entries.append(Entry(opt.name, value, origin, strict=strict, display=display))
            k, eq, v = (value or "").partition("=")
            if not eq or not k.strip():
                raise CliError(f"option --{opt.name} needs KEY=VALUE, got {value!r}{_where(origin)}")
            self.entries.append(Entry(k, v, origin, placeholder_only=opt.name == "set-placeholder",
                                      display=f"--{opt.name} {k}"))
            return
        self.entries.append(Entry(key, value, origin, strict=strict, display=display))
        if opt is not None and opt.name in _CONFIG_KINDS:
            if value is None or value == "":
                raise CliError(f"option --{key} requires a file name{_where(origin)}")
            self.loader.include(self.expand_now(value), _CONFIG_KINDS[opt.name])

    def _file_item(self, key: str, value: str, origin: str) -> None:
        opt = lookup(normalize_key(key))
        self.add(opt, key, value, origin)

    def positional(self, arg: str) -> None:
        path, _ = files.split_spec(arg)
        if files.kind_of(path) is None:
            raise CliError(f"unexpected argument {arg!r}: config files given without an option "
                           f"must end in .ini, .json, .yaml or .yml")
        self.loader.include(arg, None)


def _collect(argv: list[str], environ, strict: bool, cache: dict | None = None, plugins=()) -> _Collector:
    c = _Collector(environ, cache, plugins)
    positional: list[str] = []
    i = 0
    n = len(argv)
    while i < n:
        arg = argv[i]
        i += 1
        if arg == "--":
            positional.extend(argv[i:])
            break
        if arg.startswith("--") and len(arg) > 2:
            name, eq, inline = arg[2:].partition("=")
            opt = lookup(name)
            if opt is None and strict and _uwsgi_only(normalize_key(name)):
                # an option of real uWSGI's that we do not have: _apply warns (or refuses, --strict)
                takes = uwsgi_catalog.argument(normalize_key(name))
                value = inline if eq else None
                if not eq and takes == "value" and i < n:
                    value, i = argv[i], i + 1
                c.entries.append(Entry(name, value, CLI, strict=True))
                continue
            if opt is None:
                if strict:
                    raise CliError(unknown_option_message(f"--{name}", inline if eq else (
                        argv[i] if i < n and not argv[i].startswith("-") else None)))
                # tolerant pre-scan: guess that an unknown option takes the next word
                value = inline if eq else None
                if not eq and i < n and not argv[i].startswith("-") and not _is_config_file(argv[i]):
                    value = argv[i]
                    i += 1
                c.entries.append(Entry(name, value, CLI, strict=True))
                continue
            value, i = _long_value(opt, f"--{name}", eq, inline, argv, i)
            c.add(opt, name, value, CLI, display=f"--{name}")
        elif arg.startswith("-") and len(arg) > 1:
            i = _short_cluster(c, arg, argv, i, strict)
        else:
            positional.append(arg)
    for arg in positional:
        c.positional(arg)
    return c


def _reloading(environ) -> bool:
    """True when the master re-executed itself for a reload (read, not consumed: main does)."""
    return env_source.ENV_RELOADING in environ


def _is_config_file(word: str) -> bool:
    path, _ = files.split_spec(word)
    return files.kind_of(path) is not None and os.path.isfile(path)


def _long_value(opt: Option, shown: str, eq: str, inline: str, argv, i):
    if opt.kind == "flag" or opt.kind == "optional":
        return (inline if eq else None), i
    if eq:
        return inline, i
    if i >= len(argv) or _looks_like_option(argv[i]):
        raise CliError(f"option {shown} requires an argument")
    return argv[i], i + 1


def _looks_like_option(word: str) -> bool:
    # getopt would take `--master` as the socket's value; a user who forgot the value is
    # better served by an error. Only words that name a declared option count.
    if word.startswith("--"):
        return lookup(word[2:].partition("=")[0]) is not None
    if word.startswith("-") and len(word) == 2:
        return by_short(word[1]) is not None
    return False


def _short_cluster(c: _Collector, arg: str, argv, i: int, strict: bool) -> int:
    """-M, -p4, -p 4, -p=4, -Mp4, -C (optional), -C660."""
    j = 1
    while j < len(arg):
        letter = arg[j]
        j += 1
        opt = by_short(letter)
        if opt is None:
            if strict:
                raise CliError(unknown_option_message(f"-{letter}"))
            # tolerant pre-scan: a plugin's short option (-w, -H) is not declared until its
            # plugin loads; guess that it takes the rest of the word or the next word
            if j == len(arg) and i < len(argv) and not argv[i].startswith("-") \
                    and not _is_config_file(argv[i]):
                i += 1
            return i
        rest = arg[j:]
        if rest.startswith("=") and opt.kind != "flag":
            rest = rest[1:]     # -w=hello: getopt would keep the "=", every guide means the value
        if opt.kind == "flag":
            c.add(opt, opt.name, None, CLI, display=f"-{letter}")
            continue
        if opt.kind == "optional":
            c.add(opt, opt.name, rest or None, CLI, display=f"-{letter}")
            return i
        if rest:
            value = rest
        elif i < len(argv) and not _looks_like_option(argv[i]):
            value = argv[i]
            i += 1
        else:
            raise CliError(f"option -{letter} (--{opt.name}) requires an argument")
        c.add(opt, opt.name, value, CLI, display=f"-{letter}")
        return i
    return i


def unknown_option_message(shown: str, value=...) -> str:
    """`unknown option --lua-gc-frq (did you mean --lua-gc-freq?)`

    "Did you mean" suggests only an option of the kind the unknown one was used as:
    - `value` says how it was used: a string, given that value (`--reload /x.pid`, `--reload=`,
      `reload = /x.pid` in a file); None, given none (`--mastr` followed by an option or by
      nothing); `...` (the default), not known: any kind.
    - Given a value: options that take one (str, int, float, size, optional), and flags only
      when the value is a boolean word a flag accepts (true/false, 1/0, yes/no, on/off, "").
      A value naming an existing config file may be one given on its own after a misspelt
      flag (`--mastr app.ini`) as well as the option's value (`--inii app.ini`): any kind.
    - Given no value: flags and optional-value options only.
    - Config logic (`for*`, `if-*`, `else`, `end*`: uwsgid/config/logic.py) is suggested only
      for a name that reads as config logic itself (its first word is, or is a typo of, if,
      for, end, endif, endfor or else: `--if-exist`, `--endiff`, `--forr`), and such a name is
      offered config logic only: `--reloadd` never gets `--if-reload`, `--if-exist` never a
      plain option.
    """
    if shown.startswith("--"):
        import difflib  # an error path: not worth its memory in every worker

        from uwsgid.config.options import KINDS
        typed = normalize_key(shown[2:])
        logic_words = ("if", "for", "end", "endif", "endfor", "else")
        logic_like = bool(difflib.get_close_matches(typed.split("-", 1)[0], logic_words, n=1, cutoff=0.75))
        if value is ... or value is not None and _is_config_file(value):
            kinds = set(KINDS)
        elif value is None:
            kinds = {"flag", "optional"}
        else:
            kinds = {k for k in KINDS if k != "flag"}
            if value.strip().lower() in _TRUE | _FALSE:
                kinds.add("flag")
        names = sorted({n for o in all_options() if o.kind in kinds
                        and (o.name in logic.DIRECTIVES) == logic_like for n in (o.name, *o.aliases)})
        # over 0.6: 3 letters of 5 in common is no likeness (`--mastr /srv` is not `--umask`)
        close = difflib.get_close_matches(typed, names, n=1, cutoff=0.61)
        if close:
            return f"unknown option {shown} (did you mean --{close[0]}?)"
        plugin = _plugin_for(shown[2:])
        if plugin:
            return f"unknown option {shown} (the {plugin} plugin is not loaded: add --plugins {plugin})"
    return f"unknown option {shown}"


def _uwsgi_only(name: str) -> bool:
    """An option real uWSGI has and this server does not (not even in a plugin not loaded).
    Asked only about a key no declared option takes: only then is uWSGI's table loaded."""
    return uwsgi_catalog.argument(name) is not None and _plugin_for(name) is None


def _plugin_for(name: str) -> str | None:
    """The plugin an option like `lua-gc-freq` would belong to, when that plugin is not loaded."""
    aliases = getattr(plugin_loader, "ALIASES", [])
    prefix = name.split("-", 1)[0]
    loaded = {o.group for o in all_options()}
    import re
    for pattern, plugin in aliases:
        if re.fullmatch(pattern, prefix) and plugin not in loaded:
            return plugin
    return None


def _where(origin: str) -> str:
    return "" if origin == CLI else f" (in {origin})"


# --------------------------------------------------------------------------- plugins

def _load_plugins(entries: list[Entry], environ, refs: set[str] = frozenset()) -> list:
    """Embedded plugins plus those asked for; loading one declares its options. With
    --autoload, an unknown key (not used as a %(placeholder)) loads the plugin declaring it."""
    plugins_loader = plugin_loader
    plugins = list(plugins_loader.embedded_plugins()) if plugins_loader else []
    resolver = _Resolver(entries, environ)
    dirs: list[str] = []
    specs: list[str] = []
    for idx, e in enumerate(entries):
        opt = lookup(e.key)
        if opt is None or e.value is None or e.placeholder_only:
            continue
        if opt.name in ("plugins", "need-plugin", "plugin-dir"):
            value = resolver.value(idx)
            import re
            words = [w.strip() for w in re.split(r"[,\s]+", value) if w.strip()]
            (dirs if opt.name == "plugin-dir" else specs).extend(words)
    for spec in specs:
        if plugins_loader is None:
            raise CliError(f"cannot load plugin {spec}: the plugin loader is not available in this build")
        try:
            plugin = plugins_loader.load_plugin(spec, dirs)
        except plugins_loader.PluginError as e:     # PluginNotFound names the dirs searched
            raise CliError(str(e).splitlines()[0] if str(e) else f"cannot load plugin {spec}") from None
        if plugin is not None and plugin not in plugins:     # None: a feature built in here (http...)
            plugins.append(plugin)
    if plugins_loader is not None and _flag_given(entries, "autoload"):
        for e in entries:
            if e.placeholder_only or e.key in refs or lookup(e.key) is not None:
                continue
            plugin = plugins_loader.autoload(e.key, dirs)
            if plugin is not None and plugin not in plugins:
                plugins.append(plugin)
    return plugins


def _flag_given(entries: list[Entry], name: str) -> bool:
    """A flag's value before the options are applied (the last occurrence wins)."""
    on = False
    for e in entries:
        opt = lookup(e.key)
        if opt is not None and opt.name == name and not e.placeholder_only:
            on = e.value is None or e.value.strip().lower() in _TRUE
    return on


# --------------------------------------------------------------------------- applying

class _Resolver:
    """Placeholder values over one entry list: first entry with the key wins; values are
    themselves expanded (recursively, loops left unexpanded)."""

    def __init__(self, entries: list[Entry], environ):
        self.entries = entries
        self.environ = environ
        self.first: dict[str, int] = {}
        for idx, e in enumerate(entries):
            self.first.setdefault(e.key, idx)
        self.cache: dict[int, str] = {}
        self.active: set[int] = set()

    def lookup(self, name: str) -> str | None:
        idx = self.first.get(normalize_key(name))
        if idx is None:
            return None
        if idx in self.active:      # a placeholder referring to itself
            return None
        return self.value(idx)

    def value(self, idx: int) -> str:
        if idx in self.cache:
            return self.cache[idx]
        raw = self.entries[idx].value
        if raw is None:
            return ""
        self.active.add(idx)
        try:
            out = placeholders.expand(raw, self.lookup, self.environ)
        finally:
            self.active.discard(idx)
        self.cache[idx] = out
        return out


def _apply(entries: list[Entry], opts: Options, environ, referenced: set[str]) -> None:
    resolver = _Resolver(entries, environ)
    strict_files = any(lookup(e.key) is not None and lookup(e.key).name == "strict"
                       and (e.value is None or e.value.strip().lower() in _TRUE) for e in entries)
    exported: list[tuple[str, str]] = []
    for idx, e in enumerate(entries):
        opt = lookup(e.key)
        if e.placeholder_only:
            if opt is not None:
                raise CliError(f"{e.key} is an option, not a placeholder: use --set {e.key}=...{e.where()}")
            exported.append((e.key, resolver.value(idx)))
            continue
        if opt is None and _uwsgi_only(e.key):
            # never silently ignored: say what is lost and what to use instead
            why = uwsgi_catalog.reason(e.key)
            if strict_files or uwsgi_catalog.refused(e.key):
                raise CliError(f"{e.display} is not supported{e.where()}: {why}" + (" (--strict)" * strict_files))
            log(uwsgi_catalog.warning(e.display, why, e.where()))
            exported.append((e.key, None if e.value is None else resolver.value(idx)))
            continue
        if opt is None:
            if e.strict:
                raise CliError(unknown_option_message(e.display, e.value))
            if strict_files:
                raise CliError(f"unknown option {e.key}{e.where()} (--strict)")
            if e.origin not in (CLI, "environment") and e.key not in referenced \
                    and not e.display.startswith("--set"):
                # a key nothing refers to is most likely a typo or an option we do not have
                hint = unknown_option_message(f"--{e.key}", e.value)
                hint = hint[hint.index("(did"):] if "did you mean" in hint else "(not an option of the core or of a loaded plugin)"
                log(f"*** WARNING: ignoring unknown option {e.key} in {e.origin} {hint} ***")
            exported.append((e.key, resolver.value(idx)))
            continue
        value = None if e.value is None else resolver.value(idx)
        opts.set(opt, convert(opt, value, e))
        exported.append((e.key, value))
    opts.exported = exported


def convert(opt: Option, value: str | None, entry: Entry | None = None):
    """A raw string (None: given without a value) to the option's type."""
    where = entry.where() if entry else ""
    shown = entry.display if entry and entry.display else f"--{opt.name}"
    if value is not None and opt.kind != "str" and ("#" in value or ";" in value):
        from uwsgid.config.ini import uncommented  # `workers = 64  # max`, as strtol reads it
        value = uncommented(value)
    if opt.kind == "flag":
        if value is None:
            return True
        v = value.strip().lower()
        if v in _TRUE:
            return True
        if v in _FALSE:
            return False
        raise CliError(f"option {shown}: invalid boolean {value!r} (use true/false, 1/0, yes/no, on/off){where}")
    if opt.kind == "optional":
        return opt.const if value is None or value == "" else value
    if value is None:
        raise CliError(f"option {shown} requires an argument{where}")
    if opt.kind == "str":
        return value
    if opt.kind == "int":
        try:
            return int(value.strip(), 10)
        except ValueError:
            raise CliError(f"option {shown}: invalid integer {value!r}{where}") from None
    if opt.kind == "float":
        try:
            return float(value.strip())
        except ValueError:
            raise CliError(f"option {shown}: invalid number {value!r}{where}") from None
    if opt.kind == "size":
        import re
        m = re.match(_SIZE, value)
        if not m:
            raise CliError(f"option {shown}: invalid size {value!r} (use a number of bytes, or 64k, 1m, 1g){where}")
        mult = {"": 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3}[m.group(2).lower()]
        return int(m.group(1)) * mult
    raise CliError(f"option {shown}: unsupported kind {opt.kind}")
