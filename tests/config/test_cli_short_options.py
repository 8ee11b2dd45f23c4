"""Every short option, of the core and of every plugin, takes its value in each form uWSGI
accepts (-w hello, -whello, -w=hello, --module hello, --module=hello). Generated from the
declarations, with the real plugin loader: a plugin's options are unknown until it loads, which
is what broke `-w hello` once."""

from __future__ import annotations

import pytest

from uwsgid.config import cli
from uwsgid.config.options import all_options
from uwsgid.plugins import loader


@pytest.fixture
def real_loader(monkeypatch):
    monkeypatch.setattr(cli, "plugin_loader", loader)


def _short_options():
    cli.use_plugin_loader(loader)
    cli.parse(["--socket", ":0"], environ={})      # declares the embedded plugins' options
    return sorted((o for o in all_options() if o.short and o.name not in ("help",)), key=lambda o: o.short)


def _value(opt, tmp_path) -> str:
    if opt.name in cli._CONFIG_KINDS:              # -j FILE, -y FILE ...: a real file of that kind
        ext = {"ini": "ini", "json": "json", "yaml": "yaml", "inherit": "ini"}[opt.name]
        path = tmp_path / f"c.{ext}"
        path.write_text({"ini": "[uwsgi]\nmaster = true\n", "json": '{"uwsgi": {"master": true}}',
                         "yaml": "uwsgi:\n  master: true\n"}[ext])
        return str(path)
    if opt.name == "set":
        return "master=true"
    return {"int": "3", "size": "3", "float": "3", "optional": "660"}.get(opt.kind, "hello")


SHORTS = _short_options()


def test_the_plugins_short_options_are_covered():
    letters = {o.short for o in SHORTS}
    assert {"w", "H"} <= letters         # Python's -w/--module and -H/--home
    assert {"s", "p", "M"} <= letters    # the core's


@pytest.mark.parametrize("opt", SHORTS, ids=lambda o: f"-{o.short}/--{o.name}")
def test_short_option_forms(opt, tmp_path, real_loader):
    base = ["--socket", ":0"]
    attr = "master" if opt.name == "set" else opt.name.replace("-", "_")
    if opt.kind == "flag":
        forms = [[f"-{opt.short}"], [f"--{opt.name}"]]
    elif opt.kind == "optional":
        forms = [[f"-{opt.short}660"], [f"--{opt.name}=660"]]
    else:
        v = _value(opt, tmp_path)
        forms = [[f"-{opt.short}", v], [f"-{opt.short}{v}"], [f"-{opt.short}={v}"],
                 [f"--{opt.name}", v], [f"--{opt.name}={v}"]]
    results = []
    for form in forms:
        opts = cli.parse([*base, *form], environ={})
        results.append(getattr(opts, attr))
    assert all(r == results[0] for r in results), dict(zip(map(" ".join, forms), results))
    assert results[0] not in (None, [], False)


@pytest.mark.parametrize("form", [["-w", "hello"], ["-whello"], ["-w=hello"]], ids=" ".join)
def test_the_deployment_guides_command_serves_through_the_binary(form):
    from helpers import EXAMPLES, Server, free_port, http_get
    port = free_port()
    with Server(["--http-socket", f"127.0.0.1:{port}", "--pythonpath", EXAMPLES, *form], port) as s:
        status, _, body = http_get(port, "/")
        assert (status, body) == (200, b"Hello World"), s.log()
