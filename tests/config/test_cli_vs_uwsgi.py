"""Differential checks against the real uWSGI 2.0 (Debian's uwsgi-core): the same ini file
gives the same expanded values. Each case prints values with `print`, which uWSGI logs at
start-up and then stops at --version."""

from __future__ import annotations

import os
import shutil
import subprocess
import textwrap

import pytest
from cli_helpers import loader, no_loader, registry_snapshot  # noqa: F401  (fixtures)

from uwsgid.config.cli import parse

REAL = shutil.which("uwsgi-core")
pytestmark = pytest.mark.skipif(REAL is None, reason="uwsgi-core (Debian package) not installed")

CASES = {
    "placeholders": """
        print = [%(name)] [%(later)] [%(nope)] [%(name + 2)] [%(n * 3)] [%(n ++)]
        name = one
        name = two
        later = x
        n = 7
    """,
    "magic": """
        print = d=%d n=%n p=%p s=%s e=%e c=%c pct=%% unknown=[%z] k=%k h=%h
        log-date = %%Y-%%m
        print = %(log-date)
    """,
    "env_and_files": """
        print = [$(CLI_DIFF_VAR)] [$(CLI_DIFF_UNSET)] [@(%dvalue.txt)] [%(foo)]
    """,
    "logic": """
        for = a b c
        print = item %(_)
        endfor =
        if-env = CLI_DIFF_VAR
        print = env is %(_)
        endif =
        if-not-env = CLI_DIFF_UNSET
        print = unset
        endif =
        if-exists = %dvalue.txt
        print = exists %(_)
        endif =
        if-opt = missing
        print = never
        endif =
        if-not-opt = missing
        print = no option %(_)
        endif =
        if-dir = %d
        print = dir
        endif =
        if-hostname = nonexistent-host-name
        print = never
        endif =
        for-times = 2
        print = time %(_)
        endfor =
    """,
    "nested_include": """
        print = before
        ini = %dchild.ini
        print = after %(child)
    """,
}


def _real_prints(cfg, env) -> list[str]:
    r = subprocess.run([REAL, "--ini", str(cfg), "--version"], capture_output=True, text=True, timeout=20,
                       cwd=cfg.parent, env=env, stdin=subprocess.DEVNULL)
    lines = (r.stdout + r.stderr).splitlines()
    return [l for l in lines if not l.startswith("[uWSGI] getting") and not l.startswith("2.0")]


@pytest.mark.parametrize("case", sorted(CASES))
def test_same_expansion_as_uwsgi(tmp_path, case, monkeypatch):
    cfg = tmp_path / "case.ini"
    cfg.write_text("[uwsgi]\n" + textwrap.dedent(CASES[case]).lstrip())
    (tmp_path / "value.txt").write_text("file value\n")
    (tmp_path / "child.ini").write_text("[uwsgi]\nchild = %n\nprint = in %n\n")
    env = {"PATH": os.environ.get("PATH", ""), "HOME": "/root", "CLI_DIFF_VAR": "v1", "UWSGI_FOO": "envfoo"}
    expected = _real_prints(cfg, env)
    monkeypatch.chdir(tmp_path)
    ours = parse(["--ini", str(cfg)], environ=env).print
    assert ours == expected


ARGV_CASES = {
    "cli_order": (["{d}/o.ini", "-p", "4", "--print", "p=%(processes)"], "[uwsgi]\nprocesses = 2\n"),  # positional: after every option
    "set": (["--print", "%(later) %(x)", "--set", "later=y", "-S", "x=1"], None),
    "cli_placeholders": (["--set", "foo=bar", "--print", "cli %(foo) $(HOME) %d"], None),
    "json": (["--json", "{d}/c.json", "--print", "m=%(master) v=%(vacuum)"],
             '{"uwsgi": {"print": ["a", "b %(n)"], "n": 3, "master": true, "vacuum": false}}'),
    "yaml": (["--yaml", "{d}/c.yaml", "--print", "m=%(master)"],
             'uwsgi:\n  print:\n    - a\n    - "b %(n)"\n  n: 3\n  master: true\n'),
    "env_first": (["--ini", "{d}/o.ini"], "[uwsgi]\nfoo = ini\nprint = %(foo)\n"),
}


@pytest.mark.parametrize("case", sorted(ARGV_CASES))
def test_same_command_line_semantics_as_uwsgi(tmp_path, case, monkeypatch):
    argv, content = ARGV_CASES[case]
    argv = [a.format(d=tmp_path) for a in argv]
    if content is not None:
        name = next((a.rsplit("/", 1)[1] for a in argv if a.startswith(str(tmp_path))), "o.ini")
        (tmp_path / name).write_text(content)
    env = {"PATH": os.environ.get("PATH", ""), "HOME": "/root", "UWSGI_FOO": "envfoo"}
    r = subprocess.run([REAL, *argv, "--version"], capture_output=True, text=True, timeout=20,
                       cwd=tmp_path, env=env, stdin=subprocess.DEVNULL)
    expected = [l for l in (r.stdout + r.stderr).splitlines()
                if not l.startswith("[uWSGI] getting") and not l.startswith("2.0")]
    monkeypatch.chdir(tmp_path)
    assert parse(argv, environ=env).print == expected
