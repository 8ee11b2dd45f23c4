"""The master's own reasons to end workers, against real processes: --max-worker-lifetime
(+ -delta), --cheap, --idle / --die-on-idle; and the process names (--procname*), the
--no-orphan spelling. Most use uwsgid.main with the test plugin (tests/master_helpers.py);
the names need the ./uwsgi executable (only it can rename its process)."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import time

import pytest
from helpers import ROOT, UWSGI, Server, free_port, http_get

from tests.master_helpers import MODIFIER1, get, info, launch

M1 = ["--http-socket-modifier1", MODIFIER1]


def _start(tmp_path, *args, name="server.log", wait=True):
    port = free_port()
    srv = launch(["--master", "--http-socket", f"127.0.0.1:{port}", *M1, *map(str, args)], tmp_path / name)
    if wait:
        srv.wait_port(port)
    return srv, port


def test_max_worker_lifetime_reloads_workers_in_turn(tmp_path):
    srv, port = _start(tmp_path, "-p", "2", "--min-worker-lifetime", "0", "--max-worker-lifetime", "1",
                       "--max-worker-lifetime-delta", "3")
    with srv:
        log = srv.wait_log("worker 1 lifetime reached")
        assert "worker 2 lifetime reached" not in log      # worker 2 lives 1 + 3 s
        log = srv.wait_log("worker 2 lifetime reached", timeout=30)
        assert "Respawned uWSGI worker 1" in log
        assert re.search(r"worker 1 lifetime reached, it was running for \d+ second\(s\)", log)
        assert get(port) == (200, b"hello")


def test_max_worker_lifetime_finishes_the_request_in_progress(tmp_path):
    import threading
    srv, port = _start(tmp_path, "--min-worker-lifetime", "0", "--max-worker-lifetime", "2")
    with srv:
        srv.wait_log("spawned uWSGI worker 1")
        result = []
        t = threading.Thread(target=lambda: result.append(get(port, "/sleep?3", timeout=30)))
        t.start()
        srv.wait_log("worker 1 lifetime reached")
        t.join(30)
        assert result == [(200, b"slept 3")]
        srv.wait_log("Respawned uWSGI worker 1")


def test_cheap_spawns_workers_at_the_first_connection(tmp_path):
    srv, port = _start(tmp_path, "-p", "2", "--cheap", wait=False)     # a connection would wake it
    with srv:
        srv.wait_log("cheap mode enabled: waiting for socket connection...")
        time.sleep(1)
        assert "spawned uWSGI worker" not in srv.log()
        assert get(port) == (200, b"hello")
        log = srv.wait_log("uWSGI worker 2")
        assert "spawned uWSGI worker 1" in log


def test_idle_goes_cheap_and_comes_back(tmp_path):
    srv, port = _start(tmp_path, "-p", "2", "--idle", "2")
    with srv:
        first = info(port)["pid"]
        srv.wait_log("workers have been inactive for more than 2 seconds", timeout=20)
        srv.wait_log("cheap mode enabled: waiting for socket connection...")
        srv.wait_log("killing worker 2")
        time.sleep(1.5)
        assert "Respawned uWSGI worker" not in srv.log()
        assert get(port) == (200, b"hello")
        assert info(port)["pid"] != first
        # idle again later: it goes cheap a second time
        srv.wait_log("workers have been inactive", count=2, timeout=20)


def test_die_on_idle_stops_the_instance(tmp_path):
    srv, port = _start(tmp_path, "--idle", "1", "--die-on-idle")
    with srv:
        assert get(port) == (200, b"hello")
        assert srv.proc.wait(30) == 0
        assert "workers have been inactive for more than 1 seconds" in srv.log()


def test_no_orphan_is_accepted_in_a_config_file(tmp_path):
    port = free_port()
    ini = tmp_path / "app.ini"
    ini.write_text(f"[uwsgi]\nmaster = true\nno-orphan = true\nhttp-socket = 127.0.0.1:{port}\n"
                   f"http-socket-modifier1 = {MODIFIER1}\nstrict = true\n")
    srv = launch(["--ini", ini], tmp_path / "server.log")
    with srv:
        srv.wait_port(port)
        assert get(port) == (200, b"hello")
        assert "unknown" not in srv.log()


def _names(pid: int) -> list[str]:
    out = subprocess.run(["ps", "-o", "pid=,ppid=,args=", "--ppid", str(pid), "-p", str(pid)],
                         capture_output=True, text=True).stdout
    return sorted(line.split(None, 2)[2].strip() for line in out.splitlines() if line.strip())


def _wait_names(pid: int, want: list[str], timeout: float = 20.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        names = _names(pid)
        if names == want:
            return names
        time.sleep(0.1)
    return _names(pid)


APP = "def application(env, start_response):\n    start_response('200 OK', [])\n    return [b'ok']\n"
NAMES = [("--procname-prefix-spaced", "pre"), ("--procname-append", " app"), ("--procname", "wk"),
         ("--procname-master", "boss")]


@pytest.mark.skipif(not UWSGI.exists(), reason="needs the ./uwsgi executable")
def test_process_names(tmp_path):
    (tmp_path / "app.py").write_text(APP)
    port = free_port()
    args = ["--master", "-p", "2", "--http-socket", f"127.0.0.1:{port}", "--wsgi-file", tmp_path / "app.py"]
    for opt, value in NAMES:
        args += [opt, value]
    with Server(args, port, cwd=tmp_path, log_path=tmp_path / "server.log") as srv:
        assert http_get(port)[0] == 200
        assert _wait_names(srv.pid, ["pre boss app", "pre wk app", "pre wk app"]) == \
            ["pre boss app", "pre wk app", "pre wk app"]
        srv.stop(signal.SIGTERM)
    # a prefix alone names the processes after what they are
    port = free_port()
    with Server(["--master", "--http-socket", f"127.0.0.1:{port}", "--wsgi-file", tmp_path / "app.py",
                 "--procname-prefix", "x-"], port, cwd=tmp_path, log_path=tmp_path / "server2.log") as srv:
        assert _wait_names(srv.pid, ["x-uWSGI master", "x-uWSGI worker 1"]) == ["x-uWSGI master", "x-uWSGI worker 1"]


@pytest.mark.skipif(not (shutil.which("/usr/bin/uwsgi") and (ROOT / "uwsgi").exists()
                         and __import__("os").path.exists("/usr/lib/uwsgi/plugins/python3_plugin.so")),
                    reason="needs Debian's uWSGI with its python3 plugin")
def test_process_names_match_real_uwsgi(tmp_path):
    (tmp_path / "app.py").write_text(APP)
    port = free_port()
    args = ["--plugin", "python3", "--master", "-p", "2", "--http-socket", f"127.0.0.1:{port}",
            "--wsgi-file", tmp_path / "app.py"]
    for opt, value in NAMES:
        args += [opt, value]
    with Server(args, port, binary="/usr/bin/uwsgi", cwd=tmp_path, log_path=tmp_path / "real.log") as srv:
        assert _wait_names(srv.pid, ["pre boss app", "pre wk app", "pre wk app"]) == \
            ["pre boss app", "pre wk app", "pre wk app"]


MULE = "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nwhile True:\n    time.sleep(1)\n"


@pytest.mark.skipif(not UWSGI.exists(), reason="needs the ./uwsgi executable")
def test_mule_hooks_name_and_reload_mercy(tmp_path):
    """--hook-as-mule runs in the mule, which is named "uWSGI mule 1"; a mule that ignores
    SIGTERM is killed after --mule-reload-mercy (the default would hold the stop for 60 s)."""
    (tmp_path / "app.py").write_text(APP)
    (tmp_path / "mule.py").write_text(MULE)
    out = tmp_path / "as-mule"
    port = free_port()
    args = ["--master", "--http-socket", f"127.0.0.1:{port}", "--wsgi-file", tmp_path / "app.py",
            f"--mule={tmp_path / 'mule.py'}", "--mule-reload-mercy", "2", "--hook-as-mule", f"appendn:{out} mule",
            "--auto-procname"]
    with Server(args, port, cwd=tmp_path, log_path=tmp_path / "server.log") as srv:
        names = _wait_names(srv.pid, ["uWSGI master", "uWSGI mule 1", "uWSGI worker 1"])
        assert names == ["uWSGI master", "uWSGI mule 1", "uWSGI worker 1"]
        assert out.read_text() == "mule\n"
        started = time.monotonic()
        srv.signal(signal.SIGTERM)
        assert srv.proc.wait(40) == 0
        assert time.monotonic() - started < 40
