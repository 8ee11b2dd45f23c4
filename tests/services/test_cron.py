"""Command crons (uwsgid/services/cron.py) and the matcher they share with uwsgi.add_cron
(timers.cron_matches), against uWSGI's semantics; the scheduler driven by a fake wall clock
(cron.check(now)) but running real shell commands, reaped here as the master would."""

from __future__ import annotations

import os
import signal
import time

import pytest

from uwsgid.services import commands, cron, timers
from uwsgid.services.timers import cron_matches

T0 = 1_700_000_000          # a fixed wall time; the tests only count minutes from it


def tm(year=2026, month=1, mday=1, hour=0, minute=0):
    """A struct_time for that local date (tm_wday and the rest computed)."""
    return time.localtime(time.mktime((year, month, mday, hour, minute, 0, 0, 0, -1)))


# ---- the matcher ------------------------------------------------------------------------------

def test_any_and_every_n_minutes_hours():
    assert cron_matches((-1, -1, -1, -1, -1), tm(minute=37, hour=13))
    assert cron_matches((-5, -1, -1, -1, -1), tm(minute=35))
    assert cron_matches((-5, -1, -1, -1, -1), tm(minute=0))
    assert not cron_matches((-5, -1, -1, -1, -1), tm(minute=36))
    assert cron_matches((0, -3, -1, -1, -1), tm(hour=9))
    assert not cron_matches((0, -3, -1, -1, -1), tm(hour=10))
    assert cron_matches((30, 2, -1, -1, -1), tm(hour=2, minute=30))
    assert not cron_matches((30, 2, -1, -1, -1), tm(hour=3, minute=30))


def test_month_is_one_based_and_every_n_months_and_days():
    assert cron_matches((0, 0, 1, 2, -1), tm(month=2))
    assert not cron_matches((0, 0, 1, 2, -1), tm(month=1))
    assert cron_matches((0, 0, -1, -2, -1), tm(month=4))
    assert not cron_matches((0, 0, -1, -2, -1), tm(month=3))
    assert cron_matches((0, 0, -2, -1, -1), tm(mday=14))
    assert not cron_matches((0, 0, -2, -1, -1), tm(mday=15))


def test_weekday_sunday_is_0_and_7():
    sunday = tm(2026, 3, 1)             # 1 March 2026 is a Sunday
    assert sunday.tm_wday == 6
    assert cron_matches((0, 0, -1, -1, 0), sunday)
    assert cron_matches((0, 0, -1, -1, 7), sunday)
    assert not cron_matches((0, 0, -1, -1, 1), sunday)
    assert cron_matches((0, 0, -1, -1, 1), tm(2026, 3, 2))      # Monday
    # every 2 weekdays: Sunday (0), Tuesday (2), ...
    assert cron_matches((0, 0, -1, -1, -2), tm(2026, 3, 3))
    assert not cron_matches((0, 0, -1, -1, -2), tm(2026, 3, 2))


def test_day_and_weekday_both_given_either_matches():
    monday_2nd, sunday_15th, friday_13th = tm(2026, 3, 2), tm(2026, 3, 15), tm(2026, 3, 13)
    assert cron_matches((0, 0, 15, -1, 1), monday_2nd)          # a Monday
    assert cron_matches((0, 0, 15, -1, 1), sunday_15th)         # the 15th
    assert not cron_matches((0, 0, 15, -1, 1), friday_13th)
    # one of them "any": both must match (uWSGI ANDs them then)
    assert cron_matches((0, 0, 15, -1, -1), sunday_15th)
    assert not cron_matches((0, 0, 15, -1, -1), monday_2nd)
    assert cron_matches((0, 0, -1, -1, 1), monday_2nd)
    assert not cron_matches((0, 0, -1, -1, 1), sunday_15th)


def test_signal_crons_accept_weekday_7_and_refuse_out_of_range():
    timers.check_cron_fields((0, 0, -1, -1, 7))
    with pytest.raises(ValueError, match="weekday"):
        timers.check_cron_fields((0, 0, -1, -1, 8))
    with pytest.raises(ValueError, match="minute"):
        timers.check_cron_fields((60, 0, -1, -1, -1))


