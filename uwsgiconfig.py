#!/usr/bin/env python3
"""uwsgiconfig.py: the build front door, with uWSGI's verbs.

    python uwsgiconfig.py --build [PROFILE]            build ./uwsgi (+ the profile's plugins)
    python uwsgiconfig.py --plugin PATH [PROFILE [NAME]]   build PATH as NAME_plugin.so
    python uwsgiconfig.py --clean                      remove every build output
    python uwsgiconfig.py --cflags [PROFILE]           print the C flags of a profile

PROFILE defaults to $UWSGI_PROFILE, else buildconf/default.ini; a bare name means
buildconf/NAME.ini. Environment: UWSGI_PROFILE, UWSGI_EMBED_PLUGINS=a,b (more embedded
plugins), UWSGI_BUILD_DIR (where the executable, plugins and build/ go; default: here),
CC, CFLAGS, LDFLAGS.

What a build makes (OUT = UWSGI_BUILD_DIR or this directory):
    OUT/build/lib/_uwsgi.<ext>     cffi API-mode module over uwsgi.h + core/*.c (not main.c)
    OUT/build/lib/_uwsgi_native.<ext>  CPython extension from core/cpython/ (native.h: the Python
                                   request path's C half) + the same core objects
    OUT/<bin_name>                 core/main.c + the same C + a cffi *embedding* module also
                                   named _uwsgi (uwsgi.h with its UWSGI_EXECUTABLE part, and
                                   uwsgi_run() implemented by uwsgid/embed.py) + embedded plugins
    OUT/<plugin_dir>/NAME_plugin.so  each plugin of the profile's `plugins`
A plugin's Python package (plugins/NAME/NAME_plugin/, data files included) is baked into C
byte arrays; uwsgid/plugins/loader.py serves it to `import` from the executable or the .so.
Objects are cached by a hash of their command line and inputs: re-running is fast.
"""

from __future__ import annotations

import configparser
import contextlib
import hashlib
import importlib.util
import io
import marshal
import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent
BUILDCONF = ROOT / "buildconf"
HEADER = ROOT / "uwsgi.h"
CORE = ROOT / "core"
PLUGINS = ROOT / "plugins"
MAIN_C = "main.c"                  # core/main.c: only in the executable
LIST_KEYS = ("embedded_plugins", "plugins")


class BuildError(Exception):
    """A build problem the user can fix: printed as one line, exit 1."""


def say(line: str) -> None:
    sys.stdout.write(line + "\n")      # one write: compile threads do not interleave
    sys.stdout.flush()


# --- profiles (buildconf/*.ini, uWSGI's format) ---------------------------------------------

def profile_path(name: str | os.PathLike, near: Path | None = None) -> Path:
    """A path to an existing file (relative to `near`, the inheriting profile's dir, first),
    else a bare name (with or without .ini) in buildconf/."""
    p = Path(name)
    if near is not None and not p.is_absolute():
        for candidate in (near / p, near / f"{p}.ini"):
            if candidate.is_file():
                return candidate.resolve()
    if p.is_file():
        return p.resolve()
    stem = p.name[:-4] if p.name.endswith(".ini") else p.name
    candidate = BUILDCONF / f"{stem}.ini"
    if candidate.is_file():
        return candidate
    known = ", ".join(sorted(q.stem for q in BUILDCONF.glob("*.ini")))
    raise BuildError(f"profile {name} not found (looked for {p} and {candidate}; known: {known})")


_INTERP = re.compile(r"%\(([A-Za-z0-9_]+)\)s")


def _interpolate(values: dict[str, str], where: Path) -> dict[str, str]:
    def expand(key: str, value: str, depth: int) -> str:
        if depth > 10:
            raise BuildError(f"{where}: interpolation loop in {key}")

        def sub(m: re.Match) -> str:
            ref = m.group(1)
            if ref not in values:
                raise BuildError(f"{where}: {key} refers to %({ref})s, which is not set")
            return expand(ref, values[ref], depth + 1)

        return _INTERP.sub(sub, value)

    return {k: expand(k, v, 0) for k, v in values.items()}


