"""What the start-up logs before --logto or --daemonize opens its file (the config's warnings)
is in that file too, first, as in uWSGI's log: an operator under systemd or Docker reads only
the file. Through the real ./uwsgi."""

from __future__ import annotations

import os
import signal
import time

from helpers import EXAMPLES, Server, free_port, http_get, wait_port

WARNING = "*** WARNING: ignoring unknown option no-such-knob in "


def _ini(tmp_path, port, *extra) -> str:
    ini = tmp_path / "app.ini"
    ini.write_text("\n".join(["[uwsgi]", f"http-socket = 127.0.0.1:{port}", f"wsgi-file = {EXAMPLES}/hello.py",
                              "no-such-knob = 1", *extra]) + "\n")
    return str(ini)


def _wait_for(path, text, timeout=15.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text():
            return path.read_text()
        time.sleep(0.05)
    raise AssertionError(f"{text!r} not in {path}: {path.read_text() if path.exists() else '(missing)'}")


def test_logto_file_gets_the_config_warnings_first(tmp_path):
    port, log = free_port(), tmp_path / "app.log"
    with Server([_ini(tmp_path, port, f"logto = {log}")], port):
        assert http_get(port, "/")[0] == 200
        text = _wait_for(log, "spawned uWSGI worker 1")
    lines = text.splitlines()
    warning = next(i for i, l in enumerate(lines) if l.startswith(WARNING))
    banner = next(i for i, l in enumerate(lines) if l.startswith("*** Starting uWSGI"))
    assert warning < banner
    assert sum(l.startswith(WARNING) for l in lines) == 1


def test_logto2_naming_the_same_file_writes_nothing_twice(tmp_path):
    port, log = free_port(), tmp_path / "app.log"
    with Server([_ini(tmp_path, port, f"logto = {log}", f"logto2 = {log}")], port):
        text = _wait_for(log, "spawned uWSGI worker 1")
    assert text.count(WARNING) == 1 and text.count("*** Starting uWSGI") == 1


def test_daemonize_file_gets_the_config_warnings(tmp_path):
    port, log, pidfile = free_port(), tmp_path / "daemon.log", tmp_path / "app.pid"
    launcher = Server([_ini(tmp_path, port, f"daemonize = {log}", f"pidfile = {pidfile}")], wait=False).start()
    pid = None
    try:
        assert launcher.proc.wait(20) == 0
        wait_port(port)
        pid = int(pidfile.read_text())
        text = _wait_for(log, "spawned uWSGI worker 1")
        assert text.index(WARNING) < text.index("*** Starting uWSGI")
        assert WARNING in launcher.log()           # the terminal saw it too, before detaching
    finally:
        if pid:
            os.kill(pid, signal.SIGINT)
        launcher.stop()
