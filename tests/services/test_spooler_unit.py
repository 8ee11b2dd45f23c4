"""The spooler in-process: the spool file format (uWSGI's core/spooler.c), taking a task under
its lock, the scan order, uwsgi.spool()'s argument rules and its errors, the signal target."""

from __future__ import annotations

import os
import struct
import time

import pytest
from services_helpers import make_opts, reset_services

from uwsgid.services import api, signals, spool_file, spooler, spooler_master


@pytest.fixture
def spool_dir(tmp_path):
    reset_services()
    spooler._reset_for_tests()
    spooler_master._reset_for_tests()
    d = tmp_path / "spool"
    spooler.setup(make_opts(spooler=[str(d)], spooler_quiet=True), str(tmp_path))
    yield d
    spooler._reset_for_tests()
    spooler_master._reset_for_tests()
    reset_services()


def _parse(path):
    data = open(path, "rb").read()
    mod1, size, mod2 = struct.unpack_from("<BHB", data)
    return mod1, mod2, spool_file.parse_vars(data[4:4 + size]), data[4 + size:]


def test_spool_writes_a_uwsgi_packet_named_as_uwsgi(spool_dir):
    path = api.spool({b"a": b"1", "b": "\u00e9", b"n": 42, "body": b"\x00\xffbody"})
    assert isinstance(path, bytes)
    name = os.path.basename(path.decode())
    host = os.uname().nodename
    prefix = f"uwsgi_spoolfile_on_{host}_{os.getpid()}_"
    assert name.startswith(prefix) and os.path.dirname(path.decode()) == str(spool_dir.resolve())
    counter, rand, sec, usec = name[len(prefix):].split("_")
    assert all(x.isdigit() for x in (counter, rand, sec, usec)) and abs(int(sec) - time.time()) < 60
    mod1, mod2, args, body = _parse(path)
    assert (mod1, mod2) == (17, 0)
    assert args == {b"a": b"1", b"b": "\u00e9".encode(), b"n": b"42"}
    assert body == b"\x00\xffbody"
    assert oct(os.stat(path).st_mode & 0o777) == oct(0o600)
    # written under a temporary name, renamed: nothing else is left in the dir
    assert os.listdir(spool_dir) == [name]
    # kwargs form, send_to_spooler alias
    path2 = api.send_to_spooler(x=b"y")
    assert _parse(path2)[2] == {b"x": b"y"} and path2 != path


def test_priority_and_at(spool_dir):
    path = api.spool({b"priority": b"7", b"at": b"2000000000.5", b"k": b"v"})
    assert os.path.dirname(path.decode()) == str(spool_dir.resolve() / "7")
    assert int(os.stat(path).st_mtime) == 2000000000
    # the task is not taken before its time
    assert spool_file.take(str(spool_dir / "7"), os.path.basename(path.decode())) is None
    with pytest.raises(ValueError, match="priority must be a number"):
        api.spool({b"priority": b"../x"})


def test_bad_spool_calls_get_clear_errors(spool_dir):
    with pytest.raises(ValueError, match="must be a dictionary"):
        api.spool([1, 2])
    with pytest.raises(ValueError, match="only bytes"):
        api.spool({1: b"x"})
    with pytest.raises(ValueError, match="not both"):
        api.spool({b"a": b"b"}, c=b"d")
    with pytest.raises(ValueError, match="must be bytes or str"):
        api.spool({b"a": object()})
    with pytest.raises(ValueError, match="limited to 64k"):
        api.spool({b"a": b"x" * 40000, b"b": b"y" * 40000})
    with pytest.raises(ValueError, match='unable to find spooler "/nowhere"'):
        api.spool({b"spooler": b"/nowhere", b"a": b"b"})
    # a big body is fine
    path = api.spool({b"a": b"b", b"body": b"z" * 200000})
    assert len(_parse(path)[3]) == 200000
    # the spooler key names a dir (as given or its realpath)
    assert api.spool({b"spooler": str(spool_dir).encode(), b"a": b"b"})


def test_no_spooler_configured():
    spooler._reset_for_tests()
    with pytest.raises(ValueError, match="no spooler is configured"):
        api.spool({b"a": b"b"})
    assert api.spooler_pid() == 0 and api.spooler_pids() == [] and api.spooler_jobs() == []
    assert api.i_am_the_spooler() is None


