"""The log master's parts in this process: logger specs (uWSGI's "[NAME ]PLUGIN[:ARGS]"), the
encoders, routing (--log-route, --log-drain, --log-filter, --req-logger), and rotation."""

from __future__ import annotations

import gzip
import os
import socket
import zlib

import pytest

from uwsgid.util import loggers
from uwsgid.util.logencoders import Encoder
from uwsgid.util.logsinks import LogSinkError, RotatingFile, parse_logger


@pytest.fixture
def main(tmp_path):
    path = tmp_path / "main.log"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
    yield RotatingFile(fd, str(path))
    os.close(fd)


def test_logger_specs(tmp_path, main):
    sink = parse_logger(f"audit file:{tmp_path}/a.log", main)
    assert sink.id == "audit"
    sink.write(b"hello\n")
    assert (tmp_path / "a.log").read_bytes() == b"hello\n"
    assert parse_logger("stdio", main).id is None
    # a colon in the arguments belongs to them; a space not after an id is part of the spec
    sink = parse_logger(f"file:logfile={tmp_path}/k.log,maxsize=10", main)
    assert sink.file.maxsize == 10 and sink.file.path == f"{tmp_path}/k.log"


@pytest.mark.parametrize("spec, words", [
    ("nosuch:x", "unable to find logger 'nosuch'"),
    ("file", "needs a path"),
    ("file:logfile=/tmp/x,size=3", "invalid key=value item 'size=3'"),
    ("fd:abc", "needs a file descriptor number"),
    ("fd:987", "file descriptor 987 is not open"),
    ("syslog:app,local9", "unknown facility 'local9'"),
    ("socket", "needs an address"),
    ("file:/nonexistent-dir/x.log", "cannot open /nonexistent-dir/x.log"),
])
def test_bad_logger_specs_say_which(spec, words, main):
    with pytest.raises(LogSinkError) as e:
        parse_logger(spec, main, "--req-logger")
    text = str(e.value)
    assert text.startswith(f"--req-logger {spec}: ") and words in text and "\n" not in text


def test_encoders():
    assert Encoder("prefix [app] ")(b"x\n") == b"[app] x\n"
    assert Encoder("suffix !")(b"x") == b"x!"
    assert Encoder("nl")(b"x") == b"x\n"
    assert Encoder("format <${msg}>")(b"line\n") == b"<line>"
    assert Encoder("format <${msgnl}>")(b"line\n") == b"<line\n>"
    out = Encoder('json {"m":"${msg}","t":${unix}}')(b'say "hi"\n')
    assert out.startswith(b'{"m":"say \\"hi\\"","t":') and out.endswith(b"}")
    assert zlib.decompress(Encoder("compress")(b"abc")) == b"abc"
    assert gzip.decompress(Encoder("gzip")(b"abc")) == b"abc"
    enc = Encoder("prefix:audit A ")
    assert enc.use_for == "audit" and enc.args == "A "
    with pytest.raises(LogSinkError, match="log encoder 'rot13' not found"):
        Encoder("rot13")


def _master(main, **kw):
    """A LogMaster reading a socket pair of ours (not fd 1/2 of the test process)."""
    r, w = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    m = loggers.LogMaster(main, inherited=(r.detach(), -1, -1), **kw)
    return m, w


def test_routes_drains_filters_and_named_loggers(tmp_path, main):
    plain = parse_logger(f"file:{tmp_path}/plain.log", main)
    named = parse_logger(f"errors file:{tmp_path}/errors.log", main)
    m, _ = _master(main, sinks=[plain, named],
                   routes=loggers._regexps(["errors ERROR"], "--log-route", True, {"errors": named}),
                   drains=loggers._regexps(["^noise"], "--log-drain"),
                   encoders=[Encoder("prefix:errors !! ")])
    m.dispatch(b"all good\n")
    m.dispatch(b"an ERROR here\n")
    m.dispatch(b"noise to drop\n")
    assert (tmp_path / "plain.log").read_bytes() == b"all good\n"             # not routed lines
    assert (tmp_path / "errors.log").read_bytes() == b"!! an ERROR here\n"    # routed only, encoded
    assert (tmp_path / "main.log").read_bytes() == b""       # a logger took them: not the raw log
    m2, _ = _master(main, filters=loggers._regexps(["keep"], "--log-filter"))
    m2.dispatch(b"keep me\n")
    m2.dispatch(b"drop me\n")
    assert (tmp_path / "main.log").read_bytes() == b"keep me\n"


