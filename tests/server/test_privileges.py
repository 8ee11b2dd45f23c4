"""--uid/--gid through the real ./uwsgi: the server imports what it needs before it drops
privileges, and when the new user cannot read Python's own module path (an interpreter under a
private home, as on this kind of machine) it says so in one line instead of a bare
ModuleNotFoundError."""

from __future__ import annotations

import grp
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from helpers import Server, free_port, http_get, run_uwsgi
from master_helpers import read_stats

pytestmark = pytest.mark.skipif(os.getuid() != 0, reason="needs root to drop privileges")

NOBODY = pwd.getpwnam("nobody")
NOGROUP = grp.getgrgid(NOBODY.pw_gid).gr_name


def _nobody_reads_python() -> bool:
    def drop():
        os.setgid(NOBODY.pw_gid)
        os.setuid(NOBODY.pw_uid)
    try:
        r = subprocess.run([sys.executable, "-S", "-c", "import decimal"], preexec_fn=drop,
                           capture_output=True, cwd="/", timeout=30)
    except PermissionError:        # not even the interpreter's binary
        return False
    return r.returncode == 0


@pytest.fixture
def public_dir():
    """A directory user nobody can read (pytest's tmp_path lies under a 0700 directory)."""
    d = Path(tempfile.mkdtemp(prefix="uwsgid-uid-"))
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _app(d: Path, body: str) -> Path:
    app = d / "app.py"
    app.write_text(body)
    os.chmod(app, 0o644)
    return app


HELLO = '''
def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello"]
'''


def test_master_workers_and_services_run_as_the_new_user(public_dir):
    app = _app(public_dir, HELLO)
    port, stats = free_port(), free_port()
    args = ["--http-socket", f"127.0.0.1:{port}", "--wsgi-file", app, "--uid", "nobody", "--gid", NOGROUP,
            "--master", "--processes", "2", "--cache2", "name=c,items=10", "--stats", f"127.0.0.1:{stats}"]
    with Server(args, port) as s:
        for _ in range(4):
            assert http_get(port, "/")[::2] == (200, b"hello"), s.log()
        doc = json.loads(read_stats(stats))
        pids = [w["pid"] for w in doc["workers"]]
        for pid in pids:
            uid = next(l for l in Path(f"/proc/{pid}/status").read_text().splitlines() if l.startswith("Uid:"))
            assert uid.split()[1] == str(NOBODY.pw_uid)
        os.kill(pids[0], 9)                      # a respawned worker imports nothing new either
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and "respawned" not in s.log():
            time.sleep(0.1)
        assert http_get(port, "/")[::2] == (200, b"hello"), s.log()
        assert "Traceback" not in s.log() and "ModuleNotFoundError" not in s.log(), s.log()


def test_an_unreadable_module_path_is_named_in_one_line(public_dir):
    app = _app(public_dir, "import decimal\n" + HELLO)
    port = free_port()
    r = run_uwsgi(["--http-socket", f"127.0.0.1:{port}", "--wsgi-file", app, "--uid", "nobody",
                   "--gid", NOGROUP], timeout=30)
    if _nobody_reads_python():
        pytest.skip("this interpreter is readable by nobody: the app loads (nothing to diagnose)")
    out = r.stdout + r.stderr
    assert r.returncode == 22, out
    hints = [l for l in out.splitlines() if l.startswith("uwsgi: uid ")]
    assert len(hints) == 1, out
    assert f"uid {NOBODY.pw_uid} cannot read " in hints[0] and "make those directories" in hints[0]
    assert "*** WARNING: uid" in out             # said once already at the drop
