"""Command crons in a real server (./uwsgi): an every-minute cron runs at start-up (as in uWSGI:
its last run is "never"), its exit is logged, --cron2 harakiri kills a long command, the stats
JSON lists the crons; bad values stop the start with one line."""

from __future__ import annotations

import json
import re
import time

import pytest
from helpers import UWSGI, Server, free_port, run_uwsgi
from master_helpers import read_stats

pytestmark = pytest.mark.skipif(not UWSGI.exists(), reason="./uwsgi is not built (make build)")


def _wait_file(path, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return path.read_text()
        time.sleep(0.05)
    raise AssertionError(f"{path} not written after {timeout}s")


def test_crons_run_from_the_master_log_their_exit_and_harakiri(tmp_path):
    port, stats = free_port(), free_port()
    out = tmp_path / "cron.out"
    # no --master: a cron turns it on (uWSGI's UWSGI_OPT_MASTER)
    args = ["--http-socket", f"127.0.0.1:{port}", "--stats", f"127.0.0.1:{stats}",
            "--cron", f"-1 -1 -1 -1 -1 echo $$ >> {out}; exit 3",
            "--cron2", "minute=-1,harakiri=1 sleep 30",
            "--unique-cron", "-1 -1 -1 -1 -1 echo unique-output"]
    with Server(args, port) as s:
        log = s.wait_log("spawned uWSGI master process")
        assert f'[uwsgi-cron] command "echo $$ >> {out}; exit 3" registered as cron task' in log
        shell_pid = _wait_file(out).split()[0]
        log = s.wait_log(f'running with pid {shell_pid} exited after')
        assert f'[uwsgi-cron] running "echo $$ >> {out}; exit 3" (pid {shell_pid})' in log
        s.wait_log("unique-output")                    # a command's output goes to the log
        doc = json.loads(read_stats(stats))
        assert {c["command"] for c in doc["crons"]} == {f"echo $$ >> {out}; exit 3", "sleep 30",
                                                        "echo unique-output"}
        log = s.wait_log('[uwsgi-cron] running "sleep 30" (pid ')
        pid = int(re.search(r'running "sleep 30" \(pid (\d+)\)', log).group(1))
        sleeper = next(c for c in doc["crons"] if c["command"] == "sleep 30")
        # its pid while it runs; -1 once its 1 s harakiri killed it (a loaded machine reads late)
        assert sleeper["pid"] in (pid, -1) and sleeper["minute"] == -1
        log = s.wait_log('*** HARAKIRI ON CRON "sleep 30"', timeout=30)
        s.wait_log(f'command "sleep 30" running with pid {pid} exited after')
        # 60 s between two runs of an every-minute cron: only one so far
        assert len(out.read_text().split()) == 1


@pytest.mark.parametrize("args, message", [
    (["--cron", "*/5 * * * * echo"], "--cron '*/5 * * * * echo': invalid cron syntax"),
    (["--cron2", "minute=5,weekday=1 true"], "unknown key 'weekday'"),
    (["--cron-harakiri", "-3", "--cron", "-1 -1 -1 -1 -1 true"], "--cron-harakiri -3"),
    (["--strict", "--legion-cron", "mylegion -1 -1 -1 -1 -1 true"], "there are no legions here"),
    (["--cron", "-1 -1 -1 -1 -1 true", "--master=false"], "--cron needs the master process"),
])
def test_bad_cron_values_stop_the_start_with_one_line(args, message):
    r = run_uwsgi(["--http-socket", f"127.0.0.1:{free_port()}", *args], timeout=60)
    assert r.returncode == 1, r.stdout + r.stderr
    lines = [ln for ln in (r.stdout + r.stderr).splitlines() if message in ln]
    assert len(lines) == 1, r.stdout + r.stderr
    assert "Traceback" not in r.stdout + r.stderr


def test_legion_cron_without_strict_is_a_loud_warning(tmp_path):
    port = free_port()
    with Server(["--http-socket", f"127.0.0.1:{port}", "--cron-legion", "mylegion -1 -1 -1 -1 -1 true"],
                port) as s:
        log = s.wait_log("spawned uWSGI worker 1")
    assert "*** WARNING: --legion-cron mylegion -1 -1 -1 -1 -1 true: not supported" in log
    assert "use --cron" in log
