"""A control signal sent right after the port opens reaches the server, also when it was
inherited as ignored (a script that runs `./uwsgi ... &` and then kills it): the dispositions
are set first thing, and what arrives while the start-up holds the signals back is delivered
to the master's or the worker's handlers. Through the real ./uwsgi."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time

import pytest
from helpers import EXAMPLES, UWSGI, free_port, wait_port

HELLO = ["--wsgi-file", str(EXAMPLES / "hello.py")]


def _start(port, sig, master: bool, log):
    def ignore():                       # as a non-interactive shell's `&` leaves SIGINT/SIGQUIT
        signal.signal(sig, signal.SIG_IGN)
    args = [str(UWSGI), "--http-socket", f"127.0.0.1:{port}", *HELLO, *(["--master"] if master else [])]
    return subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            preexec_fn=ignore, start_new_session=True)


def _kill_group(proc) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(10)


@pytest.mark.parametrize("master", [False, True], ids=["single", "master"])
@pytest.mark.parametrize("sig,tries", [(signal.SIGINT, 6), (signal.SIGTERM, 6), (signal.SIGQUIT, 2)],
                         ids=["INT", "TERM", "QUIT"])
def test_a_stop_signal_right_after_start_stops_the_server(tmp_path, sig, tries, master):
    for i in range(tries):
        port, logfile = free_port(), tmp_path / f"{i}.log"
        with open(logfile, "wb") as log:
            proc = _start(port, sig, master, log)
        try:
            wait_port(port, proc=proc)
            time.sleep(random.uniform(0, 0.15))
            proc.send_signal(sig)
            assert proc.wait(15) is not None
        except subprocess.TimeoutExpired:
            pytest.fail(f"try {i}: {sig.name} was lost; log:\n{logfile.read_text()}")
        finally:
            _kill_group(proc)


@pytest.mark.parametrize("master", [False, True], ids=["single", "master"])
def test_sighup_right_after_start_is_not_lost(tmp_path, master):
    """SIGHUP: a reload under a master (the master logs it), a graceful stop without one."""
    for i in range(2):
        port, logfile = free_port(), tmp_path / f"{i}.log"
        with open(logfile, "wb") as log:
            proc = _start(port, signal.SIGHUP, master, log)
        try:
            wait_port(port, proc=proc)
            time.sleep(random.uniform(0, 0.15))
            proc.send_signal(signal.SIGHUP)
            if master:
                deadline = time.monotonic() + 15
                while "gracefully killing workers" not in logfile.read_text() and time.monotonic() < deadline:
                    time.sleep(0.05)
                assert "gracefully killing workers" in logfile.read_text(), logfile.read_text()
            else:
                assert proc.wait(15) == 0, logfile.read_text()
        finally:
            _kill_group(proc)


def test_a_signal_before_the_bind_stops_the_start_up_with_one_line(tmp_path):
    """Reading the config (a FIFO nobody writes: the start-up waits there), before any socket is
    bound: the start-up stops, says which signal, and exits 128+N."""
    fifo = tmp_path / "app.ini"
    os.mkfifo(fifo)
    log = tmp_path / "log"
    with open(log, "wb") as f:
        proc = subprocess.Popen([str(UWSGI), "--ini", str(fifo)], stdout=f, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        time.sleep(1.0)
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(15)
    finally:
        _kill_group(proc)
    assert rc == 128 + signal.SIGTERM, log.read_text()
    assert "uwsgi: SIGTERM received while starting: stopped" in log.read_text()
