"""uWSGI signals: numbered events (0..255) raised by apps, timers, file monitors and crons, and
routed by the master to the worker(s) named when the signal was registered, where the handler
(Python, or Lua wrapped by the Lua plugin) runs between requests. A handler error is logged.

Channels, all AF_UNIX SOCK_SEQPACKET pairs created by the master before the first fork (one
message = one signal or request, never torn; non-blocking on both sides, a full queue drops the
signal with a log line, like uWSGI's "SIGNAL QUEUE IS FULL"):
  * one pair per worker id: master -> worker carries signal numbers for that worker; worker ->
    master carries requests (raise signal N, add a timer / file monitor / cron). A respawned
    worker inherits the same pair, so queued signals are not lost.
  * one shared pair for target "worker" (= first available worker): every worker polls the
    same end and the kernel hands each message to exactly one of them.
  * mules (--mule/--mules) likewise: a pair per mule, a shared one for target "mule", and
    message queues (one per mule and a shared one) for mule_msg / mule_get_msg.
The registration table (registered flag + target per signal) lives in shared memory so that a
signal registered in a worker (lazy-apps) is routed by the master; handlers are per process
(registered in the master before fork they are inherited by every worker).

The master's timers, file monitors and crons, and its thread reading the workers' requests,
are in uwsgid/services/timers.py.
"""

from __future__ import annotations

import mmap
import os
import re
import select
import socket
import struct
import threading
import time

from uwsgid import api as core_api
from uwsgid.log import log, log_exception
from uwsgid.plugin import Plugin
from uwsgid.services.locks import ProcessLock

NSIG = 256
_ENTRY = 64            # per signal: flag, target length, target (62 bytes)
_TARGETS = re.compile(r"^(worker\d*|workers|active-workers)$")
_MULE_TARGETS = re.compile(r"^(mule\d*|mules)$")

_table: mmap.mmap | None = None
_table_lock: ProcessLock | None = None
_pids: mmap.mmap | None = None                            # worker id -> pid (i32), for active-workers
_pipes: dict[int, tuple[socket.socket, socket.socket]] = {}  # wid -> (master end, worker end)
_shared: tuple[socket.socket, socket.socket] | None = None
_numproc = 0
_master_pid = 0
# mules: a signal channel each + a shared one (target "mule"), and message queues likewise
_mule_pipes: dict[int, tuple[socket.socket, socket.socket]] = {}
_mule_shared: tuple[socket.socket, socket.socket] | None = None
_mule_msgs: dict[int, tuple[socket.socket, socket.socket]] = {}   # (send end, mule's end)
_mule_msg_shared: tuple[socket.socket, socket.socket] | None = None
_nmules = 0
_mule = 0               # this process's mule id (0 = not a mule)
MULE_MSG_MAX = 65536

_handlers: dict[int, object] = {}
_wid = 0
_reader_added = False
_last_received: int | None = None

_warned_unregistered: set[int] = set()


def _pair() -> tuple[socket.socket, socket.socket]:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    a.setblocking(False)
    b.setblocking(False)
    return a, b


def setup(numproc: int, nmules: int = 0) -> None:
    """Master, before the first fork: the signal table and one channel per worker and mule."""
    global _table, _table_lock, _pids, _shared, _numproc, _master_pid, _nmules, _mule_shared, _mule_msg_shared
    if _table is not None:
        return
    _numproc = max(1, int(numproc or 1))
    _nmules = max(0, int(nmules or 0))
    for mid in range(1, _nmules + 1):
        _mule_pipes[mid] = _pair()
        _mule_msgs[mid] = _pair()
        for sock in _mule_msgs[mid]:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * MULE_MSG_MAX)
    if _nmules:
        _mule_shared = _pair()
        _mule_msg_shared = _pair()
        for sock in _mule_msg_shared:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * MULE_MSG_MAX)
    _master_pid = os.getpid()
    _table = mmap.mmap(-1, NSIG * _ENTRY, mmap.MAP_SHARED | mmap.MAP_ANONYMOUS)
    _pids = mmap.mmap(-1, 4 * (_numproc + 1), mmap.MAP_SHARED | mmap.MAP_ANONYMOUS)
    _table_lock = ProcessLock()
    for wid in range(1, _numproc + 1):
        _pipes[wid] = _pair()
    _shared = _pair()


