"""Finding and loading language plugins (the runtime half of the plugin contract).

A plugin NAME is the Python package NAME_plugin exporting `plugin` (a uwsgid.plugins.contract.Plugin).
Its code comes from one of:
  * the executable: embedded plugins, baked in by the build (registered by uwsgid.embed);
  * NAME_plugin.so: built by `uwsgiconfig.py --plugin` or a profile's `plugins`, the package
    baked in as a file table, opened with cffi's dlopen;
  * the source tree plugins/NAME/ (plain python and tests, when not in the executable).
Baked files are served by a meta-path finder, so `import NAME_plugin` and
pkgutil.get_data("NAME_plugin", "x.lua") work as from a directory. The build bakes each
module's compiled code beside its source (":code:PATH" entries): it runs when it fits this
interpreter, else the source is compiled. When the source tree the build baked from is still
there and differs from the baked copy (a developer edited the plugin since the last `make
build`), the source is used and one line says so.

Interface (uwsgid.config.cli.parse while parsing, uwsgid.main afterwards):
    embedded_plugins() -> list[Plugin]        loads them once, declares their options
    load_plugin(spec, dirs) -> Plugin | None  "lua", "6:lua", "/path/lua_plugin.so"; idempotent;
                                              None for a uWSGI plugin built into the core (BUILT_IN)
    load_plugins(specs, dirs) -> list[Plugin] the same for "lua,cffi" lists
    autoload(option, dirs) -> Plugin | None   --autoload: the NAME_plugin.so declaring option
    loaded() -> list[Plugin]                  embedded + loaded, in order
    describe() -> list[(name, "embedded" | path)]
    plugin_library(name) -> path of NAME_plugin.so | None (embedded: dlopen(NULL))
Errors: PluginError (bad plugin), PluginNotFound (names the directories searched).
"""

from __future__ import annotations

import _imp
import importlib
import importlib.machinery
import io
import marshal
import os
import stat
import sys
from importlib._bootstrap_external import MAGIC_NUMBER

from uwsgid.config.options import declare
from uwsgid.plugins.contract import Plugin
from uwsgid.util.log import log

# os.path, not pathlib: pathlib imports urllib.parse and ipaddress (~0.9 MB in every worker)
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))   # the project root
SOURCE_PLUGINS = os.path.join(ROOT, "plugins")

# uWSGI users' names for our two plugins (Debian's uwsgi-plugin-python3 / -lua5.1 ...): regular
# expressions, matched with re.fullmatch (re is imported where a plugin is named, not by --version).
ALIASES = [(r"python(\d+(\.?\d+)?)?|cffi|pypy", "cffi"),
           (r"lua(jit|5\.?\d)?", "lua")]

# uWSGI plugins whose feature is part of this server's core (a pip-installed uWSGI has them built
# in too): naming one (`plugins = http,python`) loads nothing and is no error.
BUILT_IN = {
    "http": "the --http router",
    "corerouter": "the --http router's core",
    "logfile": "--logger file:, fd: and stdio",
    "syslog": "--logger syslog:",
    "rsyslog": "--logger rsyslog:",
    "logsocket": "--logger socket:",
    "logpipe": "--logger pipe:",
    "rpc": "RPC over the uwsgi protocol (modifier1 173)",
    "signal": "remote signals (modifier1 110)",
    "greenlet": "--greenlet, in the Python plugin",
    "ugreen": "--ugreen (= --greenlet), in the Python plugin",
}


class PluginError(Exception):
    """A plugin exists but cannot be used (bad file, import error, no `plugin`)."""


class PluginNotFound(PluginError):
    pass


# --- state --------------------------------------------------------------------------------
_embedded_files: dict[str, tuple[dict[str, bytes], str, str | None]] = {}   # name -> (files, origin, source)
_embedded_names: list[str] | None = None     # set by the executable; None under plain python
_embedded: list[Plugin] | None = None
_loaded: dict[str, Plugin] = {}              # non-embedded, by name, in load order
_origins: dict[str, str] = {}                # name -> "embedded" | path
_exe_dir: str | None = None
_plugin_dir: str | None = None
_keep = []                                    # dlopen handles: code in them may still run


# --- called by uwsgid.embed -------------------------------------------------------------------

def read_table(ffi, table) -> dict[str, memoryview]:
    """A C `struct uwsgi_baked_file[]` (NULL-path terminated) as {relative path: a read-only view
    of its bytes}. Views, not copies: the files (~800 KB with both plugins) stay in the binary's
    read-only pages, read only when imported, instead of being copied into the heap of the
    master and so into every worker's RSS. (The library stays loaded: the executable, or a
    NAME_plugin.so kept in _keep.)"""
    files: dict[str, memoryview] = {}
    i = 0
    while table[i].path != ffi.NULL:
        files[ffi.string(table[i].path).decode()] = memoryview(ffi.buffer(table[i].data, table[i].len))
        i += 1
    return files


