"""Option audit: every declared option does something. A placeholder (declared, parsed, used by
nothing) fails test_every_option_is_used; the few compatibility-only flags are listed here and
their help must say so. Plus the behaviour of the options the audit implemented or moved:
--log-date, --autoload, --cffi-home (a core option), and the removed --cheaper/--shared-socket."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

import uwsgid.cli  # noqa: F401  (declares the core options)
import uwsgid.config.logic  # noqa: F401
import uwsgid.services  # noqa: F401
from uwsgid import cli, log
from uwsgid.options import all_options, lookup

from build_helpers import built, serve_and_get
from helpers import ROOT, free_port, run_uwsgi

# Flags uWSGI users have in their ini files whose behaviour is ours by design: accepted, and
# their help starts with "accepted for compatibility" and says why.
COMPATIBILITY_ONLY = {"enable-threads", "die-on-term", "log-master", "enable-metrics"}

_CODE_DIRS = ("uwsgid", "plugins", "core")
_SUFFIXES = (".py", ".lua", ".c", ".h")


def _declared():
    import cffi_plugin.options
    import lua_plugin.options
    seen, out = set(), []
    for opt in [*all_options(), *lua_plugin.options.OPTIONS, *cffi_plugin.options.OPTIONS]:
        if opt.name not in seen:
            seen.add(opt.name)
            out.append(opt)
    return out


def _code_lines():
    lines = []
    for d in _CODE_DIRS:
        for path in sorted((ROOT / d).rglob("*")):
            if path.suffix in _SUFFIXES and "__pycache__" not in path.parts and path.is_file():
                rel = path.relative_to(ROOT)
                lines += [(f"{rel}:{i}", line) for i, line in
                          enumerate(path.read_text(errors="replace").splitlines(), 1)]
    return lines


def _uses(opt, lines):
    """Lines reading the option: `.attr`, or its name (an alias, `--name`) quoted; the
    declaration itself (`O("name"` / `Option("name"`) does not count."""
    names = "|".join(re.escape(n) for n in (opt.name, *opt.aliases, opt.attr))
    use = re.compile(r"\." + re.escape(opt.attr) + r"\b|[\"'](?:--)?(?:" + names + r")[\"'=]")
    decl = re.compile(r"\bO(?:ption)?\(\s*[\"']" + re.escape(opt.name) + r"[\"']")
    return [where for where, line in lines if use.search(line) and not decl.search(line)]


def test_every_option_is_used():
    lines = _code_lines()
    unused = [o.name for o in _declared() if o.name not in COMPATIBILITY_ONLY and not _uses(o, lines)]
    assert not unused, f"declared but read by nothing (implement or remove them): {unused}"


def test_compatibility_only_flags_say_so():
    by_name = {o.name: o for o in _declared()}
    for name in sorted(COMPATIBILITY_ONLY):
        opt = by_name[name]
        assert opt.kind == "flag", name
        assert opt.help.startswith("accepted for compatibility: "), (name, opt.help)


@pytest.mark.parametrize("argv", [["--cheaper", "2"], ["--shared-socket", ":80"]])
def test_removed_options_are_unknown(argv):
    with pytest.raises(cli.CliError, match=f"unknown option {argv[0]}"):
        cli.parse([*argv, "--socket", ":0"], environ={})


def test_cffi_home_is_a_core_option():
    import cffi_plugin.options
    opt = lookup("cffi-home")
    assert opt is not None and opt.group == "core"
    assert "cffi-home" not in {o.name for o in cffi_plugin.options.OPTIONS}
    assert cli.parse(["--cffi-home", "/x", "--socket", ":0"], environ={}).cffi_home == "/x"


# ---- --log-date -----------------------------------------------------------------------------

CTIME = r"[A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \d{4}"


@pytest.fixture
def date_format():
    yield log.set_date_format
    log.set_date_format(None)


@pytest.mark.parametrize("value,prefix", [
    (None, ""), ("false", ""), ("0", ""),
    ("", CTIME + " - "), ("true", CTIME + " - "), ("1", CTIME + " - "),
    ("%Y-%m", r"\d{4}-\d\d - "),
])
def test_log_date_prefixes_server_messages(date_format, capfd, value, prefix):
    date_format(value)
    log.log("hello")
    log.log_request(b"[pid: 1|app: 0|req: 1/1] a request line")
    err = capfd.readouterr().err.splitlines()
    assert re.fullmatch(prefix + "hello", err[0]), err
    assert err[1] == "[pid: 1|app: 0|req: 1/1] a request line"    # request lines: never dated


def test_log_date_strftime_in_ini(tmp_path):
    # %% in an ini file is a literal % (uWSGI's magic); the year then dates each server line
    ini = tmp_path / "d.ini"
    ini.write_text("[uwsgi]\nlog-date = %%Y\nprint = printed\n")
    r = run_uwsgi(["--ini", ini, "--http-socket", f"127.0.0.1:{free_port()}", "--lua", tmp_path / "none.lua"])
    assert r.returncode == 22, r.stderr
    year = time.strftime("%Y")
    assert f"\n{year} - printed\n" in r.stderr
    assert f"{year} - *** Starting uWSGI" in r.stderr


def test_log_date_default_is_ctime():
    r = run_uwsgi(["--log-date", "--print", "printed", "--http-socket", f"127.0.0.1:{free_port()}",
                   "--lua", "/nonexistent.lua"])
    assert r.returncode == 22, r.stderr
    assert re.search(r"^" + CTIME + r" - printed$", r.stderr, re.M), r.stderr


# ---- --autoload (a build with lua_plugin.so beside the executable) ------------------------------

@pytest.fixture(scope="module")
def luap() -> Path:
    return built("luap")


def test_autoload_finds_the_plugin_of_an_option(luap):
    exe = luap / "uwsgi"
    port = free_port()
    args = ["--http-socket", f"127.0.0.1:{port}", "--http-socket-modifier1", "6",
            "--lua", ROOT / "examples" / "pippo.lua"]
    r = run_uwsgi(args, binary=exe)
    assert r.returncode == 1 and "unknown option --lua" in r.stderr
    status, body, out = serve_and_get(exe, ["--autoload", *args], port)
    assert status == 200 and b"Hello Wsapi!" in body, out
    assert f'option "lua" found in plugin {luap / "lua_plugin.so"}' in out


def test_autoload_from_an_ini_file_skips_placeholders(luap, tmp_path):
    exe = luap / "uwsgi"
    ini = tmp_path / "a.ini"
    ini.write_text("[uwsgi]\nautoload = true\nmyname = placeholder\nprint = %(myname)\n")
    r = run_uwsgi(["--ini", ini, "--plugins-list"], binary=exe)
    assert r.returncode == 0, r.stderr
    assert "found in plugin" not in r.stderr and "lua" not in r.stdout    # nothing probed
    ini.write_text("[uwsgi]\nautoload = true\nlua-gc-freq = 2\n")
    r = run_uwsgi(["--ini", ini, "--plugins-list"], binary=exe)
    assert r.returncode == 0, r.stderr
    assert 'option "lua-gc-freq" found in plugin' in r.stderr and "6: lua" in r.stdout
