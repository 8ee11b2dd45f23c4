"""'Did you mean' suggests only an option of the kind the unknown one was used as: given a value,
an option that takes one (a flag only for a boolean word); given none, a flag (or an optional
value); config logic (if-*, for*, else, end*) only for a name that reads as config logic, and
never a plain option for one (uwsgid.config.cli.unknown_option_message)."""

from __future__ import annotations

import pytest

from uwsgid.config.cli import CliError, parse, unknown_option_message


def error(*argv) -> str:
    with pytest.raises(CliError) as e:
        parse(list(argv), environ={})
    return str(e.value)


@pytest.mark.parametrize("argv", [
    ["--mastr", "/srv/app"],             # a flag cannot take /srv/app
    ["--mastr=/srv/app"],
    ["--vacum", "/run/app.pid"],
    ["--lazyapps", "x"],
])
def test_an_option_given_a_value_is_never_offered_a_flag(argv):
    msg = error(*argv)
    assert msg == f"unknown option {argv[0].partition('=')[0]}"


@pytest.mark.parametrize("argv, suggestion", [
    (["--mastr"], "--master"),                      # no value: a flag fits
    (["--mastr", "--processes", "2"], "--master"),  # the next word is an option: no value
    (["--mastr=yes"], "--master"),                  # a boolean word: a flag takes it
    (["--mastr=0"], "--master"),
    (["--vacum=off"], "--vacuum"),
])
def test_a_flag_is_offered_when_used_as_one(argv, suggestion):
    assert error(*argv).endswith(f"(did you mean {suggestion}?)")
    assert "did you mean" not in error(argv[0].partition("=")[0], "/not/a/boolean")


@pytest.mark.parametrize("argv, needs_value", [
    (["--pidfil"], "--pidfile"),             # nothing follows: --pidfile would need a value
    (["--pidfil", "--master"], "--pidfile"),
    (["--harakri", "--master"], "--harakiri"),
])
def test_an_option_given_no_value_is_never_offered_one_that_needs_a_value(argv, needs_value):
    assert f"{needs_value}?" not in error(*argv)
    # the same name given a value is offered it
    assert error(argv[0], "1").endswith(f"(did you mean {needs_value}?)")


@pytest.mark.parametrize("argv", [
    ["--exists", "/etc"],        # close to --if-exists, but a plain option name
    ["--reloading"],             # close to --if-reload
    ["--hostname", "web1"],      # close to --if-hostname
])
def test_a_plain_option_is_never_offered_config_logic(argv):
    msg = error(*argv)
    assert "did you mean --if-" not in msg, msg


def test_config_logic_is_offered_config_logic_only():
    for argv, suggestion in [
        (["--if-socket", "x"], "--if-opt"),      # logic-looking: logic only, not --socket
        (["--if-exist", "/etc"], "--if-exists"),
        (["--iff-env", "HOME"], "--if-env"),
        (["--endiff"], "--endif"),
        (["--forr", "a b"], "--for"),
    ]:
        assert error(*argv).endswith(f"(did you mean {suggestion}?)"), argv


def test_a_plain_option_behind_a_logic_word_is_not_offered():
    assert error("--if-master") == "unknown option --if-master"    # not --master
    assert error("--end-master") == "unknown option --end-master"


def test_a_config_file_after_the_name_may_be_its_value_or_a_file_of_its_own(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "app.ini").write_text("[uwsgi]\n")
    (tmp_path / "notes.txt").write_text("")
    assert error("--mastr", "app.ini").endswith("(did you mean --master?)")   # `--master app.ini`
    assert error("--inii", "app.ini").endswith("(did you mean --ini?)")       # `--ini app.ini`
    assert error("--mastr", "notes.txt") == "unknown option --mastr"          # not a config file: a value


def test_config_file_typos_warn_with_a_suggestion_of_the_right_kind(tmp_path, capfd):
    cfg = tmp_path / "typo.ini"
    cfg.write_text("[uwsgi]\nproceses = 2\nmastr = /srv\nvacum = true\nexists = /etc\n")
    parse([str(cfg)], environ={})
    err = capfd.readouterr().err
    lines = {line.split()[5]: line for line in err.splitlines() if "ignoring unknown option" in line}
    assert "did you mean --processes?" in lines["proceses"]
    assert "did you mean" not in lines["mastr"], lines["mastr"]       # /srv is no boolean
    assert "did you mean --vacuum?" in lines["vacum"]
    assert "did you mean" not in lines["exists"], lines["exists"]     # not --if-exists


def test_without_knowing_how_it_was_used_any_kind_is_offered():
    assert unknown_option_message("--mastr").endswith("(did you mean --master?)")
    assert unknown_option_message("--mastr", None).endswith("(did you mean --master?)")
    assert unknown_option_message("--mastr", "/srv") == "unknown option --mastr"
    assert unknown_option_message("--pidfil", "/x").endswith("(did you mean --pidfile?)")
    assert unknown_option_message("--pidfil", None) == "unknown option --pidfil"
