"""The spooler in real processes: tasks spooled by apps (PyPI's uwsgidecorators unmodified; Lua;
both runtimes in one instance) run once in the spooler process and their files go; retries,
errors, `at`, priorities, two processes on one dir, recycling, harakiri, the signal target,
the stats; and nothing in the spool dir is lost when the spooler is killed mid-task or the
instance is reloaded or stopped."""

from __future__ import annotations

import json
import os
import signal
import socket
import time

import pytest
from helpers import ROOT, free_port, uwsgi_http_get
from services_helpers import instance

DATA = ROOT / "tests" / "data" / "spool"
PY, LUA = 0, 6


def _wait_for(fn, timeout=30.0, interval=0.1):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    return last


class Spooled:
    """A server with a spool dir and a records file its tasks append to."""

    def __init__(self, tmp_path, args, app="app_decorators.py", lua=None, frequency=1):
        self.dir = tmp_path / "spool"
        self.records = tmp_path / "records"
        self.port = free_port()
        self.stats_port = free_port()
        full = ["--master", "-p", "1", "--socket", f"127.0.0.1:{self.port}", "--stats", f"127.0.0.1:{self.stats_port}",
                "--spooler", str(self.dir), "--spooler-frequency", str(frequency), *args]
        if app:
            full += ["--wsgi-file", str(DATA / app)]
        if lua:
            full += ["--lua", str(DATA / lua)]
        self.server = instance(full, self.port, tmp_path / "server.log", env={"SPOOL_RECORDS": str(self.records)})

    def __enter__(self):
        self.server.__enter__()
        self.server.wait_log("spawned the uWSGI spooler on dir")
        return self

    def __exit__(self, *exc):
        self.server.__exit__(*exc)

    def get(self, path, modifier1=PY):
        status, body = uwsgi_http_get(self.port, path, modifier1)
        assert status == 200, (status, body, self.server.log()[-3000:])
        return body

    def lines(self, prefix=""):
        try:
            return [line for line in self.records.read_text().splitlines() if line.startswith(prefix)]
        except FileNotFoundError:
            return []

    def wait_lines(self, prefix, count=1, timeout=30.0):
        got = _wait_for(lambda: len(self.lines(prefix)) >= count, timeout)
        assert got, f"{prefix!r} x{count} not recorded: {self.lines()}\n{self.server.log()[-4000:]}"
        return self.lines(prefix)

    def tasks(self):
        return sorted(str(p.relative_to(self.dir)) for p in self.dir.rglob("uwsgi_spoolfile_on_*"))

    def stats(self):
        with socket.create_connection(("127.0.0.1", self.stats_port), timeout=10) as s:
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        return json.loads(data)

    def spooler_pid(self):
        return int(self.get("/pid"))


@pytest.fixture(scope="module")
def decorated(tmp_path_factory):
    with Spooled(tmp_path_factory.mktemp("spooler"), ["--spooler-ordered"]) as s:
        yield s


def test_spool_runs_once_in_the_spooler_and_the_file_goes(decorated):
    s = decorated
    path = s.get("/spool?fn=ok&id=once")
    assert path.startswith(str(s.dir.resolve()).encode() + b"/uwsgi_spoolfile_on_")
    line = s.wait_lines("ok:once:")[0]
    assert int(line.split(":")[2]) == s.spooler_pid()
    assert _wait_for(lambda: not os.path.exists(path), 10)
    log = s.server.wait_log("done with task")
    assert f"managing request {os.path.basename(path.decode())} ..." in log
    time.sleep(2.5)                     # two more scans: it does not run again
    assert len(s.lines("ok:once:")) == 1
    # pass_arguments=True: pickled args and kwargs
    s.get("/spool_args?id=a1")
    assert s.wait_lines("args:a1:")[0].endswith(":6:on")


def test_retry_error_and_forever(decorated):
    s = decorated
    s.get("/spool?fn=raw&kind=retry&id=r1")
    s.get("/spool?fn=raw&kind=raise&id=e1")
    s.get("/spool?fn=forever&id=f1")
    assert len(s.wait_lines("retry:r1:", 3)) == 3
    assert len(s.wait_lines("raise:e1:", 2)) == 2
    log = s.server.wait_log("RuntimeError: boom e1")
    assert "Traceback (most recent call last)" in log
    # @spoolforever: SPOOL_RETRY every time, its file stays
    assert len(s.wait_lines("forever:f1:", 3)) >= 3
    assert len(s.tasks()) >= 1
    time.sleep(2)
    assert len(s.lines("retry:r1:")) == 3 and len(s.lines("raise:e1:")) == 2


