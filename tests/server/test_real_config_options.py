"""uWSGI options that real configs use (tests/data/real-configs), against real processes:
--umask, --reaper, --reload-on-as / --evil-reload-on-as, --ignore-write-errors,
--touch-workers-reload, --harakiri-graceful-timeout / -signal. The master/lifetime ones run
uwsgid.main with the test plugin (tests/master_helpers.py); the app-facing ones ./uwsgi with a
WSGI app."""

from __future__ import annotations

import os
import re
import socket
import stat
import threading
import time

import pytest
from helpers import UWSGI, Server, free_port, http_get, run_uwsgi

from tests.master_helpers import IN_FLIGHT, MODIFIER1, get, info, launch

needs_binary = pytest.mark.skipif(not UWSGI.exists(), reason="needs the ./uwsgi executable")

APP = '''\
import os, time


def _state(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def application(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/fork":
        # a child the app never waits for: a zombie once it exits (unless something reaps it)
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        deadline = time.monotonic() + 10
        while _state(pid) != "Z" and time.monotonic() < deadline:
            time.sleep(0.01)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [str(pid).encode()]
    if path == "/umask":
        mask = os.umask(0)
        os.umask(mask)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"%03o" % mask]
    if path == "/stream":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return (b"x" * 65536 for _ in range(4000))
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]
'''


def _serve(tmp_path, *args, name="server.log"):
    (tmp_path / "app.py").write_text(APP)
    port = free_port()
    argv = ["--http-socket", f"127.0.0.1:{port}", "--wsgi-file", tmp_path / "app.py", *args]
    return Server(argv, port, cwd=tmp_path, log_path=tmp_path / name), port


def _proc_state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def _umask_of(pid: int) -> str:
    with open(f"/proc/{pid}/status") as f:
        return re.search(r"^Umask:\s*(\d+)", f.read(), re.M).group(1)


# ---- --umask -------------------------------------------------------------------------------

@needs_binary
def test_umask_applies_to_the_processes_and_the_sockets_they_make(tmp_path):
    sock = tmp_path / "app.sock"
    srv, port = _serve(tmp_path, "--master", "--umask", "027", "--socket", sock)
    with srv:
        assert http_get(port, "/umask")[2] == b"027"      # the worker (forked from the master)
        assert _umask_of(srv.pid) == "0027"                  # the master
        assert stat.S_IMODE(os.stat(sock).st_mode) == 0o750  # bound after the umask was set


@needs_binary
def test_umask_four_digits_and_bad_values(tmp_path):
    srv, port = _serve(tmp_path, "--umask", "0002")
    with srv:
        assert http_get(port, "/umask")[2] == b"002"
    for bad in ("27", "0o22", "999", "u=rwx"):
        r = run_uwsgi(["--http-socket", "127.0.0.1:0", "--umask", bad])
        assert r.returncode == 1
        assert f"uwsgi: --umask {bad}: expected an octal mode of 3 or 4 digits" in r.stderr + r.stdout


# ---- --reaper ------------------------------------------------------------------------------

@needs_binary
@pytest.mark.parametrize("reaper", [True, False])
def test_reaper_collects_the_zombies_an_app_leaves(tmp_path, reaper):
    srv, port = _serve(tmp_path, "--master", *(["--reaper"] if reaper else []))
    with srv:
        status, _, body = http_get(port, "/fork")
        child = int(body)
        assert status == 200
        if reaper:     # reaped right after the request
            deadline = time.monotonic() + 10
            while _proc_state(child) != "gone" and time.monotonic() < deadline:
                time.sleep(0.05)
            assert _proc_state(child) == "gone"
        else:          # the control: nothing else reaps it
            assert http_get(port, "/")[0] == 200
            time.sleep(0.5)
            assert _proc_state(child) == "Z"


