"""Attached daemons (uwsgid/services/daemons.py) without a server: the option values as uWSGI
reads them, and real daemons spawned from this process, reaped here as the master would
(waitpid, then daemons.child_exited), respawned, followed by pidfile, touched and stopped."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from uwsgid.services import commands, daemons
from uwsgid.services.daemons import Daemon


class Opts(dict):
    def get(self, name, default=None):
        return super().get(name, default)


# ---- the option values ------------------------------------------------------------------------

def test_simple_forms():
    d = daemons.parse_simple("attach-daemon", "  memcached -p 11311 ")
    assert (d.command, d.pidfile, d.control, d.daemonize) == ("memcached -p 11311", None, False, False)
    assert daemons.parse_simple("attach-control-daemon", "sleep 1").control
    s = daemons.parse_simple("smart-attach-daemon", "run/x.pid redis-server conf")
    assert s.pidfile == os.path.abspath("run/x.pid") and s.command == "redis-server conf"
    assert s.freq == 10 and not s.daemonize
    s2 = daemons.parse_simple("smart-attach-daemon2", "/tmp/y.pid,3 my app")
    assert (s2.pidfile, s2.freq, s2.daemonize, s2.command) == ("/tmp/y.pid", 3, True, "my app")


@pytest.mark.parametrize("option, value, message", [
    ("attach-daemon", "  ", "no command"),
    ("smart-attach-daemon", "/tmp/x.pid", "expected PIDFILE"),
    ("smart-attach-daemon2", "/tmp/x.pid,0 cmd", "FREQ must be >= 1"),
    ("smart-attach-daemon2", "/tmp/x.pid,x cmd", "FREQ must be an integer"),
])
def test_simple_form_errors(option, value, message):
    with pytest.raises(ValueError, match=message) as info:
        daemons.parse_simple(option, value)
    assert str(info.value).startswith(f"--{option}")


def test_attach_daemon2_keys(tmp_path):
    d = daemons.parse_keyval(f"cmd=run a\\,b,freq=4,pidfile={tmp_path}/p.pid,daemonize=1,"
                             f"touch={tmp_path}/t1;{tmp_path}/t2,stopsignal=USR1,reloadsignal=SIGHUP,stdin=1,"
                             f"uid=0,gid=root,chdir={tmp_path},max_throttle=7,notifypid=true")
    assert d.command == "run a,b"                   # a backslash escapes the comma, as uWSGI's kvlist
    assert (d.freq, d.pidfile, d.daemonize) == (4, f"{tmp_path}/p.pid", True)
    assert d.touch == [f"{tmp_path}/t1", f"{tmp_path}/t2"]
    assert (d.stop_signal, d.reload_signal) == (signal.SIGUSR1, signal.SIGHUP)
    assert d.honour_stdin and d.notifypid and not d.control and not d.ns_pid
    assert (d.uid, d.gid, d.chdir, d.max_throttle) == (0, 0, str(tmp_path), 7)
    # the aliases uWSGI accepts; signals as numbers
    d = daemons.parse_keyval("exec=x,control=1,stop_signal=9,reload_signal=1")
    assert (d.command, d.control, d.stop_signal, d.reload_signal) == ("x", True, 9, 1)
    assert daemons.parse_keyval("command=y,daemon=0").daemonize is False
    d = daemons.parse_keyval("cmd=python -c 'a=1'")         # the value is all after the first '='
    assert d.command == "python -c 'a=1'" and d.stop_signal == signal.SIGTERM and d.freq == 10


@pytest.mark.parametrize("value, message", [
    ("freq=3", "a 'cmd' key is needed"),
    ("cmd=x,frequency=3", "unknown key 'frequency'"),
    ("cmd=x,daemonize=1", "daemonize=1 needs pidfile="),
    ("cmd=x,pidfile=/tmp/p,control=1", "control=1 applies to a daemon without pidfile="),
    ("cmd=x,stopsignal=TERMINATE", "stopsignal='TERMINATE' is not a signal"),
    ("cmd=x,stopsignal=99", "not a valid signal number"),
    ("cmd=x,freq=0", "freq must be >= 1"),
    ("cmd=x,control=maybe", "not a boolean"),
    ("cmd=x,uid=no-such-user-here", "no such user"),
    ("cmd=x,chdir=/no/such/dir", "no such directory"),
    ("cmd", "expected key=value"),
])
def test_attach_daemon2_errors(value, message):
    with pytest.raises(ValueError, match=message) as info:
        daemons.parse_keyval(value)
    assert str(info.value).startswith("--attach-daemon2") and "\n" not in str(info.value)


def test_legion_forms_are_refused(capfd):
    with pytest.raises(commands.Refused, match="no legions"):
        daemons.parse_keyval("cmd=x,legion=l")
    daemons.configure(Opts({"legion-attach-daemon": ["l memcached"]}))
    assert "*** WARNING: --legion-attach-daemon l memcached: not supported" in capfd.readouterr().err
    with pytest.raises(SystemExit):
        daemons.configure(Opts({"legion-smart-attach-daemon2": ["l /tmp/p cmd"], "strict": True}))
    daemons._reset_for_tests()


def test_throttle_as_uwsgi():
    d = Daemon("x")
    assert daemons.throttle_for(d, 1000) == 0            # never spawned
    d.respawns, d.last_spawn = 1, 1000
    assert daemons.throttle_for(d, 1000) == 1
    assert daemons.throttle_for(d, 1004) == 0            # lived more than 3 s
    d.respawns = 6
    assert daemons.throttle_for(d, 1002) == 4            # spawns - seconds since the last one
    d.respawns = 1000
    assert daemons.throttle_for(d, 1001) == 300
    d.max_throttle = 2
    assert daemons.throttle_for(d, 1001) == 2


# ---- real daemons -------------------------------------------------------------------------------

@pytest.fixture
def table():
    daemons._reset_for_tests()
    extra: list[int] = []
    yield daemons._daemons, extra
    for d in daemons._daemons:
        if d.pid > 0:
            extra.append(d.pid)
    for pid in extra:
        commands.signal_group(pid, signal.SIGKILL)
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
    daemons._reset_for_tests()


def add(table, d: Daemon) -> Daemon:
    table[0].append(d)
    d.registered = True
    return d


def wait_for(fn, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"not true after {timeout}s: {fn}")


def lines(path):
    return path.read_text().split() if path.exists() else []


def reap(pid, running=True, stop_instance=None, timeout=20.0):
    """Wait for our child pid to end, then tell daemons.py as the master's hook does."""
    status = _waitpid(pid, timeout)
    assert daemons.child_exited(pid, status, running, stop_instance)
    return status


