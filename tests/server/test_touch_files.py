"""Touch files, uWSGI's rules (uwsgid.util.touch) for every option that watches one: the first
look records, then a changed mtime, a file created or a file removed counts; and, against a real
instance, --touch-chain-reload, --touch-exec, --touch-signal, --touch-mules-reload, and one
clear line for a bad value."""

from __future__ import annotations

import os
import time

from helpers import Server, free_port, http_get, run_uwsgi, wait_file

from uwsgid.util.touch import TouchFiles


def _bump(path, seconds: float = 5.0) -> None:
    t = time.time() + seconds
    os.utime(path, (t, t))


def test_the_first_look_records_then_a_change_counts(tmp_path):
    a, b, missing = tmp_path / "a", tmp_path / "b", tmp_path / "missing"
    a.write_text("")
    b.write_text("")
    said = []
    touches = TouchFiles([str(a), (str(b), "stands for b"), str(missing)], said.append)
    assert said == [f"unable to stat() {missing}, events will be triggered as soon as the file is created"]
    assert touches.changed() is None
    _bump(b)
    assert touches.changed() == "stands for b"
    assert touches.changed() is None        # once per touch
    missing.write_text("")
    assert touches.changed() == str(missing)    # created
    a.unlink()
    assert touches.changed() == str(a)          # removed
    assert touches.changed() is None
    _bump(a.parent / "b", 10)
    _bump(missing, 10)
    assert touches.changed() == "stands for b"  # the first touched; the next one at the next look
    assert touches.changed() == str(missing)
    assert len(said) == 1       # said once, at the first look


APP = '''
import uwsgi

def on_signal(num):
    with open(%(marks)r + "/signal", "a") as f:
        f.write("%%d\\n" %% num)

uwsgi.register_signal(17, "worker", on_signal)

def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]
'''


def test_chain_exec_signal_and_mules_touches(tmp_path):
    app = tmp_path / "app.py"
    app.write_text(APP % {"marks": str(tmp_path)})
    files = {name: tmp_path / f"{name}.touch" for name in ("chain", "exec", "signal", "mules")}
    for f in files.values():
        f.write_text("")
    port = free_port()
    args = ["--master", "--processes", "2", "--http-socket", f"127.0.0.1:{port}", "--wsgi-file", app,
            "--touch-chain-reload", files["chain"],
            "--touch-exec", f"{files['exec']} echo ran >> {tmp_path / 'exec'}",
            "--touch-signal", f"{files['signal']} 17",
            "--mules", "1", "--touch-mules-reload", files["mules"]]
    with Server(args, port) as srv:
        srv.wait_log("spawned uWSGI mule 1")
        _bump(files["exec"])
        assert wait_file(tmp_path / "exec") == "ran\n"
        srv.wait_log(f"[uwsgi-touch-exec] running echo ran >> {tmp_path / 'exec'}")
        _bump(files["signal"])
        assert wait_file(tmp_path / "signal") == "17\n"
        srv.wait_log("[uwsgi-touch-signal] raising 17")
        _bump(files["chain"])
        srv.wait_log(f"*** {files['chain']} has been touched... chain reload !!! ***")
        srv.wait_log("chain reloading complete", timeout=60)
        _bump(files["mules"])
        srv.wait_log(f"*** {files['mules']} has been touched... mules reload !!! ***")
        srv.wait_log("respawned uWSGI mule 1", timeout=20)
        assert http_get(port, "/")[2] == b"ok"


def test_a_bad_touch_value_is_one_clear_line(tmp_path):
    r = run_uwsgi(["--http-socket", f"127.0.0.1:{free_port()}", "--touch-signal", f"{tmp_path / 'f'} TERM"])
    assert r.returncode == 1
    assert f"--touch-signal {tmp_path / 'f'} TERM: the signal is a number from 0 to 255" in r.stderr
    r = run_uwsgi(["--http-socket", f"127.0.0.1:{free_port()}", "--touch-exec", str(tmp_path / "f")])
    assert r.returncode == 1 and "--touch-exec" in r.stderr and "expected FILE COMMAND" in r.stderr