def register_embedded(name: str, files: dict[str, bytes], origin: str, source_dir: str | None = None) -> None:
    global _embedded_names
    if _embedded_names is None:
        _embedded_names = []
    if name not in _embedded_names:
        _embedded_names.append(name)
    _embedded_files[name] = (files, origin, source_dir)


def set_build_dirs(exe_dir: str | None = None, plugin_dir: str | None = None) -> None:
    """Called by the executable (even one with no embedded plugin): from now on only what the
    build embedded is embedded, and NAME_plugin.so is also searched in these dirs."""
    global _exe_dir, _plugin_dir, _embedded_names
    _exe_dir, _plugin_dir = exe_dir, plugin_dir
    if _embedded_names is None:
        _embedded_names = []


# --- the importer for baked packages ----------------------------------------------------------

CODE_PREFIX = ":code:"     # uwsgiconfig.CODE_PREFIX: a module's compiled code (magic + marshal)


def split_code(table: dict[str, bytes]) -> tuple[dict[str, bytes], dict[str, bytes]]:
    """A baked table as (files, compiled code by module path)."""
    files, codes = {}, {}
    for rel, data in table.items():
        if rel.startswith(CODE_PREFIX):
            codes[rel[len(CODE_PREFIX):]] = data
        else:
            files[rel] = data
    return files, codes


class BakedImporter:
    """Serves one package (and its subpackages, modules and data files) from a file table.
    Module files are "<origin>/<relpath>", as zipimport does for an archive. (Duck-typed
    finder + loader: importlib.abc alone costs ~6 ms of start-up.) `codes`: the modules'
    code compiled by the build, used when it fits this interpreter."""

    def __init__(self, package: str, files: dict[str, bytes], origin: str,
                 codes: dict[str, bytes] | None = None):
        self.package = package
        self.files = files
        self.origin = origin.rstrip("/")
        self.codes = codes or {}

    def _locate(self, fullname: str) -> tuple[str, bool] | None:
        if fullname != self.package and not fullname.startswith(self.package + "."):
            return None
        rel = fullname.replace(".", "/")
        if f"{rel}/__init__.py" in self.files:
            return f"{rel}/__init__.py", True
        if f"{rel}.py" in self.files:
            return f"{rel}.py", False
        return None

    def find_spec(self, fullname, path=None, target=None):
        found = self._locate(fullname)
        if found is None:
            return None
        rel, is_pkg = found
        spec = importlib.machinery.ModuleSpec(fullname, self, origin=f"{self.origin}/{rel}", is_package=is_pkg)
        spec.has_location = True
        if is_pkg:
            spec.submodule_search_locations = [f"{self.origin}/{rel.rsplit('/', 1)[0]}"]
        return spec

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        exec(self.get_code(module.__spec__.name), module.__dict__)

    def _rel_of(self, fullname: str) -> str:
        found = self._locate(fullname)
        if found is None:
            raise ImportError(f"{fullname} is not in {self.origin}", name=fullname)
        return found[0]

    def get_source(self, fullname):
        return str(self.files[self._rel_of(fullname)], "utf-8")

    def get_code(self, fullname):
        rel = self._rel_of(fullname)
        path = f"{self.origin}/{rel}"
        baked = self.codes.get(rel)
        if baked is not None and baked[:4] == MAGIC_NUMBER and not sys.flags.optimize:
            try:
                code = marshal.loads(memoryview(baked)[4:])
            except (EOFError, ValueError, TypeError):
                code = None
            if code is not None:
                _imp._fix_co_filename(code, path)    # tracebacks name the file as the source does
                return code
        return compile(bytes(self.files[rel]), path, "exec", dont_inherit=True)

    def is_package(self, fullname):
        return self._rel_of(fullname).endswith("/__init__.py")

    def get_filename(self, fullname):
        return f"{self.origin}/{self._rel_of(fullname)}"

    def get_data(self, path):
        """pkgutil.get_data() asks for "<dirname(__file__)>/<resource>"."""
        path = os.fspath(path)
        prefix = self.origin + "/"
        if path.startswith(prefix):
            rel = os.path.normpath(path[len(prefix):])
            if rel in self.files:
                return bytes(self.files[rel])
        raise FileNotFoundError(f"{path} is not in {self.origin}")

    def get_resource_reader(self, fullname):
        rel = self._rel_of(fullname)
        if not rel.endswith("/__init__.py"):
            return None
        return _BakedResources(self, rel.rsplit("/", 1)[0])


