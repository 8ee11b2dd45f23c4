"""scripts/setup-sputnik.sh and examples/sputnik.ws agree on the default data directory
(issue 21, item 10), including where $USER is unset or empty (containers, cron, systemd): the
script prepares ${TMPDIR:-/tmp}/uwsgid-sputnik-USER and the app, started in the same environment,
opens that directory's sputnik.db, and creates no other. TMPDIR points both into the test's
tmp dir, so nothing outside it is touched."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from helpers import ROOT, UWSGI, Server, free_port, http_get

SPUTNIK = Path("/usr/share/lua/5.1/sputnik/init.lua")

pytestmark = [pytest.mark.skipif(not UWSGI.exists(), reason="./uwsgi is not built (make build)"),
              pytest.mark.skipif(not SPUTNIK.exists(), reason="Debian's sputnik is not installed "
                                 "(scripts/setup-system.sh)")]

UNSET = ("USER", "LOGNAME", "SPUTNIK_DIR")


def _open_files(pid: int) -> set[str]:
    """The files process `pid` and its children hold open."""
    pids = [pid]
    try:
        pids += [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        pass
    out = set()
    for p in pids:
        fd_dir = Path(f"/proc/{p}/fd")
        for fd in fd_dir.iterdir() if fd_dir.exists() else ():
            try:
                out.add(os.readlink(fd))
            except OSError:
                pass
    return out


@pytest.mark.parametrize("user", [None, "", "sputnik-tester"], ids=["USER unset", "USER empty", "USER set"])
def test_script_and_app_use_the_same_data_dir(tmp_path, user):
    tmp = tmp_path / "tmpdir"
    tmp.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in UNSET}
    env["TMPDIR"] = str(tmp)
    if user is not None:
        env["USER"] = user
    who = user or subprocess.run(["id", "-un"], capture_output=True, text=True, check=True).stdout.strip()
    expected = tmp / f"uwsgid-sputnik-{who}"

    r = subprocess.run(["bash", str(ROOT / "scripts" / "setup-sputnik.sh")], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"sputnik data: {expected} " in r.stdout, r.stdout
    assert (expected / "sputnik.db").exists()

    # the app in the same environment (env -u: Server only adds variables, and env execs in place)
    port = free_port()
    unset = [a for k in UNSET if k not in env for a in ("-u", k)]
    extra = {"TMPDIR": str(tmp)} if user is None else {"TMPDIR": str(tmp), "USER": user}
    srv = Server(["--http-socket", f"127.0.0.1:{port}", "--http-socket-modifier1", "6",
                  "--lua", "examples/sputnik.ws"], port, command=["env", *unset, UWSGI], env=extra, cwd=ROOT)
    with srv:
        status, _, body = http_get(port, "/", timeout=60)
        assert status == 200 and b"<title>My New Wiki: Home Page</title>" in body, srv.log()
        opened = {f for f in _open_files(srv.pid) if f.endswith("sputnik.db")}
    assert opened == {str(expected / "sputnik.db")}, srv.log()
    assert sorted(p.name for p in tmp.iterdir()) == [expected.name]