def _ensure() -> None:
    if _table is None:
        import uwsgid.services as services
        services.ensure()
        if _table is None:
            setup(1)


def _check_num(num: int) -> int:
    if not 0 <= num < NSIG:
        raise ValueError(f"signal number ({num}) is out of range [0,255]")
    return num


def in_master() -> bool:
    """This process owns the timers: the master, or the only process of a master-less
    instance (its worker 1 runs in the process that set the services up)."""
    return _mule == 0 and (not _master_pid or os.getpid() == _master_pid)


# ---- registration -------------------------------------------------------------------------

def _normalize_target(target: str) -> str:
    t = target.strip() or "worker"
    if t == "worker0":
        t = "worker"
    if t == "mule0":
        t = "mule"
    if _MULE_TARGETS.match(t):
        if not _nmules:
            raise ValueError(f"signal target {t!r}: no mules are configured (--mule / --mules)")
        if t[4:].isdigit() and not 1 <= int(t[4:]) <= _nmules:
            # as uWSGI: accepted (the app may run under another configuration), never delivered
            log(f"[uwsgi-signal] warning: signal target {t!r} does not exist (mules 1..{_nmules})")
        return t
    if not _TARGETS.match(t):
        if t.startswith(("spooler", "farm")):
            raise ValueError(f"signal target {t!r} is not supported (no spoolers or farms): use worker, "
                             "workers, worker<N>, active-workers, mule, mule<N> or mules")
        raise ValueError(f"unknown signal target {t!r}: use worker, workers, worker<N>, active-workers, "
                         "mule, mule<N> or mules")
    if t.startswith("worker") and t[6:].isdigit():
        n = int(t[6:])
        if _numproc and not 1 <= n <= _numproc:
            log(f"[uwsgi-signal] warning: signal target {t!r} does not exist (workers 1..{_numproc})")
    return t


def register(num: int, target: str, fn) -> bool:
    _check_num(num)
    _ensure()
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
    _check_num(num)
    if _table is None:
        return False
    return bool(_table[num * _ENTRY])


def _target(num: int) -> str | None:
    off = num * _ENTRY
    with _table_lock:      # a worker may be registering it right now
        if not _table[off]:
            return None
        return _table[off + 2:off + 2 + _table[off + 1]].decode()


# ---- raising and routing ------------------------------------------------------------------

def _send(sock: socket.socket, data: bytes, what: str) -> bool:
    try:
        sock.send(data)
        return True
    except BlockingIOError:
        log(f"*** SIGNAL QUEUE IS FULL for {what}: signal {data[-1]} dropped ***")
    except OSError as exc:
        log(f"[uwsgi-signal] cannot deliver to {what}: {exc}")
    return False


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
    _ensure()
    target = _target(num)
    if target is None:
        _warn_once(num, f"[uwsgi-signal] unregistered signal {num}")
        return 0
    msg = bytes([num])
    if target == "worker":
        return int(_send(_shared[0], msg, "the first available worker"))
    if target in ("workers", "active-workers"):
        n = 0
        for wid, (m, _w) in _pipes.items():
            if target == "active-workers" and not _alive(wid):
                continue
            n += _send(m, msg, f"worker {wid}")
        return n
    if target == "mule":
        return int(_send(_mule_shared[0], msg, "the first available mule"))
    if target == "mules":
        return sum(_send(m, msg, f"mule {mid}") for mid, (m, _w) in _mule_pipes.items())
    if target.startswith("mule"):
        mid = int(target[4:])
        if mid not in _mule_pipes:
            _warn_once(num, f"[uwsgi-signal] signal {num}: target {target} does not exist")
            return 0
        return int(_send(_mule_pipes[mid][0], msg, f"mule {mid}"))
    wid = int(target[6:])
    if wid not in _pipes:
        _warn_once(num, f"[uwsgi-signal] signal {num}: target {target} does not exist")
        return 0
    return int(_send(_pipes[wid][0], msg, f"worker {wid}"))


def _own_channel() -> socket.socket | None:
    if _mule:
        return _mule_pipes[_mule][1]
    if _wid and _wid in _pipes:
        return _pipes[_wid][1]
    return None


