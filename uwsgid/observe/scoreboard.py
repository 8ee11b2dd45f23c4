"""The scoreboard: per-worker and per-core counters in shared memory (an anonymous MAP_SHARED
mmap made by the master before the first fork, so every worker writes into the same pages).

Writers never contend on a field: a core's counters are written only by the thread running
that core (begin/end), a worker's `accepting` flag only by that worker, and the spawn
bookkeeping (pid, last_spawn, respawn_count, ...) only by the master. Worker totals
(requests, tx, exceptions, running time) are therefore the sums of their cores' counters,
computed by the reader (stats, harakiri) — no read-modify-write races between threads.

Hot path (worker side): begin(), end(), set_accepting(). Each is one or two struct calls.
"""

from __future__ import annotations

import mmap
import struct
import time

try:
    # begin/end in one C call each (core/scoreboard.c): ~16k instructions a request in Python
    from _uwsgi import ffi as _ffi, lib as _lib
    _sb_begin, _sb_end = _lib.uwsgi_sb_begin, _lib.uwsgi_sb_end
except (ImportError, AttributeError):
    _ffi = None

URI_MAX = 256

# Header: requests served by the whole instance (uWSGI's workers[0].requests, the M of the
# request log's "req: N/M"). Incremented by every worker without a lock, like uWSGI: exact
# counts are the per-core ones; this one may miss an increment under contention.
_TOTAL = struct.Struct("<Q")
# Header: the instance is paused (SIGTSTP, --pause): written by the master, read by the workers
# when it signals them (uWSGI's workers[0].suspended).
_PAUSED = struct.Struct("<B")
_PAUSED_OFF = 8
_HEADER = 64

# Per worker, written by the master: pid, last_spawn (epoch secs), respawn_count,
# harakiri_count, base_requests (requests at the last spawn, for delta_requests), signals.
_W_MASTER = struct.Struct("<qdQQQQ")
# Per worker, written by the worker itself.
_W_ACCEPT = struct.Struct("<B")
_W_SIGNALS = struct.Struct("<Q")
# Per worker, written by the worker: connections whose request is still arriving (a gauge) and
# those closed as the oldest over --max-pending-heads (a counter); see uwsgid/server/thread_loop.py.
_W_PENDING = struct.Struct("<QQ")
_W_COUNT = struct.Struct("<Q")
# Per worker, written by the worker: its open connections, for the other workers' accept spread
# (uwsgid.server.conn_spread); only workers of one multi-core loop write it.
_W_SIZE = 88
_W_ACCEPT_OFF = _W_MASTER.size          # 48
_W_SIGNALS_OFF = _W_ACCEPT_OFF + 8      # 56
_W_PENDING_OFF = _W_SIGNALS_OFF + 8     # 64
_W_CONNS_OFF = _W_PENDING_OFF + 16      # 80

# Per core, laid out so that end() is one unpack and one pack:
#   hot:   requests, exceptions, tx, running_time (µs) | start (µs since epoch, 0 = idle)
#   req:   start, uri length, uri bytes (begin() writes it in one pack)
#   extra: write_errors, read_errors, static, routed, offloaded
_C_HOT = struct.Struct("<QQQQ")
_C_END = struct.Struct("<QQQQQ")        # hot counters + start cleared
_C_REQ = struct.Struct(f"<QH{URI_MAX}s")
_C_IDLE = struct.Struct("<Q")
_C_REQ_OFF = _C_HOT.size                                   # 32
_C_EXTRA = struct.Struct("<QQQQQ")
_C_EXTRA_OFF = (_C_REQ_OFF + _C_REQ.size + 7) // 8 * 8     # 304
_C_SIZE = _C_EXTRA_OFF + _C_EXTRA.size                     # 344
_EXTRA_KINDS = {"write": 0, "read": 1, "static": 2, "routed": 3, "offloaded": 4}

