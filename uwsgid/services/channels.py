"""The channels between the master and its workers and mules, which process this is, and the
services' "set up once" state.

Channels, all AF_UNIX SOCK_SEQPACKET pairs created by the master before the first fork (one
message = one signal or request, never torn; non-blocking on both sides, a full queue drops the
message with a log line, like uWSGI's "SIGNAL QUEUE IS FULL"):
  * one pair per worker id: master -> worker carries signal numbers for that worker; worker ->
    master carries requests (raise signal N, add a timer / file monitor / cron). A respawned
    worker inherits the same pair, so queued signals are not lost.
  * one shared pair for target "worker" (= first available worker): every worker polls the
    same end and the kernel hands each message to exactly one of them.
  * mules (--mule/--mules) likewise: a pair per mule, a shared one for target "mule", and
    message queues (one per mule and a shared one) for mule_msg / mule_get_msg.
After fork, worker_started / mule_started keep this process's ends and close the others, then
run the callbacks registered with on_fork_child (state only the master keeps: the timers).

Set up once: the package's setup() creates every service (master, before the first fork) through
set_up_once; ensure() runs it on first use instead when nothing did yet (an app touching a
service while the master loads it), so every process shares the same memory and channels.
"""

from __future__ import annotations

import _thread
import os

from uwsgid.util.log import log

TYPE_CHECKING = False
if TYPE_CHECKING:      # annotations only: importing typing costs start-up time
    import socket
    from collections.abc import Callable

MULE_MSG_MAX = 65536

# (master's or sender's end, the worker's or mule's end)
_workers: dict[int, tuple[socket.socket, socket.socket]] = {}
_any_worker: tuple[socket.socket, socket.socket] | None = None
_mules: dict[int, tuple[socket.socket, socket.socket]] = {}
_any_mule: tuple[socket.socket, socket.socket] | None = None
_mule_queues: dict[int, tuple[socket.socket, socket.socket]] = {}
_any_mule_queue: tuple[socket.socket, socket.socket] | None = None
_numproc = 0
_nmules = 0
_master_pid = 0
_wid = 0                # this process's worker id (0 = not a worker)
_mule = 0               # this process's mule id (0 = not a mule)
_fork_child_callbacks: list[Callable[[], None]] = []

_setup_lock = _thread.allocate_lock()   # threading.Lock, without importing threading for --version
_ready = False
_first_use: Callable[[], None] | None = None


def pair() -> tuple[socket.socket, socket.socket]:
    import socket  # here: importing the services (their options) must not cost --version a socket module
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    a.setblocking(False)
    b.setblocking(False)
    return a, b


def _queue_pair() -> tuple[socket.socket, socket.socket]:
    # room for a few full-size mule messages
    import socket
    q = pair()
    for sock in q:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * MULE_MSG_MAX)
    return q


# ---- set up once ------------------------------------------------------------------------------

def on_first_use(setup: Callable[[], None]) -> None:
    """setup(): what ensure() runs when no service was set up yet (the package's setup)."""
    global _first_use
    _first_use = setup


def set_up_once(create_all: Callable[[], None]) -> None:
    """Run create_all() unless the services are set up already (once, whichever thread asks)."""
    global _ready
    if _ready:
        return
    with _setup_lock:
        if _ready:
            return
        create_all()
        _ready = True


def ensure() -> None:
    if not _ready and _first_use is not None:
        _first_use()


def ready() -> bool:
    return _ready


# ---- the channel table --------------------------------------------------------------------

def create(numproc: int, nmules: int = 0) -> None:
    """Master, before the first fork: one channel per worker and per mule, the shared ones, and
    the mules' message queues."""
    global _any_worker, _any_mule, _any_mule_queue, _numproc, _nmules, _master_pid
    if _any_worker is not None:
        return
    _numproc = max(1, int(numproc or 1))
    _nmules = max(0, int(nmules or 0))
    for mid in range(1, _nmules + 1):
        _mules[mid] = pair()
        _mule_queues[mid] = _queue_pair()
    if _nmules:
        _any_mule = pair()
        _any_mule_queue = _queue_pair()
    _master_pid = os.getpid()
    for wid in range(1, _numproc + 1):
        _workers[wid] = pair()
    _any_worker = pair()


def worker_count() -> int:
    return _numproc


def mule_count() -> int:
    return _nmules


def send(sock: socket.socket, data: bytes, what: str) -> bool:
    """Queue one message without blocking; a full queue or a closed end is logged, not raised."""
    try:
        sock.send(data)
        return True
    except BlockingIOError:
        log(f"*** SIGNAL QUEUE IS FULL for {what}: signal {data[-1]} dropped ***")
    except OSError as exc:
        log(f"[uwsgi-signal] cannot deliver to {what}: {exc}")
    return False


# the master's sending ends, for routing

def worker_ids() -> list[int]:
    return list(_workers)


