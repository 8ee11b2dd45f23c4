"""The ini dialect as uWSGI's core/ini.c reads it: comment lines, no inline comments (but a
comment after a number or a boolean is harmless, as uWSGI's strtol makes it), keys without a
value, whitespace, "\\n"-only lines, repeated keys, [section] selection with file.ini:section,
sections whose names are not trimmed, placeholders left alone, `include`. The last test runs the
same file through Debian's uWSGI and compares what each read."""

from __future__ import annotations

import shutil
import subprocess
import textwrap

import pytest
from cli_helpers import no_loader, registry_snapshot  # noqa: F401  (fixtures)

from uwsgid.config import ini
from uwsgid.config.cli import CliError, parse
from uwsgid.config.entries import ConfigError


def items(text: str, section: str = "uwsgi") -> list[tuple[str, str]]:
    return ini.parse(textwrap.dedent(text), section, "t.ini")


def write(path, text: str):
    path.write_text(textwrap.dedent(text))
    return path


def p(*args):
    return parse([str(a) for a in args], environ={})


# --------------------------------------------------------------------------- the reader

def test_comment_lines_and_blank_lines():
    assert items("""
        ; a comment
        # another
           ;  indented comment
        \t# tabbed comment

        [uwsgi]
        ; inside the section
        master = true
        #socket = :1
    """) == [("master", "true")]


def test_no_inline_comments_in_the_reader():
    # uWSGI keeps everything after the first "=": a `#` or `;` in a value is part of it
    assert items("""
        [uwsgi]
        workers = 64   # max
        env = A=b ; c
        route = ^/#x$ last:
    """) == [("workers", "64   # max"), ("env", "A=b ; c"), ("route", "^/#x$ last:")]


def test_key_without_value_and_whitespace():
    assert items("[uwsgi]\nmaster\n  vacuum =   \n\tprocesses\t=\t4\t\r\nlog format = %(addr) \n") == [
        ("master", ""), ("vacuum", ""), ("processes", "4"), ("log format", "%(addr)")]


def test_lines_end_at_newline_only():
    # a form feed or U+2028 inside a value is not a line break for uWSGI
    assert items("[uwsgi]\nprint = a\x0cb\u2028c\r\n") == [("print", "a\x0cb\u2028c")]


def test_repeated_keys_and_sections():
    text = """
        socket = :0
        [uwsgi]
        socket = :1
        [other]
        socket = :2
        [uwsgi]
        socket = :3
    """
    assert items(text) == [("socket", ":1"), ("socket", ":3")]     # before any header: no section
    assert items(text, "other") == [("socket", ":2")]


def test_section_names_are_not_trimmed():
    assert items("[ uwsgi ]\nmaster = 1\n", " uwsgi ") == [("master", "1")]
    with pytest.raises(ConfigError, match=r"no \[uwsgi\] section \(there is \[ uwsgi \]: section names are not trimmed\)"):
        items("[ uwsgi ]\nmaster = 1\n")


def test_malformed_header_and_missing_section_are_errors():
    with pytest.raises(ConfigError, match=r"t\.ini:2: malformed section header '\[uwsgi' \(no closing \]\)"):
        items("\n[uwsgi\nmaster = 1\n")
    with pytest.raises(ConfigError, match=r"t\.ini: no \[uwsgi\] section$"):
        items("[app]\nmaster = 1\n")
    with pytest.raises(ConfigError, match=r"t\.ini:2: line without an option name: '= 1'"):
        items("[uwsgi]\n= 1\n")


def test_empty_section_is_not_an_error():
    assert items("[uwsgi]\n; nothing yet\n") == []


def test_byte_order_mark_is_skipped():
    assert items("\ufeff[uwsgi]\nmaster = 1\n") == [("master", "1")]


def test_placeholders_are_left_alone():
    assert items("[uwsgi]\nchdir = %(base)/$(HOME)/@(file)/%d%n %%\n") == [
        ("chdir", "%(base)/$(HOME)/@(file)/%d%n %%")]


# --------------------------------------------------------------------------- through the parser