# ---- the option values ------------------------------------------------------------------------

def test_parse_cron_legacy_form():
    c = cron.parse_cron("-5 -1 -1 -1 -1 echo a  b; exit 3")
    assert c.fields == (-5, -1, -1, -1, -1)
    assert c.command == "echo a  b; exit 3"
    assert not c.unique and c.mercy == 0


@pytest.mark.parametrize("value, message", [
    ("*/5 * * * * echo", "invalid cron syntax"),
    ("-1 -1 -1 -1", "invalid cron syntax"),
    ("-1 -1 -1 -1 -1", "invalid cron syntax"),
    ("61 -1 -1 -1 -1 echo", "minute must be"),
    ("0 0 0 -1 -1 echo", "day must be"),
    ("0 0 -1 13 -1 echo", "month must be"),
])
def test_parse_cron_errors_name_the_option_and_value(value, message):
    with pytest.raises(ValueError, match=message) as info:
        cron.parse_cron(value)
    assert str(info.value).startswith("--cron ") and "\n" not in str(info.value)


def test_parse_cron2_keys_and_defaults():
    c = cron.parse_cron2("minute=-2,hour=3,week=7,unique=1,harakiri=20 touch /tmp/x, y")
    assert c.fields == (-2, 3, -1, -1, 7)
    assert c.command == "touch /tmp/x, y"
    assert c.unique and c.mercy == 20
    assert cron.parse_cron2("harakiri=0 true").mercy == -1      # 0: no harakiri, not even --cron-harakiri
    bare = cron.parse_cron2("echo a=b")                         # first word without '=': all command
    assert bare.command == "echo a=b" and bare.fields == (-1,) * 5


@pytest.mark.parametrize("value, message", [
    ("minute=5", "needs a command"),
    ("minute=5,weekday=1 true", "unknown key 'weekday'"),
    ("minute=x true", "minute must be an integer"),
    ("minute=75 true", "minute must be"),
    ("harakiri=-1 true", "harakiri must be >= 0"),
])
def test_parse_cron2_errors(value, message):
    with pytest.raises(ValueError, match=message):
        cron.parse_cron2(value)


def test_cron2_legion_is_refused_not_parsed():
    with pytest.raises(commands.Refused, match="no legions"):
        cron.parse_cron2("legion=mylegion,minute=1 true")


class Opts(dict):
    def get(self, name, default=None):
        return super().get(name, default)


def test_legion_crons_warn_or_exit_with_strict(capfd):
    cron.configure(Opts({"legion-cron": ["mylegion -1 -1 -1 -1 -1 true"]}))
    assert "*** WARNING: --legion-cron mylegion" in capfd.readouterr().err
    with pytest.raises(SystemExit):
        cron.configure(Opts({"cron2": ["legion=l true"], "strict": True}))
    cron._reset_for_tests()


# ---- the scheduler, real commands --------------------------------------------------------------

@pytest.fixture
def table(monkeypatch):
    cron._reset_for_tests()
    monkeypatch.setattr(cron, "clock", lambda: T0)      # exits are dated by this clock
    yield cron._crons
    for c in list(cron._crons):
        if c.pid > 0:
            _kill_and_reap(c.pid)
    cron._reset_for_tests()


def _kill(pid):
    """SIGKILL pid's group, or pid alone while it has not made its session yet."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        os.kill(pid, signal.SIGKILL)


def _kill_and_reap(pid):
    try:
        _kill(pid)
    except ProcessLookupError:
        pass
    try:
        return os.waitpid(pid, 0)[1]
    except ChildProcessError:
        return None


def _reap(pid, timeout=20.0):
    """Wait for our child `pid` and tell cron.py, as the master's child_exited hook does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            assert cron.child_exited(pid, status)
            return status
        time.sleep(0.02)
    raise AssertionError(f"cron command {pid} still running after {timeout}s")


def _lines(path):
    return path.read_text().split() if path.exists() else []


