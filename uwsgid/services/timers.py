"""The master's scheduler: timers (monotonic deadlines), rb timers (with an iteration limit),
file monitors (polled each second: mtime, size, inode) and crons (checked at each minute:
-1 = any, -N = every N), all raising uWSGI signals routed by uwsgid.services.signals.

They run in one small thread of the master, which also reads what workers and mules ask over
their signal channels (raise a signal, add a timer / file monitor / cron). Registered in a
worker (lazy-apps), a timer is sent to the master; identical registrations from several
workers are kept once. A forked worker or mule drops what it inherited of them
(forget_in_child, run by channels after fork).
"""

from __future__ import annotations

import os
import select
import socket
import struct
import threading
import time

from uwsgid.services import channels, signals
from uwsgid.util.log import log, log_exception

_sched_lock = threading.Lock()
_timers: list[dict] = []
_monitors: list[dict] = []
_crons: list[dict] = []
_thread: threading.Thread | None = None
_stop = threading.Event()
_wake: tuple[socket.socket, socket.socket] | None = None


def add_timer(num: int, secs: float, iterations: int = 0) -> bool:
    signals.check_num(num)
    if iterations < 0:
        raise ValueError(f"iterations must be >= 0 (got {iterations})")
    signals.ensure()
    if not channels.in_master():
        return channels.to_master(b"T" + struct.pack("<Bdi", num, secs, iterations))
    with _sched_lock:
        for t in _timers:
            if (t["num"], t["secs"], t["iterations"]) == (num, secs, iterations):
                return True      # lazy-apps: every worker registers the same timer
        _timers.append({"num": num, "secs": secs, "iterations": iterations, "count": 0,
                        "due": time.monotonic() + secs})
    kind = f"rb_timer ({iterations} iterations)" if iterations else "timer"
    log(f"[uwsgi-signal] {kind} {secs}s registered for signal {num}")
    _start_master_thread()
    return True


def _file_sig(path: str):
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def add_file_monitor(num: int, path: str) -> bool:
    signals.check_num(num)
    signals.ensure()
    if not channels.in_master():
        return channels.to_master(b"F" + bytes([num]) + path.encode())
    path = os.path.abspath(path)
    with _sched_lock:
        if any((m["num"], m["path"]) == (num, path) for m in _monitors):
            return True
        _monitors.append({"num": num, "path": path, "sig": _file_sig(path)})
    log(f"[uwsgi-signal] file monitor on {path} registered for signal {num}")
    _start_master_thread()
    return True


def check_cron_fields(fields) -> None:
    """ValueError unless each of (minute, hour, day, month, weekday) is -1 (any), -N (every N)
    or in its range (weekday 0..7, 7 = Sunday as in crontab). Shared with --cron (cron.py)."""
    for v, lo, hi, what in zip(fields, (0, 0, 1, 1, 0), (59, 23, 31, 12, 7),
                               ("minute", "hour", "day", "month", "weekday")):
        if v >= 0 and not lo <= v <= hi:
            raise ValueError(f"cron {what} must be -1 (any), -N (every N) or {lo}..{hi} (got {v})")
        if v < -1 and -v > hi + 1:
            raise ValueError(f"cron {what}: every {-v} is out of range")


def add_cron(num: int, minute: int, hour: int, day: int, month: int, weekday: int) -> bool:
    signals.check_num(num)
    fields = (minute, hour, day, month, weekday)
    check_cron_fields(fields)
    signals.ensure()
    if not channels.in_master():
        return channels.to_master(b"C" + struct.pack("<B5h", num, *fields))
    with _sched_lock:
        if any(c["num"] == num and c["fields"] == fields for c in _crons):
            return True
        _crons.append({"num": num, "fields": fields, "last": None})
    log(f"[uwsgi-signal] cron {' '.join(map(str, fields))} registered for signal {num}")
    _start_master_thread()
    return True


def cron_matches(fields, tm: time.struct_time) -> bool:
    """uWSGI's uwsgi_cron_task_needs_execution, for signal crons (add_cron) and command crons
    (--cron, cron.py): -N matches when the value is a multiple of N (-1: always); weekday 7 is
    Sunday; when both day and weekday are given (>= 0), either may match, as in crontab."""
    minute, hour, day, month, week = fields
    wday = (tm.tm_wday + 1) % 7             # Python: Monday = 0; cron: Sunday = 0

    def ok(want: int, cur: int) -> bool:
        return cur % -want == 0 if want < 0 else want == cur

    if not (ok(minute, tm.tm_min) and ok(hour, tm.tm_hour) and ok(month, tm.tm_mon)):
        return False
    day_ok, week_ok = ok(day, tm.tm_mday), ok(0 if week == 7 else week, wday)
    if day >= 0 and week >= 0:
        return day_ok or week_ok
    return day_ok and week_ok