class _BakedResources:
    """importlib.resources' reader for a baked package's data files."""

    def __init__(self, importer: BakedImporter, pkgdir: str):
        self.importer, self.pkgdir = importer, pkgdir

    def open_resource(self, resource):
        try:
            return io.BytesIO(self.importer.files[f"{self.pkgdir}/{resource}"])
        except KeyError:
            raise FileNotFoundError(resource)

    def resource_path(self, resource):
        raise FileNotFoundError(f"{resource} is baked into {self.importer.origin}, it has no path")

    def is_resource(self, name):
        return f"{self.pkgdir}/{name}" in self.importer.files

    def contents(self):
        prefix = self.pkgdir + "/"
        return sorted({k[len(prefix):].split("/", 1)[0] for k in self.importer.files if k.startswith(prefix)})


class _SourceFinder:
    """NAME_plugin from a source directory (plugins/NAME), without putting that dir on sys.path."""

    def __init__(self, package: str, directory: str):
        self.package, self.directory = package, directory

    def find_spec(self, fullname, path=None, target=None):
        if fullname != self.package:
            return None
        return importlib.machinery.PathFinder.find_spec(fullname, [self.directory])


# --- the plugin file filter: the same as uwsgiconfig.PluginBuild.files ----------------------

_SKIP_SUFFIXES = (".pyc", ".pyo", ".so", ".o", ".tmp", ".swp")


def _source_changed(plugin_dir: str, package: str, files: dict, origin: str) -> bool:
    """Whether the package's source differs from the copy `origin` (the executable, a
    NAME_plugin.so) holds: another set of files, a size that differs, or the content of a file
    modified since `origin` was written. A file older than `origin` with the size of its copy
    is taken as the one built into it (the build read it): not reading every file of the
    plugins is ~6% of a Lua-only process's start-up. False when the source is not there."""
    pkg = os.path.join(plugin_dir, package)
    if not os.path.isdir(pkg):
        return False
    try:
        built = os.stat(origin).st_mtime_ns
    except OSError:
        built = None        # nothing to date the copy by: every file is compared
    seen = 0
    for dirpath, dirnames, filenames in os.walk(pkg):
        dirnames[:] = [d for d in dirnames if d != "__pycache__" and not d.startswith(".")]
        for name in filenames:
            if name.startswith(".") or name.endswith(_SKIP_SUFFIXES):
                continue
            path = os.path.join(dirpath, name)
            try:
                st = os.stat(path)
            except OSError:
                return False        # unreadable source: the built copy serves, as before
            if not stat.S_ISREG(st.st_mode):
                continue
            rel = os.path.relpath(path, plugin_dir).replace(os.sep, "/")
            copy = files.get(rel)
            if copy is None or st.st_size != len(copy):
                return True
            seen += 1
            if built is None or st.st_mtime_ns >= built:
                try:
                    with open(path, "rb") as f:
                        if f.read() != copy:
                            return True
                except OSError:
                    return False
    return seen != len(files)


# --- importing a plugin -----------------------------------------------------------------------

def _install(name: str, files: dict[str, bytes] | None, origin: str, source_dir: str | None) -> str:
    """Make `import NAME_plugin` work; returns where the code really comes from."""
    package = f"{name}_plugin"
    where = origin
    codes: dict[str, bytes] = {}
    if files is not None:
        files, codes = split_code(files)
    if source_dir and files is not None:
        if _source_changed(source_dir, package, files, origin):
            log(f"uwsgi: plugin {name}: {source_dir}/{package} changed since it was built into "
                f"{origin}, using the source (rebuild with make build)")
            files = None
    if files is None:
        if not source_dir:
            raise PluginError(f"plugin {name}: no code found")
        sys.meta_path.insert(0, _SourceFinder(package, source_dir))
        where = os.path.join(source_dir, package)
    else:
        if f"{package}/__init__.py" not in files:
            raise PluginError(f"plugin {name}: {origin} holds no {package} package")
        sys.meta_path.insert(0, BakedImporter(package, files, origin, codes))
    return where


def _import(name: str, where: str) -> Plugin:
    package = f"{name}_plugin"
    try:
        module = importlib.import_module(package)
    except Exception as e:
        raise PluginError(f"plugin {name} ({where}) failed to import: {type(e).__name__}: {e}") from e
    plugin = getattr(module, "plugin", None)
    if isinstance(plugin, type) and issubclass(plugin, Plugin):
        plugin = plugin()
    if not isinstance(plugin, Plugin):
        raise PluginError(f"plugin {name} ({where}): {package}.plugin is not a uwsgid.plugins.contract.Plugin")
    if not plugin.name:
        plugin.name = name
    for opt in plugin.options:
        opt.group = plugin.name
    declare(*plugin.options)
    return plugin