@pytest.mark.usefixtures("no_loader")
def test_inline_comment_after_numbers_and_booleans(tmp_path):
    cfg = write(tmp_path / "c.ini", """
        [uwsgi]
        workers = 64   # max
        buffer-size = 65536  # large headers
        max-requests = 1000                  ; restart workers after this many requests
        strict = false  # not yet
        master = true ; of course
        socket-timeout = 30\t# seconds
        env = A=b # kept
        socket = :0
    """)
    o = p(cfg)
    assert (o.processes, o.buffer_size, o.max_requests, o.strict, o.master, o.socket_timeout) == (
        64, 65536, 1000, False, True, 30)
    assert o.env == ["A=b # kept"]      # a string keeps it, as in uWSGI


@pytest.mark.usefixtures("no_loader")
def test_a_comment_without_space_or_junk_is_still_an_error(tmp_path):
    cfg = write(tmp_path / "c.ini", "[uwsgi]\nworkers = 4#max\n")
    with pytest.raises(CliError, match=r"option --workers: invalid integer '4#max'"):
        p(cfg)
    cfg = write(tmp_path / "d.ini", "[uwsgi]\nthreads = true\n")
    with pytest.raises(CliError, match=r"option --threads: invalid integer 'true'"):
        p(cfg)


@pytest.mark.usefixtures("no_loader")
def test_repeated_keys_single_last_wins_multi_collects(tmp_path):
    cfg = write(tmp_path / "r.ini", """
        [uwsgi]
        processes = 2
        socket = :1
        processes = 3
        socket = :2
        master = true
        master = false
    """)
    o = p(cfg)
    assert o.processes == 3 and o.socket == [":1", ":2"] and o.master is False


@pytest.mark.usefixtures("no_loader")
def test_section_selection(tmp_path):
    cfg = write(tmp_path / "s.ini", """
        [uwsgi]
        socket = :1
        ini = :extra
        [extra]
        processes = 5
        [prod]
        socket = :9
    """)
    o = p(cfg)
    assert o.socket == [":1"] and o.processes == 5
    assert p(f"{cfg}:prod").socket == [":9"]
    assert p("--ini", f"{cfg}:").socket == [":1"]       # an empty section name is [uwsgi]
    with pytest.raises(CliError, match=r"s\.ini: no \[nope\] section"):
        p(f"{cfg}:nope")


@pytest.mark.usefixtures("no_loader")
def test_include_loads_by_extension_in_place(tmp_path):
    write(tmp_path / "base.ini", "[uwsgi]\nprocesses = 2\nsocket = :1\n")
    (tmp_path / "more.json").write_text('{"uwsgi": {"socket": ":2"}}')
    cfg = write(tmp_path / "app.ini", f"""
        [uwsgi]
        include = {tmp_path}/base.ini
        processes = 4
        include = {tmp_path}/more.json
    """)
    o = p(cfg)
    assert o.processes == 4 and o.socket == [":1", ":2"]
    missing = write(tmp_path / "m.ini", "[uwsgi]\ninclude = uwsgi-base.ini\n")
    with pytest.raises(CliError, match=r"cannot read config file uwsgi-base\.ini"):
        p(missing)


# --------------------------------------------------------------------------- against uWSGI

REAL = shutil.which("uwsgi-core")

TRICKY = """\
; comment
[other]
print = from other
[uwsgi]
print = a # b ; c
  # indented comment
print=  x = y\t
print
print = tab\there
[ uwsgi ]
print = spaced section
[uwsgi]
print = again %%(nope) $(CLI_INI_UNSET)
"""


@pytest.mark.skipif(REAL is None, reason="uwsgi-core (Debian package) not installed")
@pytest.mark.usefixtures("no_loader")
@pytest.mark.parametrize("section", ["", ":other"])
def test_same_reading_as_uwsgi(tmp_path, section):
    cfg = tmp_path / "tricky.ini"
    cfg.write_text(TRICKY)
    # uWSGI logs each `print` while reading the file, then stops at --version
    out = subprocess.run([REAL, "--ini", f"{cfg}{section}", "--version"], capture_output=True, text=True,
                         timeout=30, env={"PATH": "/usr/bin:/bin"}).stdout
    theirs = out.splitlines()[:-1]        # the last line is the version
    assert p("--ini", f"{cfg}{section}").print == theirs
