"""uWSGI's cheaper subsystem with its default "spare" algorithm: --processes is the maximum,
--cheaper the minimum number of running workers, and the master adapts between them.

Every master tick (1 s), as uWSGI's uwsgi_cheaper_algo_spare:
  * all running workers busy: overload += 1; once overload > --cheaper-overload, spawn up to
    --cheaper-step cheaped workers (overload back to 0);
  * a worker idle: overload -= 1; at 0, unless exactly one spare worker is idle ("stable"),
    idle += 1 and every --cheaper-overload idle ticks the idle worker spawned first is
    stopped gracefully ("cheaped") while more than --cheaper workers run.
--cheaper-initial workers (default --cheaper) start. A cheaped worker is not respawned; the
stats show it with status "cheap"."""

from __future__ import annotations

import signal

from uwsgid.util.log import log


class CheaperError(ValueError):
    pass


class Cheaper:
    def __init__(self, master):
        self.master = master
        opts = master.opts
        numproc = master.server.numproc
        self.minimum = int(opts.cheaper or 0)
        self.initial = int(opts.cheaper_initial or 0) or self.minimum
        self.step = max(1, int(opts.cheaper_step or 1))
        self.overload_limit = max(1, int(opts.cheaper_overload or 3))
        if not 0 < self.minimum < numproc:
            raise CheaperError(f"--cheaper {self.minimum}: must be at least 1 and less than --processes ({numproc})")
        if not self.minimum <= self.initial <= numproc:
            raise CheaperError(f"--cheaper-initial {self.initial}: must be between --cheaper ({self.minimum}) "
                               f"and --processes ({numproc})")
        self.cheaped = set(range(self.initial + 1, numproc + 1))   # wids not running on purpose
        self.overload = 0
        self.idle = 0

    # ---- master hooks -----------------------------------------------------------------------

    def initial_wids(self) -> list[int]:
        return [wid for wid in range(1, self.master.server.numproc + 1) if wid not in self.cheaped]

    def buried(self, child) -> bool:
        """True when `child` exited because it was cheaped (the master must not respawn it)."""
        if child.wid not in self.cheaped:
            return False
        log(f"uWSGI worker {child.wid} cheaped.")
        return True

    def tick(self) -> None:
        decision = self.decide()
        if decision > 0:
            alive = {c.wid for c in self.master._workers()}     # a cheaped one may still be stopping
            for wid in [w for w in sorted(self.cheaped) if w not in alive][:decision]:
                self.cheaped.discard(wid)
                # "spawned" the first time (a worker beyond --cheaper-initial), else "Respawned"
                ever = self.master.server.scoreboard.worker(wid)["last_spawn"] > 0
                self.master.spawn_worker(wid, respawn=ever)
        elif decision < 0:
            self._cheap_one()

    # ---- the spare algorithm ------------------------------------------------------------------

    def _running(self) -> list:
        return [c for c in self.master._workers() if c.wid not in self.cheaped and c.cursed_at is None]

    def _busy(self, child) -> bool:
        return bool(self.master.server.scoreboard.busy_cores(child.wid))

    def decide(self) -> int:
        """> 0: spawn that many cheaped workers; -1: cheap one; 0: nothing."""
        running = self._running()
        if any(not self._busy(c) for c in running):
            self.overload = max(0, self.overload - 1)
        else:
            self.overload += 1
            self.idle = 0
        if self.cheaped and self.overload > self.overload_limit:
            self.overload = 0
            return min(self.step, len(self.cheaped))
        if self.overload == 0:
            busy = sum(1 for c in running if self._busy(c))
            if len(running) - busy == 1:
                return 0      # stable: one spare worker
            self.idle += 1
            if len(running) > self.minimum and self.idle % self.overload_limit == 0:
                return -1
        return 0

    def _cheap_one(self) -> None:
        idle = [c for c in self._running() if not self._busy(c)]
        if not idle:
            return
        oldest = min(idle, key=lambda c: c.spawned_at)
        self.cheaped.add(oldest.wid)
        self.master._curse(oldest, signal.SIGTERM)