def _default_embedded() -> list[str]:
    """Under plain python: the default profile's embedded plugins, from the source tree."""
    try:
        import importlib.util
        spec = importlib.util.spec_from_file_location("_uwsgiconfig", os.path.join(ROOT, "uwsgiconfig.py"))
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod.split_list(mod.load_profile("default").get("embedded_plugins"))
    except Exception:
        return ["lua", "cffi"]


def embedded_plugins() -> list[Plugin]:
    """The plugins built into this executable (under plain python: the default profile's,
    from the source tree), loaded once. One that fails to import is logged and skipped so the
    others still serve."""
    global _embedded
    if _embedded is not None:
        return list(_embedded)
    _embedded = []
    names = _embedded_names if _embedded_names is not None else _default_embedded()
    for name in names:
        if name in _embedded_files:
            files, origin, source = _embedded_files[name]
        else:
            source = os.path.join(SOURCE_PLUGINS, name)
            files, origin = None, source
            if not os.path.isdir(os.path.join(source, f"{name}_plugin")):
                continue
        try:
            where = _install(name, files, origin, source)
            plugin = _import(name, where)
        except PluginError as e:
            log(f"uwsgi: embedded {e}")
            continue
        _embedded.append(plugin)
        _origins[name] = "embedded"
    return list(_embedded)


def canonical_name(name: str) -> str:
    import re
    for pattern, canonical in ALIASES:
        if re.fullmatch(pattern, name):
            return canonical
    return name


def search_dirs(dirs: list[str] | None = None) -> list[str]:
    """Where NAME_plugin.so is looked for: --plugin-dir dirs, the executable's dir, the
    build's plugin_dir, the current dir (duplicates dropped)."""
    out: list[str] = []
    for d in [*(dirs or []), _exe_dir, _plugin_dir, os.getcwd()]:
        if d:
            d = os.path.abspath(d)
            if d not in out:
                out.append(d)
    return out


def _parse_spec(spec: str) -> tuple[int | None, str]:
    import re
    spec = spec.strip()
    m = re.fullmatch(r"(\d+):(.*)", spec)
    if m:
        modifier = int(m.group(1))
        if modifier > 255:
            raise PluginError(f"plugin {spec}: modifier1 must be 0-255")
        return modifier, m.group(2).strip()
    return None, spec


def _open_so(path: str) -> tuple[str, dict[str, bytes], str | None]:
    from cffi import FFI
    ffi = FFI()
    ffi.cdef("struct uwsgi_baked_file { const char *path; const unsigned char *data; size_t len; };"
             "const char *uwsgi_plugin_name(void);"
             "const struct uwsgi_baked_file *uwsgi_plugin_files(void);"
             "const char *uwsgi_plugin_source(void);")
    try:
        lib = ffi.dlopen(path)
        name = ffi.string(lib.uwsgi_plugin_name()).decode()
        files = read_table(ffi, lib.uwsgi_plugin_files())
        source = ffi.string(lib.uwsgi_plugin_source()).decode()
    except (OSError, AttributeError) as e:
        raise PluginError(f"{path} is not a uwsgi plugin: {e}") from e
    _keep.append((ffi, lib))
    return name, files, source


def _apply_modifier(plugin: Plugin, modifier: int | None) -> Plugin:
    if modifier is not None:
        plugin.modifier1 = modifier
    return plugin


def load_plugin(spec: str, dirs: list[str] | None = None) -> Plugin:
    """Load one plugin: "NAME", "N:NAME" (serve modifier1 N) or a path to NAME_plugin.so.
    Idempotent: a plugin already loaded (or embedded) is returned as is. None for a uWSGI plugin
    whose feature is built in here (BUILT_IN)."""
    modifier, target = _parse_spec(spec)
    if not target:
        raise PluginError(f"empty plugin name in {spec!r}")
    embedded = {p.name: p for p in embedded_plugins()}
    if target.endswith(".so") or "/" in target:
        return _load_path(target, modifier, embedded)
    import re
    if not re.fullmatch(r"[A-Za-z0-9_.+-]+", target):
        raise PluginError(f"bad plugin name {target!r}")
    name = canonical_name(target)
    if name in BUILT_IN and name not in _loaded:
        return None
    if name in embedded:
        return _apply_modifier(embedded[name], modifier)
    if name in _loaded:
        return _apply_modifier(_loaded[name], modifier)
    searched = search_dirs(dirs)
    for d in searched:
        for candidate in (f"{target}_plugin.so", f"{name}_plugin.so"):
            path = os.path.join(d, candidate)
            if os.path.isfile(path):
                return _load_so(path, modifier, embedded)
    source = os.path.join(SOURCE_PLUGINS, name)
    if _embedded_names is None and os.path.isdir(os.path.join(source, f"{name}_plugin")):
        # plain python / tests: the source tree is the plugin
        plugin = _import(name, _install(name, None, str(source), str(source)))
        _loaded[name] = plugin
        _origins[name] = str(source)
        return _apply_modifier(plugin, modifier)
    raise PluginNotFound(f"plugin {target} not found: no {name}_plugin.so in {', '.join(searched)}")


