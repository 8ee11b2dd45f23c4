"""The log master against real instances: --logger / --req-logger destinations, --log-route,
datagram loggers, rotation (--log-maxsize, --touch-logrotate, --touch-logreopen) with several
workers writing, a reload in between, and the request-line options (--log-x-forwarded-for,
--log-micros, --log-zero)."""

from __future__ import annotations

import os
import re
import socket
import threading
import time
from pathlib import Path

from helpers import Server, free_port, http_get, run_uwsgi, wait_file

APP = '''
def application(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/empty":
        start_response("204 No Content", [])
        return [b""]
    if path == "/big":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return (b"x" * 65536 for _ in range(400))
    if path == "/say":
        import sys
        sys.stderr.write("app says: " + environ["QUERY_STRING"] + "\\n")
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]
'''

REQ_LINE = re.compile(rb"^\[pid: \d+\|app: \d+\|req: \d+/\d+\] \S* \(\) \{\d+ vars in \d+ bytes\} \[[^]]+\] "
                      rb"GET (\S+) => generated \d+ bytes in \d+ (?:msecs|micros) \(HTTP/1\.1 \d+\) "
                      rb"\d+ headers in \d+ bytes \(\d+ switches on core \d+\)$")


def app(tmp_path: Path) -> Path:
    path = tmp_path / "app.py"
    path.write_text(APP)
    return path


def base(tmp_path, port, *extra):
    return ["--http-socket", f"127.0.0.1:{port}", "--wsgi-file", app(tmp_path), "--processes", "2", *extra]


def test_loggers_req_logger_and_route(tmp_path):
    port = free_port()
    args = base(tmp_path, port, "--logger", f"file:{tmp_path}/all.log", "--logger", "stdio",
                "--logger", f"said file:{tmp_path}/said.log", "--log-route", "said ^app says",
                "--req-logger", f"file:{tmp_path}/req.log", "--log-x-forwarded-for", "--log-micros",
                "--logger", f"pipe:cat >> {tmp_path}/piped.log", "--emperor-tyrant")
    with Server(args, port) as s:
        assert http_get(port, "/hello", headers={"X-Forwarded-For": "203.0.113.9"})[0] == 200
        assert http_get(port, "/say?psst")[0] == 200
        req = wait_file(tmp_path / "req.log", "GET /say?psst")
        said = wait_file(tmp_path / "said.log", "app says: psst")
        s.wait_log("spawned uWSGI worker 2")
    everything = wait_file(tmp_path / "all.log", "goodbye to uWSGI.")
    # request lines only in the request logger, whole, with the options' address and unit
    lines = req.splitlines()
    assert len(lines) == 2 and all(REQ_LINE.match(line.encode()) for line in lines)
    # two workers: the two lines may reach the log master in either order
    [hello] = [line for line in lines if "GET /hello" in line]
    assert "] 203.0.113.9 () {" in hello and " micros (HTTP/1.1 200)" in hello
    assert "GET /hello" not in everything and "GET /hello" not in s.log()
    # server lines in every unnamed logger (stdio: the instance's own output), routed ones only there
    for text in (everything, s.log()):
        assert "spawned uWSGI worker 2" in text and "app says" not in text
    assert said == "app says: psst\n"
    # the loggers get what the start-up logged before they existed too (a warning here)
    assert "--emperor-tyrant is not supported" in everything
    assert everything.count("--emperor-tyrant is not supported") == 1
    piped = wait_file(tmp_path / "piped.log", "goodbye to uWSGI.")
    assert "spawned uWSGI worker 2" in piped and "--emperor-tyrant" in piped


def test_datagram_loggers(tmp_path):
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rsys = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    unix = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    rsys.bind(("127.0.0.1", 0))
    unix.bind(str(tmp_path / "log.sock"))
    port = free_port()
    args = base(tmp_path, port, "--log-socket", f"127.0.0.1:{udp.getsockname()[1]},[pfx] ",
                "--logger", f"rsyslog:127.0.0.1:{rsys.getsockname()[1]},myapp,14",
                "--logger", f"socket:{tmp_path}/log.sock", "--disable-logging")
    try:
        with Server(args, port):
            http_get(port, "/say?over-udp")
            got = {}
            for name, sock in (("unix", unix), ("udp", udp), ("rsyslog", rsys)):
                sock.settimeout(20)
                while "over-udp" not in got.get(name, ""):
                    got[name] = sock.recv(65536).decode()
    finally:
        for sock in (udp, rsys, unix):
            sock.close()
    assert got["udp"] == "[pfx] app says: over-udp\n"
    assert got["unix"] == "app says: over-udp\n"
    assert re.fullmatch(r"<14>\w{3} [ \d]\d \d\d:\d\d:\d\d myapp: app says: over-udp", got["rsyslog"])


