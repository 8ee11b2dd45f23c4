"""Spreading long-lived connections over the workers of --async N and --gevent N.

A kept-alive connection stays with the worker that accepted it, and a worker runs at most N
requests at once (its cores); a connection's next request waits for a core of its own worker
even while another worker has cores idle. When a load opens its connections in a burst (wrk's
200 over 2 workers of 100 cores), the accept race gives one worker 115 and the other 85: 15
requests always wait while 15 cores never run, 7% of the throughput lost for the whole run.
The listener's requeue (ThreadLoop.kept_open) only evens out which worker is woken first.

So each such worker publishes its open connections in the scoreboard (set_conns, on every
accept and close), and a worker that holds as many connections as it has cores leaves new ones
to a live, accepting worker that holds fewer: it stops accepting for DEFER, then looks again.
Connections still waiting in the listener's queue then mean the others are slow to take them:
while their counts move (they are taking them) it defers again; when they did not move for
STALLS deferrals in a row (a worker stuck in a blocking call; one DEFER alone may be a loaded
machine's scheduling delay), it accepts as before for OFF seconds, so no client waits on a
stuck worker for more than STALLS x DEFER. With every worker at its cores (more clients than
cores, or many idle keep-alive clients) nothing changes: the kernel's queue and the requeue
decide, as before.

Only for a worker of one multi-core loop (its connection count has one writer, the loop's
thread) with other workers to spread to; a one-core loop already stops accepting while its core
is busy (ThreadLoop._hold).
"""

from __future__ import annotations

import select
import time

_monotonic = time.monotonic
DEFER = 0.01    # seconds a full worker leaves new connections to the others, before it looks again
STALLS = 2      # DEFERs in a row with clients waiting and the others' counts still: they are stuck
OFF = 1.0       # seconds of plain accepting after the others left clients waiting that long


class Spread:
    """The spread of one thread loop (uwsgid.server.thread_loop.ThreadLoop)."""

    __slots__ = ("tl", "sb", "worker", "wid", "cores", "timer", "off_until", "others", "stalls")

    def __init__(self, tl, sb):
        self.tl = tl
        self.sb = sb
        self.worker = tl.worker
        self.wid = tl.worker.id
        self.cores = len(tl.cores)
        self.timer = None       # while deferring: the loop's timer that ends it
        self.off_until = 0.0
        self.others = 0         # the other workers' connections when the deferral began
        self.stalls = 0         # deferrals in a row that ended with clients waiting and no progress

    def publish(self) -> None:
        """A connection of this loop opened or closed."""
        self.sb.set_conns(self.wid, len(self.tl.conns))

    def accepted(self) -> bool:
        """Just after an accept: True when this loop stopped accepting for DEFER (the accept
        batch ends)."""
        tl = self.tl
        n = len(tl.conns)
        self.sb.set_conns(self.wid, n)
        if n < self.cores or _monotonic() < self.off_until:
            return False
        return self._defer()

    def _defer(self) -> bool:
        others = self.sb.room_elsewhere(self.wid, self.cores)
        if others < 0:
            return False
        tl = self.tl
        tl.stop_accepting()
        self.others = others
        self.timer = tl.loop.call_later(DEFER, self._resume)
        return True

    def _resume(self) -> None:
        """DEFER passed: accept again, unless connections wait and the others are taking them."""
        self.timer = None
        tl = self.tl
        try:
            waiting, _, _ = select.select([lst.fd for lst in tl.listeners], [], [], 0)
        except (OSError, ValueError):   # a listener closed under a stopping worker
            waiting = ()
        if waiting and not self.worker.stopping:
            others = self.sb.room_elsewhere(self.wid, self.cores)
            if others >= 0:
                self.stalls = 0 if others != self.others else self.stalls + 1
                if self.stalls < STALLS and self._defer():
                    return      # they are taking them (or may just not have run yet)
                self.off_until = _monotonic() + OFF     # they are not: this worker does
        self.stalls = 0
        tl.start_accepting()

    def cancel(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


def for_loop(tl):
    """The Spread of thread loop `tl`, or None where it does not apply (the module doc)."""
    w = tl.worker
    sb = getattr(w, "scoreboard", None)
    if (tl.single or not tl.listeners or sb is None or getattr(sb, "numproc", 1) < 2
            or not hasattr(sb, "room_elsewhere") or w.settings.threads != 1):
        return None
    return Spread(tl, sb)
