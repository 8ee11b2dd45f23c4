"""uWSGI signals: numbered events (0..255) raised by apps, timers, file monitors and crons, and
routed by the master to the worker(s) or mule(s) named when the signal was registered, where the
handler (Python, or Lua wrapped by the Lua plugin) runs between requests. A handler error is
logged.

This module holds the registration table and the routing. The table (registered flag + target
per signal) lives in shared memory so that a signal registered in a worker (lazy-apps) is routed
by the master; handlers are per process (registered in the master before fork they are
inherited by every worker).

Elsewhere: the channels signals travel on (channels.py), the worker's and mule's side that takes
them and runs the handlers, signal_wait included (signal_receiver.py), signals to and from other
nodes (remote_signals.py), and the master's timers, file monitors and crons (timers.py).
"""

from __future__ import annotations

import mmap
import os
import re
import struct

from uwsgid.services import channels
from uwsgid.services.locks import ProcessLock
from uwsgid.util.log import log, log_exception

NSIG = 256
_ENTRY = 64            # per signal: flag, target length, target (62 bytes)
_TARGETS = re.compile(r"^(worker\d*|workers|active-workers)$")
_MULE_TARGETS = re.compile(r"^(mule\d*|mules)$")

_table: mmap.mmap | None = None
_table_lock: ProcessLock | None = None
_pids: mmap.mmap | None = None                            # worker id -> pid (i32), for active-workers

_handlers: dict[int, object] = {}
_warned_unregistered: set[int] = set()
_service_targets: dict[str, object] = {}   # "spooler" -> deliver(msg) -> int (spooler.py adds it)


def add_target(name: str, deliver) -> None:
    """A target served by a service's processes (the spooler): deliver(msg) queues one signal
    message for them and returns how many deliveries were queued."""
    _service_targets[name] = deliver


def setup() -> None:
    """Master, before the first fork (once the channels exist): the table and the pid slots."""
    global _table, _table_lock, _pids
    if _table is not None:
        return
    _table = mmap.mmap(-1, NSIG * _ENTRY, mmap.MAP_SHARED | mmap.MAP_ANONYMOUS)
    _pids = mmap.mmap(-1, 4 * (channels.worker_count() + 1), mmap.MAP_SHARED | mmap.MAP_ANONYMOUS)
    _table_lock = ProcessLock()


def ensure() -> None:
    """The table and the channels exist: every service is set up on first use."""
    if _table is None:
        channels.ensure()
        if _table is None:
            channels.create(1)
            setup()


def check_num(num: int) -> int:
    if not 0 <= num < NSIG:
        raise ValueError(f"signal number ({num}) is out of range [0,255]")
    return num


# ---- registration -------------------------------------------------------------------------

def _normalize_target(target: str) -> str:
    t = target.strip() or "worker"
    if t == "worker0":
        t = "worker"
    if t == "mule0":
        t = "mule"
    nmules = channels.mule_count()
    if _MULE_TARGETS.match(t):
        if not nmules:
            raise ValueError(f"signal target {t!r}: no mules are configured (--mule / --mules)")
        if t[4:].isdigit() and not 1 <= int(t[4:]) <= nmules:
            # as uWSGI: accepted (the app may run under another configuration), never delivered
            log(f"[uwsgi-signal] warning: signal target {t!r} does not exist (mules 1..{nmules})")
        return t
    if t in _service_targets:
        return t
    if not _TARGETS.match(t):
        if t == "spooler":
            raise ValueError("signal target 'spooler' is not supported without a spooler (--spooler DIR)")
        if t.startswith(("spooler", "farm")):
            raise ValueError(f"signal target {t!r} is not supported (no farms): use worker, "
                             "workers, worker<N>, active-workers, mule, mule<N>, mules or spooler")
        raise ValueError(f"unknown signal target {t!r}: use worker, workers, worker<N>, active-workers, "
                         "mule, mule<N> or mules")
    if t.startswith("worker") and t[6:].isdigit():
        n = int(t[6:])
        numproc = channels.worker_count()
        if numproc and not 1 <= n <= numproc:
            log(f"[uwsgi-signal] warning: signal target {t!r} does not exist (workers 1..{numproc})")
    return t