def _handle_request(msg: bytes) -> None:
    kind = msg[:1]
    try:
        if kind == b"S":
            signals.route(msg[1])
        elif kind == b"T":
            num, secs, iterations = struct.unpack("<Bdi", msg[1:])
            add_timer(num, secs, iterations)
        elif kind == b"F":
            add_file_monitor(msg[1], msg[2:].decode())
        elif kind == b"C":
            num, *fields = struct.unpack("<B5h", msg[1:])
            add_cron(num, *fields)
        else:
            log(f"[uwsgi-signal] unknown request {kind!r} from a worker")
    except Exception:
        log_exception("[uwsgi-signal] bad request from a worker:")


def tick(now_mono: float | None = None, now_wall: float | None = None) -> float:
    """Fire what is due; returns seconds until the next timer (at most 1, for monitors/crons)."""
    mono = time.monotonic() if now_mono is None else now_mono
    wall = time.time() if now_wall is None else now_wall
    fire = []
    with _sched_lock:
        for t in list(_timers):
            if mono >= t["due"]:
                fire.append(t["num"])
                t["count"] += 1
                t["due"] = max(t["due"] + t["secs"], mono + min(t["secs"], 0.001))
                if t["iterations"] and t["count"] >= t["iterations"]:
                    _timers.remove(t)
        for m in _monitors:
            sig = _file_sig(m["path"])
            if sig != m["sig"]:
                m["sig"] = sig
                fire.append(m["num"])
        minute = int(wall // 60)
        tm = time.localtime(minute * 60)
        for c in _crons:
            if c["last"] != minute:
                # a matching minute fires at its first check, the registration's own minute
                # included (uWSGI's cron.c: last_job starts at 0), and once per minute
                if cron_matches(c["fields"], tm):
                    fire.append(c["num"])
                c["last"] = minute
        nxt = min([t["due"] for t in _timers], default=mono + 1.0)
    for num in fire:
        signals.route(num)
    return max(0.0, min(1.0, nxt - mono))


def _master_loop() -> None:
    poller = select.poll()
    socks = {m.fileno(): m for m in channels.request_ends()}
    for fd in socks:
        poller.register(fd, select.POLLIN)
    poller.register(_wake[1].fileno(), select.POLLIN)
    timeout = 0.0
    while not _stop.is_set():
        try:
            ready = poller.poll(int(timeout * 1000) + 1)
            for fd, _ev in ready:
                if fd == _wake[1].fileno():
                    _drain_wake()
                    continue
                sock = socks[fd]
                while True:
                    try:
                        msg = sock.recv(4096)
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError:
                        break
                    if not msg:
                        break
                    _handle_request(msg)
            timeout = tick()
        except Exception:
            log_exception("[uwsgi-signal] master signal thread:")
            time.sleep(0.5)


def _drain_wake() -> None:
    try:
        while _wake[1].recv(64):
            pass
    except (BlockingIOError, OSError):
        pass


def _start_master_thread() -> None:
    """The master's scheduler thread (started once, in the master process only)."""
    global _thread, _wake
    if _thread is not None and _thread.is_alive():
        try:
            _wake[0].send(b"w")   # a new timer may be due before the current poll timeout
        except OSError:
            pass
        return
    if not channels.in_master():
        return
    signals.ensure()
    _wake = channels.pair()
    _stop.clear()
    _thread = threading.Thread(target=_master_loop, name="uwsgid-signal-master", daemon=True)
    _thread.start()


def start_master() -> None:
    signals.ensure()
    _start_master_thread()


def stop_master() -> None:
    global _thread
    _stop.set()
    if _wake is not None:
        try:
            _wake[0].send(b"q")
        except OSError:
            pass
    if _thread is not None:
        _thread.join(2)
        _thread = None


def forget_in_child() -> None:
    """In a forked worker or mule: the scheduler is the master's, not ours."""
    global _wake
    if _wake is not None:
        for sock in _wake:
            sock.close()
        _wake = None
    _timers.clear()
    _monitors.clear()
    _crons.clear()


channels.on_fork_child(forget_in_child)


def _reset_for_tests() -> None:
    stop_master()
    _timers.clear()
    _monitors.clear()
    _crons.clear()