def _to_master(msg: bytes) -> bool:
    return _send(_own_channel(), msg, "the master")


def raise_signal(num: int) -> None:
    _check_num(num)
    _ensure()
    if _own_channel() is not None and os.getpid() != _master_pid:
        _to_master(b"S" + bytes([num]))
    else:
        route(num)


def send_remote(addr: str, num: int) -> None:
    """uWSGI's remote signal: a uwsgi header (modifier1 110, pktsize 0, modifier2 = signal);
    the node answers a header whose modifier2 is 1 (delivered) or 0 (rejected)."""
    _check_num(num)
    from uwsgid.services.rpc import _connect, _recv_exact, _timeout
    try:
        with _connect(addr, _timeout()) as s:
            s.sendall(struct.pack("<BHB", 110, 0, num))
            head = _recv_exact(s, 4)
    except OSError as exc:
        raise OSError(f"unable to deliver signal {num} to node {addr}: {exc}") from None
    if len(head) < 4:
        raise OSError(f"unable to deliver signal {num} to node {addr}: no answer")
    if head[3] != 1:
        raise ValueError(f"node {addr} rejected signal {num}")


class RemoteSignalPlugin(Plugin):
    """modifier1 110: a remote `uwsgi.signal(num, "host:port")` (or `uwsgi --signal ADDR,NUM`).
    The packet is a bare header whose modifier2 is the signal; the answer is a header
    (modifier1 255, pktsize 0, modifier2 1 = delivered / 0 = rejected: not registered here)."""

    name = "signal"
    modifier1 = 110

    def has_app(self) -> bool:
        return True

    def request(self, req):
        from uwsgid.services.rpc import write_raw
        num = req.modifier2
        ok = registered(num)
        if ok:
            raise_signal(num)
        else:
            log(f"[uwsgi-signal] remote signal {num} rejected: not registered")
        write_raw(req, struct.pack("<BHB", 255, 0, 1 if ok else 0))
        return None


remote_plugin = RemoteSignalPlugin()


# ---- worker side --------------------------------------------------------------------------

def _who() -> str:
    return f"mule {_mule}" if _mule else f"worker {_wid}" if _wid else "the master"


def dispatch(num: int) -> None:
    """Run this process's handler for num (logged, never raised)."""
    fn = _handlers.get(num)
    if fn is None:
        log(f"[uwsgi-signal] no handler for signal {num} in {_who()}")
        return
    try:
        fn(num)
    except Exception:
        log_exception(f"[uwsgi-signal] error in the handler of signal {num} ({_who()}):")


def _drain(sock: socket.socket, run: bool = True) -> list[int]:
    got = []
    eof = False
    while True:
        try:
            data = sock.recv(64)
        except (BlockingIOError, InterruptedError):
            break
        except OSError:
            eof = True
            break
        if not data:
            eof = True
            break
        got.extend(data)
    if run:
        for num in got:
            dispatch(num)
    if eof:
        _channel_closed(sock)
    return got


def _channel_closed(sock: socket.socket) -> None:
    """The master's end is gone (it died or re-executed): stop watching, or leave (a mule)."""
    if _mule:
        _master_gone()
    worker = core_api.worker
    remove = getattr(worker, "remove_reader", None) if worker is not None else None
    if remove is not None:
        try:
            remove(sock.fileno())
        except Exception:
            pass
    log(f"[uwsgi-signal] {_who()}: the signal channel is closed (master gone?)")


def worker_started(wid: int) -> None:
    """In each worker after fork: keep this worker's channel and the shared one."""
    global _wid, _reader_added
    _ensure()
    _wid = wid
    _reader_added = False
    if _pids is not None and wid <= _numproc:
        struct.pack_into("<i", _pids, 4 * wid, os.getpid())
    if os.getpid() != _master_pid:
        # the master's ends and the other workers' channels are not ours
        for w, (m, wk) in _pipes.items():
            m.close()
            if w != wid:
                wk.close()
        _shared[0].close()
        _close_mule_ends(keep=0)
        from uwsgid.services import timers
        timers.forget_in_child()


