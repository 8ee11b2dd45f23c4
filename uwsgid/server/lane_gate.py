"""The accept gate (uwsgid.server.accept_gate, --thread-slots) around the native lane's calls.

On the Python path a thread loop tells the gate what each request cost (ThreadLoop._measure_start
and _measure_end around the core's run) and, while the gate is engaged, stops accepting for the
request's time, so that the gate's monitor sees a busy holder (busy_since, its CPU clock and
scheduler state) and hands the slot on when the request blocks or runs past GRACE. The lane runs
the app inside one C call (lane.serve: from accept to response, for up to a batch of
connections; lane.handle: a kept-alive connection's next request), so the same is done around
the call:

- the thread's CPU time over the call is shared out among the requests the call ran: those it
  completed, and one that goes on after it (LANE_RESUME: handed to the Python path; LANE_DEFER:
  answered later), whose measure stays open for ThreadLoop.core_done to close at its end;
- while the gate is engaged, a call takes one connection (batch 1) and the thread stops accepting
  around it: the call is one request to the monitor, its time asleep is measured as on the
  Python path, and a thread whose slot was handed on meanwhile is parked when it asks again
  (start_accepting -> gate.admit), so that the lane accepts only while the thread holds a slot.

Engaged means requests of 2 ms or more on the CPU: the two epoll_ctl calls per request of
stopping and starting to accept cost nothing there. Disengaged, only one call in about SAMPLE is
measured, at random (no request pattern can hide from it): a thread-clock read is a system call
(about 2 us here, against 25 us for a whole lane request), and the gate needs only the mean. A
worker without a gate (one thread, --thread-slots 0) has its lane calls unwrapped.
"""

from __future__ import annotations

import time

from uwsgid.server.accept_gate import schedstat

try:
    import _uwsgi_native as _native
except ImportError:     # no lane in this build: native_lane never wraps
    _native = None
# the outcomes whose request goes on after the call (the Python path's rest, or an app that
# answers later), ended by ThreadLoop.core_done: LANE_DEFER where the lane has it
_GOES_ON = tuple(getattr(_native, k) for k in ("LANE_RESUME", "LANE_DEFER") if hasattr(_native, k))

_monotonic = time.monotonic
_thread_time = time.thread_time
_monotonic_ns = time.monotonic_ns
SAMPLE = 8      # disengaged, one lane call in this many (on average) is measured


def wrap(tl, lane):
    """(serve, handle): lane.serve and lane.handle of thread loop tl's lane, measured for tl's
    gate and accepting as the gate allows."""
    gate = tl.gate
    c_serve = lane.serve
    c_handle = lane.handle

    skip = 0

    def measured() -> bool:
        """Measure this call? Always while engaged; else one in SAMPLE, the gaps random."""
        nonlocal skip
        if gate.engaged:
            return True
        if skip:
            skip -= 1
            return False
        # 0 to 2 * SAMPLE - 2 calls skipped (SAMPLE - 1 on average), from the clock's nanoseconds:
        # random enough against request patterns, and no `random` module in every worker
        skip = _monotonic_ns() % (2 * SAMPLE - 1)
        return True

    def before() -> None:
        tl._measure_start()
        if tl.accepting and gate.engaged:
            tl.stop_accepting()     # the gate counts a thread busy from when it stops accepting

    def after(r) -> None:
        cpu = _thread_time() - tl._cpu0
        done = r[0]
        resumed = r[1] in _GOES_ON
        ran = done + resumed
        if done:
            now = _monotonic()
            share = cpu / ran
            sleep = None
            stat0 = tl._stat0
            if stat0 is not None and ran == 1:      # measured (engaged: one connection a call)
                started, (on_cpu0, queued0) = stat0
                on_cpu, queued = schedstat(tl.schedstat_fd)
                sleep = max(0.0, now - started - (on_cpu - on_cpu0) - (queued - queued0))
            for _ in range(done):
                gate.record(share, sleep, now)
        if resumed:
            # the request goes on (the Python path runs its rest, or the app answers later):
            # core_done measures it from here, with its share of the call, and starts
            # accepting again as after any request
            tl._cpu0 = _thread_time() - cpu / ran
            if done:
                tl._stat0 = None
            return
        tl._cpu0 = None
        tl._stat0 = None
        if not tl.accepting and tl.free and tl.listeners:
            tl.start_accepting()    # as core_done: gate.admit decides (parked if the slot went on)

    def failed() -> None:
        tl._cpu0 = None
        tl._stat0 = None
        if not tl.accepting and tl.free and tl.listeners:
            tl.start_accepting()

    def serve(fd: int, batch: int, index: int):
        if not measured():
            return c_serve(fd, batch, index)
        if gate.engaged:
            batch = 1   # one request a call: the monitor's busy spell is that request's
        before()
        try:
            r = c_serve(fd, batch, index)
        except BaseException:
            failed()
            raise
        after(r)
        return r

    def handle(fd: int, data: bytes, addr, index: int):
        if not measured():
            return c_handle(fd, data, addr, index)
        before()
        try:
            r = c_handle(fd, data, addr, index)
        except BaseException:
            failed()
            raise
        after(r)
        return r

    return serve, handle
