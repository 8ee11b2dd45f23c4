"""Attached daemons in a real server (./uwsgi): started by the master, respawned when killed,
in the stats JSON, kept or restarted across a reload (SIGHUP) per their kind, stopped with the
instance (SIGINT) and after a SIGKILL of the master too; a control daemon's death stops the
instance. The daemons write their pids to files, and every pid seen is SIGKILLed at the end."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest
from helpers import UWSGI, Server, free_port, run_uwsgi
from master_helpers import read_stats

pytestmark = pytest.mark.skipif(not UWSGI.exists(), reason="./uwsgi is not built (make build)")


def wait_for(fn, timeout=30.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"{what}: not true after {timeout}s")


def pids(path) -> list[int]:
    return [int(x) for x in path.read_text().split()] if path.exists() else []


def dead(pid) -> bool:
    """Gone, or a zombie (pid 1 here may not reap orphans)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rpartition(b")")[2].split()[0] == b"Z"
    except FileNotFoundError:
        return True


@pytest.fixture
def seen():
    """Pids to SIGKILL at the end, whatever happened (daemons live in their own sessions, out of
    reach of Server.stop's process-group kill)."""
    found: list = []
    yield found
    for item in found:
        for pid in (pids(item) if not isinstance(item, int) else [item]):
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


def test_daemons_start_respawn_reload_and_stop(tmp_path, seen):
    port, stats = free_port(), free_port()
    dumb, sig_pids, got = tmp_path / "dumb", tmp_path / "sig", tmp_path / "got"
    smart, smart2 = tmp_path / "smart.pid", tmp_path / "smart2.pid"
    seen.extend([dumb, sig_pids, smart, smart2])
    args = ["--http-socket", f"127.0.0.1:{port}", "--stats", f"127.0.0.1:{stats}",
            "--attach-daemon", f"echo $$ >> {dumb}; exec sleep 1000",
            "--smart-attach-daemon", f"{smart},1 sleep 1000 & echo $! > {smart}",
            "--attach-daemon2", f"cmd=exec sleep 1000,pidfile={smart2},daemonize=1,freq=2",
            "--attach-daemon2", f"cmd=trap 'echo usr1 >> {got}; exit 0' USR1; echo $$ >> {sig_pids}; "
                                f"while :; do sleep 0.2; done,stopsignal=USR1"]
    s = Server(args, port).start()
    try:
        first = wait_for(lambda: pids(dumb), what="the dumb daemon")[0]
        smart_pid = wait_for(lambda: pids(smart), what="the smart daemon's pidfile")[0]
        smart2_pid = wait_for(lambda: pids(smart2), what="the pidfile the master wrote")[0]
        sig_first = wait_for(lambda: pids(sig_pids), what="the USR1 daemon")[0]
        doc = json.loads(read_stats(stats))
        rows = {row["cmd"]: row for row in doc["daemons"]}
        assert rows[f"echo $$ >> {dumb}; exec sleep 1000"]["pid"] == first
        assert rows["exec sleep 1000"]["respawns"] == 0
        assert len(rows) == 4

        os.kill(first, signal.SIGKILL)
        second = wait_for(lambda: pids(dumb)[1:], what="the respawned daemon")[0]
        assert second != first
        s.wait_log(f'respawning "echo $$ >> {dumb}; exec sleep 1000"')
        # the smart daemon's pid dies: the pidfile check (each second) respawns it (freq 1: at
        # the first check that finds it dead, even when no check has seen it alive yet)
        os.kill(smart_pid, signal.SIGKILL)
        wait_for(lambda: pids(smart) and pids(smart)[0] != smart_pid, what="the smart daemon respawned")
        smart_pid = pids(smart)[0]

        # reload: the dumb daemons are stopped (stopsignal) and started again by the new master,
        # the smart ones are kept and adopted through their pidfiles
        s.signal(signal.SIGHUP)
        s.wait_log("[uwsgi-daemons] found valid/active pidfile", count=2, timeout=60)
        log = s.wait_log(f'found valid/active pidfile for "exec sleep 1000" (pid: {smart2_pid})')
        assert f"(pid: {smart_pid})" in log
        third = wait_for(lambda: pids(dumb)[2:], what="the dumb daemon after the reload")[0]
        assert dead(second) and third != second
        assert got.read_text().split() == ["usr1"] and dead(sig_first)
        wait_for(lambda: pids(sig_pids)[1:], what="the USR1 daemon after the reload")
        assert not dead(smart_pid) and not dead(smart2_pid)
    finally:
        s.stop()        # SIGINT
    log = s.log()
    assert f"[uwsgi-daemons] stopping daemon (pid: {third})" in log
    assert wait_for(lambda: dead(third) and dead(pids(sig_pids)[-1]), 10, "the dumb daemons gone")
    assert got.read_text().split() == ["usr1", "usr1"]
    # smart daemons outlive the instance, as in uWSGI (a new one adopts them)
    assert not dead(smart_pid) and not dead(smart2_pid)


