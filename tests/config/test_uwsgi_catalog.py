"""Never silently ignored: an option real uWSGI has and this server does not is refused with
one line that says what is lost and what to use instead (exit 1 with --strict, a loud warning
otherwise); a name uWSGI does not know either stays an "unknown option"."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest
from cli_helpers import no_loader, registry_snapshot  # noqa: F401  (fixtures)
from helpers import ROOT, run_uwsgi

from uwsgid.config import uwsgi_catalog
from uwsgid.config.cli import CliError, parse
from uwsgid.config.options import lookup

MIRROR = "/work/.mirror/unbit+uwsgi/repo"


def p(*args):
    return parse([str(a) for a in args], environ={})


def test_reasons_name_the_loss_and_the_way_out():
    assert "use --async N" in uwsgi_catalog.reason("tornado")
    assert "served by the default engine" in uwsgi_catalog.reason("tornado")
    assert uwsgi_catalog.reason("fastrouter-timeout") == uwsgi_catalog.reason("fastrouter")   # by prefix
    assert "Emperor" in uwsgi_catalog.reason("emperor-tyrant")
    assert "--https ADDR,CERT,KEY" in uwsgi_catalog.reason("https2")
    assert "php plugin is not available" in uwsgi_catalog.reason("php-ini")       # by owner
    generic = uwsgi_catalog.reason("cpu-affinity")
    assert generic.startswith("not implemented here (uWSGI: ") and generic.endswith("; the option is ignored")
    assert uwsgi_catalog.reason("no-such-option-anywhere") is None
    assert uwsgi_catalog.argument("tornado") == "value" and uwsgi_catalog.argument("reaper") == "flag"


def test_hand_written_reasons_are_for_real_uwsgi_options_we_lack():
    """A reason for an option that landed here (or that uWSGI never had) is dead text."""
    import uwsgid.main  # noqa: F401  (declares every core and service option)
    assert [n for n in uwsgi_catalog.REASONS if uwsgi_catalog.argument(n) is None] == [], "not uWSGI's options"
    declared = [n for n in uwsgi_catalog.REASONS if lookup(n) is not None]
    assert declared == [], "declared now: drop their reasons from uwsgi_catalog.REASONS"


@pytest.mark.skipif(not Path(MIRROR).exists(), reason="uWSGI's source is not fetched here")
def test_generated_table_matches_uwsgi_source():
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import gen_uwsgi_catalog as gen
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    commit, found = gen.collect(MIRROR)
    from uwsgid.config.uwsgi_catalog_table import UWSGI_COMMIT
    if commit != UWSGI_COMMIT:
        pytest.skip(f"the fetched uWSGI is {commit[:12]}, the table was made from {UWSGI_COMMIT[:12]}")
    from uwsgid.config import uwsgi_catalog_table as table
    assert table.UWSGI_OPTIONS == found
    assert len(found) > 1000 and found["socket"][0] == "core" and found["wsgi-file"][0] == "python"


# --------------------------------------------------------------------------- the parser

@pytest.mark.usefixtures("no_loader")
@pytest.mark.parametrize("name", ["close-on-exec", "py-call-uwsgi-fork-hooks", "py-call-osafterfork"])
def test_options_whose_effect_is_always_on_are_accepted_quietly(tmp_path, capfd, name):
    cfg = tmp_path / "q.ini"
    cfg.write_text(f"[uwsgi]\nsocket = :0\n{name} = true\n")
    assert getattr(p(cfg), name.replace("-", "_")) is True
    assert capfd.readouterr().err == ""
    assert lookup(name).help.startswith("accepted for compatibility: always the case here: ")


@pytest.mark.usefixtures("no_loader")
def test_config_file_option_is_a_loud_warning(tmp_path, capfd):
    cfg = tmp_path / "g.ini"
    cfg.write_text("[uwsgi]\nsocket = :0\ntornado = 100\nfastrouter = 127.0.0.1:3017\noptmize = 2\n")
    o = p(cfg)
    assert o.socket == [":0"]
    err = capfd.readouterr().err.splitlines()
    assert f"*** WARNING: --tornado is not supported (in {cfg}): {uwsgi_catalog.reason('tornado')} ***" in err
    assert any(line.startswith("*** WARNING: --fastrouter is not supported") and "nginx" in line for line in err)
    # a typo uWSGI would not know either keeps the unknown-option warning
    assert any("ignoring unknown option optmize" in line for line in err)
    assert ("tornado", "100") in o.exported       # --show-config still shows what the file said


@pytest.mark.usefixtures("no_loader")
def test_strict_refuses(tmp_path):
    cfg = tmp_path / "g.ini"
    cfg.write_text("[uwsgi]\nstrict = true\nsocket = :0\noptimize = 2\n")
    with pytest.raises(CliError, match=r"^--optimize is not supported \(in .*g\.ini\): .*asserts stay on.*\(--strict\)$"):
        p(cfg)


@pytest.mark.usefixtures("no_loader")
@pytest.mark.parametrize("line", ["xml = app.xml", "paste = config:/srv/app.ini", "sqlite3 = conf.db"])
def test_options_without_which_nothing_runs_are_refused_without_strict(tmp_path, line):
    cfg = tmp_path / "n.ini"
    cfg.write_text(f"[uwsgi]\nsocket = :0\n{line}\n")
    key = line.split(" ")[0]
    with pytest.raises(CliError, match=rf"^--{key} is not supported \(in .*n\.ini\): .*(--ini|--module)") as e:
        p(cfg)
    assert not str(e.value).endswith("(--strict)")


@pytest.mark.usefixtures("no_loader")
def test_command_line_takes_the_option_with_its_argument(capfd):
    o = p("--tornado", "100", "--socket", ":0", "--master-as-root", "--master")
    assert o.socket == [":0"] and o.master is True
    err = capfd.readouterr().err
    assert "--tornado is not supported" in err and "--master-as-root is not supported" in err
    with pytest.raises(CliError, match=r"^--tornado is not supported: .* \(--strict\)$"):
        p("--strict", "--tornado=100", "--socket", ":0")
    with pytest.raises(CliError, match=r"^unknown option --gevnt$"):
        p("--gevnt", "100", "--socket", ":0")


@pytest.mark.usefixtures("no_loader")
def test_environment_variable_warns_too(capfd):
    o = parse(["--socket", ":0"], environ={"UWSGI_MASTER_AS_ROOT": "1"})
    assert o.socket == [":0"]
    assert "*** WARNING: UWSGI_MASTER_AS_ROOT is not supported (in environment): keeping the master as root" in \
        capfd.readouterr().err


def test_server_starts_with_the_warning_and_strict_exits_1(tmp_path):
    cfg = tmp_path / "g.ini"
    cfg.write_text(textwrap.dedent("""\
        [uwsgi]
        http-socket = 127.0.0.1:0
        tornado = 100
        strict = true
    """))
    r = run_uwsgi(["--ini", cfg])
    assert r.returncode == 1
    assert r.stderr.strip().splitlines()[-1].startswith(f"uwsgi: --tornado is not supported (in {cfg}): ")