def test_at_defers_a_task(decorated):
    s = decorated
    at = int(time.time()) + 3
    s.get(f"/spool?fn=raw&kind=ok&id=later&at={at}")
    time.sleep(1.5)
    assert s.lines("ok:later:") == []
    s.wait_lines("ok:later:", timeout=20)
    assert time.time() >= at


def test_priority_order_with_spooler_ordered(decorated):
    s = decorated
    s.get("/spool?fn=raw&kind=sleep&secs=1.5&id=busy")
    s.wait_lines("sleep:busy:")
    for prio in ("5", "1", "3"):
        s.get(f"/spool?fn=raw&kind=p&id={prio}&priority={prio}")
    s.wait_lines("p:", 3)
    assert [line.split(":")[1] for line in s.lines("p:")] == ["1", "3", "5"]


def test_signal_target_spooler_and_stats(decorated):
    s = decorated
    s.get("/signal?n=17")
    line = s.wait_lines("signal:17:")[0]
    assert line.split(":")[2:] == [str(s.spooler_pid()), "True"]
    spoolers = s.stats()["spoolers"]
    assert len(spoolers) == 1 and spoolers[0]["dir"] == str(s.dir.resolve())
    assert spoolers[0]["pid"] == s.spooler_pid() and spoolers[0]["tasks"] >= 1
    assert set(spoolers[0]) == {"dir", "pid", "tasks", "respawns", "running"}


def test_sigkill_of_the_spooler_mid_task_loses_nothing(decorated):
    s = decorated
    s.get("/spool?fn=raw&kind=sleep&secs=2&id=killed")
    s.wait_lines("sleep:killed:")
    pid = s.spooler_pid()
    os.kill(pid, signal.SIGKILL)
    s.server.wait_log("OOOPS the spooler is no more...trying respawn...")
    assert _wait_for(lambda: s.spooler_pid() not in (0, pid))
    s.wait_lines("slept:killed:", timeout=30)
    assert len(s.lines("sleep:killed:")) == 2         # cut short once, run again in full
    assert s.stats()["spoolers"][0]["respawns"] >= 1


def test_two_processes_share_a_dir_and_recycle(tmp_path):
    touch = tmp_path / "touch"
    touch.write_text("")
    with Spooled(tmp_path, ["--spooler-processes", "2", "--spooler-max-tasks", "3",
                            "--spooler-external", str(tmp_path / "ext"), "--touch-spoolers-reload", str(touch)]) as s:
        s.server.wait_log("spawned the uWSGI spooler on dir", count=2)
        for i in range(10):
            s.get(f"/spool?fn=raw&kind=sleep&secs=0.2&id=t{i}")
        s.wait_lines("slept:", 10, timeout=60)
        ids = [line.split(":")[1] for line in s.lines("sleep:")]
        assert sorted(ids) == sorted(f"t{i}" for i in range(10))    # each exactly once
        assert len({line.split(":")[2] for line in s.lines("sleep:")}) >= 3    # recycled
        s.server.wait_log("maximum number of tasks reached (3) recycling ...")
        pids = [int(p) for p in s.get("/pids").split(b",")]
        assert len(pids) == 3 and pids[2] == 0                    # the external slot has no process
        # a task for the external dir is written there, and nothing here runs it
        s.get(f"/spool?fn=ok&id=ext&spooler={tmp_path / 'ext'}")
        time.sleep(2)
        assert len(list((tmp_path / "ext").iterdir())) == 1 and s.lines("ok:ext:") == []
        assert _wait_for(lambda: s.tasks() == [], 10)
        # --touch-spoolers-reload: both processes end (after their task) and are replaced
        before = set(int(p) for p in s.get("/pids").split(b",")[:2])
        os.utime(touch, (time.time() + 5, time.time() + 5))
        s.server.wait_log("has been touched... spoolers reload !!!")
        assert _wait_for(lambda: not before & {int(p) for p in s.get("/pids").split(b",")[:2]} and
                         0 not in {int(p) for p in s.get("/pids").split(b",")[:2]}, 20)