def load_profile(name: str | os.PathLike, _seen: tuple[Path, ...] = (), _near: Path | None = None) -> dict[str, str]:
    """The [uwsgi] section of a profile with inheritance resolved:
    `inherit = base` loads the parent first; `key = +more` appends to the parent's value;
    `key = null` removes the key; `%(key)s` expands to another key's final value."""
    path = profile_path(name, _near)
    if path in _seen:
        raise BuildError(f"profile inheritance loop: {' -> '.join(str(p) for p in (*_seen, path))}")
    parser = configparser.RawConfigParser(strict=False)
    parser.optionxform = str            # keys are case-sensitive, as in uWSGI
    try:
        parser.read(path)
    except configparser.Error as e:
        raise BuildError(f"{path}: {str(e).splitlines()[0]}")
    if not parser.has_section("uwsgi"):
        raise BuildError(f"{path}: no [uwsgi] section")
    own = dict(parser.items("uwsgi"))
    parent: dict[str, str] = {}
    if own.get("inherit", "").strip():
        parent = load_profile(own["inherit"].strip(), (*_seen, path), path.parent)
    merged = dict(parent)
    for key, value in own.items():
        if key == "inherit":
            continue
        value = value.strip()
        if value == "null":
            merged.pop(key, None)
        elif value.startswith("+"):
            extra = value[1:].strip()
            base = merged.get(key, "").strip()
            merged[key] = f"{base} {extra}".strip() if base else extra
        else:
            merged[key] = value
    return _interpolate(merged, path)


def split_list(value: str | None) -> list[str]:
    """A plugin list: comma and/or space separated, duplicates dropped, order kept."""
    out: list[str] = []
    for item in re.split(r"[,\s]+", value or ""):
        if item and item not in out:
            out.append(item)
    return out


class Config:
    """One build: a resolved profile plus the environment's overrides."""

    def __init__(self, profile: str | os.PathLike | None = None, env: dict | None = None):
        env = os.environ if env is None else env
        name = profile or env.get("UWSGI_PROFILE") or "default"
        self.profile_file = profile_path(name)
        self.values = load_profile(self.profile_file)
        self.name = self.profile_file.stem
        self.bin_name = self.values.get("bin_name", "uwsgi") or "uwsgi"
        self.embedded = split_list(self.values.get("embedded_plugins"))
        for extra in split_list(env.get("UWSGI_EMBED_PLUGINS")):
            if extra not in self.embedded:
                self.embedded.append(extra)
        self.plugins = [p for p in split_list(self.values.get("plugins")) if p not in self.embedded]
        self.out = Path(env.get("UWSGI_BUILD_DIR") or ROOT).resolve()
        self.build_dir = self.out / "build"
        self.lib_dir = self.build_dir / "lib"
        self.plugin_dir = (self.out / (self.values.get("plugin_dir") or ".")).resolve()
        self.cc = shlex.split(env.get("CC") or self.values.get("cc") or "gcc")
        self.cflags = shlex.split(self.values.get("cflags", "")) + shlex.split(env.get("CFLAGS", ""))
        self.ldflags = shlex.split(self.values.get("ldflags", "")) + shlex.split(env.get("LDFLAGS", ""))
        self.libs = shlex.split(self.values.get("libs", ""))
        home = self.values.get("cffi_home") or default_home()
        self.cffi_home = str(Path(home).resolve()) if home else ""
        self.py_include = sysconfig.get_paths()["include"]
        self.py_libdir = sysconfig.get_config_var("LIBDIR") or ""
        self.py_ldlibrary = sysconfig.get_config_var("LDLIBRARY") or ""
        self.ext_suffix = sysconfig.get_config_var("EXT_SUFFIX") or ".so"

    @property
    def binary(self) -> Path:
        return self.out / self.bin_name

    def all_cflags(self) -> list[str]:
        return [*self.cflags, f"-I{ROOT}", f"-I{self.py_include}"]

    def python_link(self) -> list[str]:
        """Link against the building interpreter's libpython, found at run time by rpath."""
        name = self.py_ldlibrary
        lib = name[3:].split(".so")[0] if name.startswith("lib") else f"python{sysconfig.get_python_version()}"
        extra = shlex.split(sysconfig.get_config_var("LIBS") or "") + shlex.split(sysconfig.get_config_var("SYSLIBS") or "")
        return [f"-L{self.py_libdir}", f"-l{lib}", f"-Wl,-rpath,{self.py_libdir}", *extra]


def default_home() -> str:
    """The interpreter home baked into ./uwsgi: the venv running this build, else ./.venv."""
    if sys.prefix != sys.base_prefix:
        return sys.prefix
    venv = ROOT / ".venv"
    return str(venv) if (venv / "pyvenv.cfg").is_file() else ""


# --- checks: one line naming what to install -------------------------------------------------