def to_worker(wid: int) -> socket.socket | None:
    """The master's end of worker wid's channel (None: no such worker)."""
    p = _workers.get(wid)
    return p[0] if p is not None else None


def to_any_worker() -> socket.socket:
    """The master's end of the channel every worker polls (target "worker")."""
    return _any_worker[0]


def mule_ids() -> list[int]:
    return list(_mules)


def to_mule(mid: int) -> socket.socket | None:
    p = _mules.get(mid)
    return p[0] if p is not None else None


def to_any_mule() -> socket.socket:
    return _any_mule[0]


def request_ends() -> list[socket.socket]:
    """The master's ends of every worker's and mule's channel, where their requests arrive."""
    return [m for m, _w in list(_workers.values()) + list(_mules.values())]


def mule_queue(mid: int | None) -> socket.socket | None:
    """The sending end of mule mid's message queue, or of the shared one for None/0 (None: no
    such mule)."""
    if mid is None or mid == 0:
        return _any_mule_queue[0]
    p = _mule_queues.get(mid)
    return p[0] if p is not None else None


# ---- this process ---------------------------------------------------------------------------

def worker_id() -> int:
    return _wid


def mule_id() -> int:
    return _mule


def who() -> str:
    return f"mule {_mule}" if _mule else f"worker {_wid}" if _wid else "the master"


def in_master() -> bool:
    """This process owns the timers: the master, or the only process of a master-less
    instance (its worker 1 runs in the process that set the services up)."""
    return _mule == 0 and (not _master_pid or os.getpid() == _master_pid)


def _own_end() -> socket.socket | None:
    if _mule:
        return _mules[_mule][1]
    if _wid and _wid in _workers:
        return _workers[_wid][1]
    return None


def forked_child() -> bool:
    """A worker or mule forked by the master, which it reaches over its own channel."""
    return _own_end() is not None and os.getpid() != _master_pid


def to_master(msg: bytes) -> bool:
    """A request to the master (raise a signal, add a timer ...) over this process's channel."""
    return send(_own_end(), msg, "the master")


def receiving_ends() -> list[socket.socket]:
    """This worker's or mule's signal ends: its own channel, then the shared one."""
    if _mule:
        return [_mules[_mule][1]] + ([_any_mule[1]] if _any_mule is not None else [])
    socks = []
    if _wid in _workers:
        socks.append(_workers[_wid][1])
    if _any_worker is not None:
        socks.append(_any_worker[1])
    return socks


def mule_queue_ends() -> list[socket.socket]:
    """In a mule: the receiving ends of its message queue, then of the shared one."""
    return [_mule_queues[_mule][1]] + ([_any_mule_queue[1]] if _any_mule_queue is not None else [])


def on_fork_child(callback: Callable[[], None]) -> None:
    """callback() runs in each forked worker and mule once it took its channels."""
    _fork_child_callbacks.append(callback)


def worker_started(wid: int) -> None:
    """In a worker: it is worker wid; forked, it keeps its channel and the shared one only."""
    global _wid
    _wid = wid
    if os.getpid() != _master_pid:
        # the master's ends and the other workers' channels are not ours
        for w, (m, wk) in _workers.items():
            m.close()
            if w != wid:
                wk.close()
        _any_worker[0].close()
        _close_mule_ends(keep=0)
        for callback in _fork_child_callbacks:
            callback()


def mule_started(mid: int) -> None:
    """In a mule after fork: it keeps its channels and queues (and the shared mule ones)."""
    global _mule, _wid
    _mule = mid
    _wid = 0
    for m, wk in _workers.values():
        m.close()
        wk.close()
    _any_worker[0].close()
    _any_worker[1].close()
    _close_mule_ends(keep=mid)
    for callback in _fork_child_callbacks:
        callback()


def _close_mule_ends(keep: int) -> None:
    """In a worker (keep=0) or mule `keep`: drop the master's ends of the mule channels and the
    other mules' receiving ends; the message send ends stay (anyone may mule_msg)."""
    for mid, (m, mu) in _mules.items():
        m.close()
        if mid != keep:
            mu.close()
    for mid, (_send_end, mu) in _mule_queues.items():
        if mid != keep:
            mu.close()
    if _any_mule is not None:
        _any_mule[0].close()
        if not keep:
            _any_mule[1].close()
    if _any_mule_queue is not None and not keep:
        _any_mule_queue[1].close()


def _reset_for_tests() -> None:
    global _any_worker, _any_mule, _any_mule_queue, _numproc, _nmules, _master_pid, _wid, _mule, _ready
    for pairs in (_workers, _mules, _mule_queues):
        for m, w in pairs.values():
            m.close()
            w.close()
        pairs.clear()
    for p in (_any_worker, _any_mule, _any_mule_queue):
        if p is not None:
            p[0].close()
            p[1].close()
    _any_worker = _any_mule = _any_mule_queue = None
    _numproc = _nmules = _master_pid = _wid = _mule = 0
    _ready = False