@needs_binary
def test_reaper_short_option_in_a_config(tmp_path):
    (tmp_path / "app.py").write_text(APP)
    port = free_port()
    ini = tmp_path / "r.ini"
    ini.write_text(f"[uwsgi]\nstrict = true\nhttp-socket = 127.0.0.1:{port}\nwsgi-file = {tmp_path / 'app.py'}\n"
                   "reaper = 1\n")
    with Server(["--ini", ini], port, cwd=tmp_path, log_path=tmp_path / "server.log") as srv:
        child = int(http_get(port, "/fork")[2])
        deadline = time.monotonic() + 10
        while _proc_state(child) != "gone" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _proc_state(child) == "gone"
        assert "not supported" not in srv.log()
    r = run_uwsgi(["-r", "--http-socket", "127.0.0.1:0", "--help"])
    assert r.returncode == 0


# ---- --ignore-write-errors -------------------------------------------------------------------

def _abandon_stream(port: int) -> None:
    """Read the head of /stream, then close: the rest of the response fails to go out."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
        assert s.recv(4096).startswith(b"HTTP/1.1 200")
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")   # RST


@needs_binary
@pytest.mark.parametrize("ignore", [True, False])
def test_ignore_write_errors_silences_the_gone_client(tmp_path, ignore):
    srv, port = _serve(tmp_path, *(["--ignore-write-errors"] if ignore else []))
    with srv:
        _abandon_stream(port)
        log = srv.wait_log("GET /stream =>")          # the request ended and was logged
        assert http_get(port, "/")[0] == 200
        gone = "went away during the response to GET /stream" in log
        assert gone is not ignore, log


# ---- --reload-on-as / --evil-reload-on-as ------------------------------------------------------

def _start(tmp_path, *args, name="server.log"):
    port = free_port()
    srv = launch(["--master", "--http-socket", f"127.0.0.1:{port}", "--http-socket-modifier1", MODIFIER1,
                  *map(str, args)], tmp_path / name)
    srv.wait_port(port)
    return srv, port


def test_reload_on_as_recycles_after_the_request(tmp_path):
    srv, port = _start(tmp_path, "--reload-on-as", "1", "--min-worker-lifetime", "0")
    with srv:
        first = int(info(port)["pid"])
        log = srv.wait_log("Respawned uWSGI worker 1")
        assert re.search(rf"worker 1 \(pid: {first}\) address space \d+MB over --reload-on-as 1MB: "
                         r"reloading gracefully", log)
        assert "DAMN" not in log
        assert int(info(port)["pid"]) != first


def test_reload_on_as_waits_for_min_worker_lifetime(tmp_path):
    srv, port = _start(tmp_path, "--reload-on-as", "1", "--min-worker-lifetime", "60")
    with srv:
        first = int(info(port)["pid"])
        assert get(port) == (200, b"hello")
        assert int(info(port)["pid"]) == first
        assert "--reload-on-as" not in srv.log()


def test_evil_reload_on_as_kills_the_worker(tmp_path):
    srv, port = _start(tmp_path, "--evil-reload-on-as", "1")
    with srv:
        log = srv.wait_log("Respawned uWSGI worker 1")
        assert re.search(r"\*\*\* EVIL RELOAD ON WORKER 1 ADDRESS SPACE: \d+ \(pid: \d+\) \*\*\*", log)
    # a limit the worker is far from: nothing happens
    srv, port = _start(tmp_path, "--evil-reload-on-as", "1000000", name="big.log")
    with srv:
        first = int(info(port)["pid"])
        time.sleep(2.5)
        assert int(info(port)["pid"]) == first and "EVIL" not in srv.log()


def test_evil_reload_on_as_turns_the_master_on(tmp_path):
    port = free_port()
    srv = launch(["--http-socket", f"127.0.0.1:{port}", "--http-socket-modifier1", MODIFIER1,
                  "--evil-reload-on-as", "1000000"], tmp_path / "server.log")
    with srv:
        srv.wait_port(port)
        assert int(info(port)["master"]) == srv.pid


# ---- --touch-workers-reload ------------------------------------------------------------------

def test_touch_workers_reload_reloads_only_the_workers(tmp_path):
    trigger = tmp_path / "reload-workers"
    trigger.write_text("")
    srv, port = _start(tmp_path, "-p", "2", "--touch-workers-reload", trigger)
    with srv:
        before = info(port)
        srv.wait_log("spawned uWSGI worker 2")
        time.sleep(1.2)                        # the master has seen the file once
        os.utime(trigger, (time.time() + 5, time.time() + 5))
        log = srv.wait_log(f"*** {trigger} has been touched... workers reload !!! ***")
        log = srv.wait_log("Respawned uWSGI worker", count=2)
        assert "grace them all" not in log and "re-exec" not in log.lower()
        after = info(port)
        assert after["master"] == before["master"] == str(srv.pid)
        assert after["pid"] != before["pid"]
        assert after["loaded"] == before["loaded"]    # the apps were not reloaded (not lazy)


def test_touch_workers_reload_notices_a_file_created_later(tmp_path):
    trigger = tmp_path / "later"
    srv, port = _start(tmp_path, "--touch-workers-reload", trigger)
    with srv:
        first = info(port)["pid"]
        time.sleep(1.2)
        trigger.write_text("")
        srv.wait_log("has been touched... workers reload !!!")
        srv.wait_log("Respawned uWSGI worker 1")
        assert info(port)["pid"] != first


# ---- --harakiri-graceful-timeout / --harakiri-graceful-signal ------------------------------------

def test_graceful_harakiri_signals_first_then_kills(tmp_path):
    srv, port = _start(tmp_path, "--harakiri", "1", "--harakiri-graceful-timeout", "2")
    with srv:
        old = int(info(port)["pid"])
        with pytest.raises(Exception):
            get(port, "/sleep?60", timeout=30)
        log = srv.wait_log("Respawned uWSGI worker 1")
        assert f"*** HARAKIRI ON WORKER 1 (pid: {old}, try: 1, graceful: yes) ***" in log
        assert "HARAKIRI: graceful termination attempt on worker 1 with signal 15" in log
        assert f"*** HARAKIRI ON WORKER 1 (pid: {old}, try: 2, graceful: no) ***" in log
        assert f"worker 1 (pid: {old}) died, killed by signal 9" in log
        assert log.index("graceful termination attempt") < log.index("try: 2")


def test_graceful_harakiri_lets_a_request_that_ends_in_time_finish(tmp_path):
    """SIGTERM is the worker's graceful stop: the request in progress ends, then the worker
    exits by itself; no SIGKILL follows."""
    srv, port = _start(tmp_path, "--harakiri", "1", "--harakiri-graceful-timeout", "30")
    with srv:
        result = []
        t = threading.Thread(target=lambda: result.append(get(port, "/sleep?4", timeout=40)))
        t.start()
        srv.wait_log(IN_FLIGHT)
        srv.wait_log("graceful termination attempt on worker 1 with signal 15")
        t.join(40)
        assert result == [(200, b"slept 4")]
        log = srv.wait_log("Respawned uWSGI worker 1")
        assert "try: 2" not in log and "killed by signal 9" not in log


def test_graceful_harakiri_signal_is_configurable(tmp_path):
    srv, port = _start(tmp_path, "--harakiri", "1", "--harakiri-graceful-timeout", "20",
                       "--harakiri-graceful-signal", "12")         # SIGUSR2: ends a worker at once
    with srv:
        with pytest.raises(Exception):
            get(port, "/sleep?60", timeout=30)
        log = srv.wait_log("Respawned uWSGI worker 1")
        assert "graceful termination attempt on worker 1 with signal 12" in log
        assert "killed by signal 12" in log and "try: 2" not in log


@pytest.mark.parametrize("args, message", [
    (["--harakiri-graceful-signal", "0"], "--harakiri-graceful-signal 0: not a signal number"),
    (["--harakiri-graceful-signal", "999"], "--harakiri-graceful-signal 999: not a signal number"),
    (["--harakiri-graceful-timeout", "-1"], "--harakiri-graceful-timeout -1: must be 0 or more"),
])
def test_graceful_harakiri_bad_values(tmp_path, args, message):
    srv = launch(["--master", "--http-socket", "127.0.0.1:0", "--harakiri", "5", *args], tmp_path / "bad.log")
    with srv:
        assert srv.proc.wait(30) == 1
        assert f"uwsgi: {message}" in srv.log()