# Per app, per core: requests, exceptions (the stats' apps[] of each worker). Each distinct
# plugin gets APPS_PER_PLUGIN slots (its app ids 0..15; uWSGI's max-apps is 64 in all); laid
# out [worker][slot][core] so that one app's counters of a worker share a page.
_A = struct.Struct("<QQ")
APPS_PER_PLUGIN = 16
# Per worker: the apps it loaded, published by the worker itself (marshal of [(slot, entry)]),
# because with --lazy-apps only the workers know them.
_INFO_LEN = struct.Struct("<I")
APPS_INFO_SIZE = 4096


class Scoreboard:
    """Counters for `numproc` workers (ids 1..numproc) with `cores` cores each (ids 0..cores-1),
    and per-app counters for the apps of `plugins` (modifier1 -> Plugin, the server's map)."""

    def __init__(self, numproc: int, cores: int, plugins: dict | None = None):
        self.numproc = max(1, int(numproc))
        self.cores = max(1, int(cores))
        # modifier1 -> first app slot of its plugin; a plugin under several modifiers has one range
        bases: dict[int, int] = {}
        self.app_base: dict[int, int] = {}
        for mod, plugin in (plugins or {}).items():
            base = bases.setdefault(id(plugin), len(bases) * APPS_PER_PLUGIN)
            self.app_base[mod] = base
        self._plugin_base = bases
        self.app_slots = len(bases) * APPS_PER_PLUGIN
        self._core_base = _HEADER + _W_SIZE * self.numproc
        self._apps_base = self._core_base + _C_SIZE * self.numproc * self.cores
        self._info_base = self._apps_base + _A.size * self.numproc * self.app_slots * self.cores
        size = self._info_base + APPS_INFO_SIZE * self.numproc
        self.mem = mmap.mmap(-1, size, flags=mmap.MAP_SHARED | mmap.MAP_ANONYMOUS)
        self._cmem = _ffi.from_buffer(self.mem) if _ffi is not None else None

    # ---- worker side (hot path) -----------------------------------------------------------

    def _core_off(self, wid: int, core_id: int) -> int:
        return self._core_base + ((wid - 1) * self.cores + core_id) * _C_SIZE

    def begin(self, wid: int, core_id: int, uri: bytes) -> None:
        if 0 < wid <= self.numproc and 0 <= core_id < self.cores:
            if self._cmem is not None:
                _sb_begin(self._cmem, self._core_base + ((wid - 1) * self.cores + core_id) * _C_SIZE + _C_REQ_OFF,
                          uri, len(uri), URI_MAX)
                return
            uri = uri[:URI_MAX]
            _C_REQ.pack_into(self.mem, self._core_off(wid, core_id) + _C_REQ_OFF,
                             time.time_ns() // 1000 or 1, len(uri), uri)

    def end(self, wid: int, core_id: int, status: int, tx: int, rt_us: int, exception: bool,
            modifier1: int = -1, app_id: int = -1) -> None:
        """A request ended on a core; `app_id` (the plugin's app index, -1 = none) of the plugin
        serving `modifier1` gets it in its per-app counters."""
        if not (0 < wid <= self.numproc and 0 <= core_id < self.cores):
            return
        off = self._core_base + ((wid - 1) * self.cores + core_id) * _C_SIZE
        if self._cmem is not None:
            app_off = 0
            if 0 <= app_id < APPS_PER_PLUGIN:
                base = self.app_base.get(modifier1)
                if base is not None:
                    app_off = self._app_off(wid, base + app_id, core_id)
            _sb_end(self._cmem, off, app_off, tx, rt_us, exception)
            return
        mem = self.mem
        n, exc, txs, rts = _C_HOT.unpack_from(mem, off)
        _C_END.pack_into(mem, off, n + 1, exc + 1 if exception else exc, txs + tx, rts + (rt_us if rt_us > 0 else 0), 0)
        _TOTAL.pack_into(mem, 0, _TOTAL.unpack_from(mem, 0)[0] + 1)
        if 0 <= app_id < APPS_PER_PLUGIN:
            base = self.app_base.get(modifier1)
            if base is not None:
                off = self._app_off(wid, base + app_id, core_id)
                r, e = _A.unpack_from(mem, off)
                _A.pack_into(mem, off, r + 1, e + 1 if exception else e)

    def c_offsets(self, wid: int, core_id: int, modifier1: int, app_id: int) -> tuple | None:
        """For a C writer of begin/end (uwsgid/server/native_lane.py): (memory address, begin's
        offset, end's core offset, end's app offset or 0), or None without the C memory."""
        if self._cmem is None or not (0 < wid <= self.numproc and 0 <= core_id < self.cores):
            return None
        core_off = self._core_off(wid, core_id)
        app_off = 0
        base = self.app_base.get(modifier1)
        if base is not None and 0 <= app_id < APPS_PER_PLUGIN:
            app_off = self._app_off(wid, base + app_id, core_id)
        return int(_ffi.cast("uintptr_t", self._cmem)), core_off + _C_REQ_OFF, core_off, app_off

    def c_static_offset(self, wid: int, core_id: int) -> int:
        """Where a C writer counts the core's static_requests (see add_error's "static")."""
        return self._core_off(wid, core_id) + _C_EXTRA_OFF + 8 * _EXTRA_KINDS["static"]

    def _app_off(self, wid: int, slot: int, core_id: int) -> int:
        return self._apps_base + (((wid - 1) * self.app_slots + slot) * self.cores + core_id) * _A.size

    def total_requests(self) -> int:
        return _TOTAL.unpack_from(self.mem, 0)[0]

    def set_accepting(self, wid: int, accepting: bool) -> None:
        if 0 < wid <= self.numproc:
            _W_ACCEPT.pack_into(self.mem, _HEADER + (wid - 1) * _W_SIZE + _W_ACCEPT_OFF, 1 if accepting else 0)

    def set_pending(self, wid: int, pending: int) -> None:
        if 0 < wid <= self.numproc:
            off = _HEADER + (wid - 1) * _W_SIZE + _W_PENDING_OFF
            _W_COUNT.pack_into(self.mem, off, max(0, pending))

    def set_conns(self, wid: int, conns: int) -> None:
        if 0 < wid <= self.numproc:
            _W_COUNT.pack_into(self.mem, _HEADER + (wid - 1) * _W_SIZE + _W_CONNS_OFF, conns)

    def room_elsewhere(self, wid: int, cores: int) -> int:
        """-1 unless another live, accepting worker has fewer open connections than `cores` (a
        worker's cores: every worker has as many); else the other workers' connections in all
        (a change says they took some)."""
        mem = self.mem
        room = False
        total = 0
        for other in range(1, self.numproc + 1):
            if other == wid:
                continue
            base = _HEADER + (other - 1) * _W_SIZE
            n = _W_COUNT.unpack_from(mem, base + _W_CONNS_OFF)[0]
            total += n
            if n < cores and _W_MASTER.unpack_from(mem, base)[0] and mem[base + _W_ACCEPT_OFF]:
                room = True
        return total if room else -1

    def add_dropped_pending(self, wid: int) -> None:
        if 0 < wid <= self.numproc:
            off = _HEADER + (wid - 1) * _W_SIZE + _W_PENDING_OFF + 8
            (n,) = _W_COUNT.unpack_from(self.mem, off)
            _W_COUNT.pack_into(self.mem, off, n + 1)

    def add_error(self, wid: int, core_id: int, kind: str) -> None:
        """Count a `write`/`read` error (client gone mid-response, ...) or a static/routed/
        offloaded request on a core."""
        if not (0 < wid <= self.numproc and 0 <= core_id < self.cores):
            return
        off = self._core_off(wid, core_id) + _C_EXTRA_OFF + 8 * _EXTRA_KINDS[kind]
        (n,) = _C_IDLE.unpack_from(self.mem, off)
        _C_IDLE.pack_into(self.mem, off, n + 1)

    def incr_signals(self, wid: int) -> None:
        """A uWSGI signal was handled by this worker (written by the worker only)."""
        if 0 < wid <= self.numproc:
            off = _HEADER + (wid - 1) * _W_SIZE + _W_SIGNALS_OFF
            (n,) = _W_SIGNALS.unpack_from(self.mem, off)
            _W_SIGNALS.pack_into(self.mem, off, n + 1)

    # ---- master side ------------------------------------------------------------------------

    def _wm(self, wid: int) -> list:
        return list(_W_MASTER.unpack_from(self.mem, _HEADER + (wid - 1) * _W_SIZE))

    def spawned(self, wid: int, pid: int, respawn: bool) -> None:
        """The master forked worker `wid` as `pid`. Runs after fork, so it touches nothing the
        new worker may already have written (accepting, cores): died() reset those."""
        w = self._wm(wid)
        w[0] = pid
        w[1] = time.time()
        if respawn:
            w[2] += 1
        _W_MASTER.pack_into(self.mem, _HEADER + (wid - 1) * _W_SIZE, *w)

    def died(self, wid: int) -> None:
        """Worker `wid` is gone: no longer accepting, no request in flight; its requests so far
        become the base of the next incarnation's delta_requests."""
        w = self._wm(wid)
        w[0] = 0
        w[4] = self.worker_requests(wid)
        _W_MASTER.pack_into(self.mem, _HEADER + (wid - 1) * _W_SIZE, *w)
        _W_ACCEPT.pack_into(self.mem, _HEADER + (wid - 1) * _W_SIZE + _W_ACCEPT_OFF, 0)
        _W_COUNT.pack_into(self.mem, _HEADER + (wid - 1) * _W_SIZE + _W_PENDING_OFF, 0)   # its connections died too
        _W_COUNT.pack_into(self.mem, _HEADER + (wid - 1) * _W_SIZE + _W_CONNS_OFF, 0)
        for core in range(self.cores):
            _C_IDLE.pack_into(self.mem, self._core_off(wid, core) + _C_REQ_OFF, 0)

    def set_paused(self, paused: bool) -> None:
        _PAUSED.pack_into(self.mem, _PAUSED_OFF, 1 if paused else 0)

    def paused(self) -> bool:
        """The master paused the instance (SIGTSTP): its workers do not accept."""
        return _PAUSED.unpack_from(self.mem, _PAUSED_OFF)[0] == 1

    def harakiri(self, wid: int) -> None:
        w = self._wm(wid)
        w[3] += 1
        _W_MASTER.pack_into(self.mem, _HEADER + (wid - 1) * _W_SIZE, *w)

    # ---- readers (master: stats, harakiri) ----------------------------------------------------

    def core(self, wid: int, core_id: int) -> dict:
        off = self._core_off(wid, core_id)
        requests, exceptions, tx, rt = _C_HOT.unpack_from(self.mem, off)
        start, n, uri = _C_REQ.unpack_from(self.mem, off + _C_REQ_OFF)
        werr, rerr, static, routed, offloaded = _C_EXTRA.unpack_from(self.mem, off + _C_EXTRA_OFF)
        return {"requests": requests, "exceptions": exceptions, "tx": tx, "running_time": rt,
                "write_errors": werr, "read_errors": rerr, "static_requests": static,
                "routed_requests": routed, "offloaded_requests": offloaded,
                "start_us": start, "uri": uri[:n] if start else b""}

    def busy_cores(self, wid: int) -> list[tuple[int, int, bytes]]:
        """(core_id, start_us, uri) of every core of `wid` inside a request."""
        out = []
        for core in range(self.cores):
            off = self._core_off(wid, core) + _C_REQ_OFF
            (start,) = _C_IDLE.unpack_from(self.mem, off)
            if start:
                _, n, uri = _C_REQ.unpack_from(self.mem, off)
                out.append((core, start, uri[:n]))
        return out

    def app_slot(self, plugin, app_id: int) -> int:
        """The counters' slot of app `app_id` of `plugin`, -1 when it has none."""
        base = self._plugin_base.get(id(plugin))
        if base is None or not 0 <= app_id < APPS_PER_PLUGIN:
            return -1
        return base + app_id

    def app_counts(self, wid: int, plugin, app_id: int) -> tuple[int, int]:
        """(requests, exceptions) of worker `wid` for app `app_id` of `plugin` (0, 0 if unknown)."""
        return self.slot_counts(wid, self.app_slot(plugin, app_id))

    def slot_counts(self, wid: int, slot: int) -> tuple[int, int]:
        if not (0 <= slot < self.app_slots and 0 < wid <= self.numproc):
            return 0, 0
        requests = exceptions = 0
        off = self._app_off(wid, slot, 0)
        for _ in range(self.cores):
            r, e = _A.unpack_from(self.mem, off)
            requests += r
            exceptions += e
            off += _A.size
        return requests, exceptions

    def set_apps_info(self, wid: int, data: bytes) -> bool:
        """Worker `wid` publishes its app list (False: too big, nothing published)."""
        if not 0 < wid <= self.numproc or _INFO_LEN.size + len(data) > APPS_INFO_SIZE:
            return False
        off = self._info_base + (wid - 1) * APPS_INFO_SIZE
        self.mem[off + _INFO_LEN.size:off + _INFO_LEN.size + len(data)] = data
        _INFO_LEN.pack_into(self.mem, off, len(data))     # the length last: readers see all or none
        return True

    def apps_info(self, wid: int) -> bytes | None:
        if not 0 < wid <= self.numproc:
            return None
        off = self._info_base + (wid - 1) * APPS_INFO_SIZE
        (n,) = _INFO_LEN.unpack_from(self.mem, off)
        return bytes(self.mem[off + _INFO_LEN.size:off + _INFO_LEN.size + n]) if n else None

    def pid(self, wid: int) -> int:
        return _W_MASTER.unpack_from(self.mem, _HEADER + (wid - 1) * _W_SIZE)[0] if 0 < wid <= self.numproc else 0

    def worker_requests(self, wid: int) -> int:
        return sum(_C_IDLE.unpack_from(self.mem, self._core_off(wid, c))[0] for c in range(self.cores))

    def worker(self, wid: int) -> dict:
        pid, last_spawn, respawns, harakiris, base, _ = self._wm(wid)
        (accepting,) = _W_ACCEPT.unpack_from(self.mem, _HEADER + (wid - 1) * _W_SIZE + _W_ACCEPT_OFF)
        (signals,) = _W_SIGNALS.unpack_from(self.mem, _HEADER + (wid - 1) * _W_SIZE + _W_SIGNALS_OFF)
        pending, dropped = _W_PENDING.unpack_from(self.mem, _HEADER + (wid - 1) * _W_SIZE + _W_PENDING_OFF)
        cores = [self.core(wid, c) for c in range(self.cores)]
        requests = sum(c["requests"] for c in cores)
        return {"pid": pid, "last_spawn": last_spawn, "respawn_count": respawns,
                "harakiri_count": harakiris, "accepting": accepting, "signals": signals,
                "pending_heads": pending, "dropped_pending_heads": dropped,
                "requests": requests, "delta_requests": max(0, requests - base),
                "exceptions": sum(c["exceptions"] for c in cores),
                "tx": sum(c["tx"] for c in cores),
                "running_time": sum(c["running_time"] for c in cores),
                "busy": any(c["start_us"] for c in cores), "cores": cores}

    def close(self) -> None:
        self._cmem = None   # the C view exports the mmap's buffer: release it first
        try:
            self.mem.close()
        except (BufferError, ValueError):
            pass