def test_take_locks_and_skips_locked_or_partial_files(spool_dir):
    path = api.spool({b"a": b"b"}).decode()
    name = os.path.basename(path)
    task = spool_file.take(str(spool_dir), name)
    assert task is not None and task.args == {b"a": b"b"} and task.body is None
    # another process cannot take it while we hold it (POSIX locks are per process)
    pid = os.fork()
    if pid == 0:
        os._exit(0 if spool_file.take(str(spool_dir), name) is None else 1)
    assert os.waitpid(pid, 0)[1] == 0
    assert api.spooler_get_task(path)[b"a"] == b"b"     # our own lock does not hide it from us
    task.done()
    task.close()
    assert not os.path.exists(path)
    # a file uWSGI is still writing (created, header not there yet): skipped, kept
    partial = spool_dir / "uwsgi_spoolfile_on_x_1_1_1_1_1"
    partial.write_bytes(b"\x11")
    assert spool_file.take(str(spool_dir), partial.name) is None and partial.exists()
    # a broken one (args shorter than the header says): Corrupt (the spooler removes it)
    partial.write_bytes(b"\x11\x10\x00\x00abc")
    with pytest.raises(spool_file.Corrupt):
        spool_file.take(str(spool_dir), partial.name)


def test_ordered_scan_order(tmp_path):
    names = ["uwsgi_spoolfile_on_h_10_2_1_1_1", "uwsgi_spoolfile_on_h_10_10_1_1_1", "10", "2", "other"]
    for n in names:
        (tmp_path / n).mkdir() if n.isdigit() else (tmp_path / n).write_bytes(b"")
    assert spool_file.entries(str(tmp_path), ordered=True) == [
        "2", "10", "uwsgi_spoolfile_on_h_10_2_1_1_1", "uwsgi_spoolfile_on_h_10_10_1_1_1"]
    assert sorted(spool_file.entries(str(tmp_path), ordered=False)) == sorted(
        ["uwsgi_spoolfile_on_h_10_2_1_1_1", "uwsgi_spoolfile_on_h_10_10_1_1_1"])


def test_spooler_jobs_and_get_task(spool_dir):
    p1 = api.spool({b"a": b"1", b"body": b"B"})
    p2 = api.spool({b"a": b"2"})
    assert sorted(api.spooler_jobs()) == sorted([p1, p2])
    task = api.spooler_get_task(p1)
    assert task == {"spooler_task_name": p1, b"a": b"1", "body": b"B"}
    assert api.spooler_get_task(b"/nonexistent") is None


def test_options_are_checked(tmp_path):
    spooler._reset_for_tests()
    with pytest.raises(ValueError, match="--spooler-frequency 0: must be >= 1"):
        spooler.setup(make_opts(spooler=[str(tmp_path / "s")], spooler_frequency=0))
    spooler._reset_for_tests()
    with pytest.raises(ValueError, match="--spooler-import nope.py: no such file"):
        spooler.setup(make_opts(spooler=[str(tmp_path / "s")], spooler_import=["nope.py"]), str(tmp_path))
    spooler._reset_for_tests()
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="--spooler .*file: not a directory"):
        spooler.setup(make_opts(spooler=[str(tmp_path / "file")]))
    spooler._reset_for_tests()
    with pytest.raises(ValueError, match="--spooler-chdir .*: no such directory"):
        spooler.setup(make_opts(spooler=[str(tmp_path / "s")], spooler_chdir=str(tmp_path / "none")))
    spooler._reset_for_tests()
    # two processes per dir, one external slot; relative dirs resolved against the start dir
    spooler.setup(make_opts(spooler=["rel"], spooler_external=[str(tmp_path / "ext")], spooler_processes=2),
                  str(tmp_path))
    assert spooler.dirs == [str(tmp_path / "rel")] * 2 + [str(tmp_path / "ext")]
    assert spooler.external == [False, False, True]
    assert (tmp_path / "ext").is_dir() and oct((tmp_path / "rel").stat().st_mode & 0o777) == oct(0o750)
    assert [s["dir"] for s in spooler.stats()] == spooler.dirs
    spooler._reset_for_tests()


def test_signal_target_spooler(tmp_path):
    reset_services(make_opts())
    spooler._reset_for_tests()
    spooler.setup(make_opts(spooler=[str(tmp_path / "s")]))
    assert api.register_signal(5, "spooler", print)
    assert signals.route(5) == 1
    assert spooler.spoolers_end().recv(8) == bytes([5])
    spooler._reset_for_tests()
    reset_services()


def test_signal_target_spooler_needs_a_spooler():
    spooler._reset_for_tests()
    reset_services(make_opts())
    with pytest.raises(ValueError, match="not supported without a spooler"):
        api.register_signal(5, "spooler", print)