def check_toolchain(cfg: Config, need_libpython: bool = True) -> None:
    if not cfg.cc or not shutil.which(cfg.cc[0]):
        raise BuildError(f"{cfg.cc[0] if cfg.cc else 'C compiler'} not found: apt-get install gcc")
    if not (Path(cfg.py_include) / "Python.h").is_file():
        raise BuildError(f"Python.h not found in {cfg.py_include}: apt-get install python3-dev")
    try:
        import cffi  # noqa: F401
    except ImportError:
        raise BuildError("cffi not found: pip install cffi (or run make venv)")
    try:
        import _cffi_backend  # noqa: F401  (needs libffi)
    except ImportError as e:
        raise BuildError(f"cffi's backend does not load ({e}): apt-get install libffi-dev && pip install --force-reinstall cffi")
    home_cfg = Path(cfg.cffi_home) / "pyvenv.cfg" if cfg.cffi_home else None
    if home_cfg is not None and home_cfg.is_file():
        m = re.search(r"^\s*version(?:_info)?\s*=\s*(\d+)\.(\d+)", home_cfg.read_text(), re.M)
        if m and (int(m.group(1)), int(m.group(2))) != sys.version_info[:2]:
            raise BuildError(f"cffi_home {cfg.cffi_home} is a Python {m.group(1)}.{m.group(2)} virtualenv but the build "
                             f"uses Python {sys.version_info[0]}.{sys.version_info[1]}: run uwsgiconfig.py with its python")
    if need_libpython:
        lib = Path(cfg.py_libdir) / cfg.py_ldlibrary
        if not sysconfig.get_config_var("Py_ENABLE_SHARED") or not lib.exists():
            raise BuildError(f"shared libpython not found ({lib}): use a Python built with --enable-shared "
                             f"or apt-get install libpython{sysconfig.get_python_version()}-dev")


# --- compiling, with a content-hash cache ------------------------------------------------------

def _digest(*parts: bytes | str) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part if isinstance(part, bytes) else part.encode())
        h.update(b"\0")
    return h.hexdigest()


def write_if_changed(path: Path, data: str | bytes) -> None:
    blob = data.encode() if isinstance(data, str) else data
    if path.is_file() and path.read_bytes() == blob:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(blob)
    tmp.replace(path)


def _rel(path: Path) -> str:
    for base in (ROOT, Path.cwd()):
        try:
            return str(path.relative_to(base))
        except ValueError:
            pass
    return str(path)


class Compiler:
    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.compiled = 0
        self.cached = 0

    def _run(self, cmd: list[str], what: str) -> None:
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True)
        except FileNotFoundError:
            raise BuildError(f"{cmd[0]} not found: apt-get install gcc")
        if proc.stdout.strip() or proc.stderr.strip():
            sys.stderr.write(proc.stdout + proc.stderr)
        if proc.returncode != 0:
            raise BuildError(f"{what} failed (exit {proc.returncode}): {shlex.join(cmd)}")

    def compile(self, src: Path, obj: Path, flags: list[str], deps: tuple[Path, ...] = ()) -> tuple[Path, str]:
        """src -> obj unless an object made from the same inputs and flags exists (deps: the
        headers it includes besides uwsgi.h)."""
        cmd = [*self.cfg.cc, "-c", *flags, "-o", str(obj), str(src)]
        key = _digest(shlex.join(cmd), src.read_bytes(), HEADER.read_bytes(), *[d.read_bytes() for d in deps])
        stamp = obj.with_name(obj.name + ".key")
        if obj.is_file() and stamp.is_file() and stamp.read_text() == key:
            self.cached += 1
            return obj, key
        obj.parent.mkdir(parents=True, exist_ok=True)
        say(f"[{self.cfg.cc[0]}] {_rel(obj)}")
        self._run(cmd, f"compiling {_rel(src)}")
        stamp.write_text(key)
        self.compiled += 1
        return obj, key

    def compile_many(self, jobs: list[tuple[Path, Path, list[str]]]) -> list[tuple[Path, str]]:
        with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
            return list(pool.map(lambda job: self.compile(*job), jobs))

    def link(self, objs: list[tuple[Path, str]], out: Path, flags: list[str], shared: bool) -> None:
        cmd = [*self.cfg.cc, *(["-shared"] if shared else []), "-o", str(out),
               *[str(o) for o, _ in objs], *flags]
        key = _digest(shlex.join(cmd), *[k for _, k in objs])
        stamp = self.cfg.build_dir / "link" / (out.name + ".key")
        if out.is_file() and stamp.is_file() and stamp.read_text() == key:
            self.cached += 1
            return
        out.parent.mkdir(parents=True, exist_ok=True)
        say(f"[{self.cfg.cc[0]} link] {_rel(out)}")
        tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
        cmd[cmd.index(str(out))] = str(tmp)
        self._run(cmd, f"linking {out.name}")
        tmp.replace(out)                 # atomic: a running ./uwsgi keeps its old inode
        stamp.parent.mkdir(parents=True, exist_ok=True)
        stamp.write_text(key)