def _waitpid(pid, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        time.sleep(0.02)
    raise AssertionError(f"{pid} still running after {timeout}s")


def dead(pid) -> bool:
    """Gone, or a zombie nobody reaps (pid 1 here may not)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rpartition(b")")[2].split()[0] == b"Z"
    except FileNotFoundError:
        return True


def test_dumb_daemon_is_respawned_with_throttle_then_stopped(table, tmp_path, capfd):
    out = tmp_path / "pids"
    d = add(table, Daemon(f"echo $$ >> {out}; exec sleep 30"))
    daemons.spawn(d)
    first = d.pid
    assert wait_for(lambda: lines(out)) == [str(first)]          # exec'd: the daemon's pid is ours
    os.kill(first, signal.SIGKILL)
    reap(first)
    assert d.pid != first and d.pid > 0
    assert wait_for(lambda: len(lines(out)) == 2)
    assert lines(out)[1] == str(d.pid)
    err = capfd.readouterr().err
    assert f'[uwsgi-daemons] spawning "echo $$ >> {out}; exec sleep 30" (uid: {os.getuid()}' in err
    assert f'[uwsgi-daemons] throttling "echo $$ >> {out}; exec sleep 30" for 1 seconds' in err
    assert f'[uwsgi-daemons] respawning "echo $$ >> {out}; exec sleep 30"' in err
    assert daemons.stats() == [{"cmd": d.command, "pid": d.pid, "respawns": 1}]
    second = d.pid
    daemons.stop(reloading=False, grace=5)
    assert d.pid == -1 and not d.registered and dead(second)
    assert f"[uwsgi-daemons] stopping daemon (pid: {second})" in capfd.readouterr().err
    daemons.child_exited(second, 0, True)           # a late report respawns nothing
    assert d.pid == -1


def test_stopsignal_then_sigkill_after_the_grace(table, tmp_path, capfd):
    got, ready, ready2 = tmp_path / "got", tmp_path / "ready", tmp_path / "ready2"
    polite = add(table, Daemon(f"trap 'echo usr1 > {got}; exit 0' USR1; touch {ready}; "
                               "while :; do sleep 0.1; done", stop_signal=signal.SIGUSR1))
    stubborn = add(table, Daemon(f"trap '' TERM; touch {ready2}; while :; do sleep 0.1; done"))
    daemons.spawn(polite)
    daemons.spawn(stubborn)
    wait_for(ready.exists)
    wait_for(ready2.exists)
    pids = polite.pid, stubborn.pid
    started = time.monotonic()
    daemons.stop(reloading=False, grace=1)
    assert got.read_text().strip() == "usr1"
    assert time.monotonic() - started < 10
    assert all(dead(p) for p in pids)
    err = capfd.readouterr().err
    assert f"[uwsgi-daemons] daemon did not die in time, killing (pid: {pids[1]})" in err
    assert f"killing (pid: {pids[0]})" not in err


def test_reloadsignal_on_a_reload(table, tmp_path):
    got, ready = tmp_path / "got", tmp_path / "ready"
    d = add(table, Daemon(f"trap 'echo hup > {got}; exit 0' HUP; trap 'echo term > {got}; exit 0' TERM; "
                          f"touch {ready}; while :; do sleep 0.1; done", reload_signal=signal.SIGHUP))
    daemons.spawn(d)
    wait_for(ready.exists)
    daemons.stop(reloading=True, grace=5)
    assert got.read_text().strip() == "hup"


def test_control_daemon_death_stops_the_instance(table, capfd):
    d = add(table, Daemon("exit 0", control=True))
    stopped = []
    daemons.spawn(d)
    pid = d.pid
    reap(pid, stop_instance=lambda: stopped.append(True))
    assert stopped == [True] and d.pid == -1
    assert f'control daemon "exit 0" (pid: {pid}) died: stopping the instance' in capfd.readouterr().err


def test_no_respawn_while_the_instance_stops(table, capfd):
    d = add(table, Daemon("exit 0"))
    daemons.spawn(d)
    pid = d.pid
    reap(pid, running=False)
    assert d.pid == -1
    assert f'daemon "exit 0" (pid: {pid}) annihilated' in capfd.readouterr().err


def test_smart_daemon2_daemonized_by_the_master_and_followed_by_pidfile(table, tmp_path, capfd):
    pidfile = tmp_path / "d.pid"
    d = add(table, daemons.parse_simple("smart-attach-daemon2", f"{pidfile},2 exec sleep 30"))
    daemons.spawn(d)
    first_child = d.pid
    reap(first_child)                       # the master's child exits at once: it daemonized
    assert d.has_daemonized and d.pid == first_child
    daemon_pid = int(wait_for(lambda: pidfile.exists() and pidfile.read_text().strip()))
    table[1].append(daemon_pid)
    daemons.smart_check()
    assert d.pid == daemon_pid
    assert f"found changed pid for \"exec sleep 30\" (old_pid: {first_child} new_pid: {daemon_pid})" \
        in capfd.readouterr().err
    daemons.smart_check()
    assert d.status == 2
    os.kill(daemon_pid, signal.SIGKILL)     # not our child: pid 1 reaps it (or leaves a zombie)
    wait_for(lambda: dead(daemon_pid))
    daemons.smart_check()                   # its pidfile names a dead pid: respawned
    assert d.pid not in (daemon_pid, first_child)
    reap(d.pid)
    wait_for(lambda: pidfile.read_text().strip() != str(daemon_pid))
    table[1].append(int(pidfile.read_text()))
    # a stop leaves a smart daemon running (uWSGI: it survives the master)
    daemons.stop(reloading=False, grace=1)
    assert not dead(int(pidfile.read_text()))


def test_smart_daemon_that_does_not_write_its_pidfile_is_reported(table, tmp_path, capfd):
    d = add(table, daemons.parse_simple("smart-attach-daemon", f"{tmp_path}/never.pid,2 exec sleep 30"))
    daemons.spawn(d)
    daemons.smart_check()
    daemons.smart_check()
    assert f'"exec sleep 30" (pid: {d.pid}) did not daemonize !!!' in capfd.readouterr().err
    assert d.pidfile_checks == 0


def test_first_tick_adopts_a_live_pidfile(table, tmp_path, capfd):
    other = subprocess.Popen(["sleep", "30"])
    try:
        pidfile = tmp_path / "p.pid"
        pidfile.write_text(f"{other.pid}\n")
        d = daemons.parse_simple("smart-attach-daemon", f"{pidfile} exec sleep 30")
        table[0].append(d)
        daemons.spawn_all()
        assert d.pid == other.pid and d.registered
        assert f'found valid/active pidfile for "exec sleep 30" (pid: {other.pid})' in capfd.readouterr().err
    finally:
        other.kill()
        other.wait()


def test_touch_kills_the_daemon_with_its_stopsignal(table, tmp_path, capfd):
    touched = tmp_path / "touch-me"
    touched.write_text("")
    d = add(table, daemons.parse_keyval(f"cmd=exec sleep 30,touch={touched},stopsignal=INT"))
    daemons.spawn(d)
    pid = d.pid
    daemons.check_touches()
    assert d.pid == pid
    os.utime(touched, ns=(1, 1))
    daemons.check_touches()
    status = reap(pid)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGINT
    assert f"*** {touched} has been touched... reloading daemon \"exec sleep 30\" (pid: {pid}) !!! ***" \
        in capfd.readouterr().err
    assert d.pid > 0 and d.pid != pid        # respawned


@pytest.fixture
def stdin_file(tmp_path):
    """This process's fd 0 on a file for the test (a master's stdin that is not /dev/null)."""
    path = tmp_path / "stdin"
    path.write_text("")
    saved = os.dup(0)
    fd = os.open(path, os.O_RDONLY)
    os.dup2(fd, 0)
    os.close(fd)
    yield str(path)
    os.dup2(saved, 0)
    os.close(saved)


def test_child_environment_chdir_stdin_session(table, tmp_path, stdin_file):
    out = tmp_path / "env"
    d = add(table, daemons.parse_keyval(
        f"cmd=echo $(pwd) $(readlink /proc/self/fd/0) $(ps -o sid= -p $$) $$ "
        f"$(ls /proc/self/fd | wc -l) > {out}; exec sleep 30,chdir=/tmp"))
    daemons.spawn(d)
    cwd, stdin, sid, pid, nfds = wait_for(lambda: lines(out))
    assert cwd == "/tmp" and stdin == "/dev/null"
    assert sid == pid == str(d.pid)                 # its own session: its group is signalled
    assert int(nfds) <= 5                           # 0, 1, 2 (+ ls's own): no master fd leaked


def test_stdin_kept_with_stdin_key_or_daemons_honour_stdin(table, tmp_path, stdin_file):
    mine = stdin_file
    out1, out2 = tmp_path / "one", tmp_path / "two"
    d = add(table, daemons.parse_keyval(f"cmd=readlink /proc/self/fd/0 > {out1}; exec sleep 30,stdin=1"))
    daemons.spawn(d)
    assert wait_for(lambda: lines(out1)) == [mine]
    daemons.configure(Opts({"daemons-honour-stdin": True}))
    table[0].clear()
    d2 = add(table, Daemon(f"readlink /proc/self/fd/0 > {out2}; exec sleep 30"))
    daemons.spawn(d2)
    assert wait_for(lambda: lines(out2)) == [mine]
    table[1].append(d.pid)


@pytest.mark.skipif(os.getuid() != 0, reason="needs root")
def test_uid_gid_and_pid_namespace(table, tmp_path):
    shared = tempfile.mkdtemp(prefix="uwsgid-daemon-uid-")      # tmp_path's parents are 0700
    try:
        _uid_gid_and_pid_namespace(table, Path(shared))
    finally:
        shutil.rmtree(shared, ignore_errors=True)


def _uid_gid_and_pid_namespace(table, shared):
    shared.chmod(0o777)
    out, ns = shared / "ids", shared / "ns"
    d = add(table, daemons.parse_keyval(f"cmd=echo $(id -u) $(id -g) > {out}; exec sleep 30,uid=65534,gid=65534"))
    daemons.spawn(d)
    assert wait_for(lambda: lines(out)) == ["65534", "65534"]
    if subprocess.run(["unshare", "--pid", "--fork", "true"], capture_output=True).returncode:
        pytest.skip("pid namespaces are not allowed here")
    n = add(table, daemons.parse_keyval(f"cmd=echo $$ > {ns}; exec sleep 30,ns_pid=1"))
    daemons.spawn(n)
    text = wait_for(lambda: ns.exists() and ns.read_text().strip(), timeout=10)
    assert text == "1"                              # pid 1 of its own namespace


@pytest.mark.parametrize("reloading, expected", [(False, "usr1"), (True, "hup")])
def test_notifypid_tells_a_smart_daemon_and_leaves_it_running(table, tmp_path, reloading, expected):
    pidfile, got = tmp_path / "p.pid", tmp_path / "got"
    d = add(table, daemons.parse_keyval(
        f"cmd=trap 'echo usr1 > {got}' USR1; trap 'echo hup > {got}' HUP; echo $$ > {pidfile}; "
        f"while :; do sleep 0.1; done,pidfile={pidfile},notifypid=1,stopsignal=USR1"))
    daemons.spawn(d)
    wait_for(lambda: lines(pidfile))
    daemons.stop(reloading=reloading, grace=1)
    assert wait_for(lambda: lines(got)) == [expected]
    assert not dead(d.pid)                          # told, not stopped


@pytest.mark.parametrize("command, expected", [
    ("memcached -p 11211", "exec memcached -p 11211"),
    ("redis-server r.conf >> r.log 2>&1", "exec redis-server r.conf >> r.log 2>&1"),
    ("celery -A app worker $ARGS", "exec celery -A app worker $ARGS"),
    ("exec prog", "exec prog"),
    ("a; b", "a; b"), ("a && b", "a && b"), ("a | b", "a | b"), ("prog &", "prog &"),
    ("cd /srv && prog", "cd /srv && prog"), ("FOO=1 prog", "FOO=1 prog"), ("trap '' TERM", "trap '' TERM"),
    ("sh -c 'a; b'", "sh -c 'a; b'"), ("echo $(date)", "echo $(date)"),
])
def test_exec_form_only_for_one_program(command, expected):
    assert commands.exec_form(command) == expected


def test_a_one_program_daemon_is_that_program(table):
    """The pid the master watches (and the parent-death signal is on) is the program itself,
    not a /bin/sh waiting for it: a SIGKILLed master leaves no `sleep` behind."""
    d = add(table, Daemon("sleep 31"))
    daemons.spawn(d)

    def cmdline():
        with open(f"/proc/{d.pid}/cmdline", "rb") as f:
            return f.read()
    assert wait_for(lambda: cmdline() == b"sleep\x0031\x00")
    assert d.command == "sleep 31"                  # logs and stats keep the command as given