def test_harakiri_kills_a_stuck_task_and_keeps_its_file(tmp_path):
    with Spooled(tmp_path, ["--spooler-harakiri", "1"], frequency=60) as s:
        time.sleep(1)       # the spooler's first scan is over: it waits up to 60 s
        s.get("/spool?fn=raw&kind=sleep&secs=60&id=stuck")
        s.wait_lines("sleep:stuck:", timeout=10)         # uwsgi.spool() woke it at once
        s.server.wait_log("*** HARAKIRI ON THE SPOOLER (pid: ")
        s.server.wait_log("OOOPS the spooler is no more...trying respawn...")
        assert len(s.tasks()) == 1 and s.lines("slept:") == []


def test_reload_and_stop_lose_nothing(tmp_path):
    srv = Spooled(tmp_path, [])
    with srv as s:
        s.get("/spool?fn=raw&kind=sleep&secs=2&id=hup")
        s.wait_lines("sleep:hup:")
        s.server.signal(signal.SIGHUP)
        s.server.wait_log("killing the spooler with pid")
        s.wait_lines("slept:hup:", timeout=60)           # the new master's spooler ran it again
        assert _wait_for(lambda: s.tasks() == [], 10)
        s.get("/spool?fn=raw&kind=sleep&secs=30&id=term")
        s.wait_lines("sleep:term:")
        s.server.signal(signal.SIGTERM)
        assert s.server.proc.wait(60) == 0
        assert len(s.tasks()) == 1                        # still there after the stop
    with Spooled(tmp_path, []) as s:                      # the next start runs it
        s.wait_lines("sleep:term:", 2, timeout=30)


def test_lua_and_python_spoolers_in_one_instance(tmp_path):
    with Spooled(tmp_path, [], app="app_dual.py", lua="app.lua") as s:
        # Lua spools a task for Python's uwsgi.spooler, Python one for Lua's
        assert s.get("/?kind=py&id=from_lua", LUA).startswith(str(s.dir.resolve()).encode())
        s.get("/?kind=lua&id=from_py&body=xyz", PY)
        s.get("/?kind=lua&id=lua_body&body=abc", LUA)
        assert s.wait_lines("py:from_lua:")[0].split(":")[2] == str(s.stats()["spoolers"][0]["pid"])
        assert s.wait_lines("lua:from_py:")[0].split(":")[3] == "xyz"
        assert s.wait_lines("lua:lua_body:")[0].split(":")[3] == "abc!"
        s.get("/?kind=lua_retry&id=lr", LUA)
        s.get("/?kind=lua_error&id=le", LUA)
        assert len(s.wait_lines("lua_retry:lr:", 2)) == 2
        assert len(s.wait_lines("lua_error:le:", 2)) == 2
        log = s.server.wait_log("lua boom le")
        assert "error in the Lua spooler function" in log
        assert _wait_for(lambda: s.tasks() == [], 10)
        pid = s.stats()["spoolers"][0]["pid"]
        assert s.get("/pid", LUA) == f"{pid},1,nil".encode()


def test_import_chdir_and_cheap_mode(tmp_path):
    """--spooler-import loads the spooler function (the app has none), --spooler-chdir is each
    task's cwd, --spooler-cheap starts the spooler only when a task waits and stops it after."""
    from uwsgid.services import spool_file
    spool, workdir, records = tmp_path / "spool", tmp_path / "work", tmp_path / "records"
    workdir.mkdir()
    port = free_port()
    args = ["--socket", f"127.0.0.1:{port}", "--wsgi-file", str(ROOT / "examples" / "hello.py"),
            "--spooler", str(spool), "--spooler-frequency", "1", "--spooler-cheap",
            "--spooler-import", str(DATA / "app_raw.py"), "--spooler-chdir", str(workdir)]
    with instance(args, port, tmp_path / "log", env={"SPOOL_RECORDS": str(records)}) as srv:
        time.sleep(2)
        assert "spawned the uWSGI spooler" not in srv.log()          # nothing to do yet
        spool_file.write(str(spool), spool_file.pack_vars([(b"task", b"cheap")]))
        srv.wait_log("spawned the uWSGI spooler on dir")
        assert _wait_for(lambda: records.exists() and records.read_text(), 20), srv.log()
        rec = json.loads(records.read_text().splitlines()[0])
        assert rec["task"] == "cheap" and rec["cwd"] == str(workdir)
        srv.wait_log("cheaping spooler")
        srv.wait_log(f"spooler {spool} ended")
        assert not list(spool.iterdir())
