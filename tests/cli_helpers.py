"""Helpers for the cli tests: a fake plugin loader (no lupa/cffi import, options of our own)
and a snapshot of the option registry so a test's declarations do not leak into the next."""

from __future__ import annotations

import types

import pytest

from uwsgid.config import (
    cli,  # declares the core options before the snapshot
    options,
)
from uwsgid.config.options import Option, declare
from uwsgid.plugins.contract import Plugin


class PluginNotFound(Exception):
    pass


class FakePlugin(Plugin):
    def __init__(self, name: str, modifier1: int, opts: list[Option]):
        self.name = name
        self.modifier1 = modifier1
        self.options = opts


def make_loader(embedded=(), available=()):
    """A stand-in for uwsgid.plugins.loader: `embedded` plugins are always there, `available`
    ones load by name; anything else raises PluginNotFound naming the dirs searched."""
    mod = types.ModuleType("uwsgid.plugins.loader")
    mod.PluginError = Exception
    mod.PluginNotFound = PluginNotFound
    mod.calls = []
    by_name = {p.name: p for p in (*embedded, *available)}

    def embedded_plugins():
        for p in embedded:
            declare(*p.options)
        return list(embedded)

    def load_plugin(spec, dirs):
        mod.calls.append((spec, list(dirs)))
        name = spec.split(":", 1)[-1]
        if name not in by_name:
            raise PluginNotFound(f"plugin {name} not found (searched {', '.join(dirs) or '.'})")
        declare(*by_name[name].options)
        return by_name[name]

    def describe():
        return [(p.name, "embedded") for p in embedded]

    mod.embedded_plugins = embedded_plugins
    mod.load_plugin = load_plugin
    mod.describe = describe
    return mod


TLUA = FakePlugin("tlua", 6, [
    Option("tlua", kind="str", multi=True, group="tlua", metavar="FILE", help="load a test lua app"),
    Option("tlua-gc-freq", kind="int", default=0, group="tlua", help="test gc frequency"),
])
TPY = FakePlugin("tpy", 0, [
    Option("tpy-module", kind="str", group="tpy", help="test wsgi module"),
])


@pytest.fixture(autouse=True)
def registry_snapshot():
    """Each test sees only the core's options (plugins declared by earlier tests in the same
    session are hidden) and leaves the registry as it found it."""
    reg, order = dict(options._registry), list(options._order)
    options._registry.clear()
    options._registry.update({k: o for k, o in reg.items() if o.group == "core"})
    options._order[:] = [o for o in order if o.group == "core"]
    yield
    options._registry.clear()
    options._registry.update(reg)
    options._order[:] = order


@pytest.fixture
def loader(monkeypatch, no_loader):
    """Install a fake loader: TPY embedded, TLUA loadable with --plugins tlua."""
    mod = make_loader(embedded=[TPY], available=[TLUA])
    monkeypatch.setattr(cli, "plugin_loader", mod)
    return mod


@pytest.fixture(autouse=True)
def no_loader(monkeypatch):
    """By default no plugins at all (tests that want some use `loader`, which overrides)."""
    mod = make_loader()
    monkeypatch.setattr(cli, "plugin_loader", mod)
    return mod
