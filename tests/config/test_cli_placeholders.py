"""Placeholders (%(name), math, $(ENV), @(file), --set, --set-placeholder) and magic vars."""

from __future__ import annotations

import os
import socket
import textwrap

import pytest
from cli_helpers import loader, no_loader, registry_snapshot  # noqa: F401  (fixtures)

import uwsgid
from uwsgid.config import magic, placeholders
from uwsgid.config.cli import CliError, parse


def p(*argv, env=None):
    return parse([str(a) for a in argv], environ=env or {})


def write(path, text):
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def test_placeholder_from_an_earlier_option():
    o = p("--socket", ":3031", "--print", "on %(socket)")
    assert o.print == ["on :3031"]


def test_placeholder_first_value_wins_and_may_be_defined_later(tmp_path):
    # uWSGI resolves against the whole configuration, first value given
    cfg = write(tmp_path / "a.ini", """
        [uwsgi]
        print = %(name) %(later)
        name = one
        name = two
        later = x
    """)
    assert p(cfg).print == ["one x"]


def test_unknown_placeholders_stay_verbatim(tmp_path):
    cfg = write(tmp_path / "lf.ini", """
        [uwsgi]
        log-format = %(addr) - %(user) [%(ltime)] "%(method) %(uri) %(proto)" %(status) %(size)
    """)
    assert p(cfg).log_format == '%(addr) - %(user) [%(ltime)] "%(method) %(uri) %(proto)" %(status) %(size)'


def test_set_sets_option_and_placeholder():
    o = p("--set", "processes=3", "--set", "app=/srv", "--chdir", "%(app)/www", "--print", "%(processes)")
    assert o.processes == 3 and o.chdir == "/srv/www" and o.print == ["3"]
    assert o.get("set") == ["processes=3", "app=/srv"]


def test_set_placeholder_only():
    o = p("--set-placeholder", "base=/opt", "--chdir", "%(base)")
    assert o.chdir == "/opt"
    with pytest.raises(CliError, match="processes is an option, not a placeholder"):
        p("--set-placeholder", "processes=2")


def test_set_needs_key_value():
    with pytest.raises(CliError, match=r"option --set needs KEY=VALUE, got 'novalue'"):
        p("--set", "novalue")


def test_unknown_option_on_cli_is_still_an_error_even_as_placeholder():
    with pytest.raises(CliError, match="unknown option --base"):
        p("--base", "/x")


def test_nested_placeholders_and_loops(tmp_path):
    cfg = write(tmp_path / "n.ini", """
        [uwsgi]
        a = 1
        b = %(a)2
        c = %(c)
        print = %(b) %(c)
    """)
    assert p(cfg).print == ["12 %(c)"]


def test_placeholder_math(tmp_path):
    cfg = write(tmp_path / "m.ini", """
        [uwsgi]
        base = 10
        processes = %(base + 2)
        listen = %(base * 3 - 5)
        print = %(base ++) %(base --) %(base / 0) %(base / 3) %(base 7)
    """)
    o = p(cfg)
    assert o.processes == 12 and o.listen == 25
    assert o.print == ["11 9 0 3 107"]


def test_env_placeholders():
    o = p("--chdir", "$(HOME_X)/app", "--print", "$(NOT_SET_ANYWHERE)", env={"HOME_X": "/home/u"})
    assert o.chdir == "/home/u/app" and o.print == ["$(NOT_SET_ANYWHERE)"]


def test_env_var_options_are_placeholders_too(tmp_path):
    cfg = write(tmp_path / "e.ini", "[uwsgi]\nprint = %(foo)\n")
    assert p(cfg, env={"UWSGI_FOO": "from-env"}).print == ["from-env"]


def test_at_file_contents(tmp_path):
    (tmp_path / "secret").write_text("s3cret\n")
    o = p("--print", f"[@({tmp_path}/secret)]")
    assert o.print == ["[s3cret]"]
    with pytest.raises(CliError, match=r"cannot read @\(/nonexistent/x\): No such file"):
        p("--print", "@(/nonexistent/x)")


def test_include_path_uses_placeholders_known_so_far(tmp_path):
    write(tmp_path / "inc.ini", "[uwsgi]\nprocesses = 4\n")
    write(tmp_path / "main.ini", f"[uwsgi]\nconfdir = {tmp_path}\nini = %(confdir)/inc.ini\n")
    assert p(tmp_path / "main.ini").processes == 4


def test_plugin_names_may_use_placeholders(loader):
    o = p("--set", "lang=tlua", "--plugins", "%(lang)", "--tlua", "app.lua")
    assert o.tlua == ["app.lua"]


# ------------------------------------------------------------------------------ magic vars

def test_magic_vars_in_ini(tmp_path):
    sub = tmp_path / "site"
    sub.mkdir()
    cfg = write(sub / "myapp.ini", """
        [uwsgi]
        print = d=%d
        print = n=%n p=%p s=%s e=%e c=%c
        print = h=%h k=%k pct=%% unknown=[%z] V=%V
        chdir = %d
    """)
    o = p(cfg)
    real = os.path.realpath(sub)
    assert o.print == [
        f"d={real}/",
        f"n=myapp p={real}/myapp.ini s=myapp.ini e=ini c=site",
        f"h={socket.gethostname()} k={os.cpu_count()} pct=% unknown=[] V={uwsgid.__version__}",
    ]
    assert o.chdir == f"{real}/"


def test_magic_vars_refer_to_each_included_file(tmp_path):
    (tmp_path / "inner").mkdir()
    write(tmp_path / "inner" / "child.yaml", "uwsgi:\n  print: '%n in %c'\n")
    write(tmp_path / "parent.ini", "[uwsgi]\nprint = %n in %c\nyaml = %dinner/child.yaml\nprint = %N first\n")
    o = p(tmp_path / "parent.ini")
    assert o.print == [f"parent in {tmp_path.name}", "child in inner", "parent first"]


def test_percent_escape_keeps_strftime_formats(tmp_path):
    cfg = write(tmp_path / "ld.ini", "[uwsgi]\nlog-date = %%Y-%%m-%%d\n")
    assert p(cfg).log_date == "%Y-%m-%d"


def test_magic_vars_are_not_applied_on_the_command_line():
    assert p("--print", "%d %n").print == ["%d %n"]


def test_magic_sub_unit():
    table = {"d": "/x/", "%": "%", "(": "%("}
    assert magic.magic_sub("%d%%%(a)%q%", table) == "/x/%%(a)%"
    assert magic.magic_sub("a%\nb", table) == "a%\nb"


def test_expand_unit():
    look = {"a": "1", "b": "x"}.get
    assert placeholders.expand("%(a)-%(b)-%(c)", look, {}) == "1-x-%(c)"
    assert placeholders.expand("$(E) $(F)", look, {"E": "e"}) == "e $(F)"
    assert placeholders.expand("%(a + 41)", look, {}) == "42"
