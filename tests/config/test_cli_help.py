"""help_text grouping, --version / --help / --plugins-list, and plugin option discovery."""

from __future__ import annotations

import textwrap

import pytest
from cli_helpers import loader, no_loader, registry_snapshot  # noqa: F401  (fixtures)

import uwsgid
from uwsgid.config.cli import CliError, help_text, informational, parse


def p(*argv, env=None):
    return parse([str(a) for a in argv], environ=env or {})


def test_help_lists_every_option_grouped_core_first(loader):
    p("--plugins", "tlua")
    text = help_text()
    headers = [line for line in text.splitlines() if line.endswith(" options:")]
    assert headers[0] == "core options:"
    assert headers[1:] == ["tpy options:", "tlua options:"]
    core = text.index("core options:")
    tlua = text.index("tlua options:")
    assert core < text.index("--socket") < tlua < text.index("--tlua-gc-freq")
    assert "    -s|--socket ADDR" in text
    assert "    -p|--workers N" in text          # aliases get their own line, as in uwsgi --help
    assert "    -M|--master " in text and "    --vacuum " in text
    line = next(l for l in text.splitlines() if "--tlua-gc-freq" in l)
    assert line.split(None, 2)[2] == "test gc frequency"


def test_every_declared_option_appears_in_help():
    from uwsgid.config.options import all_options
    text = help_text()
    for opt in all_options():
        assert f"--{opt.name}" in text


def test_informational_help(capsys):
    assert informational(p("--help")) == 0
    out = capsys.readouterr().out
    assert out.startswith("Usage: ") and "core options:" in out
    assert informational(p("-h")) == 0


def test_informational_version(capsys):
    assert informational(p("--version")) == 0
    assert capsys.readouterr().out == uwsgid.__version__ + "\n"


def test_informational_plugins_list(loader, capsys):
    assert informational(p("--plugins-list", "--plugins", "tlua")) == 0
    out = capsys.readouterr().out
    assert "0: tpy (embedded)" in out and "6: tlua" in out


def test_informational_none_for_a_normal_run():
    assert informational(p("--socket", ":1")) is None


def test_plugin_options_need_the_plugin(loader):
    with pytest.raises(CliError, match=r"^unknown option --tlua$"):
        p("--tlua", "app.lua")
    o = p("--tlua", "app.lua", "--plugins", "tlua")       # order does not matter
    assert o.tlua == ["app.lua"]
    assert [pl.name for pl in o.plugins_loaded] == ["tpy", "tlua"]
    assert loader.calls == [("tlua", [])]


def test_embedded_plugin_options_always_known(loader):
    assert p("--tpy-module", "app").tpy_module == "app"


def test_plugins_from_env_and_config_files(loader, tmp_path):
    assert p("--tlua-gc-freq", "3", env={"UWSGI_PLUGINS": "tlua"}).tlua_gc_freq == 3
    cfg = tmp_path / "p.ini"
    cfg.write_text(textwrap.dedent("""
        [uwsgi]
        plugin-dir = /opt/plugins
        need-plugin = 6:tlua
        tlua = app.lua
        tlua-gc-freq = 2
    """))
    o = p(cfg)
    assert o.tlua == ["app.lua"] and o.tlua_gc_freq == 2
    assert loader.calls[-1] == ("6:tlua", ["/opt/plugins"])


def test_plugin_lists_split_on_commas(loader):
    o = p("--plugins", "tpy, tlua", "--tlua", "x")
    assert [pl.name for pl in o.plugins_loaded] == ["tpy", "tlua"]


def test_plugin_not_found(loader):
    with pytest.raises(CliError) as e:
        p("--plugins", "nope", "--plugin-dir", "/a", "--plugin-dir", "/b")
    assert str(e.value) == "plugin nope not found (searched /a, /b)"


def test_unknown_plugin_option_in_config_is_a_placeholder(tmp_path):
    cfg = tmp_path / "x.ini"
    cfg.write_text("[uwsgi]\ntlua = app.lua\n")
    o = p(cfg)          # silently a placeholder, as uWSGI without the plugin
    assert ("tlua", "app.lua") in o.exported


def test_opt_dict(tmp_path):
    o = p("--socket", ":1", "--socket", ":2", "--set", "x=1", "-M")
    d = o.opt_dict()
    assert d["socket"] == [":1", ":2"] and d["x"] == "1" and d["master"] is True


def test_show_config(capfd, tmp_path):
    cfg = tmp_path / "s.ini"
    cfg.write_text("[uwsgi]\nbase = /srv\nchdir = %(base)/app\n")
    o = p("-S", "x=1", "--show-config", cfg)
    assert informational(o) is None
    err = capfd.readouterr().err
    assert "[uwsgi]\nset = x=1\nx = 1\nshow-config = true\nbase = /srv\nchdir = /srv/app\n;end of configuration" in err


def test_set_ph_alias():
    assert p("--set-ph", "a=b", "--print", "%(a)").print == ["b"]


def test_plugin_flag_before_a_positional_config(loader, tmp_path):
    from cli_helpers import TLUA

    from uwsgid.config.options import Option
    TLUA.options.append(Option("tlua-shell", kind="flag", group="tlua", help="test flag"))
    try:
        cfg = tmp_path / "app.ini"
        cfg.write_text("[uwsgi]\nplugins = tlua\n")
        assert p("--tlua-shell", cfg).tlua_shell is True
    finally:
        TLUA.options.pop()


def test_markdown_reference_has_every_option(loader):
    from uwsgid.config.options import all_options
    from uwsgid.config.reference import markdown
    p("--plugins", "tlua")
    text = markdown()
    assert text.index("## core") < text.index("## tpy") < text.index("## tlua")
    for opt in all_options():
        assert f"`--{opt.name}`" in text
    assert "| `--buffer-size` | `-b` | size (64k, 1m, 1g) | `4096` |" in text


def test_unknown_option_of_an_unloaded_plugin_says_which(no_loader):
    import re
    no_loader.ALIASES = [(re.compile(r"lua(jit)?"), "lua")]
    with pytest.raises(CliError) as e:
        p("--lua", "app.lua")
    assert str(e.value) == "unknown option --lua (the lua plugin is not loaded: add --plugins lua)"
