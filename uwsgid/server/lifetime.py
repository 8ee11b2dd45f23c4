"""When the master ends workers on its own (uWSGI's core/master_checks.c):

    --harakiri S  a worker stuck in one request over S seconds is killed, then respawned; with
                  --harakiri-graceful-timeout G it first gets --harakiri-graceful-signal (SIGTERM)
                  and is killed only if still in that request G seconds later
    --evil-reload-on-rss MB / --evil-reload-on-as MB
                  a worker over MB of RSS / of address space is killed, then respawned
    --max-worker-lifetime S [--max-worker-lifetime-delta D]
        worker N is reloaded gracefully once it has lived S + (N-1)*D seconds (the delta
        spreads the reloads so that the workers do not all restart at once)
    --cheap       no worker until the first connection arrives on a socket
    --idle S      after S seconds without a request (and none in progress) the workers are
                  stopped and the instance waits in cheap mode for the next connection;
                  with --die-on-idle the instance stops instead
    chain reload  (master fifo `c`) the workers are reloaded one after the other, each once
                  the previous one's replacement accepts, so that capacity never drops by more
                  than one worker

The master calls tick() every second, initial_wids() for the first spawn and buried() when a
worker exits (True: not to be respawned, it was stopped for cheap mode).
"""

from __future__ import annotations

import signal
import time

from uwsgid.config.options import Option, declare
from uwsgid.server.master_actions import RUNNING
from uwsgid.util.log import log
from uwsgid.util.memory import rss_vsz

declare(
    Option("max-worker-lifetime", kind="int", default=0, metavar="SECS",
           help="reload a worker gracefully after it has run SECS (0 = never)"),
    Option("max-worker-lifetime-delta", kind="int", default=0, metavar="SECS",
           help="add (worker id - 1) * SECS to --max-worker-lifetime for each worker, so that they do not "
                "all reload at once"),
    Option("cheap", kind="flag", needs_master=True,
           help="start no worker until the first connection arrives on a socket"),
    Option("idle", kind="int", default=0, needs_master=True, metavar="SECS",
           help="after SECS without a request, stop the workers and wait for the next connection (cheap mode)"),
    Option("die-on-idle", kind="flag", help="with --idle: stop the instance instead of going cheap"),
)

CHEAP_KILL_MERCY = 3        # seconds a worker stopped for cheap mode gets before SIGKILL (uWSGI's)


def _log_stuck_process(pid: int) -> None:
    """--harakiri-verbose: where the process is stuck, as the kernel sees it (uWSGI's syscall> line)."""
    for name in ("syscall", "wchan"):
        try:
            with open(f"/proc/{pid}/{name}") as f:
                log(f"HARAKIRI: -- {name}> {f.read().strip() or '-'}")
        except OSError:
            pass


class LifetimeError(ValueError):
    pass


def check(opts) -> None:
    """Option values that cannot work together: a one-line error."""
    max_life = int(opts.max_worker_lifetime or 0)
    min_life = int(opts.min_worker_lifetime or 0)
    if max_life < 0 or int(opts.max_worker_lifetime_delta or 0) < 0 or int(opts.idle or 0) < 0:
        raise LifetimeError("--max-worker-lifetime, --max-worker-lifetime-delta and --idle take 0 or more seconds")
    if opts.die_on_idle and not int(opts.idle or 0):
        log("*** WARNING: --die-on-idle does nothing without --idle SECS ***")
    if int(opts.harakiri_graceful_timeout or 0) < 0:
        raise LifetimeError(f"--harakiri-graceful-timeout {opts.harakiri_graceful_timeout}: must be 0 or more seconds")
    sig = int(opts.harakiri_graceful_signal)
    if sig not in signal.valid_signals():
        raise LifetimeError(f"--harakiri-graceful-signal {sig}: not a signal number (e.g. 15 for SIGTERM)")
    if max_life > 0 and min_life >= max_life:
        raise LifetimeError(f"invalid min-worker-lifetime value ({min_life}), must be lower than "
                            f"max-worker-lifetime ({max_life})")