def test_daemon_dies_with_a_sigkilled_master(tmp_path, seen):
    port = free_port()
    out = tmp_path / "pids"
    seen.append(out)
    with Server(["--http-socket", f"127.0.0.1:{port}", "--attach-daemon", f"echo $$ >> {out}; exec sleep 1000"],
                port) as s:
        daemon = wait_for(lambda: pids(out), what="the daemon")[0]
        s.signal(signal.SIGKILL)
        assert wait_for(lambda: dead(daemon), 10, "the daemon of a SIGKILLed master")


def test_control_daemon_death_stops_the_instance(tmp_path):
    port = free_port()
    s = Server(["--http-socket", f"127.0.0.1:{port}", "--attach-control-daemon", "sleep 1"], port).start()
    try:
        rc = s.proc.wait(30)
    finally:
        s.stop()
    assert rc == 0
    log = s.log()
    assert '[uwsgi-daemons] control daemon "sleep 1"' in log and "died: stopping the instance" in log
    assert "goodbye to uWSGI." in log


@pytest.mark.parametrize("args, message", [
    (["--attach-daemon2", "cmd=x,frequency=3"], "--attach-daemon2 cmd=x,frequency=3: unknown key 'frequency'"),
    (["--smart-attach-daemon", "/tmp/only-a-pidfile"], "--smart-attach-daemon '/tmp/only-a-pidfile': invalid"),
    (["--attach-daemon2", "cmd=x,stopsignal=NOPE"], "stopsignal='NOPE' is not a signal"),
    (["--strict", "--legion-attach-daemon", "l memcached"], "there are no legions here"),
    (["--attach-daemon2", "cmd=sleep 1", "--master=false"], "--attach-daemon needs the master process"),
])
def test_bad_daemon_values_stop_the_start_with_one_line(args, message):
    r = run_uwsgi(["--http-socket", f"127.0.0.1:{free_port()}", *args], timeout=60)
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    assert len([ln for ln in out.splitlines() if message in ln]) == 1, out
    assert "Traceback" not in out


REAL_UWSGI = "/usr/bin/uwsgi"


def _lines_of(log: str, prefixes) -> set[str]:
    """The cron/daemon lines of a log, pids and seconds as N, uWSGI's verbose date prefix cut."""
    import re
    out = set()
    for line in log.splitlines():
        line = re.sub(r"^[A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d [\d:]{8} \d{4} - ", "", line)
        if line.startswith(prefixes) and "] throttling " not in line:   # timing: either may throttle
            out.add(re.sub(r"\d+", "N", line))
    return out


@pytest.mark.skipif(not os.path.exists(REAL_UWSGI), reason="Debian's uWSGI is not installed")
def test_log_lines_are_uwsgis(tmp_path, seen):
    """The same crons and daemon on Debian's uWSGI and here: the same log lines."""
    results = {}
    for name, binary in (("real", REAL_UWSGI), ("ours", UWSGI)):
        port = free_port()
        out = tmp_path / "pids"             # one path: the commands, so the lines, are the same
        out.unlink(missing_ok=True)
        seen.extend(pids(out))
        args = ["--master", "--http-socket", f"127.0.0.1:{port}",
                "--cron", "-1 -1 -1 -1 -1 exit 3", "--cron2", "minute=-1 exit 0",
                "--attach-daemon", f"echo $$ >> {out}; exec sleep 30"]
        with Server(args, port, binary=binary) as s:
            s.wait_log("[uwsgi-cron] command \"exit 0\" running with pid", timeout=30)
            s.wait_log("[uwsgi-cron] command \"exit 3\" running with pid", timeout=30)
            wait_for(lambda: pids(out), what=f"{name}'s daemon")
            os.kill(pids(out)[0], signal.SIGKILL)
            wait_for(lambda: pids(out)[1:], what=f"{name}'s respawned daemon")
        seen.extend(pids(out))
        results[name] = _lines_of(s.log(), ("[uwsgi-cron]", "[uwsgi-daemons]"))
    assert results["ours"] == results["real"]
