"""Config files: ini (sections, repeats, booleans), json, yaml, positional files, includes,
--inherit, precedence, and the errors a broken file gives."""

from __future__ import annotations

import json
import textwrap

import pytest
from cli_helpers import loader, no_loader, registry_snapshot  # noqa: F401  (fixtures)

from uwsgid.config.cli import CliError, parse


def p(*argv, env=None):
    return parse([str(a) for a in argv], environ=env or {})


def write(path, text):
    path.write_text(textwrap.dedent(text).lstrip())
    return path


# ------------------------------------------------------------------------------ ini

def test_ini_basic_sections_and_repeats(tmp_path):
    cfg = write(tmp_path / "app.ini", """
        ; a comment
        # another
        [other]
        processes = 9
        [uwsgi]
        socket = :3031
        socket = /tmp/x.sock
          processes   =   4
        master
        disable-logging = true
        vacuum = off
        env = A=B=C
    """)
    o = p("--ini", cfg)
    assert o.socket == [":3031", "/tmp/x.sock"] and o.processes == 4
    assert o.master is True and o.disable_logging is True and o.vacuum is False
    assert o.env == ["A=B=C"]
    assert o.ini == [str(cfg)]


@pytest.mark.parametrize("word, value", [("true", True), ("1", True), ("yes", True), ("on", True),
                                         ("false", False), ("0", False), ("no", False), ("off", False)])
def test_ini_booleans(tmp_path, word, value):
    cfg = write(tmp_path / "b.ini", f"[uwsgi]\nmaster = {word}\n")
    assert p("--ini", cfg).master is value


def test_ini_section_selection(tmp_path):
    cfg = write(tmp_path / "s.ini", "[uwsgi]\nprocesses = 1\n[prod]\nprocesses = 8\n")
    assert p("--ini", f"{cfg}:prod").processes == 8
    assert p(f"{cfg}:prod").processes == 8
    # `:section` alone means the last file loaded
    assert p("--ini", cfg, "--ini", ":prod").processes == 8


def test_ini_missing_section_is_an_error(tmp_path):
    cfg = write(tmp_path / "s.ini", "[uWSGI]\nprocesses = 1\n")
    with pytest.raises(CliError, match=r"s\.ini: no \[uwsgi\] section"):
        p("--ini", cfg)


def test_ini_underscores_accepted(tmp_path):
    cfg = write(tmp_path / "u.ini", "[uwsgi]\nmax_requests = 50\n")
    assert p(cfg).max_requests == 50


def test_ini_bad_value_names_option_and_file(tmp_path):
    cfg = write(tmp_path / "bad.ini", "[uwsgi]\nprocesses = many\n")
    with pytest.raises(CliError) as e:
        p(cfg)
    assert str(e.value) == f"option --processes: invalid integer 'many' (in {cfg})"


def test_ini_malformed_section_header(tmp_path):
    cfg = write(tmp_path / "m.ini", "[uwsgi\nprocesses = 1\n")
    with pytest.raises(CliError, match=r"m\.ini:1: malformed section header"):
        p(cfg)


def test_ini_unknown_keys_are_placeholders_not_errors(tmp_path):
    cfg = write(tmp_path / "ph.ini", "[uwsgi]\nbase = /srv/app\nchdir = %(base)/www\n")
    o = p(cfg)
    assert o.chdir == "/srv/app/www"
    assert ("base", "/srv/app") in o.exported


def test_ini_unknown_key_close_to_an_option_warns(tmp_path, capfd):
    cfg = write(tmp_path / "typo.ini", "[uwsgi]\nproceses = 2\n")
    o = p(cfg)
    assert o.processes == 1
    err = capfd.readouterr().err
    assert "proceses" in err and "did you mean --processes?" in err


def test_strict_makes_unknown_config_keys_errors(tmp_path):
    cfg = write(tmp_path / "st.ini", "[uwsgi]\nstrict = true\nfoo = bar\n")
    with pytest.raises(CliError, match=r"unknown option foo \(in .*st\.ini\) \(--strict\)"):
        p(cfg)


def test_missing_file(tmp_path):
    with pytest.raises(CliError) as e:
        p("--ini", tmp_path / "nope.ini")
    assert str(e.value) == f"cannot read config file {tmp_path / 'nope.ini'}: No such file or directory"


def test_directory_as_config(tmp_path):
    d = tmp_path / "d.ini"
    d.mkdir()
    with pytest.raises(CliError, match="it is a directory"):
        p(d)


