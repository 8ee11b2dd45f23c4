"""uWSGI's config logic: for / for-glob / for-times / for-readline, if-* / else / endif."""

from __future__ import annotations

import socket
import textwrap

import pytest
from cli_helpers import loader, no_loader, registry_snapshot  # noqa: F401  (fixtures)

from uwsgid.config.cli import CliError, parse


def p(*argv, env=None):
    return parse([str(a) for a in argv], environ=env or {})


def ini(tmp_path, body, name="l.ini"):
    path = tmp_path / name
    path.write_text("[uwsgi]\n" + textwrap.dedent(body).lstrip())
    return path


def test_for_in_ini(tmp_path):
    cfg = ini(tmp_path, """
        for = 3031 3032 3033
        socket = 127.0.0.1:%(_)
        http-socket = /run/%(_).sock
        endfor =
        processes = 2
    """)
    o = p(cfg)
    assert o.socket == ["127.0.0.1:3031", "127.0.0.1:3032", "127.0.0.1:3033"]
    assert o.http_socket == ["/run/3031.sock", "/run/3032.sock", "/run/3033.sock"]
    assert o.processes == 2


def test_for_on_the_command_line():
    o = p("--for", "a b", "--socket", "/tmp/%(_).sock", "--endfor", "--processes", "3")
    assert o.socket == ["/tmp/a.sock", "/tmp/b.sock"] and o.processes == 3


def test_for_times_glob_readline(tmp_path):
    (tmp_path / "x.conf").write_text("")
    (tmp_path / "y.conf").write_text("")
    (tmp_path / "envs").write_text("A=1\nB=2\n")
    cfg = ini(tmp_path, f"""
        for-times = 3
        print = n%(_)
        end =
        for-glob = {tmp_path}/*.conf
        print = %(_)
        endfor =
        for-readline = {tmp_path}/envs
        env = %(_)
        endfor =
    """)
    o = p(cfg)
    assert o.print == ["n1", "n2", "n3", f"{tmp_path}/x.conf", f"{tmp_path}/y.conf"]
    assert o.env == ["A=1", "B=2"]


def test_for_with_placeholder_list(tmp_path):
    cfg = ini(tmp_path, """
        ports = 1 2
        for = %(ports)
        socket = :%(_)
        endfor =
    """)
    assert p(cfg).socket == [":1", ":2"]


def test_if_env_else_endif(tmp_path):
    cfg = ini(tmp_path, """
        if-env = PORT
        http-socket = :%(_)
        else =
        http-socket = :9090
        endif =
        if-env = MODE=prod
        processes = 8
        endif =
        if-not-env = DEBUG
        disable-logging = true
        endif =
    """)
    o = p(cfg, env={"PORT": "8000", "MODE": "prod"})
    assert o.http_socket == [":8000"] and o.processes == 8 and o.disable_logging is True
    o = p(cfg, env={"MODE": "dev", "DEBUG": "1"})
    assert o.http_socket == [":9090"] and o.processes == 1 and o.disable_logging is False


def test_if_exists_file_dir(tmp_path):
    (tmp_path / "local.ini").write_text("[uwsgi]\nprocesses = 5\n")
    cfg = ini(tmp_path, """
        if-exists = %dlocal.ini
        ini = %(_)
        endif =
        if-not-exists = %dmissing.ini
        print = no missing
        endif =
        if-file = %d
        print = never
        endif =
        if-dir = %d
        print = dir %(_)
        endif =
        if-not-dir = %dlocal.ini
        print = not a dir
        endif =
    """)
    o = p(cfg)
    assert o.processes == 5
    assert o.print == ["no missing", f"dir {tmp_path}/", "not a dir"]


def test_if_opt_and_hostname(tmp_path):
    cfg = ini(tmp_path, f"""
        mode = prod
        if-opt = mode=prod
        processes = 4
        endif =
        if-not-opt = nothing
        print = no nothing
        endif =
        if-opt = mode=dev
        print = never
        else =
        print = not dev
        endif =
        if-hostname = {socket.gethostname()}
        print = here
        endif =
        if-not-hostname = {socket.gethostname()}
        print = never
        endif =
    """)
    o = p(cfg)
    assert o.processes == 4 and o.print == ["no nothing", "not dev", "here"]


def test_nested_logic_is_an_error(tmp_path):
    cfg = ini(tmp_path, """
        for = a b
        if-env = HOME
        print = x
        endif =
        endfor =
    """)
    with pytest.raises(CliError, match=r"if-env inside a for block .*do not nest"):
        p(cfg, env={"HOME": "/"})


def test_bad_for_times(tmp_path):
    cfg = ini(tmp_path, "for-times = many\nprint = x\nendfor =\n")
    with pytest.raises(CliError, match="for-times needs a number, got 'many'"):
        p(cfg)


def test_if_plugin_and_if_reload(loader, tmp_path):
    cfg = ini(tmp_path, """
        plugins = tlua
        if-plugin = tlua
        print = has tlua
        endif =
        if-not-plugin = tpy
        print = never
        endif =
        if-reload =
        print = reloading
        endif =
        if-not-reload =
        print = first start
        endif =
        if-hostname-match = .
        print = matched
        endif =
    """)
    assert p(cfg).print == ["has tlua", "first start", "matched"]
    assert p(cfg, env={"UWSGI_RELOADING": "1"}).print == ["has tlua", "reloading", "matched"]
