"""Acting on a running instance and exiting (uwsgid/control.py): `./uwsgi --stop/--reload/
--pause/--suspend/--resume PIDFILE` signal the master whose pid the file holds, `--signal
ADDR,NUM` raises a uwsgi signal over the instance's uwsgi socket. Against a real ./uwsgi
--master serving a Python app; every error is one line and a non-zero exit, without starting
a server."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import threading
import time

import pytest
from helpers import Server, free_port, http_get, run_uwsgi

from tests.master_helpers import read_stats

APP = '''
import os, sys, time
import uwsgi

def on_signal(num):
    sys.stderr.write("CONTROL-TEST signal %d in worker %d\\n" % (num, uwsgi.worker_id()))
    sys.stderr.flush()

uwsgi.register_signal(17, "worker", on_signal)

def application(env, start_response):
    if env["PATH_INFO"] == "/sleep":
        sys.stderr.write("CONTROL-TEST in flight\\n")
        sys.stderr.flush()
        time.sleep(float(env.get("QUERY_STRING") or 2))
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"pid=%d" % os.getpid()]
'''

# ./uwsgi warns on stderr when a plugin's source is newer than the build: not our line
_BUILD_NOTICE = "changed since it was built into"


def _output(r) -> list[str]:
    return [line for line in (r.stdout + r.stderr).splitlines() if _BUILD_NOTICE not in line]


def ctl(*args):
    """./uwsgi ARGS to completion: (exit code, its output lines)."""
    r = run_uwsgi(args, timeout=30)
    return r.returncode, _output(r)


class Instance:
    def __init__(self, tmp_path, processes: int = 1, master: bool = True):
        self.port, self.uport, self.stats = free_port(), free_port(), free_port()
        self.pidfile = tmp_path / "app.pid"
        (tmp_path / "app.py").write_text(APP)
        args = ["--http-socket", f"127.0.0.1:{self.port}", "--socket", f"127.0.0.1:{self.uport}",
                "--wsgi-file", tmp_path / "app.py", "--pidfile", self.pidfile]
        if master:
            args = ["--master", "-p", processes, "--stats", f"127.0.0.1:{self.stats}", *args]
        self.srv = Server(args, self.port, log_path=tmp_path / "server.log")
        self.processes = processes
        self.master = master

    def __enter__(self):
        self.srv.start()
        # the master handles signals from before it forks the workers
        self.srv.wait_log(f"spawned uWSGI worker {self.processes} " if self.master else "(and the only)")
        return self

    def statuses(self) -> list[str]:
        return [w["status"] for w in json.loads(read_stats(self.stats))["workers"]]

    def __exit__(self, *exc):
        self.srv.stop()

    def get(self, path="/", timeout=20.0):
        status, _, body = http_get(self.port, path, timeout=timeout)
        return status, body.decode()

    def worker_pid(self) -> int:
        status, body = self.get()
        assert status == 200, body
        return int(body.split("=")[1])


def _wait(fn, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(0.1)
    return fn()


def test_reload_through_the_pidfile(tmp_path):
    with Instance(tmp_path) as inst:
        before = inst.worker_pid()
        assert inst.pidfile.read_text().strip() == str(inst.srv.pid)
        rc, out = ctl("--reload", inst.pidfile)
        assert (rc, out) == (0, [])                     # silent, as uWSGI's
        log = inst.srv.wait_log("binary reloading uWSGI...")
        assert "...gracefully killing workers..." in log
        inst.srv.wait_log("spawned uWSGI worker 1 ", count=2)
        after = _wait(lambda: (pid := inst.worker_pid()) != before and pid)
        assert after and after != before, "no new worker after --reload"
        assert inst.srv.proc.poll() is None                     # the master stayed (re-exec'd)
        assert inst.pidfile.read_text().strip() == str(inst.srv.pid)


def test_stop_is_graceful(tmp_path):
    with Instance(tmp_path) as inst:
        result = {}
        t = threading.Thread(target=lambda: result.update(r=inst.get("/sleep?2", timeout=30)))
        t.start()
        inst.srv.wait_log("CONTROL-TEST in flight")
        rc, out = ctl("--stop", inst.pidfile)
        assert (rc, out) == (0, [])
        t.join(30)
        assert result.get("r", (None,))[0] == 200, result       # the request in flight finished
        assert inst.srv.proc.wait(30) == 0
        log = inst.srv.log()
        assert "SIGTERM received: gracefully stopping uWSGI" in log and "goodbye to uWSGI." in log


def _send_request(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    return s


def _no_answer(s: socket.socket, secs: float = 1.5) -> bool:
    s.settimeout(secs)
    try:
        s.recv(100)
    except TimeoutError:
        return True
    return False


def _answer(s: socket.socket) -> bytes:
    s.settimeout(20)
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    s.close()
    return data


@pytest.mark.parametrize("pause", ["--pause", "--suspend"])
def test_pause_stops_accepting_and_resume_serves_what_waited(tmp_path, pause):
    with Instance(tmp_path, processes=2) as inst:
        assert inst.get()[0] == 200
        result = {}
        t = threading.Thread(target=lambda: result.update(r=inst.get("/sleep?1.5", timeout=30)))
        t.start()
        inst.srv.wait_log("CONTROL-TEST in flight")
        assert ctl(pause, inst.pidfile) == (0, [])
        inst.srv.wait_log("*** PAUSE (press start to resume, if you do not have a joypad send SIGTSTP) ***")
        inst.srv.wait_log("*** worker 1 suspended ***")
        log = inst.srv.wait_log("*** worker 2 suspended ***")
        t.join(30)
        assert result.get("r", (None,))[0] == 200, result       # what was in progress finished
        waiting = _send_request(inst.port)
        assert _no_answer(waiting), "a paused instance answered a new connection"
        assert inst.statuses() == ["pause", "pause"]              # uWSGI's stats say so too

        # a worker respawned while paused starts paused
        wpid = int(re.search(r"spawned uWSGI worker 1 \(pid: (\d+)", log).group(1))
        os.kill(wpid, 9)
        inst.srv.wait_log("*** worker 1 suspended ***", count=2)
        assert _no_answer(waiting, 1.0)

        assert ctl("--resume", inst.pidfile) == (0, [])
        inst.srv.wait_log("*** (SIGTSTP received) resuming workers ***")
        assert _answer(waiting).startswith(b"HTTP/1.1 200 OK")   # the connection waited in the backlog
        assert inst.get()[0] == 200
        assert inst.srv.proc.poll() is None
        assert inst.statuses() == ["idle", "idle"]


def test_pause_without_a_master_toggles_the_single_process(tmp_path):
    with Instance(tmp_path, master=False) as inst:
        assert inst.get()[0] == 200
        assert ctl("--pause", inst.pidfile) == (0, [])
        inst.srv.wait_log("*** worker 1 suspended ***")
        waiting = _send_request(inst.port)
        assert _no_answer(waiting)
        assert ctl("--resume", inst.pidfile) == (0, [])
        inst.srv.wait_log("*** worker 1 resumed ***")
        assert _answer(waiting).startswith(b"HTTP/1.1 200 OK")
        assert inst.srv.proc.poll() is None


def test_signal_reaches_a_registered_handler(tmp_path):
    with Instance(tmp_path) as inst:
        node = f"127.0.0.1:{inst.uport}"
        rc, out = ctl("--signal", f"{node},17")
        assert (rc, out) == (0, [f"signal 17 delivered to node {node}"])
        inst.srv.wait_log("CONTROL-TEST signal 17 in worker 1")
        rc, out = ctl("--signal", f"{node},18")                  # no handler for 18 there
        assert (rc, out) == (2, [f"uwsgi: node {node} rejected signal 18 (no handler registered for it there)"])


def _one_line(rc, out, code, *words):
    assert rc == code, (rc, out)
    assert len(out) == 1 and out[0].startswith("uwsgi: "), out
    for w in words:
        assert w in out[0], (w, out)
    assert "Starting uWSGI" not in out[0]


@pytest.mark.parametrize("action", ["--stop", "--reload", "--pause", "--suspend", "--resume"])
def test_pidfile_errors_are_one_line(tmp_path, action):
    missing = tmp_path / "missing.pid"
    _one_line(*ctl(action, missing), 1, f"{action} {missing}", "cannot read the pidfile", "No such file or directory")
    _one_line(*ctl(action, tmp_path), 1, "cannot read the pidfile", "Is a directory")
    for content, shown in [("", "nothing"), ("garbage\n", "'garbage'"), ("0\n", "'0'"), ("-1\n", "'-1'"),
                           ("12ab\n", "'12ab'")]:
        bad = tmp_path / "bad.pid"
        bad.write_text(content)
        _one_line(*ctl(action, bad), 255, f"{action} {bad}: invalid pidfile: it holds {shown}, not a process id")


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rpartition(")")[2].split()[0]


def test_a_pid_that_is_not_running(tmp_path):
    pidfile = tmp_path / "stale.pid"
    gone = subprocess.Popen(["true"])
    gone.wait()                             # exited and reaped
    pidfile.write_text(f"{gone.pid}\n")
    _one_line(*ctl("--stop", pidfile), 255, f"no process {gone.pid}", "not running")

    zombie = subprocess.Popen(["true"])     # exited, not yet reaped: kill() would still succeed
    try:
        assert _wait(lambda: _state(zombie.pid) == "Z")
        pidfile.write_text(f"{zombie.pid}\n")
        _one_line(*ctl("--reload", pidfile), 255, f"no process {zombie.pid}", "not running")
    finally:
        zombie.wait()


@pytest.mark.parametrize("value, code, words", [
    ("127.0.0.1:3031", 1, ["expected ADDR,NUM"]),
    ("127.0.0.1:3031,x", 3, ["invalid signal number 'x' (0-255)"]),
    ("127.0.0.1:3031,256", 3, ["invalid signal number '256'"]),
    ("127.0.0.1:3031,-1", 3, ["invalid signal number '-1'"]),
    ("nohost,3", 1, ["invalid address 'nohost'"]),
    (",3", 1, ["expected ADDR,NUM"]),
])
def test_signal_errors_are_one_line(value, code, words):
    _one_line(*ctl("--signal", value), code, f"--signal {value}", *words)


def test_signal_to_nothing_listening():
    node = f"127.0.0.1:{free_port()}"
    _one_line(*ctl("--signal", f"{node},17"), 1, f"unable to deliver signal 17 to node {node}")


def test_the_actions_are_in_the_help():
    r = run_uwsgi(["--help"])
    for name in ("--stop PIDFILE", "--reload PIDFILE", "--pause PIDFILE", "--suspend PIDFILE",
                 "--resume PIDFILE", "--signal ADDR,NUM"):
        assert name in r.stdout
