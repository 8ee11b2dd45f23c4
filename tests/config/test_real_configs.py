"""Real uWSGI configs from public repositories run here (tests/data/real-configs/: the files as
published, SOURCES.tsv says where each comes from). Each is rewritten only where it cannot run
on this machine (realconfigs.py: sockets, the app, users, paths, the repositories' commands), started
with ./uwsgi and sent one request, a few at a time.

A config Debian's uWSGI serves (uwsgi-reference.json, made by record_reference.py with the same
rewriting) must start, answer the request as uWSGI did (same status, the app reached or not), and
log no "unknown option" / "ignoring" / "is not supported" line (an unknown-option warning for a
key uWSGI does not know either, a typo it drops silently, is the behaviour wanted).
A config uWSGI itself does not serve (a broken file, a missing include) must not crash here:
it is served, or refused with one `uwsgi: ...` line and exit code 1.

xfail.tsv lists the configs that do not pass yet, each with its cause; the marks are strict, so
a config that starts passing fails the run until its line is removed.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
from helpers import ROOT, UWSGI

from uwsgid.config import uwsgi_catalog

DATA = ROOT / "tests" / "data" / "real-configs"
sys.path.insert(0, str(DATA))
import realconfigs as harness  # noqa: E402  (not "harness": bench/harness is a package on the path)

REFERENCE = json.loads((DATA / "uwsgi-reference.json").read_text())
XFAIL = dict(line.split("\t", 1) for line in (DATA / "xfail.tsv").read_text().splitlines()
             if line.strip() and not line.startswith("#"))
CONFIGS = harness.configs()
PARALLEL = 4      # starts are mostly waiting: 4 at a time keeps 2 cores busy without starving them


def test_corpus_is_complete():
    names = {p.name for p in CONFIGS}
    sources = [line.split("\t") for line in (DATA / "SOURCES.tsv").read_text().splitlines()[1:]]
    assert len(names) >= 100
    assert {s[0] for s in sources} == names and all(len(s) == 4 and s[1].count("/") == 1 for s in sources)
    assert set(REFERENCE) == names, "re-run tests/data/real-configs/record_reference.py"
    assert set(XFAIL) <= names, set(XFAIL) - names


@pytest.fixture(scope="module")
def runs(request):
    """The selected configs, all started at once through a small pool: name -> Future[Result]."""
    selected = [item.callspec.params["config"] for item in request.session.items
                if getattr(item, "callspec", None) and "config" in item.callspec.params
                and item.module.__name__ == __name__]
    pool = ThreadPoolExecutor(PARALLEL)
    futures = {name: pool.submit(harness.run, DATA / name, [str(UWSGI)]) for name in selected}
    yield futures
    pool.shutdown(wait=True, cancel_futures=True)


def _params():
    for path in CONFIGS:
        marks = [pytest.mark.xfail(strict=True, reason=XFAIL[path.name])] if path.name in XFAIL else []
        yield pytest.param(path.name, marks=marks, id=path.name)


def _typo(line: str) -> bool:
    """The unknown-option warning for a key uWSGI does not know either (`optmize`, `chmod-sock`):
    uWSGI drops such a key silently, we say so; that is the behaviour wanted, not a finding."""
    m = re.search(r"ignoring unknown option (\S+)", line)
    return bool(m) and uwsgi_catalog.argument(m.group(1)) is None


def _tail(r) -> str:
    return "\n".join(r.log.strip().splitlines()[-15:])


@pytest.mark.parametrize("config", list(_params()))
def test_real_config(runs, config):
    if shutil.which("openssl") is None and re.search(r"^\s*https\s*[=:]", (DATA / config).read_text(), re.M):
        pytest.skip("openssl is not installed: the config's https line needs a certificate made for the run")
    r = runs[config].result()
    if REFERENCE[config]["served"]:
        assert r.started, f"did not start (exit {r.exit_code}):\n{_tail(r)}"
        assert r.served, f"started, but the request got status {r.status}:\n{_tail(r)}"
        ref = REFERENCE[config]
        assert (r.status, r.app_reached) == (ref["status"], ref["app_reached"]), \
            f"uWSGI answered {ref['status']} (app reached: {ref['app_reached']}), we {r.status}:\n{_tail(r)}"
        found = [line for line in harness.issues(r.log, DATA / config) if not _typo(line)]
        assert not found, "options not honoured:\n" + "\n".join(found)
    else:
        # uWSGI does not serve it either: fine, as long as the answer is one clear line
        assert "Traceback" not in r.log, _tail(r)
        if not r.served:
            last = r.log.strip().splitlines()[-1] if r.log.strip() else ""
            assert r.exit_code == 1 and last.startswith("uwsgi: "), f"exit {r.exit_code}:\n{_tail(r)}"
