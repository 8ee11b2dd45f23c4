"""Run the server in-process from source with the Lua and Python plugins passed to
uwsgid.main.main(argv, extra_plugins) — for the services tests when ./uwsgi is not usable.

    python tests/services_launcher.py ARGS...

When uwsgid.config.cli (the real option parser) is missing, a minimal stand-in parses `--name value`,
`--name=value`, `-X value` and flags against the declared options (enough for these tests).
"""

from __future__ import annotations

import importlib
import sys
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for p in (ROOT, ROOT / "plugins" / "lua", ROOT / "plugins" / "cffi", ROOT / "build" / "lib"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))


def _convert(opt, value: str):
    if opt.kind == "int":
        return int(value)
    if opt.kind == "float":
        return float(value)
    if opt.kind == "size":
        v = value.strip().lower()
        mult = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}.get(v[-1:], 1)
        return int(v[:-1] if mult > 1 else v) * mult
    if opt.kind == "flag":
        return value.lower() not in ("0", "false", "no", "off")
    return value


def _shim_cli() -> types.ModuleType:
    from uwsgid.config.options import Options, by_short, lookup

    mod = types.ModuleType("uwsgid.config.cli")

    class CliError(Exception):
        pass

    def parse(argv):
        opts = Options()
        i = 0
        while i < len(argv):
            arg = argv[i]
            if arg.startswith("--"):
                name, eq, value = arg[2:].partition("=")
                opt = lookup(name)
            elif arg.startswith("-") and len(arg) >= 2:
                name, eq, value = arg[1], "", arg[2:]
                eq = "=" if value else ""
                opt = by_short(name)
            else:
                raise CliError(f"unexpected argument {arg!r}")
            if opt is None:
                raise CliError(f"unrecognized option '{arg}'")
            if opt.kind == "flag":
                opts.set(opt, _convert(opt, value) if eq else True)
            elif opt.kind == "optional" and not eq:
                opts.set(opt, opt.const)
            else:
                if not eq:
                    i += 1
                    if i >= len(argv):
                        raise CliError(f"option '{arg}' requires an argument")
                    value = argv[i]
                try:
                    opts.set(opt, _convert(opt, value))
                except ValueError:
                    raise CliError(f"option '{arg}': invalid value {value!r}") from None
            i += 1
        return opts

    mod.CliError = CliError
    mod.parse = parse
    mod.informational = lambda opts: None
    return mod


def main(argv: list[str]) -> int:
    import uwsgid.config.core_options  # noqa: F401
    import uwsgid.services  # noqa: F401
    from uwsgid.config.options import declare
    plugins = []
    for name in ("lua_plugin", "cffi_plugin"):
        mod = importlib.import_module(name)
        declare(*mod.plugin.options)
        plugins.append(mod.plugin)
    try:
        importlib.import_module("uwsgid.config.cli")
    except ImportError:
        shim = _shim_cli()
        sys.modules["uwsgid.config.cli"] = shim
        import uwsgid
        uwsgid.config.cli = shim
    from uwsgid.main import main as server_main
    return server_main(argv, extra_plugins=plugins)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
