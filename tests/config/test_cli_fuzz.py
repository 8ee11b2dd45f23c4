"""Whatever the user types or writes in a config file, the answer is options or one CliError
line: never another exception (which main would turn into a traceback)."""

from __future__ import annotations

import string

from cli_helpers import loader, no_loader, registry_snapshot  # noqa: F401  (fixtures)
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from uwsgid.config.cli import CliError, parse

WORDS = st.sampled_from(["\x00", "@(\x00)", "--if-exists", "--for-readline", "--socket", "-s", "--master", "--master=no", "-Mp4", "-p", "4", "--processes=",
                         "--ini", "--json", "--yaml", "x.ini", ":1", "--set", "a=b", "--set-placeholder",
                         "%(a)", "$(HOME)", "@(/nonexistent)", "--chmod-socket", "-C", "--", "-",
                         "--buffer-size", "64k", "--for", "a b", "--endfor", "--if-env", "HOME",
                         "--endif", "--else", "--strict", "--help", "-Q", "--print", "%(a + 1)"])
TEXT = st.text(alphabet=string.printable, max_size=200)
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _only_cli_errors(argv):
    try:
        parse(argv, environ={"HOME": "/root"})
    except CliError as e:
        msg = str(e)
        assert msg and "\n" not in msg


@example(["--ini", "\x00"])
@example(["--print", "@(a\x00b)"])
@example(["--if-exists", "\x00", "--print", "x"])
@example(["--for-readline", "\x00", "--print", "x"])
@SETTINGS
@given(st.lists(st.one_of(WORDS, st.text(max_size=12)), max_size=8))
def test_random_argv(argv):
    _only_cli_errors(argv)


@SETTINGS
@given(body=TEXT, kind=st.sampled_from(["ini", "json", "yaml"]))
def test_random_config_text(tmp_path_factory, body, kind):
    path = tmp_path_factory.mktemp("fuzz") / f"c.{kind}"
    header = {"ini": "[uwsgi]\n", "json": "", "yaml": "uwsgi:\n"}[kind]
    path.write_text(header + body)
    _only_cli_errors([str(path)])