def _close_mule_ends(keep: int) -> None:
    """In a worker (keep=0) or mule `keep`: drop the master's ends of the mule channels and the
    other mules' receiving ends; the message send ends stay (anyone may mule_msg)."""
    for mid, (m, mu) in _mule_pipes.items():
        m.close()
        if mid != keep:
            mu.close()
    for mid, (_send_end, mu) in _mule_msgs.items():
        if mid != keep:
            mu.close()
    if _mule_shared is not None:
        _mule_shared[0].close()
        if not keep:
            _mule_shared[1].close()
    if _mule_msg_shared is not None and not keep:
        _mule_msg_shared[1].close()


def mule_started(mid: int) -> None:
    """In a mule after fork: keep its channels and queues (and the shared mule ones)."""
    global _mule, _wid, _reader_added
    _ensure()
    _mule = mid
    _wid = 0
    _reader_added = False
    for w, (m, wk) in _pipes.items():
        m.close()
        wk.close()
    _shared[0].close()
    _shared[1].close()
    _close_mule_ends(keep=mid)
    from uwsgid.services import timers
    timers.forget_in_child()


def worker_fds() -> list[int]:
    """The fds a worker loop must watch: its own channel, then the shared one."""
    fds = []
    if _wid in _pipes:
        fds.append(_pipes[_wid][1].fileno())
    if _shared is not None:
        fds.append(_shared[1].fileno())
    return fds


def on_readable(fd: int, *_args) -> None:
    """Reader callback for a worker loop: run the handlers of the signals pending on fd."""
    for sock in _worker_socks():
        if sock.fileno() == fd:
            _drain(sock)
            return


def _worker_socks() -> list[socket.socket]:
    if _mule:
        return [_mule_pipes[_mule][1]] + ([_mule_shared[1]] if _mule_shared is not None else [])
    socks = []
    if _wid in _pipes:
        socks.append(_pipes[_wid][1])
    if _shared is not None:
        socks.append(_shared[1])
    return socks


def add_readers(add_reader) -> bool:
    """Register the worker's channels with a loop's add_reader(fd, callback) once per process."""
    global _reader_added
    if _reader_added or not _wid:
        return False
    for fd in worker_fds():
        add_reader(fd, lambda *a, _fd=fd: on_readable(_fd))
    _reader_added = True
    return True


def start_worker_thread() -> None:
    """Fallback when the worker loop offers no add_reader: handlers run in a helper thread."""
    global _reader_added
    if _reader_added or not _wid:
        return
    _reader_added = True

    def run():
        poller = select.poll()
        socks = {s.fileno(): s for s in _worker_socks()}
        for fd in socks:
            poller.register(fd, select.POLLIN)
        while socks:
            for fd, ev in poller.poll():
                _drain(socks[fd])
                if ev & (select.POLLHUP | select.POLLERR):
                    poller.unregister(fd)
                    socks.pop(fd, None)

    threading.Thread(target=run, name="uwsgid-signals", daemon=True).start()


def wait(num: int | None = None, timeout: float | None = None) -> int | None:
    """Block this thread until a signal for this worker arrives (its handler is not run; other
    signals meanwhile are handled normally). Returns the signal, None on timeout."""
    global _last_received
    if num is not None:
        _check_num(num)
    _ensure()
    socks = _worker_socks() if (_wid or _mule) else []
    if not socks:
        raise ValueError("signal_wait can only be used in a worker or a mule")
    deadline = None if timeout is None else time.monotonic() + timeout
    poller = select.poll()
    for s in socks:
        poller.register(s.fileno(), select.POLLIN)
    while True:
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        ready = poller.poll(None if left is None else int(left * 1000))
        for fd, ev in ready:
            sock = next(s for s in socks if s.fileno() == fd)
            if ev & (select.POLLHUP | select.POLLERR) and not ev & select.POLLIN:
                return None     # the master is gone: nothing will come
            # one message per recv (SOCK_SEQPACKET): take signals one by one, none is lost
            while True:
                try:
                    data = sock.recv(64)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    break
                if not data:
                    break
                sig = data[0]
                if num is None or sig == num:
                    _last_received = sig
                    return sig
                dispatch(sig)
        if deadline is not None and time.monotonic() >= deadline:
            return None


def last_received() -> int | None:
    return _last_received


# ---- mules: messages and the mule's own loop ------------------------------------------------