class Lifetime:
    def __init__(self, master):
        self.master = master
        opts = master.opts
        self.max_life = int(opts.max_worker_lifetime or 0)
        self.delta = int(opts.max_worker_lifetime_delta or 0)
        self.idle = int(opts.idle or 0)
        self.die_on_idle = bool(opts.die_on_idle)
        self.is_cheap = bool(opts.cheap)
        self._watching: list[int] = []        # listener fds the master watches while cheap
        self._last_requests = -1
        self._last_activity = time.monotonic()
        self.chain = 0                        # next worker id of a chain reload (0: none running)
        self.victim_pid = 0                   # the worker the chain is waiting to see gone
        self._chain_waited = 0.0

    # ---- master hooks ------------------------------------------------------------------------

    def initial_wids(self, wids: list[int]) -> list[int]:
        if self.is_cheap:
            self._wait_for_connection()
            return []
        return wids

    def buried(self, child) -> bool:
        return self.is_cheap

    def tick(self, now: float) -> None:
        if self.max_life:
            self._check_lifetimes(now)
        if self.idle:
            self._check_idle(now)
        if self.chain:
            self._check_chain()

    def close(self) -> None:
        self._unwatch()

    # ---- --harakiri, --evil-reload-on-rss/-as ---------------------------------------------------

    def check_harakiri(self) -> None:
        """--harakiri: a worker stuck in one request too long is killed (then respawned), after a
        graceful attempt with --harakiri-graceful-timeout."""
        master = self.master
        limit = int(master.opts.harakiri or 0)
        if limit <= 0:
            return
        grace = int(master.opts.harakiri_graceful_timeout or 0)
        sb = master.server.scoreboard
        now_us = time.time_ns() // 1000
        for child in master._workers():
            if child.harakiri:
                if child.harakiri_grace is not None:
                    self._check_graceful_harakiri(child)
                continue
            for core, start, uri in sb.busy_cores(child.wid):
                if now_us - start > limit * 1_000_000:
                    secs = (now_us - start) / 1e6
                    log(f"*** HARAKIRI ON WORKER {child.wid} (pid: {child.pid}, try: 1"
                        f"{', graceful: yes' if grace else ''}) ***")
                    log(f"HARAKIRI: --- uWSGI worker {child.wid} (pid: {child.pid}) WAS managing request "
                        f"{uri.decode('latin-1')} since {time.ctime(start / 1e6)} "
                        f"({secs:.1f}s on core {core}) ---")
                    if master.opts.harakiri_verbose:
                        _log_stuck_process(child.pid)
                    child.harakiri = True
                    sb.harakiri(child.wid)
                    if grace:
                        sig = int(master.opts.harakiri_graceful_signal)
                        child.harakiri_grace = (core, start, time.monotonic() + grace)
                        log(f"HARAKIRI: graceful termination attempt on worker {child.wid} with signal {sig}. "
                            f"Next harakiri: {int(time.time()) + grace}")
                        master._signal(child, sig)
                    else:
                        master._signal(child, signal.SIGKILL)
                    break

    def _check_graceful_harakiri(self, child) -> None:
        """The graceful attempt's time is up: SIGKILL if the worker is still in that request;
        a request that ended meanwhile ends the harakiri (the signal's own effect stands)."""
        core, start, deadline = child.harakiri_grace
        if time.monotonic() < deadline:
            return
        child.harakiri_grace = None
        busy = self.master.server.scoreboard.busy_cores(child.wid)
        if any(c == core and s == start for c, s, _uri in busy):
            log(f"*** HARAKIRI ON WORKER {child.wid} (pid: {child.pid}, try: 2, graceful: no) ***")
            self.master._signal(child, signal.SIGKILL)
        else:
            child.harakiri = False

    def check_evil_memory(self) -> None:
        """--evil-reload-on-as / --evil-reload-on-rss: the master kills a worker whose address
        space or RSS is over the limit (uWSGI checks the address space first)."""
        master = self.master
        as_limit = int(master.opts.evil_reload_on_as or 0) * 1024 * 1024
        rss_limit = int(master.opts.evil_reload_on_rss or 0) * 1024 * 1024
        if as_limit <= 0 and rss_limit <= 0:
            return
        for child in master._workers():
            if child.cursed_at is not None or child.harakiri:
                continue
            rss, vsz = rss_vsz(child.pid)
            if 0 < as_limit < vsz:
                log(f"*** EVIL RELOAD ON WORKER {child.wid} ADDRESS SPACE: {vsz} (pid: {child.pid}) ***")
            elif 0 < rss_limit < rss:
                log(f"*** EVIL RELOAD ON WORKER {child.wid} RSS: {rss} (pid: {child.pid}) ***")
            else:
                continue
            child.cursed_at = time.monotonic()
            master._signal(child, signal.SIGKILL)

    # ---- --max-worker-lifetime -------------------------------------------------------------

    def _check_lifetimes(self, now: float) -> None:
        master = self.master
        for child in master._workers():
            if child.cursed_at is not None or child.harakiri:
                continue
            if master.cheaper is not None and child.wid in master.cheaper.cheaped:
                continue
            lived = now - child.spawned_at
            if lived > self.max_life + (child.wid - 1) * self.delta:
                log(f"worker {child.wid} lifetime reached, it was running for {int(lived)} second(s)")
                master._curse(child, signal.SIGTERM)

    # ---- cheap mode, --idle ------------------------------------------------------------------

    def _check_idle(self, now: float) -> None:
        master = self.master
        if self.is_cheap or master.paused:
            return
        sb = master.server.scoreboard
        if any(sb.busy_cores(c.wid) for c in master._workers()):
            self._last_activity = now
            return
        total = sb.total_requests()
        if total != self._last_requests:
            self._last_requests = total
            self._last_activity = now
        elif now - self._last_activity > self.idle:
            log(f"workers have been inactive for more than {self.idle} seconds "
                f"({int(time.time())}-{int(time.time() - (now - self._last_activity))})")
            if self.die_on_idle:
                master.kill_all()
                return
            self._stop_workers(signal.SIGINT, CHEAP_KILL_MERCY)
            self._wait_for_connection()

    def go_cheap(self) -> None:
        """Master fifo `C`: the workers are killed now and come back with the next connection."""
        if self.is_cheap or self.master.state != RUNNING:
            return
        log("going cheap...")
        self._stop_workers(signal.SIGKILL, 0)
        self._wait_for_connection()

    def _stop_workers(self, sig: int, mercy: float) -> None:
        master = self.master
        self.is_cheap = True
        self.chain = self.victim_pid = 0
        master.pending_respawn = {w: t for w, t in master.pending_respawn.items() if w == 0}   # the router stays
        now = time.monotonic()
        for child in master._workers():
            log(f"killing worker {child.wid} (pid: {child.pid})")
            child.cursed_at = child.cursed_at or now
            child.mercy_at = now + mercy if mercy else None
            master._signal(child, sig)

    def _wait_for_connection(self) -> None:
        self.is_cheap = True
        self._unwatch()
        for lst in self.master.server.listeners:
            fd = lst.sock.fileno()
            self.master.add_reader(fd, self._wake)
            self._watching.append(fd)
        log("cheap mode enabled: waiting for socket connection...")

    def _unwatch(self) -> None:
        for fd in self._watching:
            self.master.remove_reader(fd)
        self._watching = []

    def _wake(self) -> None:
        """A connection waits on a socket: the workers come (with --cheaper, its minimum)."""
        self._unwatch()
        master = self.master
        if not self.is_cheap or master.state != RUNNING:
            return
        self.is_cheap = False
        self._last_requests = -1
        self._last_activity = time.monotonic()
        numproc = master.server.numproc
        needed = numproc
        if master.cheaper is not None:
            needed = master.cheaper.minimum
            master.cheaper.cheaped = set(range(needed + 1, numproc + 1))
        alive = {c.wid for c in master._workers()}
        for wid in range(1, needed + 1):
            if wid not in alive:
                master.spawn_worker(wid, respawn=master.server.scoreboard.worker(wid)["last_spawn"] > 0)

    # ---- chain reload --------------------------------------------------------------------------

    def chain_reload(self) -> None:
        if self.chain:
            log("chain reload already running...")
            return
        if self.master.state != RUNNING or self.is_cheap:
            return
        log("chain reload starting...")
        self.chain = 1
        self._check_chain()

    def _check_chain(self) -> None:
        master = self.master
        sb = master.server.scoreboard
        by_wid = {c.wid: c for c in master._workers()}
        cheaped = master.cheaper.cheaped if master.cheaper is not None else set()
        while self.chain:
            if self.victim_pid:
                if self.victim_pid in master.children:
                    return            # still finishing its requests
                self.victim_pid = 0
                self.chain += 1
                continue
            if self.chain > 1:
                # the previous victim's replacement must accept before the next one goes
                prev = self.chain - 1
                waiting = prev in master.pending_respawn or (
                    prev in by_wid and prev not in cheaped and not sb.worker(prev)["accepting"])
                if waiting:
                    if time.monotonic() - self._chain_waited >= 1:
                        log(f"chain is still waiting for worker {prev}...")
                        self._chain_waited = time.monotonic()
                    return
            if self.chain > master.server.numproc:
                self.chain = 0
                log("chain reloading complete")
                return
            victim = by_wid.get(self.chain)
            if victim is not None and victim.wid not in cheaped:
                if not sb.worker(victim.wid)["accepting"]:
                    # still loading: it would be skipped and keep the old code, so wait for it
                    if time.monotonic() - self._chain_waited >= 1:
                        log(f"chain is still waiting for worker {victim.wid}...")
                        self._chain_waited = time.monotonic()
                elif victim.cursed_at is None:
                    log(f"chain next victim is worker {victim.wid}")
                    master._curse(victim, signal.SIGHUP)
                    self.victim_pid = victim.pid
                return
            self.chain += 1