# --- uwsgi.h as cffi's cdef ---------------------------------------------------------------

def header_cdef(executable: bool = False) -> str:
    """uwsgi.h without preprocessor lines. `#ifdef UWSGI_EXECUTABLE` blocks are kept only
    for the executable's embedding module (they are defined by core/main.c)."""
    out: list[str] = []
    stack: list[bool] = []            # per open #if: is this block kept?
    for line in HEADER.read_text().splitlines():
        s = line.strip()
        if s.startswith("#"):
            directive = s[1:].strip()
            if directive.startswith("ifdef UWSGI_EXECUTABLE"):
                stack.append(executable)
            elif directive.startswith("ifndef UWSGI_EXECUTABLE"):
                stack.append(not executable)
            elif directive.startswith("if"):
                stack.append(True)
            elif directive.startswith("else") and stack:
                stack[-1] = not stack[-1]
            elif directive.startswith("endif") and stack:
                stack.pop()
            continue
        if all(stack):
            out.append(line)
    return "\n".join(out) + "\n"


def core_sources() -> list[Path]:
    return sorted(p for p in CORE.glob("*.c") if p.name != MAIN_C)


def gen_module_c(cfg: Config) -> Path:
    """C source of the standalone _uwsgi extension (API mode over uwsgi.h)."""
    from cffi import FFI
    ffi = FFI()
    ffi.cdef(header_cdef(executable=False))
    ffi.set_source("_uwsgi", '#include "uwsgi.h"\n')
    return emit_c(ffi, cfg.build_dir / "gen" / "_uwsgi_module.c")


def emit_c(ffi, path: Path) -> Path:
    """Write cffi's C source to `path`, touching it only when it changed (keeps the object cache)."""
    tmp = path.with_name(path.name + ".new")
    tmp.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.redirect_stdout(io.StringIO()):      # cffi says "generating ..."
        ffi.emit_c_code(str(tmp))
    write_if_changed(path, tmp.read_bytes())
    tmp.unlink()
    return path


EMBED_INIT = '''\
import sys
from _uwsgi import ffi, lib
BUILD = %(build)r


def _cannot_import(e):
    # uwsgid itself is missing (uwsgid.embed imports only the standard library at import time)
    sys.stderr.write(f"uwsgi: the Python at {sys.prefix} cannot import uwsgid ({e}), nor can it from "
                     f"{BUILD['root']}, the tree this uwsgi was built from: install uwsgid in it, "
                     f"or rebuild uwsgi from a tree that has it\\n")
    sys.stderr.flush()
    return 1


@ffi.def_extern(error=1)
def uwsgi_run(argc, argv):
    try:
        from uwsgid import embed
    except ImportError:
        # a --cffi-home without the uwsgid package: use the tree this binary was built from
        sys.path.append(BUILD["root"])
        try:
            from uwsgid import embed
        except ImportError as e:
            return _cannot_import(e)
    return embed.run(ffi, lib, argc, argv, BUILD)
'''

# C appended to the embedding module (after cffi's _embedding.h, so its static
# cffi_start_python() is in scope): core/main.c starts the module itself before calling
# uwsgi_run(), because a failed start makes cffi's uwsgi_run() print "initialization code
# failed. Returning 0." and return 0, which main() could not tell from a clean stop.
EMBED_C = '''
/* 0: the embedding module is initialised; -1: it is not (cffi printed why on sys.stderr) */
int uwsgi_embed_start(void) { return cffi_start_python(); }
/* the cffi that generated this module, for the error line of a home with another one */
const char *uwsgi_embed_cffi_version(void) { return "%(cffi_version)s"; }
'''


def gen_embed_c(cfg: Config, plugins: list["PluginBuild"]) -> Path:
    """C source of the executable's embedding module: uwsgi.h (with its executable part), the
    embedded plugins' file tables, uwsgi_run(), the Python init code and main.c's EMBED_C."""
    from cffi import FFI
    from cffi import __version__ as cffi_version
    ffi = FFI()
    ffi.embedding_api("int uwsgi_run(int argc, char **argv);")
    decls = "".join(f"const struct uwsgi_baked_file *uwsgi_plugin_{p.name}_files(void);\n"
                    f"const char *uwsgi_plugin_{p.name}_source(void);\n" for p in plugins)
    ffi.cdef(header_cdef(executable=True) + decls)
    ffi.set_source("_uwsgi", '#define UWSGI_EXECUTABLE 1\n#include "uwsgi.h"\n' + decls
                   + EMBED_C % {"cffi_version": cffi_version})
    build = {
        "root": str(ROOT),
        "profile": cfg.name,
        "lib_dir": str(cfg.lib_dir),
        "plugin_dir": str(cfg.plugin_dir),
        "home": cfg.cffi_home,
        "embedded": [p.name for p in plugins],
        "plugins": list(cfg.plugins),
    }
    ffi.embedding_init_code(EMBED_INIT % {"build": build})
    return emit_c(ffi, cfg.build_dir / "gen" / "_uwsgi_embed.c")


