"""Master lifecycle against real processes: respawn, harakiri, max-requests, signals, pidfile,
vacuum, daemonize, exit 22. The server is uwsgid.main with the test plugin (tests/master_helpers.py),
so these tests do not depend on a language plugin."""

from __future__ import annotations

import os
import re
import signal
import socket
import threading
import time
from pathlib import Path

import pytest
from helpers import ROOT, Server, free_port, recv_all, wait_port

from tests.master_helpers import IN_FLIGHT, MODIFIER1, get, info, launch

M1 = ["--http-socket-modifier1", MODIFIER1]


def _start(tmp_path, *args, env=None, name="server.log") -> tuple[Server, int]:
    port = free_port()
    srv = launch(["--master", "--http-socket", f"127.0.0.1:{port}", *M1, *args], tmp_path / name, env=env)
    srv.wait_port(port)
    return srv, port


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:   # a zombie is dead for our purposes
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def _wait_dead(pid: int, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _pid_alive(pid):
            return True
        time.sleep(0.05)
    return False


def test_startup_lines_and_goodbye(tmp_path):
    srv, port = _start(tmp_path, "-p", "2")
    with srv:
        log = srv.wait_log("spawned uWSGI worker 2")
        assert "*** Starting uWSGI" in log
        assert f"spawned uWSGI master process (pid: {srv.pid})" in log
        assert re.search(r"spawned uWSGI worker 1 \(pid: \d+, cores: 1\)", log)
        assert get(port) == (200, b"hello")
        assert srv.stop(signal.SIGTERM) == 0
        assert "goodbye to uWSGI." in srv.log()


def test_dead_worker_is_respawned_with_uwsgi_log_line(tmp_path):
    srv, port = _start(tmp_path, "-p", "1")
    with srv:
        srv.wait_log("spawned uWSGI worker 1")
        old = int(info(port)["pid"])
        respawns = srv.log().count("Respawned uWSGI worker 1")
        with pytest.raises(Exception):
            get(port, "/crash", timeout=5)
        log = srv.wait_log("Respawned uWSGI worker 1", count=respawns + 1)
        assert f"DAMN ! worker 1 (pid: {old}) died, killed by signal 9 :( trying respawn ..." in log
        new = int(re.findall(r"Respawned uWSGI worker 1 \(new pid: (\d+)\)", log)[-1])
        assert new != old
        assert int(info(port)["pid"]) == new


def test_worker_dying_in_a_loop_is_throttled(tmp_path):
    # Each new worker is killed right away: the master must slow down instead of spinning.
    srv, port = _start(tmp_path, "-p", "1")
    with srv:
        srv.wait_log("spawned uWSGI worker 1")
        deadline = time.monotonic() + 8
        kills = 0
        while time.monotonic() < deadline and "respawning too fast" not in srv.log():
            m = re.findall(r"(?:spawned uWSGI worker 1 \(pid|Respawned uWSGI worker 1 \(new pid): (\d+)", srv.log())
            if m:
                try:
                    os.kill(int(m[-1]), signal.SIGKILL)
                    kills += 1
                except ProcessLookupError:
                    pass
            time.sleep(0.1)
        assert "worker respawning too fast !!! i have to sleep a bit" in srv.log()
        srv.wait_log("Respawned uWSGI worker 1", count=2, timeout=40)


def test_harakiri_kills_the_stuck_worker_logs_the_request_and_respawns(tmp_path):
    srv, port = _start(tmp_path, "-p", "1", "--harakiri", "1", "--harakiri-verbose")
    with srv:
        old = int(info(port)["pid"])
        with pytest.raises(Exception):
            get(port, "/sleep?30", timeout=20)
        log = srv.wait_log("Respawned uWSGI worker 1")
        assert f"*** HARAKIRI ON WORKER 1 (pid: {old}, try: 1) ***" in log
        assert "/sleep?30" in log
        assert "HARAKIRI: -- wchan>" in log
        assert f"DAMN ! worker 1 (pid: {old}) died, killed by signal 9" in log
        assert int(info(port)["pid"]) != old


def test_max_requests_recycles_the_worker(tmp_path):
    srv, port = _start(tmp_path, "-p", "1", "--max-requests", "3", "--min-worker-lifetime", "0")
    with srv:
        first = int(info(port)["pid"])
        assert get(port)[0] == 200
        assert get(port)[0] == 200
        log = srv.wait_log("Respawned uWSGI worker 1")
        assert re.search(rf"\.\.\.The work of process {first} is done.*Seeya!", log)
        assert "DAMN" not in log
        assert int(info(port)["pid"]) != first


def test_sigterm_lets_the_in_flight_request_finish(tmp_path):
    srv, port = _start(tmp_path, "-p", "1")
    with srv:
        result = {}

        def slow():
            result["r"] = get(port, "/sleep?2", timeout=20)

        t = threading.Thread(target=slow)
        t.start()
        srv.wait_log(IN_FLIGHT)
        srv.signal(signal.SIGTERM)
        t.join(25)
        assert result.get("r") == (200, b"slept 2")
        assert srv.proc.wait(20) == 0
        assert "goodbye to uWSGI." in srv.log()


def test_sigterm_answers_the_pipelined_requests_already_received(tmp_path):
    srv, port = _start(tmp_path, "-p", "1")
    with srv:
        s = socket.create_connection(("127.0.0.1", port), timeout=20)
        s.sendall(b"GET /sleep?1 HTTP/1.1\r\nHost: x\r\n\r\n" + b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 2)
        srv.wait_log(IN_FLIGHT)
        srv.signal(signal.SIGTERM)
        data = recv_all(s, timeout=20)
        s.close()
        assert data.count(b"HTTP/1.1 200") == 3, data
        assert data.count(b"Connection: close") == 1          # only on the last
        assert srv.proc.wait(20) == 0


def test_a_stop_signal_sent_again_while_exiting_keeps_the_exit_status(tmp_path):
    """SIGTERM again and again until the master is gone (a service manager repeating its stop):
    it still exits 0, also in the last moments of its exit, where Python's finalization has put
    the default handlers back."""
    srv, port = _start(tmp_path, "-p", "1")
    with srv:
        srv.signal(signal.SIGTERM)
        deadline = time.monotonic() + 20
        while srv.proc.poll() is None and time.monotonic() < deadline:
            try:
                os.kill(srv.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                break
            time.sleep(0.0005)
        assert srv.proc.wait(20) == 0
        assert "goodbye to uWSGI." in srv.log()


def test_sigint_stops_immediately(tmp_path):
    srv, port = _start(tmp_path, "-p", "2")
    with srv:
        workers = [int(p) for p in re.findall(r"spawned uWSGI worker \d \(pid: (\d+)", srv.wait_log("worker 2"))]
        t = threading.Thread(target=lambda: _swallow(lambda: get(port, "/sleep?30", timeout=40)), daemon=True)
        t.start()
        srv.wait_log(IN_FLIGHT)
        started = time.monotonic()
        srv.signal(signal.SIGINT)
        assert srv.proc.wait(15) == 0
        assert time.monotonic() - started < 10
        assert all(_wait_dead(p, 5) for p in workers)
        assert "goodbye to uWSGI." in srv.log()


def _swallow(fn):
    try:
        fn()
    except Exception:
        pass


def test_pidfile_and_vacuum_remove_unix_socket_and_pidfile(tmp_path):
    sock = tmp_path / "app.sock"
    pidfile = tmp_path / "app.pid"
    port = free_port()
    srv = launch(["--master", "--http-socket", f"127.0.0.1:{port}", "--socket", sock, "--pidfile", pidfile,
                    "--vacuum", *M1], tmp_path / "log")
    with srv:
        srv.wait_port(port)
        assert pidfile.read_text().strip() == str(srv.pid)
        assert sock.exists()
        assert srv.stop(signal.SIGTERM) == 0
    assert not pidfile.exists()
    assert not sock.exists()


def test_without_vacuum_the_pidfile_stays(tmp_path):
    pidfile = tmp_path / "app.pid"
    srv, port = _start(tmp_path, "--pidfile", pidfile)
    with srv:
        assert pidfile.read_text().strip() == str(srv.pid)
        srv.stop(signal.SIGTERM)
    assert pidfile.exists()


def test_daemonize_detaches_logs_to_file_and_writes_pidfile(tmp_path):
    port = free_port()
    logfile = tmp_path / "daemon.log"
    pidfile = tmp_path / "daemon.pid"
    launcher = launch(["--master", "--http-socket", f"127.0.0.1:{port}", *M1, "--daemonize", logfile,
                         "--pidfile", pidfile, "--no-orphans", "--vacuum"], tmp_path / "launcher.log")
    daemon_pid = None
    try:
        assert launcher.proc.wait(20) == 0        # the foreground process returns at once
        wait_port(port)
        daemon_pid = int(pidfile.read_text())
        assert daemon_pid != launcher.pid
        assert get(port) == (200, b"hello")
        assert int(info(port)["master"]) == daemon_pid
        text = logfile.read_text()
        assert f"spawned uWSGI master process (pid: {daemon_pid})" in text
        assert "spawned uWSGI worker 1" not in launcher.log()
    finally:
        if daemon_pid:
            os.kill(daemon_pid, signal.SIGINT)
            assert _wait_dead(daemon_pid, 15)
        launcher.stop()
    assert "goodbye to uWSGI." in logfile.read_text()


def test_logto_writes_the_log_to_a_file(tmp_path):
    logfile = tmp_path / "out.log"
    srv, port = _start(tmp_path, "--logto", logfile)
    with srv:
        assert get(port)[0] == 200
        srv.stop(signal.SIGTERM)
    assert "spawned uWSGI master process" in logfile.read_text()
    assert "spawned uWSGI master process" not in srv.log()


def test_app_load_error_exits_22_with_the_message(tmp_path):
    port = free_port()
    srv = launch(["--master", "--http-socket", f"127.0.0.1:{port}", *M1], tmp_path / "log",
                   env={"MASTERTEST_FAIL": "1"})
    with srv:
        assert srv.proc.wait(20) == 22
        log = srv.log()
        assert "unable to load app from /nonexistent/app.py" in log
        assert "Traceback" not in log


def test_app_load_error_in_a_worker_stops_the_instance_with_22(tmp_path):
    port = free_port()
    srv = launch(["--master", "-p", "2", "--lazy-apps", "--http-socket", f"127.0.0.1:{port}", *M1],
                   tmp_path / "log", env={"MASTERTEST_FAIL_POSTFORK": "1"})
    with srv:
        assert srv.proc.wait(30) == 22
        log = srv.log()
        assert "unable to load app in the worker" in log
        assert "OOPS ! failed loading app in worker" in log


def test_app_load_error_without_need_app_keeps_serving(tmp_path):
    srv, port = _start(tmp_path, "--need-app=0", env={"MASTERTEST_FAIL": "1"})
    with srv:
        srv.wait_log("unable to load app")
        assert get(port) == (200, b"hello")


def test_bind_error_is_one_line_and_exit_1(tmp_path):
    import socket
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    port = busy.getsockname()[1]
    try:
        srv = launch(["--master", "--http-socket", f"127.0.0.1:{port}", *M1], tmp_path / "log")
        with srv:
            assert srv.proc.wait(20) == 1
            log = srv.log()
            assert str(port) in log
            assert "Traceback" not in log
    finally:
        busy.close()


def test_single_process_without_master(tmp_path):
    port = free_port()
    srv = launch(["--http-socket", f"127.0.0.1:{port}", *M1], tmp_path / "log")
    with srv:
        srv.wait_port(port)
        assert int(info(port)["pid"]) == srv.pid
        srv.stop(signal.SIGTERM)
        assert srv.proc.returncode == 0


def test_worker_reload_mercy_kills_a_worker_that_does_not_stop(tmp_path):
    srv, port = _start(tmp_path, "-p", "1", "--reload-mercy", "1")
    with srv:
        t = threading.Thread(target=lambda: _swallow(lambda: get(port, "/sleep?30", timeout=40)), daemon=True)
        t.start()
        srv.wait_log(IN_FLIGHT)
        srv.signal(signal.SIGTERM)
        assert srv.proc.wait(20) == 0
        assert "is taking too much time to die...NO MERCY !!!" in srv.log()


def test_evil_reload_on_rss(tmp_path):
    srv, port = _start(tmp_path, "-p", "1", "--evil-reload-on-rss", "1")   # 1 MB: always over
    with srv:
        log = srv.wait_log("Respawned uWSGI worker 1", timeout=20)
        assert "*** EVIL RELOAD ON WORKER 1 RSS:" in log


def test_touch_reload_reloads_the_apps(tmp_path):
    touch = tmp_path / "reload.txt"
    touch.write_text("x")
    srv, port = _start(tmp_path, "-p", "1", "--touch-reload", touch)
    with srv:
        before = info(port)
        time.sleep(1.5)
        os.utime(touch, (time.time() + 5, time.time() + 5))
        srv.wait_log("has been touched... grace them all !!!")
        srv.wait_log("spawned uWSGI worker 1", count=2)
        wait_port(port)
        after = info(port)
        assert after["loaded"] != before["loaded"]
        assert after["master"] == before["master"] == str(srv.pid)


def test_no_orphans_workers_die_with_the_master(tmp_path):
    srv, port = _start(tmp_path, "-p", "2", "--no-orphans")
    with srv:
        workers = [int(p) for p in re.findall(r"spawned uWSGI worker \d \(pid: (\d+)", srv.wait_log("worker 2"))]
        os.kill(srv.pid, signal.SIGKILL)
        srv.proc.wait(10)
        assert all(_wait_dead(p, 10) for p in workers)


def test_python_m_uwsgid_entry_point_reports_bad_options(tmp_path):
    import subprocess
    import sys
    r = subprocess.run([sys.executable, "-m", "uwsgid", "--no-such-option-here"], capture_output=True, text=True,
                       cwd=ROOT, timeout=30, stdin=subprocess.DEVNULL)
    assert r.returncode == 1
    assert r.stderr.startswith("uwsgi: ")
    assert "Traceback" not in r.stderr


def test_no_socket_is_one_line_and_exit_1(tmp_path):
    srv = launch(["--master"], tmp_path / "log")
    with srv:
        assert srv.proc.wait(20) == 1
        assert "The -s/--socket option is missing" in srv.log()
        assert "Traceback" not in srv.log()


@pytest.mark.skipif(os.getuid() != 0, reason="needs root")
def test_uid_gid_drop_after_binding(tmp_path):
    import pwd
    nobody = pwd.getpwnam("nobody")
    os.chmod(tmp_path, 0o755)
    srv, port = _start(tmp_path, "--uid", "nobody", "--gid", str(nobody.pw_gid))
    with srv:
        pid = int(info(port)["pid"])
        status = Path(f"/proc/{pid}/status").read_text()
        uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
        gid_line = next(line for line in status.splitlines() if line.startswith("Gid:"))
        assert uid_line.split()[1] == str(nobody.pw_uid)
        assert gid_line.split()[1] == str(nobody.pw_gid)
        assert f"setuid() to {nobody.pw_uid}" in srv.log()


def test_bad_uid_is_one_line_and_exit_1(tmp_path):
    port = free_port()
    srv = launch(["--master", "--http-socket", f"127.0.0.1:{port}", *M1, "--uid", "no-such-user-xyz"],
                   tmp_path / "log")
    with srv:
        assert srv.proc.wait(20) == 1
        assert "unknown user no-such-user-xyz" in srv.log()


def test_logto_udp_sends_each_line_as_a_datagram():
    import socket
    import subprocess
    import sys
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.settimeout(10)
    try:
        code = ("from uwsgid.server import daemon; from uwsgid.util.log import log; "
                f"daemon.redirect_log('127.0.0.1:{rx.getsockname()[1]}'); log('hello over udp')")
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=30,
                           cwd=ROOT)
        assert r.returncode == 0, r.stderr
        assert rx.recv(65536) == b"hello over udp\n"
    finally:
        rx.close()
