"""uwsgid.server.lane_gate: the gate's measures and accepting around the native lane's calls,
with a fake lane (a callable that burns CPU or sleeps) and a fake thread loop and gate."""

from __future__ import annotations

import os
import time

import pytest

from uwsgid.server import lane_gate
from uwsgid.server.thread_loop import ThreadLoop

native = pytest.importorskip("_uwsgi_native")
if not hasattr(native, "Lane"):
    pytest.skip("the native module has no lane (an old build)", allow_module_level=True)
from _uwsgi_native import LANE_IDLE, LANE_KEEP  # noqa: E402


def burn(seconds: float) -> None:
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


class FakeGate:
    def __init__(self, engaged=False):
        self.engaged = engaged
        self.records = []

    def measures(self, thread) -> bool:
        return self.engaged

    def record(self, cpu, sleep, now) -> None:
        self.records.append((cpu, sleep))


class FakeLoop:
    """What lane_gate uses of a ThreadLoop; the measure is ThreadLoop's own."""
    _measure_start = ThreadLoop._measure_start

    def __init__(self, gate):
        self.gate = gate
        self.accepting = True
        self.free = [object()]
        self.listeners = [object()]
        self._cpu0 = None
        self._stat0 = None
        self.schedstat_fd = os.open("/proc/thread-self/schedstat", os.O_RDONLY | os.O_CLOEXEC)
        FDS.append(self.schedstat_fd)
        self.events = []

    def stop_accepting(self):
        self.accepting = False
        self.events.append("stop")

    def start_accepting(self):
        self.accepting = True
        self.events.append("start")


class FakeLane:
    def __init__(self, tl, work, result):
        self.tl = tl
        self.work = work
        self.result = result
        self.calls = []

    def serve(self, fd, batch, index):
        self.calls.append((batch, self.tl.accepting))
        self.work()
        return self.result

    def handle(self, fd, data, addr, index):
        self.calls.append((data, self.tl.accepting))
        self.work()
        return self.result


FDS: list = []


@pytest.fixture(autouse=True)
def close_fds():
    yield
    while FDS:
        os.close(FDS.pop())


@pytest.fixture
def always(monkeypatch):
    monkeypatch.setattr(lane_gate, "SAMPLE", 1)     # every call measured


def make(engaged, work, result):
    gate = FakeGate(engaged)
    tl = FakeLoop(gate)
    lane = FakeLane(tl, work, result)
    serve, handle = lane_gate.wrap(tl, lane)
    return gate, tl, lane, serve, handle


def test_a_calls_cpu_time_is_shared_among_its_requests(always):
    gate, tl, lane, serve, _ = make(False, lambda: burn(0.02), (4, LANE_IDLE))
    assert serve(3, 16, 0) == (4, LANE_IDLE)
    assert lane.calls == [(16, True)]           # disengaged: the batch as asked, still accepting
    assert len(gate.records) == 4
    for cpu, sleep in gate.records:
        assert 0.004 < cpu < 0.008 and sleep is None
    assert tl._cpu0 is None and tl.events == []


def test_engaged_a_call_is_one_request_with_accepting_stopped_around_it(always):
    gate, tl, lane, serve, handle = make(True, lambda: time.sleep(0.05), (1, LANE_KEEP))
    serve(3, 16, 0)
    assert lane.calls == [(1, False)]           # one connection, the thread counted busy
    assert tl.events == ["stop", "start"] and tl.accepting
    (cpu, sleep), = gate.records
    assert cpu < 0.01 and 0.04 < sleep < 0.5    # asleep, measured from schedstat
    handle(5, b"GET", None, 0)                  # a kept-alive connection's next request: the same
    assert lane.calls[1] == (b"GET", False) and tl.events[2:] == ["stop", "start"]
    assert len(gate.records) == 2


GOES_ON = [k for k in ("LANE_RESUME", "LANE_DEFER") if hasattr(native, k)]


@pytest.mark.parametrize("kind", GOES_ON)
def test_a_request_that_goes_on_after_the_call_is_measured_by_core_done(always, kind):
    gate, tl, lane, serve, _ = make(True, lambda: burn(0.01), (0, getattr(native, kind)))
    serve(3, 16, 0)
    assert gate.records == []
    assert tl._cpu0 is not None and time.thread_time() - tl._cpu0 >= 0.009   # the lane's part counts
    assert tl.events == ["stop"]                # core_done starts accepting after the response


def test_a_call_that_raises_restores_accepting(always):
    def boom():
        raise RuntimeError("lane")

    gate, tl, lane, serve, _ = make(True, boom, None)
    with pytest.raises(RuntimeError):
        serve(3, 16, 0)
    assert tl._cpu0 is None and tl.events == ["stop", "start"] and gate.records == []


def test_disengaged_calls_are_sampled():
    gate, tl, lane, serve, _ = make(False, lambda: None, (1, LANE_KEEP))
    for _ in range(1600):
        serve(3, 16, 0)
    assert 120 < len(gate.records) < 280        # about one in lane_gate.SAMPLE (8): 200
    gate.engaged = True
    gate.records.clear()
    for _ in range(50):
        serve(3, 16, 0)
    assert len(gate.records) == 50              # engaged: every call
