"""The package layout of docs/ARCHITECTURE.md, enforced: imports point down the layers only,
and no module imports another that (directly or not) imports it back.

Every import counts, also those inside functions: a deferred import still ties two modules
together. The language plugins (plugins/*/NAME_plugin) may use only the contract, the
services and the leaf layers. Read with `ast` from the source; nothing is imported.
"""

from __future__ import annotations

import ast
from pathlib import Path

from helpers import ROOT

PKG = "uwsgid"

# Lowest first: a module may import its own layer's modules and those of lower layers.
LAYERS = ("util", "config", "net", "static", "observe", "plugins", "server", "services", "routing", "<entry>")
ENTRY_MODULES = ("uwsgid", "uwsgid.__main__", "uwsgid.main", "uwsgid.embed", "uwsgid.options_doc",
                 "uwsgid.control")
# What a language plugin may import of the core.
PLUGIN_MAY_IMPORT = ("util", "config", "plugins", "services")


def _module_name(path: Path, base: Path) -> str:
    parts = list(path.relative_to(base).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules(base: Path, top: str) -> dict[str, Path]:
    return {_module_name(p, base): p for p in sorted((base / top).rglob("*.py"))}


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The modules of `known` (or their packages) that the file imports, anywhere in it."""
    is_pkg = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parent = name if is_pkg else name.rpartition(".")[0]
                for _ in range(node.level - 1):
                    parent = parent.rpartition(".")[0]
                base = f"{parent}.{node.module}" if node.module else parent
            else:
                base = node.module or ""
            # `from pkg import mod` ties us to pkg.mod; `from mod import name` to mod
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in known:
                t = t.rpartition(".")[0]
            if t and t != name:
                out.add(t)
    return out


def _graph() -> dict[str, set[str]]:
    mods = _modules(ROOT, PKG)
    known = set(mods)
    return {name: _imports(name, path, known) for name, path in mods.items()}


def _layer(mod: str) -> int:
    if mod in ENTRY_MODULES:
        return LAYERS.index("<entry>")
    return LAYERS.index(mod.split(".")[1])


def test_every_module_belongs_to_a_layer():
    for mod in _graph():
        if mod not in ENTRY_MODULES:
            assert mod.count(".") >= 1 and mod.split(".")[1] in LAYERS, \
                f"{mod}: put it in one of the layer packages {LAYERS[:-1]} (docs/ARCHITECTURE.md)"


def test_imports_point_down_the_layers():
    upward = [f"{mod} ({LAYERS[_layer(mod)]}) imports {dep} ({LAYERS[_layer(dep)]})"
              for mod, deps in _graph().items() for dep in sorted(deps)
              if dep != PKG and _layer(dep) > _layer(mod)]
    assert not upward, "imports that point up the layers:\n  " + "\n  ".join(upward)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles():
    graph = {m: {d for d in deps if d != PKG} for m, deps in _graph().items()}
    cycles = _cycles(graph)
    assert not cycles, "modules that import each other (directly or through others):\n  " + \
        "\n  ".join(" <-> ".join(c) for c in cycles)


def test_the_cycle_check_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_language_plugins_use_only_the_contract_and_services():
    bad = []
    core = set(_modules(ROOT, PKG))
    for plugin_dir in sorted((ROOT / "plugins").iterdir()):
        for pkg in sorted(plugin_dir.glob("*_plugin")):
            for name, path in _modules(plugin_dir, pkg.name).items():
                for dep in sorted(_imports(name, path, core)):
                    if dep == PKG:
                        continue    # the package face: __version__
                    if dep in ENTRY_MODULES or dep.split(".")[1] not in PLUGIN_MAY_IMPORT:
                        bad.append(f"{path.relative_to(ROOT)} imports {dep}")
    assert not bad, f"a language plugin may import only uwsgid.{{{','.join(PLUGIN_MAY_IMPORT)}}}:\n  " + \
        "\n  ".join(bad)


def test_the_core_never_imports_a_language_plugin():
    plugin_pkgs = {p.name for d in (ROOT / "plugins").iterdir() for p in d.glob("*_plugin")}
    bad = []
    for name, path in _modules(ROOT, PKG).items():
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            bad += [f"{name} imports {n}" for n in names if n.split(".")[0] in plugin_pkgs]
    assert not bad, "the core reaches plugins through the loader only:\n  " + "\n  ".join(bad)
