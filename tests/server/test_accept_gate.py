"""uwsgid.server.accept_gate: slots, parking, and the monitor's view of real threads."""

from __future__ import annotations

import threading
import time

import pytest

from uwsgid.server import accept_gate
from uwsgid.server.accept_gate import AcceptGate, default_slots, thread_running

THREADS: list = []


@pytest.fixture(autouse=True)
def stop_threads():
    yield
    for r in THREADS:
        r.stop.set()
    THREADS.clear()


def blocked(r) -> None:
    r.stop.wait(30)


class FakeThread:
    """What the gate needs of a thread loop, running in a real thread so that its CPU clock and
    scheduler state are real. By default the thread waits (an idle or blocked one)."""

    def __init__(self, name: str, work=blocked):
        THREADS.append(self)
        self.name = name
        self.accepting = False
        self.busy_since = 0.0
        self.granted = 0
        self.regated = 0
        self.busy = False
        self.stop = threading.Event()
        self.ready = threading.Event()
        self._work = work
        self.thread = threading.Thread(target=self._main, daemon=True)
        self.thread.start()
        self.ready.wait(5)

    def _main(self) -> None:
        self.tid = threading.get_native_id()
        self.cpu_clock = time.pthread_getcpuclockid(threading.get_ident())
        self.ready.set()
        if self._work is not None:
            self._work(self)

    def grant(self) -> None:
        self.granted += 1
        self.accepting = True   # what a thread loop does with a slot

    def regate(self) -> None:
        self.regated += 1

    def __repr__(self) -> str:
        return self.name


def spinning(r: FakeThread) -> None:
    while not r.stop.is_set():
        pass


def engaged(gate: AcceptGate) -> AcceptGate:
    gate.engaged = True
    return gate


def look(gate: AcceptGate, times: int = 3) -> None:
    for _ in range(times):
        with gate._lock:
            gate.check(time.monotonic())
        time.sleep(0.02)


def test_default_slots_share_the_cpus_among_workers():
    assert default_slots(1) >= 1
    assert default_slots(10_000) == 1


def test_slots_are_limited_and_the_rest_park():
    gate = engaged(AcceptGate(1))
    a, b, c = FakeThread("a"), FakeThread("b"), FakeThread("c")
    assert gate.admit(a)
    assert gate.admit(a)            # a holder stays admitted
    assert not gate.admit(b)
    assert not gate.admit(c)
    assert not gate.admit(b)        # parked once, not twice
    assert gate.parked == [b, c]


def test_a_blocked_holder_hands_its_slot_to_the_latest_parked_thread():
    gate = engaged(AcceptGate(1, grace=60))
    a, b, c = FakeThread("a"), FakeThread("b"), FakeThread("c")
    assert gate.admit(a)
    gate.admit(b)
    gate.admit(c)
    gate.busy(a)                # a stops accepting and waits (I/O)
    look(gate)
    assert a not in gate.holders
    assert gate.holders == {c} and c.granted == 1 and b.granted == 0
    assert gate.admit(c)
    assert not gate.admit(a)    # done with its request: a parks now
    assert gate.parked == [b, a]


def test_a_holder_on_the_cpu_keeps_its_slot_until_the_grace_ends():
    gate = engaged(AcceptGate(1, grace=0.3))
    a = FakeThread("a", spinning)
    b = FakeThread("b")
    assert gate.admit(a)
    gate.admit(b)
    gate.busy(a)
    assert thread_running(a.tid)
    look(gate)                  # ~60 ms of CPU-bound work: a keeps the slot
    assert gate.holders == {a} and b.granted == 0
    time.sleep(0.3)
    look(gate, 2)               # past the grace: b may accept too
    assert gate.holders == {b} and b.granted == 1


def test_a_holder_whose_thread_is_gone_is_released():
    gate = engaged(AcceptGate(1, grace=60))
    a = FakeThread("a", None)
    a.thread.join(5)
    # join() returns when Python is done with the thread; the kernel's thread (and its CPU
    # clock) may outlive it briefly on a loaded machine: the gate is looked at once it is gone
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            time.clock_gettime(a.cpu_clock)
        except OSError:
            break
        time.sleep(0.01)
    b = FakeThread("b")
    gate.admit(a)
    gate.admit(b)
    gate.busy(a)
    look(gate, 1)
    assert gate.holders == {b} and b.granted == 1


def test_an_accepting_holder_is_never_released():
    gate = engaged(AcceptGate(1, grace=0.0))
    a = FakeThread("a", blocked)
    b = FakeThread("b")
    gate.admit(a)
    a.accepting = True
    gate.admit(b)
    look(gate)
    assert gate.holders == {a} and b.granted == 0


def test_the_monitor_thread_releases_a_blocked_holder():
    gate = engaged(AcceptGate(1, grace=60))
    a = FakeThread("a", blocked)
    b = FakeThread("b")
    gate.start("test-slots")
    try:
        gate.admit(a)
        gate.admit(b)
        gate.busy(a)
        deadline = time.monotonic() + 5
        while b.granted == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert b.granted == 1 and gate.holders == {b}
    finally:
        gate.close()


def test_the_gate_engages_for_cpu_heavy_requests_only():
    gate = AcceptGate(1)
    a, b = FakeThread("a"), FakeThread("b")
    gate.threads += [a, b]
    for _ in range(50):
        gate.record(0.0001, None, 0.0)     # short requests: every thread accepts
    assert not gate.engaged and gate.admit(a) and gate.admit(b)
    assert not gate.measures(a)            # and none measures its sleep
    for _ in range(50):
        gate.record(0.010, None, 0.0)      # 10 ms on the CPU
    assert gate.engaged
    assert a.regated == b.regated == 1     # accepting threads are asked to re-check
    assert gate.measures(a)                # measured when running alone...
    b.busy = True
    assert not gate.measures(a)            # ...only
    b.busy = False
    assert gate.admit(a) and not gate.admit(b)
    for _ in range(5):
        gate.record(0.0015, 0.0, 0.0)      # between the thresholds: no flapping
    assert gate.engaged
    for _ in range(50):
        gate.record(0.0001, 0.0, 0.0)      # short again: off
    assert not gate.engaged
    assert b.granted == 1 and gate.parked == [] and gate.holders == set()
    assert gate.admit(b)


def test_requests_that_sleep_more_than_they_compute_turn_the_gate_off_for_a_while():
    gate = AcceptGate(1)
    for _ in range(50):
        gate.record(0.005, None, 0.0)
    assert gate.engaged
    for _ in range(accept_gate.SLEEP_SAMPLES - 1):
        gate.record(0.005, 0.050, 1.0)     # 5 ms of CPU around a 50 ms wait (a database call)
    assert gate.engaged                    # not on a few samples
    for _ in range(5):
        gate.record(0.005, 0.050, 1.0)
    assert not gate.engaged
    gate.record(0.005, None, 1.0 + accept_gate.BACKOFF / 2)
    assert not gate.engaged                # backing off
    gate.record(0.005, None, 1.0 + accept_gate.BACKOFF)
    assert gate.engaged and gate.sleep_samples == 0


def test_schedstat_reads_this_threads_cpu_time():
    import os
    fd = os.open("/proc/thread-self/schedstat", os.O_RDONLY)
    try:
        before = accept_gate.schedstat(fd)[0]
        # 50 ms of this thread's CPU time (not of wall time: a loaded machine gives it less);
        # schedstat may lag the thread's clock by a scheduler tick
        end = time.thread_time() + 0.05
        while time.thread_time() < end:
            pass
        assert accept_gate.schedstat(fd)[0] - before >= 0.04
    finally:
        os.close(fd)