# --- plugins: plugins/NAME/uwsgiplugin.py ----------------------------------------------------

SKIP_DIRS = {"__pycache__"}
SKIP_SUFFIXES = (".pyc", ".pyo", ".so", ".o", ".tmp", ".swp")
# Table entries ":code:PATH" hold PATH's compiled code (the magic number + marshal), which the
# loader runs instead of compiling the source at every start (uwsgid/plugins/loader.py).
CODE_PREFIX = ":code:"


def compiled_code(rel: str, source: bytes) -> bytes | None:
    """A module's code as the loader takes it, None when it does not compile (the source is
    baked anyway: importing it fails at run time with the error)."""
    try:
        code = compile(source, rel, "exec", dont_inherit=True)
    except (SyntaxError, ValueError):
        return None
    return importlib.util.MAGIC_NUMBER + marshal.dumps(code)


class PluginBuild:
    """A plugin's build contract (uwsgiplugin.py): NAME, CFLAGS, LDFLAGS, LIBS, GCC_LIST,
    REQUIRES, optional post_build(config). Its Python package is DIR/NAME_plugin/."""

    def __init__(self, spec: str | os.PathLike):
        p = Path(spec)
        self.dir = (p if p.is_dir() else PLUGINS / str(spec)).resolve()
        contract = self.dir / "uwsgiplugin.py"
        if not contract.is_file():
            known = ", ".join(sorted(q.parent.name for q in PLUGINS.glob("*/uwsgiplugin.py")))
            raise BuildError(f"plugin {spec}: no uwsgiplugin.py in {self.dir} (known plugins: {known})")
        mod_spec = importlib.util.spec_from_file_location(f"_uwsgiplugin_{self.dir.name}", contract)
        mod = importlib.util.module_from_spec(mod_spec)
        try:
            mod_spec.loader.exec_module(mod)
        except Exception as e:
            raise BuildError(f"{contract}: {type(e).__name__}: {e}")
        self.module = mod
        self.name = str(getattr(mod, "NAME", self.dir.name))
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", self.name):
            raise BuildError(f"{contract}: NAME {self.name!r} is not a C identifier")
        self.cflags = list(getattr(mod, "CFLAGS", []))
        self.ldflags = list(getattr(mod, "LDFLAGS", []))
        self.libs = list(getattr(mod, "LIBS", []))
        self.gcc_list = [self._source(f) for f in getattr(mod, "GCC_LIST", [])]
        self.requires = list(getattr(mod, "REQUIRES", []))
        self.post_build = getattr(mod, "post_build", None)
        self.shared_modules = self._shared_modules(getattr(mod, "SHARED_MODULES", []), contract)
        self.package = self.dir / f"{self.name}_plugin"
        if not self.package.is_dir():
            raise BuildError(f"plugin {self.name}: its Python package {self.package} does not exist")
        if not (self.package / "__init__.py").is_file():
            # still baked (the plugin may be work in progress); importing it will fail at run time
            say(f"warning: plugin {self.name}: {_rel(self.package)} has no __init__.py")

    def _source(self, f: str) -> Path:
        p = Path(f)
        if not p.is_absolute():
            p = self.dir / p
        if p.suffix != ".c":
            p = p.with_name(p.name + ".c")
        if not p.is_file():
            raise BuildError(f"plugin {self.name}: GCC_LIST source {p} not found")
        return p

    def _shared_modules(self, entries, contract: Path) -> list[tuple[str, list[Path], list[str], list[Path]]]:
        """SHARED_MODULES: (name, sources, extra cflags, header deps) of the C modules the
        plugin dlopen()s itself at run time (not linked into the binary or the plugin .so)."""
        out = []
        for entry in entries:
            try:
                name, sources, flags, deps = entry
            except (TypeError, ValueError):
                raise BuildError(f"{contract}: SHARED_MODULES entry {entry!r} is not (name, sources, cflags, deps)")
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", str(name)):
                raise BuildError(f"{contract}: SHARED_MODULES name {name!r} is not a C identifier")
            dep_paths = [self.dir / d for d in deps]
            for d in dep_paths:
                if not d.is_file():
                    raise BuildError(f"plugin {self.name}: SHARED_MODULES header {d} not found")
            out.append((str(name), [self._source(f) for f in sources], list(flags), dep_paths))
        return out

    def check_requires(self) -> None:
        """REQUIRES entries: "module" or ("module", "how to install"), or
        "header:lua.h", "lib:lua5.1", "bin:nginx" for system bits."""
        for item in self.requires:
            what, hint = (item if isinstance(item, (tuple, list)) else (item, None))
            kind, _, name = what.partition(":") if ":" in what else ("python", "", what)
            if kind == "python":
                ok = importlib.util.find_spec(name) is not None
                hint = hint or f"pip install {name}"
            elif kind == "header":
                ok = any((Path(d) / name).is_file() for d in ("/usr/include", "/usr/local/include",
                                                              "/usr/include/x86_64-linux-gnu"))
                hint = hint or f"apt-get install the package providing {name}"
            elif kind == "lib":
                ok = _have_lib(name)
                hint = hint or f"apt-get install lib{name}-dev"
            elif kind == "bin":
                ok = shutil.which(name) is not None
                hint = hint or f"apt-get install {name}"
            else:
                raise BuildError(f"plugin {self.name}: unknown REQUIRES kind {kind!r} in {what!r}")
            if not ok:
                raise BuildError(f"plugin {self.name} needs {kind} {name}: {hint}")

    def files(self) -> list[tuple[str, bytes]]:
        """Every file of the package (code and data), as (path relative to the plugin dir, bytes)."""
        out = []
        for path in sorted(self.package.rglob("*")):
            rel = path.relative_to(self.dir)
            if not path.is_file() or any(part in SKIP_DIRS or part.startswith(".") for part in rel.parts):
                continue
            if path.name.endswith(SKIP_SUFFIXES):
                continue
            out.append((rel.as_posix(), path.read_bytes()))
        return out

    def baked_c(self) -> str:
        """The package as C byte arrays (its modules compiled too) + uwsgi_plugin_NAME_files()
        (and, in a NAME_plugin.so, the generic uwsgi_plugin_name()/uwsgi_plugin_files() the
        loader dlsym()s)."""
        n = self.name
        parts = [f"/* generated by uwsgiconfig.py from {self.package}: do not edit */\n",
                 '#include <stddef.h>\n#include "uwsgi.h"\n\n']
        entries = []
        files = self.files()
        codes = [(CODE_PREFIX + rel, code) for rel, data in files if rel.endswith(".py")
                 for code in [compiled_code(rel, data)] if code is not None]
        for i, (rel, data) in enumerate(files + codes):
            body = ",".join(map(str, data)) or "0"
            parts.append(f"static const unsigned char f{i}[] = {{{body}}};\n")
            entries.append(f'    {{"{_c_escape(rel)}", f{i}, {len(data)}}},\n')
        parts.append(f"\nstatic const struct uwsgi_baked_file files[] = {{\n{''.join(entries)}    {{NULL, NULL, 0}}\n}};\n\n")
        parts.append(f"const struct uwsgi_baked_file *uwsgi_plugin_{n}_files(void) {{ return files; }}\n")
        parts.append(f'const char *uwsgi_plugin_{n}_source(void) {{ return "{_c_escape(str(self.dir))}"; }}\n')
        parts.append("#ifdef UWSGI_PLUGIN_SHARED\n"
                     f'const char *uwsgi_plugin_name(void) {{ return "{n}"; }}\n'
                     "const struct uwsgi_baked_file *uwsgi_plugin_files(void) { return files; }\n"
                     f"const char *uwsgi_plugin_source(void) {{ return uwsgi_plugin_{n}_source(); }}\n"
                     "#endif\n")
        return "".join(parts)

    def objects(self, cfg: Config, cc: Compiler, shared: bool) -> list[tuple[Path, str]]:
        kind = "so" if shared else "embed"
        gen = cfg.build_dir / "gen" / f"{self.name}_plugin_files.c"
        write_if_changed(gen, self.baked_c())
        flags = [*cfg.all_cflags(), *self.cflags, *(["-DUWSGI_PLUGIN_SHARED"] if shared else [])]
        objdir = cfg.build_dir / "obj" / kind / self.name
        jobs = [(gen, objdir / "files.o", flags)]
        jobs += [(src, objdir / (src.stem + ".o"), flags) for src in self.gcc_list]
        return cc.compile_many(jobs)