def test_binary_garbage_config(tmp_path):
    cfg = tmp_path / "g.ini"
    cfg.write_bytes(b"[uwsgi]\n\xff\xfe\x00 = 1\n")
    with pytest.raises(CliError, match=r"g\.ini: not UTF-8"):
        p(cfg)


# ------------------------------------------------------------------------------ json / yaml

def test_json_config(tmp_path):
    cfg = tmp_path / "app.json"
    cfg.write_text(json.dumps({"uwsgi": {"socket": [":1", ":2"], "master": True, "vacuum": False,
                                         "processes": 3, "buffer-size": "8k", "pidfile": None},
                               "prod": {"processes": 12}}))
    o = p("--json", cfg)
    assert o.socket == [":1", ":2"] and o.master is True and o.vacuum is False
    assert o.processes == 3 and o.buffer_size == 8192 and o.pidfile is None
    assert p(f"{cfg}:prod").processes == 12
    assert p("-j", cfg).processes == 3


def test_json_repeated_keys_all_apply(tmp_path):
    cfg = tmp_path / "r.json"
    cfg.write_text('{"uwsgi": {"socket": ":1", "socket": ":2"}}')
    assert p(cfg).socket == [":1", ":2"]


@pytest.mark.parametrize("text, msg", [
    ('{"uwsgi": {"socket": ', r"invalid JSON at line 1"),
    ('[1, 2]', r"expected a mapping"),
    ('{"other": {}}', r"no 'uwsgi' section"),
    ('{"uwsgi": {"socket": {"a": 1}}}', r"option 'socket' has a nested dict"),
])
def test_json_errors(tmp_path, text, msg):
    cfg = tmp_path / "e.json"
    cfg.write_text(text)
    with pytest.raises(CliError, match=msg) as e:
        p(cfg)
    assert str(cfg) in str(e.value)


def test_yaml_config(tmp_path):
    cfg = write(tmp_path / "app.yaml", """
        uwsgi:
          socket:
            - :1
            - :2
          master: true
          chmod-socket: 0660
          processes: 2
          disable-logging: no
        prod:
          processes: 6
    """)
    o = p("--yaml", cfg)
    assert o.socket == [":1", ":2"] and o.master is True and o.processes == 2
    assert o.chmod_socket == "0660"      # not YAML 1.1's octal 432
    assert o.disable_logging is False
    assert p("--yml", f"{cfg}:prod").processes == 6
    assert p(tmp_path / "app.yaml").processes == 2


def test_yml_extension(tmp_path):
    cfg = write(tmp_path / "x.yml", "uwsgi:\n  processes: 5\n")
    assert p(cfg).processes == 5


def test_yaml_errors(tmp_path):
    cfg = write(tmp_path / "bad.yaml", "uwsgi:\n  socket: [1, 2\n")
    with pytest.raises(CliError, match=r"bad\.yaml: invalid YAML at line"):
        p(cfg)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(CliError, match="empty YAML document"):
        p(empty)


# ------------------------------------------------------------------------------ includes, order

def test_nested_includes_in_place(tmp_path):
    write(tmp_path / "base.ini", "[uwsgi]\nsocket = :1\nprocesses = 2\njson = %dextra.json\n")
    (tmp_path / "extra.json").write_text('{"uwsgi": {"socket": ":2", "yaml": "%dmore.yaml"}}')
    write(tmp_path / "more.yaml", "uwsgi:\n  socket: ':3'\n")
    write(tmp_path / "app.ini", "[uwsgi]\nsocket = :0\nini = base.ini\nsocket = :4\nprocesses = 3\n")
    # include paths are relative to the cwd, as in uWSGI: use %d for "next to me"
    app = tmp_path / "app.ini"
    app.write_text(app.read_text().replace("ini = base.ini", f"ini = {tmp_path}/base.ini"))
    o = p(app)
    assert o.socket == [":0", ":1", ":2", ":3", ":4"]
    assert o.processes == 3


def test_include_loop_is_an_error(tmp_path):
    write(tmp_path / "a.ini", "[uwsgi]\nini = %db.ini\n")
    write(tmp_path / "b.ini", "[uwsgi]\nini = %da.ini\n")
    with pytest.raises(CliError, match=r"config include loop: .*a\.ini -> .*b\.ini -> .*a\.ini"):
        p(tmp_path / "a.ini")


def test_same_file_different_sections_is_not_a_loop(tmp_path):
    write(tmp_path / "a.ini", "[uwsgi]\nini = :common\nprocesses = 2\n[common]\nmaster = true\n")
    o = p(tmp_path / "a.ini")
    assert o.master is True and o.processes == 2