def test_rotation_by_size_with_two_workers_loses_no_line(tmp_path):
    port = free_port()
    logfile = tmp_path / "main.log"
    args = base(tmp_path, port, "--logto", logfile, "--log-maxsize", "6000")
    n = 240
    with Server(args, port):
        def client(start):
            for i in range(start, n, 4):
                assert http_get(port, f"/r/{i}")[0] == 200
        threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            seen = b"".join(p.read_bytes() for p in tmp_path.glob("main.log*"))
            if seen.count(b"GET /r/") >= n:
                break
            time.sleep(0.1)
    backups = sorted(tmp_path.glob("main.log.*"))
    assert len(backups) >= 3
    uris = []
    for path in [*backups, logfile]:
        data = path.read_bytes()
        for line in data.splitlines():
            if b"GET /r/" in line:
                m = REQ_LINE.match(line)
                assert m, f"a partial or mixed line in {path.name}: {line!r}"
                uris.append(m.group(1))
        if path != logfile:
            assert b"triggering rotation to " + str(path).encode() in data
            assert len(data) < 6000 + 2000      # rotated once over the size, not much later
    assert sorted(uris) == sorted(b"/r/%d" % i for i in range(n))


def test_touch_rotate_touch_reopen_and_reload(tmp_path):
    port = free_port()
    logfile = tmp_path / "main.log"
    rotate, reopen = tmp_path / "rotate.touch", tmp_path / "reopen.touch"
    rotate.write_text("")
    reopen.write_text("")
    args = base(tmp_path, port, "--logto", logfile, "--touch-logrotate", rotate, "--touch-logreopen", reopen,
                "--log-backupname", tmp_path / "backup.log", "--logfile-chmod", "604")
    with Server(args, port) as s:
        http_get(port, "/before-rotate")
        wait_file(logfile, "GET /before-rotate")
        time.sleep(1.1)
        os.utime(rotate)
        wait_file(tmp_path / "backup.log", "triggering rotation to")
        http_get(port, "/after-rotate")
        assert "GET /after-rotate" in wait_file(logfile, "GET /after-rotate")
        assert "GET /before-rotate" in (tmp_path / "backup.log").read_text()
        assert (logfile.stat().st_mode & 0o777) == 0o604 == (tmp_path / "backup.log").stat().st_mode & 0o777
        # an outside logrotate moves the file away, then touches the reopen file
        os.rename(logfile, tmp_path / "moved.log")
        os.utime(reopen, (time.time() + 5, time.time() + 5))
        wait_file(logfile, f"{logfile} reopened.")
        http_get(port, "/after-reopen")
        wait_file(logfile, "GET /after-reopen")
        # a reload: the lines the master writes while it re-execs are not lost, the file stays
        os.kill(s.pid, 1)
        wait_file(logfile, "binary reloading uWSGI")
        wait_file(logfile, "spawned uWSGI worker 2", timeout=60)
        _get_after_reload(port, "/after-reload")
        text = wait_file(logfile, "GET /after-reload")
    assert "running " in text and text.index("binary reloading") < text.index("GET /after-reload")
    assert "GET /after-reopen" not in (tmp_path / "moved.log").read_text()


def test_request_line_filters(tmp_path):
    port = free_port()
    args = base(tmp_path, port, "--disable-logging", "--log-zero", "--log-ioerror")
    with Server(args, port) as s:
        http_get(port, "/full")
        http_get(port, "/empty")
        s.wait_log("GET /empty")
        # a client that goes away in the middle of a 25 MB response: an io error
        c = socket.create_connection(("127.0.0.1", port))
        c.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
        c.recv(1000)
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        c.close()
        log = s.wait_log("GET /big")
        http_get(port, "/full-again")
        http_get(port, "/empty")
        log = s.wait_log("GET /empty", count=2)
    assert "GET /full" not in log
    bigs = [line for line in log.splitlines() if "GET /big =>" in line]
    assert len(bigs) == 1, log
    big = bigs[0]
    assert int(re.search(r"generated (\d+) bytes", big).group(1)) < 400 * 65536


def test_bad_logger_options_fail_with_one_line(tmp_path):
    for args, words in ((["--logger", "nosuch:x"], "--logger nosuch:x: unable to find logger 'nosuch'"),
                        (["--log-route", "ghost ERROR"], "--log-route ghost ERROR: no --logger named 'ghost'"),
                        (["--logfile-chmod", "99"], "--logfile-chmod 99: invalid chmod value"),
                        (["--log-encoder", "rot13"], "log encoder 'rot13' not found")):
        r = run_uwsgi(["--http-socket", f"127.0.0.1:{free_port()}", "--wsgi-file", app(tmp_path), *args], timeout=60)
        assert r.returncode == 1, r.stderr
        assert words in r.stderr + r.stdout
        assert "Traceback" not in r.stderr + r.stdout


