"""uWSGI's hooks (--hook-*, --exec-*, --call-*) against real processes: each phase at its moment,
failures that stop the start or destroy the instance, unix_signal (the Docker images' SIGTERM
line), --hook-touch. The server is uwsgid.main with the test plugin (tests/master_helpers.py)."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
from helpers import ROOT, free_port

from tests.master_helpers import IN_FLIGHT, MODIFIER1, get, launch

M1 = ["--http-socket-modifier1", MODIFIER1]


def _start(tmp_path, *args, env=None, name="server.log", wait=True):
    port = free_port()
    srv = launch(["--master", "--http-socket", f"127.0.0.1:{port}", *M1, *map(str, args)], tmp_path / name, env=env)
    if wait:
        srv.wait_port(port)
    return srv, port


def _lines(path) -> list[str]:
    try:
        return path.read_text().split()
    except FileNotFoundError:
        return []


def _wait_lines(path, pred, timeout=30.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = _lines(path)
        if pred(lines):
            return lines
        time.sleep(0.05)
    raise AssertionError(f"{path}: {_lines(path)}")


def test_each_phase_runs_at_its_moment(tmp_path):
    out = tmp_path / "phases"
    phases = ["asap", "pre-jail", "in-jail", "as-root", "as-user", "pre-app", "post-app", "post-fork",
              "accepting", "accepting1", "accepting-once", "accepting1-once", "master-start", "as-user-atexit"]
    args = ["-p", "2"]
    for phase in phases:
        args += [f"--hook-{phase}", f"appendn:{out} {phase}"]
    srv, port = _start(tmp_path, *args)
    with srv:
        lines = _wait_lines(out, lambda ls: ls.count("accepting") == 2 and "accepting1-once" in ls and "master-start" in ls)
        root = os.getuid() == 0      # uWSGI runs as-root/as-user only when started as root
        start = ["asap", "pre-jail", "in-jail"] + (["as-root", "as-user"] if root else []) + ["pre-app", "post-app"]
        assert lines[:len(start)] == start
        rest = lines[len(start):]
        assert rest.count("post-fork") == 2 and rest.count("accepting-once") == 2
        assert rest.count("accepting1") == 1 and rest.count("accepting1-once") == 1
        assert rest.count("master-start") == 1 and "as-user-atexit" not in rest
        assert rest.index("post-fork") < rest.index("accepting")
        assert f'running "appendn:{out} asap" (asap)...' in srv.log()

        # a respawned worker runs post-fork and accepting again, not the -once hooks
        with pytest.raises(Exception):
            get(port, "/crash", timeout=5)
        lines = _wait_lines(out, lambda ls: ls.count("accepting") == 3)
        time.sleep(0.5)
        lines = _lines(out)
        assert lines.count("post-fork") == 3
        assert lines.count("accepting-once") == 2 and lines.count("accepting1-once") == 1
        assert srv.stop(signal.SIGTERM) == 0
    assert _lines(out)[-1] == "as-user-atexit"


def test_exec_and_call_forms(tmp_path):
    mod = tmp_path / "hookmod.py"
    mod.write_text("import os\n"
                   "def mark(arg=None):\n"
                   f"    open({str(tmp_path / 'called')!r}, 'a').write(f'{{arg}}:{{os.getpid()}}\\n')\n"
                   "def refuse(arg=None):\n"
                   "    return 3\n")
    env = {"PYTHONPATH": str(tmp_path)}
    srv, port = _start(tmp_path, "--exec-asap", f"echo exec-ran > {tmp_path / 'exec'}",
                       "--call-asap", "hookmod.mark", "--hook-post-app", "call:hookmod.mark post-app", env=env)
    with srv:
        srv.wait_log("spawned uWSGI worker 1")
        assert (tmp_path / "exec").read_text() == "exec-ran\n"
        called = (tmp_path / "called").read_text().split()
        assert called == [f"None:{srv.pid}", f"post-app:{srv.pid}"]
        assert get(port) == (200, b"hello")

    # callret: a non-zero return is a failure, which stops the start (exit 1, nothing served)
    srv, _ = _start(tmp_path, "--hook-pre-app", "callret:hookmod.refuse", env=env, name="refuse.log", wait=False)
    with srv:
        assert srv.proc.wait(30) == 1
        assert "spawned uWSGI worker" not in srv.log()


@pytest.mark.parametrize("args, message", [
    (["--exec-asap", "exit 3"], 'command "exit 3" exited with non-zero code: 3'),
    (["--hook-pre-app", "exec:false"], 'command "false" exited with non-zero code: 1'),
    (["--hook-asap", "frobnicate:x"], "hook action not found: frobnicate"),
    (["--hook-asap", "no colon here"], "invalid hook syntax, must be hook:args"),
    (["--hook-touch", "/tmp/only-a-file"], "--hook-touch /tmp/only-a-file: must be <file> <action:arg>"),
    (["--hook-in-jail", "mkdir:/nonexistent/x/y"], "hook mkdir /nonexistent/x/y: No such file or directory"),
    (["--call-asap", "no_such_symbol_anywhere"], 'unable to call function "no_such_symbol_anywhere"'),
    (["--max-worker-lifetime", "5"], "invalid min-worker-lifetime value (10), must be lower than max-worker-lifetime (5)"),
])
def test_a_failing_start_hook_stops_the_start(tmp_path, args, message):
    srv, _ = _start(tmp_path, *args, wait=False)
    with srv:
        assert srv.proc.wait(30) == 1
        log = srv.log()
        assert message in log
        assert "spawned uWSGI worker" not in log


def test_exit_action_and_safeexec(tmp_path):
    srv, _ = _start(tmp_path, "--hook-asap", "safeexec:false", "--hook-asap", "exit:7", wait=False)
    with srv:
        assert srv.proc.wait(30) == 7
        assert 'command "false" exited with non-zero code: 1' in srv.log()


def test_emperor_hooks_are_refused_loudly_or_with_strict(tmp_path):
    srv, port = _start(tmp_path, "--hook-emperor-start", "print:x", "--hook-post-jail", "print:y",
                       "--hook-asap", "mount:proc none /proc")
    with srv:
        log = srv.wait_log("spawned uWSGI worker 1")
        assert "--hook-emperor-start print:x: refused: there is no Emperor here" in log
        assert "--hook-post-jail print:y: never runs" in log
        assert "mounting filesystems is not supported" in log
        assert get(port) == (200, b"hello")
    srv, _ = _start(tmp_path, "--strict", "--hook-emperor-start", "print:x", wait=False, name="strict.log")
    with srv:
        assert srv.proc.wait(30) == 1
        assert "refused: there is no Emperor here" in srv.log() and "(--strict)" in srv.log()


def _slow_request(port, result):
    try:
        result.append(get(port, "/sleep?2", timeout=30))
    except Exception as e:        # cut by a brutal stop
        result.append(e)


@pytest.mark.parametrize("action, graceful", [("gracefully_kill_them_all", True), ("kill_them_all", False)])
def test_unix_signal_hook_of_docker_images(tmp_path, action, graceful):
    """`hook-master-start = unix_signal:15 gracefully_kill_them_all`: SIGTERM stops gracefully
    (the request in progress completes); with kill_them_all it is cut."""
    ini = tmp_path / "uwsgi.ini"
    port = free_port()
    ini.write_text(f"[uwsgi]\nmaster = true\nhttp-socket = 127.0.0.1:{port}\nhttp-socket-modifier1 = {MODIFIER1}\n"
                   f"hook-master-start = unix_signal:15 {action}\n")
    srv = launch(["--ini", ini], tmp_path / "server.log")
    with srv:
        srv.wait_port(port)
        result = []
        t = threading.Thread(target=_slow_request, args=(port, result))
        t.start()
        srv.wait_log(IN_FLIGHT)
        srv.signal(signal.SIGTERM)
        t.join(30)
        assert srv.proc.wait(30) == 0
        log = srv.log()
        assert 'running "unix_signal:15 ' + action + '" (master-start)...' in log
        if graceful:
            assert result == [(200, b"slept 2")]
            assert "graceful shutdown triggered..." in log
        else:
            assert isinstance(result[0], Exception)
            assert "SIGINT/SIGTERM received...killing workers..." in log


def test_unix_signal_on_another_signal_reloads(tmp_path):
    srv, port = _start(tmp_path, "--hook-master-start", f"unix_signal:{int(signal.SIGUSR2)} uwsgi_reload_workers")
    with srv:
        srv.wait_log("spawned uWSGI worker 1")
        old = get(port, "/info")[1]
        srv.signal(signal.SIGUSR2)
        srv.wait_log("Respawned uWSGI worker 1")
        assert get(port, "/info")[1] != old
        assert srv.proc.poll() is None      # SIGUSR2 no longer kills the master


def test_hook_touch(tmp_path):
    watched = tmp_path / "watched"
    watched.write_text("x")
    out = tmp_path / "touched"
    srv, _ = _start(tmp_path, "--hook-touch", f"{watched} appendn:{out} touched")
    with srv:
        srv.wait_log("spawned uWSGI worker 1")
        time.sleep(1.2)
        assert not out.exists()
        os.utime(watched, (time.time() + 5, time.time() + 5))
        _wait_lines(out, lambda ls: ls == ["touched"])
        assert f'running "appendn:{out} touched" (touch)...' in srv.log()


def test_lazy_apps_run_app_hooks_in_each_worker(tmp_path):
    out = tmp_path / "apps"
    srv, port = _start(tmp_path, "-p", "2", "--lazy-apps", "--hook-pre-app", f"appendn:{out} pre",
                       "--hook-post-app", f"appendn:{out} post")
    with srv:
        lines = _wait_lines(out, lambda ls: len(ls) == 4)
        assert sorted(lines) == ["post", "post", "pre", "pre"]
        assert srv.log().count('(pre app)...') == 2


def test_a_failing_worker_hook_destroys_the_instance(tmp_path):
    srv, _ = _start(tmp_path, "-p", "2", "--hook-accepting1", "exec:false", wait=False)
    with srv:
        srv.proc.wait(30)
        log = srv.log()
        assert "FATAL hook failed, destroying instance" in log
        assert "goodbye to uWSGI." in log


def test_rpc_hook_calls_a_registered_function(tmp_path):
    (tmp_path / "rpcmod.py").write_text(
        "from uwsgid.services import api\n"
        "def setup():\n"
        "    api.register_rpc('hello', lambda *a: b'hi ' + b'+'.join(a))\n")
    env = {"PYTHONPATH": str(tmp_path)}
    srv, port = _start(tmp_path, "--call-asap", "rpcmod.setup", "--hook-post-app", "rpc:hello a 'b c'",
                       "--hook-master-start", "rpc:missing", env=env, wait=False)
    with srv:
        # the instance may be gone before its port was ever polled: wait for the log, not the port
        log = srv.wait_log("spawned uWSGI worker 1")
        assert '[rpc result from "hello"] hi a+b c' in log
        # a failing hook of the master destroys the instance, as uWSGI's fatal hooks do
        srv.proc.wait(30)
        assert "FATAL hook failed, destroying instance" in srv.log()


def test_file_and_function_actions_in_process(tmp_path, monkeypatch):
    from uwsgid.config.options import Options
    from uwsgid.server import hook_actions, user_hooks
    ctx = user_hooks.Context(Options())
    act = hook_actions.ACTIONS
    f = tmp_path / "f"
    assert act["write"](f"{f} one", ctx) == 0 and f.read_text() == "one"
    assert act["append"](f"{f} two", ctx) == 0 and f.read_text() == "onetwo"
    assert act["writen"](f"{f} three", ctx) == 0 and f.read_text() == "three\n"
    assert act["appendn"](f"{f}", ctx) == 0 and f.read_text() == "three\n\n"
    assert act["write"](f"{f}", ctx) == -1                      # no text: a syntax error
    assert act["chmod"](f"{f} 640", ctx) == 0 and (f.stat().st_mode & 0o777) == 0o640
    assert act["chmod"](f"{f} rw", ctx) == -1
    assert act["sticky"](str(tmp_path), ctx) == 0 and tmp_path.stat().st_mode & 0o1000
    assert act["create"](str(tmp_path / "empty"), ctx) == 0 and (tmp_path / "empty").read_bytes() == b""
    assert act["unlink"](str(tmp_path / "empty"), ctx) == 0 and not (tmp_path / "empty").exists()
    assert act["unlink"](str(tmp_path / "empty"), ctx) == -1
    monkeypatch.setenv("HOOK_TEST", "x")
    assert act["putenv"]("HOOK_TEST=y", ctx) == 0 and os.environ["HOOK_TEST"] == "y"
    assert act["putenv"]("HOOK_TEST", ctx) == 0 and "HOOK_TEST" not in os.environ
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert act["writefifo"](f"{fifo} r", ctx) == 0            # nobody reads it: not an error
    # C functions of the process, as uWSGI's dlsym
    assert act["callintret"]("abs -3", ctx) == 3               # non-zero: a failure for the *ret forms
    assert act["callintret"]("abs 0", ctx) == 0
    assert act["callint"]("abs x", ctx) == -1
    assert act["call"]("no_such_function_here", ctx) == -1
    # master actions need the master
    assert act["call"]("gracefully_kill_them_all", ctx) == -1
    with pytest.raises(hook_actions.HookExit) as e:
        act["exit"]("4", ctx)
    assert e.value.code == 4


def test_after_a_reload(tmp_path):
    """A reload re-execs the master: asap, in-jail, master-start and accepting-once run again,
    pre-jail (first start only) and as-user-atexit (before the re-exec) as uWSGI does."""
    out = tmp_path / "phases"
    args = []
    for phase in ("asap", "pre-jail", "in-jail", "master-start", "accepting-once", "as-user-atexit"):
        args += [f"--hook-{phase}", f"appendn:{out} {phase}"]
    srv, port = _start(tmp_path, *args)
    with srv:
        _wait_lines(out, lambda ls: "accepting-once" in ls and "master-start" in ls)
        srv.signal(signal.SIGHUP)
        lines = _wait_lines(out, lambda ls: ls.count("accepting-once") == 2 and ls.count("master-start") == 2)
        assert lines.count("asap") == 2 and lines.count("in-jail") == 2 and lines.count("pre-jail") == 1
        assert lines.count("as-user-atexit") == 1
        assert get(port) == (200, b"hello")


def test_wait_for_socket_and_fs(tmp_path):
    import socket
    late = tmp_path / "late"
    other = free_port()
    args = ["--wait-for-socket", f"127.0.0.1:{other}", "--wait-for-fs", late]
    srv, port = _start(tmp_path, *args, wait=False)
    with srv:
        srv.wait_log(f"waiting for 127.0.0.1:{other} (max 60 seconds) ...")
        time.sleep(1.2)
        assert srv.proc.poll() is None and "spawned uWSGI worker" not in srv.log()
        with socket.socket() as lst:
            lst.bind(("127.0.0.1", other))
            lst.listen(5)
            srv.wait_log(f"127.0.0.1:{other} ready")
            if os.getuid() == 0:        # uWSGI waits for paths only when started as root
                srv.wait_log(f"waiting for {late} (max 60 seconds) ...")
                late.write_text("")
                srv.wait_log(f"{late} found")
            srv.wait_port(port)
            assert get(port) == (200, b"hello")

    srv, _ = _start(tmp_path, "--wait-for-socket", f"127.0.0.1:{free_port()}", "--wait-for-socket-timeout", "1",
                    wait=False, name="timeout.log")
    with srv:
        assert srv.proc.wait(30) == 1
        assert "unavailable after 1 seconds" in srv.log()


@pytest.mark.skipif(not os.path.exists("/usr/bin/uwsgi"), reason="needs Debian's uWSGI")
def test_hook_lines_match_real_uwsgi(tmp_path):
    import subprocess

    from tests.master_helpers import command
    args = ["--hook-asap", "print:hello", "--hook-asap", "!print:secret", "--hook-asap", f"write:{tmp_path / 'w'} x",
            "--exec-asap", "echo from-exec", "--hook-in-jail", "exit:12"]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    real = subprocess.run(["/usr/bin/uwsgi", *args], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    ours = subprocess.run([*command(), *args], capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env)

    def hook_lines(out):
        return [line for line in out.splitlines() if line.startswith(("running", "hello", "secret", "from-exec"))]
    assert real.returncode == ours.returncode == 12
    assert hook_lines(ours.stdout + ours.stderr) == hook_lines(real.stdout + real.stderr)
    assert len(hook_lines(real.stdout + real.stderr)) == 8
