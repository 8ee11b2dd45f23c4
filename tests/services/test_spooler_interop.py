"""A spool dir shared with real uWSGI, both ways: the files Debian's uWSGI 2.0.21 wrote
(tests/data/spool/real, see its README) are run by our spooler, always; and, when
/usr/bin/uwsgi is here, real uWSGI's spooler runs a task our uwsgi.spool() wrote."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest
from helpers import ROOT, Server, free_port
from services_helpers import instance, make_opts, reset_services

from uwsgid.services import api, spooler

DATA = ROOT / "tests" / "data" / "spool"
REAL_UWSGI = Path("/usr/bin/uwsgi")
EXPECTED = {
    "plain": ({"n": "1"}, None),
    "with_body": ({}, "\x00binary body\xff" * 3),
    "prio": ({"priority": "3"}, None),
    "at": ({"at": "1700000000"}, None),
    "unicode": ({"k\u00e9y".encode().decode("latin-1"): "v\u00e4lue".encode().decode("latin-1")}, None),
    "big": ({"blob": "x" * 60000}, None),
}


def _records(path: Path) -> list[dict]:
    try:
        return [json.loads(line) for line in path.read_text().splitlines()]
    except FileNotFoundError:
        return []


def _wait_for(fn, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if fn():
            return True
        time.sleep(0.1)
    return False


def test_files_written_by_real_uwsgi_run_here(tmp_path):
    spool = tmp_path / "spool"
    shutil.copytree(DATA / "real", spool)
    past = time.time() - 10
    for f in spool.rglob("uwsgi_spoolfile_on_*"):
        os.utime(f, (past, past))
    at_file = next(f for f in spool.glob("uwsgi_spoolfile_on_*") if b"\x02\x00at" in f.read_bytes())
    os.utime(at_file, (1700000000, 1700000000))           # as uWSGI set it (git keeps no mtime)
    records = tmp_path / "records"
    port = free_port()
    args = ["--master", "-p", "1", "--socket", f"127.0.0.1:{port}", "--wsgi-file", str(DATA / "app_raw.py"),
            "--spooler", str(spool), "--spooler-ordered", "--spooler-frequency", "1"]
    with instance(args, port, tmp_path / "log", env={"SPOOL_RECORDS": str(records)}) as srv:
        assert _wait_for(lambda: len(_records(records)) >= len(EXPECTED)), srv.log()[-4000:]
        assert _wait_for(lambda: not list(spool.rglob("uwsgi_spoolfile_on_*")), 10), srv.log()[-4000:]
    got = {r["task"]: r for r in _records(records)}
    assert sorted(got) == sorted(EXPECTED)
    for task, (args_, body) in EXPECTED.items():
        rec = got[task]
        assert rec["spooler_task_name"].startswith("uwsgi_spoolfile_on_vm_")
        assert rec.get("body") == body, task
        extra = {k: v for k, v in rec.items() if k not in ("task", "spooler_task_name", "body", "pid", "cwd")}
        assert extra == args_, task
    # the task's cwd is its spool dir (the priority subdir for the prio task), as uWSGI's
    assert got["plain"]["cwd"] == str(spool.resolve())
    assert got["prio"]["cwd"] == str(spool.resolve() / "3")


@pytest.mark.skipif(not REAL_UWSGI.exists(), reason="no /usr/bin/uwsgi (Debian's uWSGI) here")
def test_real_uwsgi_runs_a_task_we_wrote(tmp_path):
    spool = tmp_path / "spool"
    reset_services()
    spooler._reset_for_tests()
    try:
        spooler.setup(make_opts(spooler=[str(spool)], spooler_quiet=True))
        path = api.spool({"task": "ours", b"k": b"v\x00w", "body": b"\xff" * 100000})
    finally:
        spooler._reset_for_tests()
    assert os.path.exists(path)
    records = tmp_path / "records"
    sock = tmp_path / "s.sock"
    args = ["--plugin", "python3", "--master", "--processes", "1", "--socket", str(sock),
            "--wsgi-file", str(DATA / "app_raw.py"), "--spooler", str(spool), "--spooler-frequency", "1"]
    with Server(args, binary=REAL_UWSGI, log_path=tmp_path / "log", env={"SPOOL_RECORDS": str(records)}) as srv:
        assert _wait_for(lambda: _records(records)), srv.log()[-4000:]
        assert _wait_for(lambda: not os.path.exists(path), 10), srv.log()[-4000:]
        assert "spawned the uWSGI spooler on dir" in srv.log()
    rec = _records(records)[0]
    assert rec["task"] == "ours" and rec["k"] == "v\x00w" and rec["body"] == "\xff" * 100000
    assert rec["spooler_task_name"] == os.path.basename(path.decode())