def build_shared_modules(plugin: PluginBuild, cfg: Config, cc: Compiler) -> None:
    """A plugin's SHARED_MODULES -> OUT/build/lib/NAME.so (the directory of the _uwsgi module,
    on sys.path at run time). Their external symbols stay undefined (resolved at dlopen)."""
    for name, sources, flags, deps in plugin.shared_modules:
        all_flags = [*cfg.cflags, f"-I{plugin.dir}", *flags]
        objdir = cfg.build_dir / "obj" / "shared" / name
        objs = cc.compile_many([(src, objdir / (src.stem + ".o"), all_flags, tuple(deps)) for src in sources])
        cc.link(objs, cfg.lib_dir / f"{name}.so", list(cfg.ldflags), shared=True)


def _have_lib(name: str) -> bool:
    import ctypes.util
    return ctypes.util.find_library(name) is not None


def _c_escape(s: str) -> str:
    return s.replace("\\", "\\\\").replace('"', '\\"')


# --- the verbs -------------------------------------------------------------------------------

def build_plugin(spec: str | os.PathLike, profile: str | None = None, name: str | None = None,
                 cfg: Config | None = None, cc: Compiler | None = None) -> Path:
    """--plugin: PATH -> OUT/<plugin_dir>/NAME_plugin.so, self-contained (package baked in)."""
    cfg = cfg or Config(profile)
    check_toolchain(cfg, need_libpython=False)
    cc = cc or Compiler(cfg)
    plugin = PluginBuild(spec)
    plugin.check_requires()
    out_name = name or plugin.name
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", out_name):
        raise BuildError(f"bad plugin name {out_name!r}")
    out = cfg.plugin_dir / f"{out_name}_plugin.so"
    stale = cfg.out / out.name      # where builds before build/plugins put it: it would shadow
    if stale != out and stale.is_file():    # the Python package of the same name on sys.path
        stale.unlink()
        say(f"removed {_rel(stale)} (plugins are built into {_rel(cfg.plugin_dir)} now)")
    objs = plugin.objects(cfg, cc, shared=True)
    cc.link(objs, out, [*cfg.ldflags, *plugin.ldflags, *plugin.libs], shared=True)
    build_shared_modules(plugin, cfg, cc)
    if plugin.post_build:
        plugin.post_build(cfg)
    say(f"*** {out_name} plugin built: {_rel(out)} ***")
    return out