def mule_msg(msg: bytes, mule: int | None = None) -> bool:
    """Queue msg for mule `mule` (1..N) or, with None, for the first mule that asks."""
    _ensure()
    if not _nmules:
        raise ValueError("mule_msg: no mules are configured (--mule / --mules)")
    if len(msg) > MULE_MSG_MAX:
        raise ValueError(f"mule_msg: a message is at most {MULE_MSG_MAX} bytes (got {len(msg)})")
    if mule is None or mule == 0:
        sock = _mule_msg_shared[0]
        what = "the mules"
    else:
        if mule not in _mule_msgs:
            raise ValueError(f"mule_msg: there are mules 1..{_nmules} (got {mule})")
        sock = _mule_msgs[mule][0]
        what = f"mule {mule}"
    try:
        sock.send(msg)
        return True
    except BlockingIOError:
        log(f"*** MULE MSG QUEUE IS FULL for {what}: message dropped ***")
    except OSError as exc:
        log(f"mule_msg to {what}: {exc}")
    return False


def _master_gone() -> None:
    log(f"mule {_mule}: the master is gone, exiting")
    os._exit(0)


def _mule_poller():
    socks = {s.fileno(): ("sig", s) for s in _worker_socks()}
    own = [_mule_msgs[_mule][1]] + ([_mule_msg_shared[1]] if _mule_msg_shared is not None else [])
    for s_ in own:
        socks[s_.fileno()] = ("msg", s_)
    poller = select.poll()
    for fd in socks:
        poller.register(fd, select.POLLIN)
    return poller, socks


def _mule_turn(poller, socks, timeout_ms, want_msg: bool):
    """One poll in a mule: run signal handlers; return a message when one is taken."""
    for fd, ev in poller.poll(timeout_ms):
        kind, sock = socks[fd]
        if kind == "sig":
            if ev & select.POLLIN:
                _drain(sock)
            if ev & (select.POLLHUP | select.POLLERR):
                # the master's end is closed: it died or re-executed itself (reload)
                _master_gone()
        elif want_msg and ev & select.POLLIN:
            try:
                return sock.recv(MULE_MSG_MAX + 1)
            except (BlockingIOError, InterruptedError):
                continue    # another mule took it (shared queue)
    return None


def mule_get_msg(timeout: float | None = None) -> bytes | None:
    """In a mule: block until a message arrives (signals are handled meanwhile); None on timeout."""
    if not _mule:
        raise ValueError("mule_get_msg can only be called in a mule")
    poller, socks = _mule_poller()
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        left = 1000 if deadline is None else max(0, int((deadline - time.monotonic()) * 1000))
        msg = _mule_turn(poller, socks, left, True)
        if msg is not None:
            return msg
        if deadline is not None and time.monotonic() >= deadline:
            return None


def mule_loop(on_message=None) -> None:
    """A mule with no script (or whose script returned): run signal handlers forever, and give
    the messages to on_message(msg) when there is one (else they wait for a scripted mule)."""
    poller, socks = _mule_poller()
    if on_message is None:
        socks = {fd: v for fd, v in socks.items() if v[0] == "sig"}
        poller = select.poll()
        for fd in socks:
            poller.register(fd, select.POLLIN)
    while True:
        msg = _mule_turn(poller, socks, 1000, on_message is not None)
        if msg is not None:
            on_message(msg)


def mule_id() -> int:
    return _mule


def mule_count() -> int:
    return _nmules


def _reset_for_tests() -> None:
    global _table, _table_lock, _pids, _shared, _numproc, _master_pid, _wid, _reader_added
    global _mule_shared, _mule_msg_shared, _nmules, _mule
    from uwsgid.services import timers
    timers._reset_for_tests()
    for pairs in (_pipes, _mule_pipes, _mule_msgs):
        for m, w in pairs.values():
            m.close()
            w.close()
        pairs.clear()
    for pair in (_mule_shared, _mule_msg_shared):
        if pair is not None:
            pair[0].close()
            pair[1].close()
    _mule_shared = _mule_msg_shared = None
    _nmules = _mule = 0
    if _shared is not None:
        _shared[0].close()
        _shared[1].close()
    _table = _table_lock = _pids = _shared = None
    _numproc = _master_pid = _wid = 0
    _reader_added = False
    _handlers.clear()
    _warned_unregistered.clear()