def test_route_to_unknown_logger_is_refused():
    with pytest.raises(LogSinkError, match="no --logger named 'nosuch'"):
        loggers._regexps(["nosuch x"], "--log-route", True, {})
    with pytest.raises(LogSinkError, match="bad regexp"):
        loggers._regexps(["("], "--log-drain")


def test_messages_over_the_socket_pair_stay_whole(tmp_path, main):
    m, w = _master(main)
    lines = [b"%d %s\n" % (i, b"x" * (i * 37 % 3000)) for i in range(200)]
    for batch in range(0, 200, 20):     # within the socket's buffer: nobody drains while we write
        for line in lines[batch:batch + 20]:
            w.send(line)
        m.drain()
    assert (tmp_path / "main.log").read_bytes() == b"".join(lines)


def test_rotation_and_reopen(tmp_path, main):
    main.maxsize = 100
    main.write(b"a" * 60 + b"\n")
    assert not list(tmp_path.glob("main.log.*"))
    main.write(b"b" * 60 + b"\n")        # over 100 bytes: rotated after this write
    [backup] = tmp_path.glob("main.log.*")
    old = backup.read_bytes()
    assert old.startswith(b"a" * 60 + b"\n" + b"b" * 60 + b"\n")
    assert b"logsize: 122, triggering rotation to " + str(backup).encode() in old
    main.write(b"next\n")
    assert (tmp_path / "main.log").read_bytes() == b"next\n"
    # a second rotation in the same second keeps the first backup
    main.write(b"c" * 120 + b"\n")
    assert len(list(tmp_path.glob("main.log.*"))) == 2
    # reopen: an outside logrotate moved the file away
    os.rename(tmp_path / "main.log", tmp_path / "moved.log")
    main.maxsize = 0
    assert main.reopen()
    main.write(b"after reopen\n")
    assert (tmp_path / "main.log").read_bytes().endswith(b"reopened.\nafter reopen\n")
    assert b"triggering log-reopen" in (tmp_path / "moved.log").read_bytes()


def test_backupname(tmp_path, main):
    main.backupname = str(tmp_path / "old.log")
    main.write(b"first\n")
    assert main.rotate()
    assert (tmp_path / "old.log").read_bytes().startswith(b"first\n")


def test_syslog_logger_builds_and_writes(main):
    sink = parse_logger("syslog:myapp,local3", main)
    sink.write(b"to syslog\n")          # no syslog daemon here: libc drops it, nothing raises
    assert sink.id is None


def test_rotate_without_a_log_master_moves_this_process_only(tmp_path):
    """util.log.rotate() with a plain --logto: this process's fd 1 and 2 go to the new file."""
    import subprocess
    import sys
    code = f"""
import os
from uwsgid.util import log, loggers
fd = os.open({str(tmp_path / 'plain.log')!r}, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
os.dup2(fd, 1); os.dup2(fd, 2)
loggers.logfile = {str(tmp_path / 'plain.log')!r}
log.log("before")
assert log.rotate()
log.log("after")
"""
    r = subprocess.run([sys.executable, "-c", code], cwd=str(tmp_path.parent), capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}, timeout=60, check=False)
    assert r.returncode == 0, r.stderr
    [backup] = tmp_path.glob("plain.log.*")
    assert backup.read_text().startswith("before\n")
    new = (tmp_path / "plain.log").read_text()
    assert new.startswith("only this process writes to the new file") and new.endswith("after\n")