def build(profile: str | None = None) -> Path:
    cfg = Config(profile)
    say(f"using profile: {_rel(cfg.profile_file)}")
    check_toolchain(cfg)
    embedded = [PluginBuild(n) for n in cfg.embedded]
    for p in embedded:
        p.check_requires()
    _print_summary(cfg)
    cc = Compiler(cfg)
    flags = cfg.all_cflags()
    objdir = cfg.build_dir / "obj"

    # the standalone _uwsgi module (tests, plain python) and the core objects both use
    core_objs = cc.compile_many([(src, objdir / "core" / (src.stem + ".o"), flags) for src in core_sources()])
    module_c = gen_module_c(cfg)
    module_obj = cc.compile(module_c, objdir / "_uwsgi_module.o", [*flags, "-w"])
    cc.link([module_obj, *core_objs], cfg.lib_dir / f"_uwsgi{cfg.ext_suffix}", cfg.ldflags, shared=True)
    build_native(cfg, cc, core_objs)

    # the executable
    embed_c = gen_embed_c(cfg, embedded)
    exe_flags = [*flags, "-DUWSGI_EXECUTABLE=1"]
    home = cfg.cffi_home.replace("\\", "\\\\").replace('"', '\\"')
    exe_objs = cc.compile_many([
        (CORE / MAIN_C, objdir / "exe" / "main.o", [*exe_flags, f'-DUWSGI_DEFAULT_HOME="{home}"']),
        (embed_c, objdir / "exe" / "_uwsgi_embed.o", [*exe_flags, "-w"]),
    ])
    plugin_link: list[str] = []
    for p in embedded:
        exe_objs += p.objects(cfg, cc, shared=False)
        plugin_link += [*p.ldflags, *p.libs]
    cc.link([*exe_objs, *core_objs], cfg.binary,
            ["-Wl,--export-dynamic", *cfg.ldflags, *plugin_link, *cfg.python_link(), *cfg.libs], shared=False)
    for p in embedded:
        build_shared_modules(p, cfg, cc)
        if p.post_build:
            p.post_build(cfg)

    for name in cfg.plugins:
        build_plugin(name, cfg=cfg, cc=cc)
    byte_compile()
    say(f"({cc.compiled} compiled, {cc.cached} up to date)")
    say(f"*** uWSGI is ready, launch it with {_rel(cfg.binary) if cfg.out != ROOT else './' + cfg.bin_name} ***")
    return cfg.binary


NATIVE_DIR = CORE / "cpython"


