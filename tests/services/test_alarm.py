"""--alarm and what raises it, against real instances: a log line matching --log-alarm runs a
cmd: alarm (the line on its stdin) once within --alarm-freq, --not-log-alarm stops the rules
after it, log: and signal: actions, --alarm-fd, --alarm-backlog on a full listen queue,
--alarm-segfault, and one clear line for a bad value (the routing's alarm: action:
tests/routing/test_routing_alarm.py)."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

from helpers import Server, free_port, http_get, run_uwsgi, wait_file

APP = '''
import sys, uwsgi, time

def on_signal(num):
    with open(%(sigfile)r, "a") as f:
        f.write("signal %%d\\n" %% num)

uwsgi.register_signal(17, "workers", on_signal)

def application(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/say":
        sys.stderr.write(environ["QUERY_STRING"].replace("+", " ") + "\\n")
        sys.stderr.flush()
    if path == "/slow":
        time.sleep(4)
    if path == "/crash":
        import os, signal
        os.kill(os.getpid(), signal.SIGSEGV)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]
'''


def _app(tmp_path: Path) -> Path:
    app = tmp_path / "app.py"
    app.write_text(APP % {"sigfile": str(tmp_path / "signals.txt")})
    return app


def _base(tmp_path, port, *extra):
    return ["--http-socket", f"127.0.0.1:{port}", "--wsgi-file", _app(tmp_path), "--processes", "1",
            "--master", *extra]


def test_log_alarm_cmd_freq_and_not_log_alarm(tmp_path):
    out = tmp_path / "alarms.txt"
    port = free_port()
    args = _base(tmp_path, port,
                 "--alarm", f"mail cmd:cat >> {out}; echo END >> {out}",
                 "--alarm", "shout log:LOOK",
                 "--not-log-alarm", "mail,shout IGNORE-ME",
                 "--log-alarm", r"mail,shout DISK-\d+ full",
                 "--alarm-freq", "30")
    with Server(args, port) as s:
        assert http_get(port, "/say?DISK-1+full")[0] == 200
        text = wait_file(out, "END")
        assert text == "DISK-1 full\nEND\n"                 # the log line, on the command's stdin
        log = s.wait_log("ALARM: LOOK DISK-1 full")
        # the same line again within --alarm-freq: nothing; another line: the alarm runs
        assert http_get(port, "/say?DISK-1+full")[0] == 200
        assert http_get(port, "/say?DISK-2+full+IGNORE-ME")[0] == 200    # negated: no alarm
        assert http_get(port, "/say?DISK-3+full")[0] == 200
        text = wait_file(out, "END", count=2)
        log = s.wait_log("ALARM: LOOK DISK-3 full")
        time.sleep(0.5)
        text = out.read_text()
        log = s.log()
    assert text == "DISK-1 full\nEND\nDISK-3 full\nEND\n", text
    # log: lines never raise alarms themselves (the rule matches them: no loop)
    assert log.count("ALARM: LOOK DISK-1 full") == 1, log
    assert log.count("ALARM: LOOK") == 2, log
    assert "IGNORE-ME" in log and "ALARM: LOOK DISK-2" not in log


def test_signal_action_and_alarm_fd(tmp_path):
    port = free_port()
    args = _base(tmp_path, port, "--honour-stdin", "--alarm", "sig signal:17", "--alarm-fd", "sig 0 stdin-ready",
                 "--alarm", "note log:", "--alarm-fd", "note 0 from-stdin")
    with Server(args, port, stdin=subprocess.PIPE) as s:
        assert http_get(port, "/")[0] == 200
        s.proc.stdin.write(b"x")
        s.proc.stdin.flush()
        wait_file(tmp_path / "signals.txt", "signal 17")
        log = s.wait_log("ALARM: from-stdin")
        assert "[uwsgi-alarm] added fd 0" in log


def test_mule_action(tmp_path):
    out = tmp_path / "mule.txt"
    mule = tmp_path / "mule.py"
    mule.write_text(f"""
import uwsgi
while True:
    msg = uwsgi.mule_get_msg()
    with open({str(out)!r}, "ab") as f:
        f.write(b"mule %d got " % uwsgi.mule_id() + msg)
""")
    port = free_port()
    args = _base(tmp_path, port, f"--mule={mule}", "--alarm", "m mule:1", "--log-alarm", r"m PING-\d+ now")
    with Server(args, port):
        assert http_get(port, "/say?PING-7+now")[0] == 200
        assert wait_file(out, "\n") == "mule 1 got PING-7 now\n"


def test_hook_alarm_action(tmp_path):
    port = free_port()
    args = _base(tmp_path, port, "--alarm", "boot log:BOOT", "--hook-post-app", "alarm:boot apps loaded",
                 "--hook-master-start", "alarm:boot master up", "--hook-asap", "alarm:boot too early")
    with Server(args, port) as s:
        log = s.wait_log("ALARM: BOOT master up")
        assert "ALARM: BOOT apps loaded" in log
        assert "hook alarm:boot too early: not raised (the alarms start with the master)" in log


def test_alarm_backlog_on_a_full_listen_queue(tmp_path):
    port = free_port()
    out = tmp_path / "backlog.txt"
    args = _base(tmp_path, port, "--listen", "1", "--alarm", f"lq cmd:cat >> {out}", "--lq-alarm", "lq")
    with Server(args, port) as s:
        busy = socket.create_connection(("127.0.0.1", port))
        busy.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")     # the only core, for 4 s
        time.sleep(0.5)
        waiting = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
        try:
            text = wait_file(out, "full !!!", timeout=15)
            log = s.wait_log("*** uWSGI listen queue of socket")
        finally:
            for c in [busy, *waiting]:
                c.close()
    assert text.startswith(f'listen queue of socket "127.0.0.1:{port}" (fd: '), text
    assert "full !!!" in log


def test_alarm_segfault(tmp_path):
    port = free_port()
    out = tmp_path / "crash.txt"
    args = _base(tmp_path, port, "--alarm", f"crash cmd:cat >> {out}", "--alarm-segfault", "crash")
    with Server(args, port):
        try:
            http_get(port, "/crash")
        except OSError:
            pass        # the worker died under the request
        text = wait_file(out, "killed by signal 11")
    assert text.startswith("DAMN ! worker 1 (pid: ") and text.endswith("trying respawn ...\n"), text


def test_bad_values_are_one_line(tmp_path):
    cases = [
        (["--alarm", "mail curl:http://x"], "unknown alarm plugin 'curl'"),
        (["--alarm", "mail"], "invalid alarm syntax"),
        (["--alarm", "x log:", "--log-alarm", "y ERR"], "no alarm named 'y'"),
        (["--log-alarm", "y ERR"], "needs an alarm"),
        (["--alarm", "x signal:300"], "signal number 0..255"),
        (["--alarm", "x mule:1"], "there are no mules"),
        (["--alarm", "x log:", "--log-alarm", "x ("], "bad regexp"),
        (["--alarm", "x log:", "--alarm-fd", "x 0 m"], "stdin is /dev/null without --honour-stdin"),
        (["--alarm-backlog", "nope"], "needs an alarm"),
    ]
    for extra, text in cases:
        r = run_uwsgi(["--http-socket", f"127.0.0.1:{free_port()}", "--wsgi-file", _app(tmp_path), *extra])
        lines = [line for line in (r.stdout + r.stderr).splitlines() if text in line]
        assert r.returncode == 1 and len(lines) == 1 and lines[0].startswith("uwsgi: "), (extra, r.stdout + r.stderr)