def test_inherit_loads_a_template_by_extension(tmp_path):
    write(tmp_path / "tpl.ini", "[uwsgi]\nmaster = true\nprocesses = 2\n")
    write(tmp_path / "app.ini", f"[uwsgi]\ninherit = {tmp_path}/tpl.ini\nprocesses = 4\n")
    o = p(tmp_path / "app.ini")
    assert o.master is True and o.processes == 4
    assert p("--inherit", tmp_path / "tpl.ini").processes == 2


def test_unknown_config_extension(tmp_path):
    cfg = write(tmp_path / "x.conf", "[uwsgi]\n")
    with pytest.raises(CliError, match="unexpected argument"):
        p(cfg)
    with pytest.raises(CliError, match="unknown config file type"):
        p("--inherit", cfg)
    assert p("--ini", cfg).processes == 1       # an explicit --ini reads any name


def test_command_line_order_is_the_precedence(tmp_path):
    cfg = write(tmp_path / "o.ini", "[uwsgi]\nprocesses = 2\n")
    assert p("--ini", cfg, "-p", "5").processes == 5
    assert p("-p", "5", "--ini", cfg).processes == 2
    # positional config files come after every option (getopt's permutation), as in uWSGI
    assert p(cfg, "-p", "5").processes == 2


def test_env_vars_come_first(tmp_path):
    cfg = write(tmp_path / "e.ini", "[uwsgi]\nprocesses = 2\n")
    env = {"UWSGI_PROCESSES": "7", "UWSGI_MASTER": "1", "UWSGI_HTTP_SOCKET": ":8080"}
    o = p(env=env)
    assert o.processes == 7 and o.master is True and o.http_socket == [":8080"]
    assert p(cfg, env=env).processes == 2
    assert p("-p", "3", env=env).processes == 3


def test_env_internal_and_unknown_vars_are_ignored():
    env = {"UWSGI_RELOADS": "3", "UWSGI_PROFILE": "lua", "UWSGI_EMBED_PLUGINS": "x", "UWSGI_": "?"}
    o = p(env=env)
    assert o.processes == 1


def test_env_bad_value_names_the_variable():
    with pytest.raises(CliError) as e:
        p(env={"UWSGI_PROCESSES": "lots"})
    assert str(e.value) == "option UWSGI_PROCESSES: invalid integer 'lots' (in environment)"


def test_config_from_stdin(tmp_path, monkeypatch):
    import io
    monkeypatch.setattr("sys.stdin", io.StringIO("[uwsgi]\nprocesses = 6\n"))
    assert p("--ini", "-").processes == 6


def test_env_ini_loads_the_file(tmp_path):
    cfg = write(tmp_path / "fromenv.ini", "[uwsgi]\nprocesses = 9\nsocket = :1\n")
    o = p("--socket", ":2", env={"UWSGI_INI": str(cfg)})
    assert o.processes == 9 and o.socket == [":1", ":2"]


def test_unreferenced_unknown_keys_warn_referenced_ones_do_not(tmp_path, capfd):
    cfg = write(tmp_path / "w.ini", """
        [uwsgi]
        frobnicate-widgets = true
        base = /srv
        ports = 1 2
        n = 3
        set = quiet=1
        chdir = %(base)
        listen = %(n + 1)
        for = %(ports)
        print = %(_)
        endfor =
    """)
    o = p(cfg)
    assert o.chdir == "/srv" and o.listen == 4 and o.print == ["1", "2"]
    err = capfd.readouterr().err
    # (a key real uWSGI has gets "is not supported" instead: tests/config/test_uwsgi_catalog.py)
    assert f"ignoring unknown option frobnicate-widgets in {cfg} (not an option of the core or of a loaded plugin)" in err
    for name in ("base", "ports", " n ", "quiet"):
        assert name not in err


def test_scheme_sources_are_refused():
    with pytest.raises(CliError, match=r"^http://example\.com/a\.ini: config sources with a scheme"):
        p("--ini", "http://example.com/a.ini")


def test_yaml_repeated_keys_all_apply(tmp_path):
    cfg = write(tmp_path / "r.yaml", "uwsgi:\n  socket: ':1'\n  socket: [':2', ':3']\n  processes: 2\n")
    o = p(cfg)
    assert o.socket == [":1", ":2", ":3"] and o.processes == 2
    bad = write(tmp_path / "k.yaml", "uwsgi:\n  ? [a, b]\n  : 1\n")
    with pytest.raises(CliError, match=r"k\.yaml: a mapping key must be a plain value"):
        p(bad)
