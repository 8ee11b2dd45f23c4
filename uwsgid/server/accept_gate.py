"""--thread-slots: which threads of a worker take new connections.

With --threads N and no gate, every idle thread accepts, so a loaded worker runs N requests at
once and the kernel time-slices them. For CPU-bound apps with a large per-thread state (a
lua_State each: Sputnik's is ~6 MB) that costs about a third of the CPU in cache misses, since no
state stays in the cache between its turns.

A slot is the right to accept. A thread that finishes a request keeps its slot and takes the
next connection, its state still warm. Another thread gets a slot when a holder is busy without
using the CPU (blocked in I/O, waiting for a slow client or a lock), or has been busy longer
than GRACE; a monitor thread sees that from the holder's CPU clock and scheduler state.

The gate engages only while the worker's recent requests are CPU-heavy (ENGAGE_CPU of CPU time
or more each): short requests gain nothing from it and would pay its overhead. Once engaged, it
also measures how long requests sleep (blocked: wall time less CPU time and run-queue time),
for requests that start with no other request of the worker running: with others around, a wait
for the GIL behind a preempted thread looks the same. Requests that sleep longer than they
compute (a database call) are what threads are for, and passing the slot on takes a monitor
tick each time: the gate disengages for BACKOFF seconds. Disengaged, every idle thread accepts,
as in uWSGI.
"""

from __future__ import annotations

import os
import threading
import time

from uwsgid.util.log import log, log_exception

TICK = 0.002        # how often the monitor looks at busy holders
GRACE = 0.1         # a request busy for longer than this no longer keeps other threads from accepting
ENGAGE_CPU = 0.002  # engage at this mean CPU time per request (s)...
RELEASE_CPU = 0.001  # ...and disengage below this one
SLEEP_SAMPLES = 10  # requests measured asleep before sleeping can disengage the gate
BACKOFF = 30.0      # seconds off after requests were seen sleeping more than computing
WEIGHT = 0.1        # of the latest request in the moving averages


