"""--master-fifo against real processes: uWSGI's command letters (core/fifo.c), the FIFO made at
start, remade after each writer and after a reload, several FIFOs (0-9), --vacuum. The server is
uwsgid.main with the test plugin (tests/master_helpers.py)."""

from __future__ import annotations

import os
import signal
import stat
import threading
import time

import pytest
from helpers import free_port

from tests.master_helpers import IN_FLIGHT, MODIFIER1, get, info, launch

M1 = ["--http-socket-modifier1", MODIFIER1]


def _start(tmp_path, *args, name="server.log", logged=True):
    port = free_port()
    fifo = tmp_path / "master.fifo"
    srv = launch(["--master", "--http-socket", f"127.0.0.1:{port}", *M1, "--master-fifo", fifo, *map(str, args)],
                 tmp_path / name)
    srv.wait_port(port)
    if logged:
        srv.wait_log("spawned uWSGI worker 1")
    return srv, port, fifo


def _send(fifo, text: str, timeout: float = 10.0) -> None:
    """Write to the FIFO once the master reads it (it is remade after each writer)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            break
        except OSError:     # not there yet, or no reader yet (ENXIO)
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def test_fifo_made_at_start_and_q_stops_gracefully(tmp_path):
    srv, port, fifo = _start(tmp_path)
    with srv:
        assert stat.S_ISFIFO(os.stat(fifo).st_mode)
        result = []
        t = threading.Thread(target=lambda: result.append(get(port, "/sleep?2", timeout=30)))
        t.start()
        srv.wait_log(IN_FLIGHT)
        _send(fifo, "q\n")
        t.join(30)
        assert result == [(200, b"slept 2")]
        assert srv.proc.wait(30) == 0
        assert "graceful shutdown triggered..." in srv.log()
    assert os.path.exists(fifo)         # no --vacuum: left in place, as uWSGI does


def test_Q_stops_brutally_and_vacuum_removes_the_fifo(tmp_path):
    srv, port, fifo = _start(tmp_path, "--vacuum")
    with srv:
        result = []

        def slow():
            try:
                result.append(get(port, "/sleep?5", timeout=30))
            except Exception as e:
                result.append(e)
        t = threading.Thread(target=slow)
        t.start()
        srv.wait_log(IN_FLIGHT)
        _send(fifo, "Q")
        t.join(30)
        assert isinstance(result[0], Exception)
        srv.proc.wait(30)
        assert f"VACUUM: master fifo {fifo} removed." in srv.log()
    assert not os.path.exists(fifo)


def test_r_reloads_and_the_fifo_survives_it(tmp_path):
    srv, port, fifo = _start(tmp_path)
    with srv:
        before = info(port)
        _send(fifo, "r")
        srv.wait_log("binary reloading uWSGI...")
        srv.wait_log("spawned uWSGI worker 1", count=2)
        after = info(port)
        assert after["master"] == before["master"] == str(srv.pid)
        assert after["loaded"] != before["loaded"]          # the apps were loaded again
        _send(fifo, "s")                                   # the new master made the FIFO again
        srv.wait_log("workers total requests")
        _send(fifo, "q")
        assert srv.proc.wait(30) == 0


def test_w_and_W_reload_the_workers_only(tmp_path):
    srv, port, fifo = _start(tmp_path, "-p", "2")
    with srv:
        srv.wait_log("spawned uWSGI worker 2")
        _send(fifo, "w")
        srv.wait_log("Respawned uWSGI worker 1")
        srv.wait_log("Respawned uWSGI worker 2")
        _send(fifo, "W")
        log = srv.wait_log("Respawned uWSGI worker 2", count=2)
        assert "killing worker 1 (pid:" in log
        assert "binary reloading" not in log
        assert get(port) == (200, b"hello")


def test_p_pauses_and_resumes(tmp_path):
    srv, port, fifo = _start(tmp_path)
    with srv:
        _send(fifo, "p")
        srv.wait_log("*** worker 1 suspended ***")
        with pytest.raises(Exception):
            get(port, timeout=1.5)
        _send(fifo, "p")
        srv.wait_log("*** worker 1 resumed ***")
        assert get(port) == (200, b"hello")


def test_several_fifos_digits_switch_the_active_one(tmp_path):
    second = tmp_path / "second.fifo"
    srv, port, fifo = _start(tmp_path, "--master-fifo", second)
    with srv:
        assert not os.path.exists(second)        # only the active one is made
        _send(fifo, "1")
        srv.wait_log(f"active master fifo is now {second}")
        _send(second, "s")
        srv.wait_log("workers total requests")


def test_unknown_and_refused_letters_are_logged(tmp_path):
    srv, port, fifo = _start(tmp_path)
    with srv:
        _send(fifo, "xEf")
        log = srv.wait_log("master fifo command f (re-fork the master): not supported")
        assert "unknown master fifo command 'x'" in log
        assert "master fifo command E (make the Emperor rescan): there is no Emperor here" in log
        assert get(port) == (200, b"hello")


def test_c_chain_reloads_one_worker_after_the_other(tmp_path):
    srv, port, fifo = _start(tmp_path, "-p", "2")
    with srv:
        srv.wait_log("spawned uWSGI worker 2")
        _send(fifo, "c")
        log = srv.wait_log("chain reloading complete")
        assert log.index("chain next victim is worker 1") < log.index("Respawned uWSGI worker 1") \
            < log.index("chain next victim is worker 2") < log.index("Respawned uWSGI worker 2")
        assert get(port) == (200, b"hello")


def test_c_chain_waits_for_a_worker_still_starting(tmp_path):
    """A worker not accepting yet is waited for, not skipped (it would keep the old code)."""
    port = free_port()
    fifo = tmp_path / "master.fifo"
    srv = launch(["--master", "--http-socket", f"127.0.0.1:{port}", *M1, "--master-fifo", fifo, "-p", "2"],
                 tmp_path / "server.log", env={"MASTERTEST_POSTFORK_SLEEP": "2"})
    with srv:
        srv.wait_log("spawned uWSGI worker 2")
        _send(fifo, "c")            # both workers are still in post_fork
        log = srv.wait_log("chain reloading complete", timeout=60)
        assert "chain is still waiting for worker 1" in log
        assert log.index("chain next victim is worker 1") < log.index("Respawned uWSGI worker 1") \
            < log.index("chain next victim is worker 2") < log.index("Respawned uWSGI worker 2")
        assert get(port) == (200, b"hello")


def test_C_goes_cheap_until_the_next_connection(tmp_path):
    srv, port, fifo = _start(tmp_path, "-p", "2")
    with srv:
        srv.wait_log("spawned uWSGI worker 2")
        old = info(port)["pid"]
        _send(fifo, "C")
        srv.wait_log("cheap mode enabled: waiting for socket connection...")
        time.sleep(1.5)
        assert "Respawned uWSGI worker" not in srv.log()
        assert get(port) == (200, b"hello")      # the connection brings the workers back
        assert info(port)["pid"] != old


def test_plus_and_minus_with_cheaper(tmp_path):
    srv, port, fifo = _start(tmp_path, "-p", "3", "--cheaper", "1", "--cheaper-overload", "30")
    with srv:
        _send(fifo, "+")
        srv.wait_log("spawned uWSGI worker 2")
        _send(fifo, "-")
        srv.wait_log("uWSGI worker 1 cheaped.")


def test_P_rewrites_the_pidfile(tmp_path):
    pidfile = tmp_path / "uwsgi.pid"
    srv, port, fifo = _start(tmp_path, "--pidfile", pidfile)
    with srv:
        pidfile.unlink()
        _send(fifo, "P")
        deadline = time.monotonic() + 10
        # opened, then written (as uWSGI writes it): wait for its text, not just the file
        while not (pidfile.exists() and pidfile.read_text().strip()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert pidfile.read_text().strip() == str(srv.pid)


def test_l_reopens_the_log_file(tmp_path):
    logfile = tmp_path / "file.log"
    srv, port, fifo = _start(tmp_path, "--logto", logfile, logged=False)
    with srv:
        deadline = time.monotonic() + 20
        while "spawned uWSGI worker 1" not in (logfile.read_text() if logfile.exists() else ""):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        os.rename(logfile, tmp_path / "old.log")
        _send(fifo, "l")
        _send(fifo, "s")
        while "workers total requests" not in (logfile.read_text() if logfile.exists() else ""):
            assert time.monotonic() < deadline, (tmp_path / "old.log").read_text()
            time.sleep(0.05)


def test_the_fifo_never_blocks_the_master(tmp_path):
    srv, port, fifo = _start(tmp_path)
    with srv:
        # a writer that opens and says nothing, then goes: the master goes on serving
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        assert get(port) == (200, b"hello")
        os.close(fd)
        _send(fifo, "s")
        srv.wait_log("workers total requests")
        assert srv.stop(signal.SIGTERM) == 0


def test_R_reloads_brutally(tmp_path):
    srv, port, fifo = _start(tmp_path)
    with srv:
        result = []

        def slow():
            try:
                result.append(get(port, "/sleep?10", timeout=30))
            except Exception as e:
                result.append(e)
        t = threading.Thread(target=slow)
        t.start()
        srv.wait_log(IN_FLIGHT)
        _send(fifo, "R")
        t.join(30)
        assert isinstance(result[0], Exception)         # cut, not finished
        log = srv.wait_log("spawned uWSGI worker 1", count=2)
        assert "...brutally killing workers..." in log and "binary reloading uWSGI..." in log
        assert get(port) == (200, b"hello")


def test_L_rotates_the_log_file(tmp_path):
    logfile = tmp_path / "file.log"
    srv, port, fifo = _start(tmp_path, "--logto", logfile, logged=False)
    with srv:
        deadline = time.monotonic() + 20
        while "spawned uWSGI worker 1" not in (logfile.read_text() if logfile.exists() else ""):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        _send(fifo, "L")
        while not [p for p in tmp_path.iterdir() if p.name.startswith("file.log.")]:
            assert time.monotonic() < deadline, os.listdir(tmp_path)
            time.sleep(0.05)
        rotated = [p for p in tmp_path.iterdir() if p.name.startswith("file.log.")][0]
        assert "spawned uWSGI worker 1" in rotated.read_text()


def test_a_fifo_that_cannot_be_made_stops_the_start(tmp_path):
    port = free_port()
    srv = launch(["--http-socket", f"127.0.0.1:{port}", *M1, "--master-fifo", tmp_path / "missing" / "f"],
                 tmp_path / "server.log")
    with srv:
        assert srv.proc.wait(30) == 1
        log = srv.log()
        assert f"--master-fifo {tmp_path / 'missing' / 'f'}: No such file or directory" in log
        assert "spawned uWSGI master process" in log      # --master-fifo turned the master on