def register(num: int, target: str, fn) -> bool:
    check_num(num)
    ensure()
    t = _normalize_target(target)
    data = t.encode()
    _handlers[num] = fn
    with _table_lock:
        off = num * _ENTRY
        old = _table[off + 2:off + 2 + _table[off + 1]] if _table[off] else None
        _table[off:off + 2] = bytes([1, len(data)])
        _table[off + 2:off + 2 + len(data)] = data
    if old is not None and old != data:
        log(f"[uwsgi-signal] signal {num} re-registered: target {old.decode()} -> {t}")
    return True


def registered(num: int) -> bool:
    check_num(num)
    if _table is None:
        return False
    return bool(_table[num * _ENTRY])


def _target(num: int) -> str | None:
    off = num * _ENTRY
    with _table_lock:      # a worker may be registering it right now
        if not _table[off]:
            return None
        return _table[off + 2:off + 2 + _table[off + 1]].decode()


def record_pid(wid: int) -> None:
    """In worker wid: its pid, so that target active-workers skips the dead ones."""
    if _pids is not None and wid <= channels.worker_count():
        struct.pack_into("<i", _pids, 4 * wid, os.getpid())


# ---- raising and routing ------------------------------------------------------------------

def _alive(wid: int) -> bool:
    pid = struct.unpack_from("<i", _pids, 4 * wid)[0]
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def _warn_once(num: int, line: str) -> None:
    # a timer raising an undeliverable signal every second must not flood the log
    if num not in _warned_unregistered:
        _warned_unregistered.add(num)
        log(line)


def route(num: int) -> int:
    """Master: deliver signal num to its target; returns how many deliveries were queued."""
    ensure()
    target = _target(num)
    if target is None:
        _warn_once(num, f"[uwsgi-signal] unregistered signal {num}")
        return 0
    msg = bytes([num])
    deliver = _service_targets.get(target)
    if deliver is not None:
        return deliver(msg)
    send = channels.send
    if target == "worker":
        return int(send(channels.to_any_worker(), msg, "the first available worker"))
    if target in ("workers", "active-workers"):
        n = 0
        for wid in channels.worker_ids():
            if target == "active-workers" and not _alive(wid):
                continue
            n += send(channels.to_worker(wid), msg, f"worker {wid}")
        return n
    if target == "mule":
        return int(send(channels.to_any_mule(), msg, "the first available mule"))
    if target == "mules":
        return sum(send(channels.to_mule(mid), msg, f"mule {mid}") for mid in channels.mule_ids())
    if target.startswith("mule"):
        mid = int(target[4:])
        sock = channels.to_mule(mid)
        if sock is None:
            _warn_once(num, f"[uwsgi-signal] signal {num}: target {target} does not exist")
            return 0
        return int(send(sock, msg, f"mule {mid}"))
    wid = int(target[6:])
    sock = channels.to_worker(wid)
    if sock is None:
        _warn_once(num, f"[uwsgi-signal] signal {num}: target {target} does not exist")
        return 0
    return int(send(sock, msg, f"worker {wid}"))


def raise_signal(num: int) -> None:
    check_num(num)
    ensure()
    if channels.forked_child():
        channels.to_master(b"S" + bytes([num]))
    else:
        route(num)


# ---- handlers -------------------------------------------------------------------------------

def dispatch(num: int) -> None:
    """Run this process's handler for num (logged, never raised)."""
    fn = _handlers.get(num)
    if fn is None:
        log(f"[uwsgi-signal] no handler for signal {num} in {channels.who()}")
        return
    try:
        fn(num)
    except Exception:
        log_exception(f"[uwsgi-signal] error in the handler of signal {num} ({channels.who()}):")


def _reset_for_tests() -> None:
    global _table, _table_lock, _pids
    _table = _table_lock = _pids = None
    _handlers.clear()
    _warned_unregistered.clear()
    _service_targets.clear()