def default_slots(processes: int) -> int:
    """One slot per CPU this process may use, shared out among the workers; at least one."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, cpus // max(1, processes))


def schedstat(fd: int) -> tuple[float, float]:
    """(seconds on the CPU, seconds waiting in the run queue) of the thread whose
    /proc/thread-self/schedstat fd is open."""
    on_cpu, waiting, _ = os.pread(fd, 96, 0).split()
    return int(on_cpu) / 1e9, int(waiting) / 1e9


def thread_running(tid: int) -> bool:
    """True when the kernel has thread tid running or runnable (state R), not sleeping."""
    try:
        with open(f"/proc/self/task/{tid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return False
    # the state follows the command name, which is in parentheses and may contain anything
    return data.rpartition(b")")[2][1:2] == b"R"


class AcceptGate:
    """Slots for one worker's threads (their uwsgid.server.thread_loop.ThreadLoop). A thread
    passed to the gate needs `accepting` and `busy` (bools), `busy_since` (set by busy()),
    `cpu_clock`, `tid`, and two thread-safe calls that run in that thread: `grant()` (start
    accepting) and `regate()` (ask admit() again if accepting, and stop unless admitted).
    record() runs unlocked from any thread: a lost update only nudges a moving average."""

    def __init__(self, slots: int, tick: float = TICK, grace: float = GRACE, name: str = "thread slots"):
        self.slots = slots
        self.name = name
        self.tick = tick
        self.grace = grace
        self.holders: set = set()
        self.parked: list = []      # threads refused a slot, the most recently parked last
        self.threads: list = []     # all of them (the worker adds each)
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._idle = True           # the monitor waits for a busy holder
        self._closed = False
        self._marks: dict = {}      # busy holder -> (busy_since, wall, cpu) at the last look
        self.engaged = False
        self.cpu_avg = 0.0          # moving averages per request: CPU time, and time asleep
        self.sleep_avg = 0.0
        self.sleep_samples = 0      # requests measured asleep in this engaged spell
        self.off_until = 0.0        # monotonic time before which the gate stays off
        self._thread: threading.Thread | None = None

    def start(self, thread_name: str = "uwsgi-slots") -> None:
        self._thread = threading.Thread(target=self._monitor, name=thread_name, daemon=True)
        self._thread.start()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._cond.notify()

    # ---- called by the threads, each in its own ------------------------------------------
    def measures(self, thread) -> bool:
        """thread starts a request: should it measure its time asleep (schedstat)? While
        engaged, and when no other thread of the worker is serving a request."""
        return self.engaged and all(t is thread or not t.busy for t in self.threads)

    def record(self, cpu: float, sleep: float | None, now: float) -> None:
        """A request ended: its thread's CPU time and, when measured, its time asleep."""
        self.cpu_avg += (cpu - self.cpu_avg) * WEIGHT
        if self.engaged:
            if sleep is not None:
                self.sleep_avg += (sleep - self.sleep_avg) * WEIGHT
                self.sleep_samples += 1
            if self.cpu_avg < RELEASE_CPU:
                self._set_engaged(False)
            elif self.sleep_samples >= SLEEP_SAMPLES and self.sleep_avg > self.cpu_avg:
                self.off_until = now + BACKOFF
                self._set_engaged(False)
        elif self.cpu_avg >= ENGAGE_CPU and now >= self.off_until:
            self.sleep_avg = 0.0
            self.sleep_samples = 0
            self._set_engaged(True)

    def _set_engaged(self, on: bool) -> None:
        with self._lock:
            if self.engaged == on:
                return
            self.engaged = on
            log(f"{self.name}: {'on' if on else 'off'} (requests average {self.cpu_avg * 1000:.1f} ms "
                f"on the CPU, {self.sleep_avg * 1000:.1f} ms asleep)")
            if on:          # threads accepting without a slot stop, but for `slots` of them
                for t in self.threads:
                    t.regate()
            else:           # every thread may accept again
                parked, self.parked = self.parked, []
                self.holders.clear()
                self._marks.clear()
                for t in parked:
                    t.grant()

    def admit(self, thread) -> bool:
        """May thread accept? If not, it is parked until a slot is granted to it."""
        if not self.engaged:
            return True
        with self._lock:
            if not self.engaged:
                return True
            if thread in self.holders:
                return True
            if len(self.holders) < self.slots:
                self.holders.add(thread)
                if thread in self.parked:
                    self.parked.remove(thread)
                return True
            if thread not in self.parked:
                self.parked.append(thread)
            return False

    def busy(self, thread) -> None:
        """thread stopped accepting: it holds a connection or runs a request."""
        thread.busy_since = time.monotonic()
        with self._lock:   # taken every time: checking _idle outside it could miss the monitor going idle
            if self._idle and thread in self.holders:
                self._idle = False
                self._cond.notify()

    # ---- the monitor ------------------------------------------------------------------------
    def _monitor(self) -> None:
        with self._lock:
            while not self._closed:
                try:
                    busy = self.check(time.monotonic())
                except Exception:   # never let the monitor die: threads would stay parked
                    log_exception("thread slots: error in the monitor (continuing):")
                    busy = True
                if busy:
                    self._cond.wait(self.tick)
                else:
                    self._idle = True
                    self._cond.wait(1.0)
                    self._idle = False

    def check(self, now: float) -> bool:
        """One look at the holders (lock held): release those busy without the CPU or for too
        long. True while some holder is busy."""
        busy = False
        for t in list(self.holders):
            if t.accepting:
                self._marks.pop(t, None)
                continue
            busy = True
            try:
                cpu = time.clock_gettime(t.cpu_clock)
            except OSError:        # its thread is gone
                self._release(t)
                continue
            since = t.busy_since
            mark = self._marks.get(t)
            if mark is None or mark[0] != since:   # a new busy spell: look again next tick
                self._marks[t] = (since, now, cpu)
                continue
            idle_cpu = cpu - mark[2] < (now - mark[1]) / 2
            if now - since > self.grace or (idle_cpu and not thread_running(t.tid)):
                self._release(t)
            else:
                self._marks[t] = (since, now, cpu)
        return busy

    def _release(self, thread) -> None:
        """thread's slot goes to the most recently parked thread (lock held)."""
        self.holders.discard(thread)
        self._marks.pop(thread, None)
        if self.parked:
            nxt = self.parked.pop()
            self.holders.add(nxt)
            nxt.grant()