def _load_path(target: str, modifier: int | None, embedded: dict[str, Plugin]) -> Plugin | None:
    """A plugin named by path. As uWSGI does, "DIR/NAME" means DIR/NAME_plugin.so; NAME is then
    read as a plain name would be: a config written for a packaged uWSGI
    (`plugins = /usr/lib/uwsgi/python3`) gets the embedded plugin or the built-in feature here,
    whether or not that file exists on this machine."""
    path = os.path.abspath(target if target.endswith(".so") else target + "_plugin.so")
    base = os.path.basename(path)
    stem = base[:-len("_plugin.so")] if base.endswith("_plugin.so") else base[:-len(".so")]
    name = canonical_name(stem)
    if name in embedded:
        return _apply_modifier(embedded[name], modifier)
    if name in BUILT_IN and name not in _loaded:
        return None
    if not os.path.isfile(path):
        raise PluginNotFound(f"plugin {target} not found: no {path}")
    return _load_so(path, modifier, embedded)


def _load_so(path: str, modifier: int | None, embedded: dict[str, Plugin]) -> Plugin:
    for name, origin in _origins.items():
        if origin == path:
            return _apply_modifier(_loaded[name], modifier)
    name, files, source = _open_so(path)
    if name in embedded:
        log(f"uwsgi: plugin {name} is already embedded, ignoring {path}")
        return _apply_modifier(embedded[name], modifier)
    if name in _loaded:
        return _apply_modifier(_loaded[name], modifier)
    plugin = _import(name, _install(name, files, path, source))
    _loaded[name] = plugin
    _origins[name] = path
    return _apply_modifier(plugin, modifier)


def autoload(option: str, dirs: list[str] | None = None) -> Plugin | None:
    """--autoload (uWSGI's uwsgi_try_autoload): the plugin declaring OPTION, found by loading
    the NAME_plugin.so files of the search dirs not loaded yet, the one OPTION's prefix names
    first ("lua-gc-freq": lua_plugin.so). None when no plugin declares it. A plugin probed in
    vain stays loaded, idle without an app (Python code cannot be unloaded)."""
    from uwsgid.config.options import lookup
    have = {f"{p.name}_plugin.so" for p in loaded()}
    paths = []
    for d in search_dirs(dirs):
        try:
            names = sorted(os.listdir(d))
        except OSError:
            continue
        paths += [os.path.join(d, n) for n in names if n.endswith("_plugin.so") and n not in have]
    first = f"{canonical_name(option.split('-', 1)[0])}_plugin.so"
    paths.sort(key=lambda path: os.path.basename(path) != first)   # stable: dir order kept
    for path in paths:
        if path in _origins.values():
            continue
        try:
            plugin = load_plugin(path, dirs)
        except PluginError as e:
            log(f"uwsgi: autoload: {e}")
            continue
        if lookup(option) is not None:
            log(f'option "{option}" found in plugin {path}')
            return plugin
    return None


def load_plugins(specs: str, dirs: list[str] | None = None) -> list[Plugin]:
    """A --plugins value: comma-separated specs."""
    plugins = (load_plugin(s, dirs) for s in specs.split(",") if s.strip())
    return [p for p in plugins if p is not None]


def plugin_library(name: str) -> str | None:
    """What a plugin's Python code dlopen()s to reach its own C (GCC_LIST): the path of its
    NAME_plugin.so, or None for an embedded plugin (its C is in the executable: dlopen(NULL))."""
    origin = _origins.get(name)
    return origin if origin and origin.endswith(".so") else None


def loaded() -> list[Plugin]:
    return [*embedded_plugins(), *_loaded.values()]


def describe() -> list[tuple[str, str]]:
    embedded_plugins()
    return [(p.name, _origins.get(p.name, "embedded")) for p in loaded()]