def test_every_minute_cron_runs_at_once_then_every_60s(table, tmp_path, capfd):
    out = tmp_path / "runs"
    table.append(cron.parse_cron(f"-1 -1 -1 -1 -1 echo $$ >> {out}"))
    cron.check(T0)
    first = table[0].pid
    assert first > 0
    assert f'[uwsgi-cron] running "echo $$ >> {out}" (pid {first})' in capfd.readouterr().err
    _reap(first)
    assert _lines(out) == [str(first)]              # the shell's own pid: it ran once
    assert "exited after 0 second(s)" in capfd.readouterr().err
    cron.check(T0 + 30)
    cron.check(T0 + 59)
    assert table[0].pid == -1 and len(_lines(out)) == 1
    cron.check(T0 + 60)
    _reap(table[0].pid)
    assert len(_lines(out)) == 2


def test_cron_runs_only_when_its_time_matches(table, tmp_path):
    out = tmp_path / "runs"
    now_tm = time.localtime(T0)
    other_minute = (now_tm.tm_min + 1) % 60
    table.append(cron.parse_cron(f"{other_minute} -1 -1 -1 -1 echo x >> {out}"))
    cron.check(T0)
    assert table[0].pid == -1
    cron.check(T0 + 60)
    assert table[0].pid > 0
    _reap(table[0].pid)
    assert _lines(out) == ["x"]


def test_unique_cron_does_not_overlap_but_plain_one_does(table, tmp_path):
    table.append(cron.parse_cron("-1 -1 -1 -1 -1 sleep 30", "unique-cron", unique=True))
    table.append(cron.parse_cron("-1 -1 -1 -1 -1 sleep 30"))
    unique, plain = table
    cron.check(T0)
    u1, p1 = unique.pid, plain.pid
    assert u1 > 0 and p1 > 0
    cron.check(T0 + 60)
    assert unique.pid == u1                         # still running: not started again
    assert plain.pid != p1 and plain.pid > 0        # a second run beside the first
    _kill(p1)
    os.waitpid(p1, 0)
    _kill(plain.pid)
    _reap(plain.pid)
    _kill(u1)
    _reap(u1)
    assert unique.pid == -1
    cron.check(T0 + 120)
    assert unique.pid > 0 and unique.pid != u1      # its previous run is over: it runs again


def test_cron_harakiri_kills_the_whole_process_group(table, tmp_path, capfd):
    child = tmp_path / "child"
    table.append(cron.parse_cron2(f"harakiri=1 sleep 30 & echo $! > {child}; wait"))
    cron.check(T0)
    pid = table[0].pid
    deadline = time.monotonic() + 10
    while not child.exists() or not child.read_text().strip():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    grandchild = int(child.read_text())
    assert not cron.check_harakiri(T0 + 1)          # not yet (uWSGI: deadline < now)
    assert cron.check_harakiri(T0 + 2)
    status = _reap(pid)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    err = capfd.readouterr().err
    assert f'*** HARAKIRI ON CRON "sleep 30 & echo $! > {child}; wait" (pid: {pid}) ***' in err
    assert "exited after" in err
    # the background sleep was in the cron's process group: killed too (a zombie at most)
    assert _dead(grandchild)


def _dead(pid, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                if f.read().rpartition(b")")[2].split()[0] == b"Z":
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.02)
    return False


def test_cron_harakiri_option_applies_unless_cron2_disables_it(table):
    cron.configure(Opts({"cron": ["-1 -1 -1 -1 -1 sleep 30"], "cron2": ["harakiri=0 sleep 30"],
                         "cron-harakiri": 5}))
    legacy, no_harakiri = table
    cron.check(T0)
    assert legacy.deadline == T0 + 5
    assert no_harakiri.deadline == 0
    assert not cron.check_harakiri(T0 + 5)
    assert cron.check_harakiri(T0 + 6)
    _reap(legacy.pid)
    assert no_harakiri.pid > 0


def test_stats_rows(table):
    table.append(cron.parse_cron("-1 3 -1 -1 1 true", "unique-cron", unique=True))
    assert cron.stats() == [{"minute": -1, "hour": 3, "day": -1, "month": -1, "week": 1, "command": "true",
                             "unique": 1, "pid": -1, "started_at": 0}]