def test_logfile_chown_gives_the_log_files_to_the_user(tmp_path):
    if os.geteuid() != 0:
        import pytest
        pytest.skip("chown needs root")
    import pwd
    nobody = pwd.getpwnam("nobody")
    port = free_port()
    logfile, extra = tmp_path / "main.log", tmp_path / "extra.log"
    args = ["--http-socket", f"127.0.0.1:{port}", "--wsgi-file", "examples/hello.py", "--master",
            "--logto", logfile, "--logger", f"file:{extra}", "--logfile-chown", "--uid", "nobody",
            "--gid", str(nobody.pw_gid)]
    with Server(args, port):
        wait_file(extra, "spawned uWSGI worker 1")
    for path in (logfile, extra):
        st = path.stat()
        assert (st.st_uid, st.st_gid) == (nobody.pw_uid, nobody.pw_gid), path


def _get_after_reload(port, path):
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if http_get(port, path)[0] == 200:
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"{path}: no answer after the reload")


def test_log_reopen_on_reload(tmp_path):
    """--log-reopen: a reload opens the --logto path again (without it the open file is kept:
    see test_touch_rotate_touch_reopen_and_reload), with and without a log master."""
    for extra in ((), ("--log-master",)):
        port = free_port()
        logfile = tmp_path / "main.log"
        args = base(tmp_path, port, "--logto", logfile, "--log-reopen", *extra)
        with Server(args, port) as s:
            wait_file(logfile, "spawned uWSGI worker 2")
            os.rename(logfile, tmp_path / "moved.log")
            os.kill(s.pid, 1)
            wait_file(logfile, "spawned uWSGI worker 2", timeout=60)
            _get_after_reload(port, "/after-reload")
            wait_file(logfile, "GET /after-reload")
        assert "GET /after-reload" not in (tmp_path / "moved.log").read_text()
        os.unlink(tmp_path / "moved.log")
        os.unlink(logfile)


# A real deployment's config (gist amgorb/2f8a834f7f1c400c50a8b616f4391117): uWSGI's messages as
# JSON, the app's "msgName" lines as they are, request lines as JSON, everything on stdout.
JSON_INI = r"""[uwsgi]
logger = default stdio
logger = secondlogger stdio
log-route = secondlogger msgName
log-route = default ^((?!msgName).)*$
log-encoder = json:default {"@timestamp":"${strftime:%%Y-%%m-%%dT%%H:%%M:%%S.666Z}","source":"uwsgi", "message":"${msg}"}
log-encoder = format:secondlogger ${msg}
log-encoder = nl
logger-req = stdio
log-req-encoder = json {"@timestamp":"${strftime:%%Y-%%m-%%dT%%H:%%M:%%S.666Z}","source":"req", "message":"${msg}"}
log-req-encoder = nl
"""


def test_json_logging_config_from_a_real_deployment(tmp_path):
    import json
    ini = tmp_path / "uwsgi.ini"
    ini.write_text(JSON_INI)
    port = free_port()
    with Server(base(tmp_path, port, "--ini", ini), port) as s:
        http_get(port, "/say?msgName=42")
        s.wait_log("app says: msgName=42")
        log = s.wait_log('"source":"req"')
    records = [line for line in log.splitlines() if line.startswith("{")]
    by_source = {}
    for line in records:
        obj = json.loads(line)
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.666Z", obj["@timestamp"])
        by_source.setdefault(obj["source"], []).append(obj["message"])
    assert "spawned uWSGI worker 2" in " ".join(by_source["uwsgi"])
    [req] = by_source["req"]
    assert "GET /say?msgName=42 => generated 2 bytes" in req
    assert "app says: msgName=42" in log.splitlines()     # routed to secondlogger: plain text
    assert not [line for line in log.splitlines() if "spawned uWSGI worker 2" in line and not line.startswith("{")]


def test_log_truncate(tmp_path):
    logfile = tmp_path / "main.log"
    for truncate, kept in (((), True), (("--log-truncate",), False)):
        logfile.write_text("AN OLD LINE\n")
        r = run_uwsgi(["--http-socket", f"127.0.0.1:{free_port()}", "--wsgi-file", tmp_path / "missing.py",
                       "--logto", logfile, *truncate], timeout=60)
        assert r.returncode != 0
        text = logfile.read_text()
        assert ("AN OLD LINE" in text) == kept and "*** Starting uWSGI" in text
