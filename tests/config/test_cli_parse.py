"""Command-line parsing: long/short flags, values, kinds, repeats, errors."""

from __future__ import annotations

import pytest
from cli_helpers import loader, no_loader, registry_snapshot  # noqa: F401  (fixtures)

from uwsgid.config.cli import CliError, convert, parse
from uwsgid.config.options import lookup


def p(*argv, env=None):
    return parse(list(argv), environ=env or {})


def test_defaults_when_nothing_given():
    o = p()
    assert o.processes == 1 and o.master is False and o.socket == [] and o.buffer_size == 4096
    assert o.need_app is True


def test_long_forms_equals_and_space():
    o = p("--socket=:3031", "--http-socket", "127.0.0.1:8080", "--processes", "4", "--harakiri=30")
    assert o.socket == [":3031"] and o.http_socket == ["127.0.0.1:8080"]
    assert o.processes == 4 and o.harakiri == 30


@pytest.mark.parametrize("argv, procs, master", [
    (["-Mp4"], 4, True), (["-p4"], 4, False), (["-p", "4"], 4, False),
    (["-M", "-p", "2"], 2, True), (["-pM"], None, None),
])
def test_short_options_and_clusters(argv, procs, master):
    if procs is None:       # -pM: "M" is -p's value, not a flag
        with pytest.raises(CliError, match=r"option -p: invalid integer 'M'"):
            p(*argv)
        return
    o = p(*argv)
    assert o.processes == procs and o.master is master


def test_all_uwsgi_short_letters():
    o = p("-s", ":1", "-M", "-p", "2", "-m", "-L", "-T", "-b", "8k", "-z", "9", "-t", "20",
          "-R", "100", "-d", "/tmp/x.log", "-C660")
    assert (o.socket, o.master, o.processes, o.memory_report, o.disable_logging, o.enable_threads) == \
        ([":1"], True, 2, True, True, True)
    assert (o.buffer_size, o.socket_timeout, o.harakiri, o.max_requests, o.daemonize, o.chmod_socket) == \
        (8192, 9, 20, 100, "/tmp/x.log", "660")


def test_aliases_set_the_same_option():
    o = p("--workers", "3", "--socket-protocol", "http", "-s", ":2")
    assert o.processes == 3 and o.protocol == "http" and o.socket == [":2"]
    # --uwsgi-socket is an option of its own, as in uWSGI: always uwsgi, whatever --protocol says
    o = p("--uwsgi-socket", ":1", "-s", ":2")
    assert o.uwsgi_socket == [":1"] and o.socket == [":2"]


@pytest.mark.parametrize("value, expected", [
    ("true", True), ("1", True), ("yes", True), ("on", True), ("TRUE", True),
    ("false", False), ("0", False), ("no", False), ("off", False), ("Off", False),
])
def test_boolean_values(value, expected):
    assert p(f"--master={value}").master is expected


def test_flag_last_one_wins():
    assert p("--master", "--master=false").master is False
    assert p("--master=0", "-M").master is True


def test_optional_kind_takes_value_only_with_equals():
    assert p("--chmod-socket").chmod_socket == "666"
    assert p("--chmod-socket=660").chmod_socket == "660"
    assert p("-C").chmod_socket == "666"
    with pytest.raises(CliError, match="unexpected argument '660'"):
        p("--chmod-socket", "660")


@pytest.mark.parametrize("text, size", [("4096", 4096), ("64k", 65536), ("64K", 65536),
                                        ("1m", 1 << 20), ("1g", 1 << 30), ("32kb", 32768)])
def test_size_kind(text, size):
    assert p("--buffer-size", text).buffer_size == size


def test_repeatable_options_keep_order():
    o = p("--env", "A=1", "--socket", ":1", "--env", "B=2", "--socket", ":2")
    assert o.env == ["A=1", "B=2"] and o.socket == [":1", ":2"]


def test_scalar_last_value_wins():
    assert p("-p", "2", "--processes", "5").processes == 5


def test_value_may_start_with_dash_when_not_an_option():
    assert p("--print", "-x-").print == ["-x-"]
    assert p("--print=--master").print == ["--master"]


def test_double_dash_ends_options(tmp_path):
    cfg = tmp_path / "a.ini"
    cfg.write_text("[uwsgi]\nprocesses = 7\n")
    assert p("--", str(cfg)).processes == 7


# ------------------------------------------------------------------------------ errors

def test_unknown_option_suggests_the_closest(loader):
    with pytest.raises(CliError) as e:
        p("--plugins", "tlua", "--tlua-gc-frq", "1")
    assert str(e.value) == "unknown option --tlua-gc-frq (did you mean --tlua-gc-freq?)"


def test_unknown_option_without_suggestion():
    with pytest.raises(CliError) as e:
        p("--zzzzqqqq")
    assert str(e.value) == "unknown option --zzzzqqqq"


def test_unknown_short_option():
    with pytest.raises(CliError, match=r"^unknown option -J$"):   # -Q is the spooler's now
        p("-J")


def test_missing_argument():
    with pytest.raises(CliError) as e:
        p("--socket")
    assert str(e.value) == "option --socket requires an argument"
    with pytest.raises(CliError, match=r"^option -p \(--processes\) requires an argument$"):
        p("-p")


def test_forgotten_value_before_another_option():
    with pytest.raises(CliError, match="option --socket requires an argument"):
        p("--socket", "--master")


@pytest.mark.parametrize("argv, msg", [
    (["--processes", "four"], "option --processes: invalid integer 'four'"),
    (["--processes="], "option --processes: invalid integer ''"),
    (["--buffer-size", "lots"], "option --buffer-size: invalid size 'lots'"),
    (["--master=maybe"], "option --master: invalid boolean 'maybe'"),
])
def test_bad_values_name_the_option(argv, msg):
    with pytest.raises(CliError) as e:
        p(*argv)
    assert str(e.value).startswith(msg)
    assert "\n" not in str(e.value)


def test_positional_that_is_not_a_config_file():
    with pytest.raises(CliError, match=r"unexpected argument 'app\.lua'"):
        p("app.lua")


def test_convert_directly():
    assert convert(lookup("listen"), "128") == 128
    assert convert(lookup("master"), None) is True


def test_cli_error_messages_are_one_line():
    for argv in (["--socket"], ["--nope"], ["-p", "x"], ["--ini", "/nonexistent/x.ini"], ["x.ini"]):
        with pytest.raises(CliError) as e:
            p(*argv)
        assert "\n" not in str(e.value) and str(e.value)


@pytest.mark.parametrize("argv", [["--stats", "127.0.0.1:9191"], ["--touch-reload", "/tmp/x"],
                                  ["--cheaper", "1"], ["--evil-reload-on-rss", "100"]])
def test_an_option_that_lives_in_the_master_turns_it_on(argv):
    # uWSGI's UWSGI_OPT_MASTER: without the master these would never run
    assert p(*argv).master is True
    assert p().master is False


def test_needs_master_option_set_to_false_leaves_master_off():
    assert p("--log-master=false").master is False