def build_native(cfg: Config, cc: Compiler, core_objs: list[tuple[Path, str]]) -> None:
    """core/cpython/*.c + the core objects -> OUT/build/lib/_uwsgi_native<EXT_SUFFIX>: a plain
    CPython extension (the Python request path's C half, core/cpython/native.h), beside _uwsgi
    because it takes and returns Python objects, which cffi cannot."""
    sources = sorted(NATIVE_DIR.glob("*.c"))
    if not sources:
        return
    deps = tuple(sorted(NATIVE_DIR.glob("*.h")))
    objdir = cfg.build_dir / "obj" / "native"
    objs = cc.compile_many([(src, objdir / (src.stem + ".o"), cfg.all_cflags(), deps) for src in sources])
    cc.link([*objs, *core_objs], cfg.lib_dir / f"_uwsgi_native{cfg.ext_suffix}", cfg.ldflags, shared=True)


def byte_compile() -> None:
    """uwsgid/ and the plugins' packages compiled to their __pycache__ (as pip does when it
    installs a package): ./uwsgi loads them instead of compiling ~100 modules at every start,
    which it would do when PYTHONDONTWRITEBYTECODE is set (containers often set it) or the tree
    is not writable by the user running it. Up-to-date files are skipped; a module that does not
    compile is left to fail at import, with its error, as without this step."""
    import compileall
    dirs = [ROOT / "uwsgid", *sorted(p.parent / f"{p.parent.name}_plugin" for p in PLUGINS.glob("*/uwsgiplugin.py"))]
    for d in dirs:
        if d.is_dir():
            compileall.compile_dir(str(d), quiet=2)


def _print_summary(cfg: Config) -> None:
    say("################# uWSGI configuration #################")
    say(f"profile = {cfg.name}")
    say(f"bin_name = {cfg.binary}")
    say(f"embedded_plugins = {', '.join(cfg.embedded) or '(none)'}")
    say(f"plugins = {', '.join(cfg.plugins) or '(none)'}")
    say(f"plugin_dir = {cfg.plugin_dir}")
    say(f"cffi_home = {cfg.cffi_home or '(libpython default)'}")
    say(f"python = {sysconfig.get_config_var('LIBDIR')}/{cfg.py_ldlibrary}")
    say("############## end of uWSGI configuration #############")


def clean() -> None:
    cfg_env = os.environ.get("UWSGI_BUILD_DIR")
    out = Path(cfg_env).resolve() if cfg_env else ROOT
    targets: set[Path] = {out / "build"}
    for ini in BUILDCONF.glob("*.ini"):
        try:
            values = load_profile(ini)
        except BuildError:
            continue
        targets.add(out / (values.get("bin_name") or "uwsgi"))
        # a plugin_dir may be shared (/usr/lib/uwsgi): remove only our plugins' files there
        plugin_dir = (out / (values.get("plugin_dir") or ".")).resolve()
        targets.update(plugin_dir / f"{d.parent.name}_plugin.so" for d in PLUGINS.glob("*/uwsgiplugin.py"))
    targets.update(out.glob("*_plugin.so"))
    for t in sorted(targets):
        if t.is_dir() and not t.is_symlink():
            shutil.rmtree(t)
            say(f"removed {_rel(t)}/")
        elif t.exists() or t.is_symlink():
            t.unlink()
            say(f"removed {_rel(t)}")


def cflags(profile: str | None = None) -> str:
    return shlex.join(Config(profile).all_cflags())


USAGE = """usage: uwsgiconfig.py --build [PROFILE]
       uwsgiconfig.py --plugin PATH [PROFILE [NAME]]
       uwsgiconfig.py --clean
       uwsgiconfig.py --cflags [PROFILE]"""


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE, file=sys.stderr if not argv else sys.stdout)
        return 0 if argv else 1
    verb, args = argv[0], argv[1:]
    limits = {"--build": 1, "--plugin": 3, "--clean": 0, "--cflags": 1}
    if verb not in limits:
        print(f"uwsgiconfig: unknown verb {verb}\n{USAGE}", file=sys.stderr)
        return 1
    if len(args) > limits[verb] or (verb == "--plugin" and not args):
        print(f"uwsgiconfig: wrong arguments for {verb}\n{USAGE}", file=sys.stderr)
        return 1
    try:
        if verb == "--build":
            build(args[0] if args else None)
        elif verb == "--plugin":
            build_plugin(args[0], args[1] if len(args) > 1 else None, args[2] if len(args) > 2 else None)
        elif verb == "--clean":
            clean()
        else:
            print(cflags(args[0] if args else None))
    except BuildError as e:
        print(f"uwsgiconfig: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
