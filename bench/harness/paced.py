"""An open-loop HTTP load generator for "p99 at the same offered load" (what wrk2's -R does).

    python bench/harness/paced.py HOST PORT PATH RATE SECONDS [--seed N] [--close]

Requests start on a fixed Poisson schedule (the same seeded sequence for every server), whatever
the server's speed: a request never waits for an earlier one, because it reuses an idle
kept-alive connection when the server kept one open and otherwise opens a new connection at its
start time, as a browser would. So a slow server cannot slow the offered load down (no
coordinated omission), and no connection sits idle on the server before its request (which
would stall a prefork worker on an idle socket, an artefact of wrk's pacing scripts).
latency_ms runs from a request's start (its connect, when new) to the end of its response;
from_schedule_ms from its scheduled time (adds this client's own timer lateness, ~0.5 ms).
One thread, non-blocking sockets, epoll: under 10% of a core at 2000 req/s.
Prints one JSON line: requests, errors, rate achieved, latency percentiles in milliseconds.
"""

from __future__ import annotations

import errno
import json
import random
import selectors
import socket
import sys
import time

MAX_IN_FLIGHT = 2000


class Conn:
    __slots__ = ("sock", "buf", "sched", "sent", "head_end", "length", "chunked", "close", "reused")

    def __init__(self, sock):
        self.sock = sock
        self.reset(0.0)
        self.reused = False

    def reset(self, sched: float) -> None:
        self.buf = bytearray()
        self.sched = sched
        self.sent = 0.0
        self.head_end = -1
        self.length = None
        self.chunked = False
        self.close = False

    def complete(self, eof: bool) -> bool | None:
        """True when the response is whole, None when it cannot be (bad or cut short)."""
        buf = self.buf
        if self.head_end < 0:
            i = buf.find(b"\r\n\r\n")
            if i < 0:
                return None if eof else False
            self.head_end = i + 4
            head = bytes(buf[:i]).lower()
            if not head.startswith(b"http/1.") or b" 200 " not in head.split(b"\r\n", 1)[0] + b" ":
                return None
            for line in head.split(b"\r\n")[1:]:
                k, _, v = line.partition(b":")
                k, v = k.strip(), v.strip()
                if k == b"content-length":
                    self.length = int(v)
                elif k == b"transfer-encoding" and b"chunked" in v:
                    self.chunked = True
                elif k == b"connection" and v == b"close":
                    self.close = True
            if head.startswith(b"http/1.0") and b"connection: keep-alive" not in head:
                self.close = True
        body = len(buf) - self.head_end
        if self.length is not None:
            return True if body >= self.length else (None if eof else False)
        if self.chunked:
            return True if buf.endswith(b"0\r\n\r\n") else (None if eof else False)
        self.close = True           # framed by the server closing the connection
        return True if eof else False


def run(host: str, port: int, path: str, rate: float, seconds: float, seed: int = 1,
        close: bool = False) -> dict:
    request = (f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: bench-paced\r\n"
               f"Accept: */*\r\n{'Connection: close' + chr(13) + chr(10) if close else ''}\r\n").encode()
    rng = random.Random(seed)
    sel = selectors.DefaultSelector()
    idle: list[Conn] = []
    in_flight = 0
    lat, service = [], []
    errors = {"connect": 0, "read": 0, "status": 0, "overload": 0}
    new_conns = 0
    t0 = time.monotonic() + 0.05
    end = t0 + seconds
    next_at = t0

    def finish(c: Conn, ok: bool, now: float) -> None:
        nonlocal in_flight
        in_flight -= 1
        sel.unregister(c.sock)
        if ok:
            lat.append(now - c.sched)
            service.append(now - c.sent)
        if ok and not c.close:
            c.reused = True
            idle.append(c)
        else:
            c.sock.close()

    def start(sched: float) -> None:
        nonlocal in_flight, new_conns
        if in_flight >= MAX_IN_FLIGHT:
            errors["overload"] += 1
            return
        now = time.monotonic()
        while idle:
            c = idle.pop()
            c.reset(sched)
            try:
                c.sock.send(request)
            except OSError:
                c.sock.close()      # the server closed it meanwhile: a new connection instead
                continue
            c.sent = now
            in_flight += 1
            sel.register(c.sock, selectors.EVENT_READ, c)
            return
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        rc = s.connect_ex((host, port))
        if rc not in (0, errno.EINPROGRESS):
            errors["connect"] += 1
            s.close()
            return
        c = Conn(s)
        c.reset(sched)
        c.sent = now
        new_conns += 1
        in_flight += 1
        sel.register(s, selectors.EVENT_WRITE, c)

    while True:
        now = time.monotonic()
        while next_at <= now and next_at < end:
            start(next_at)
            next_at += rng.expovariate(rate)
        if next_at >= end and in_flight == 0:
            break
        if now > end + 10:        # what is still out after 10 s counts as failed
            errors["read"] += in_flight
            break
        timeout = max(0.0, min(next_at, end + 10) - now) if next_at < end else 0.05
        for key, ev in sel.select(timeout):
            c: Conn = key.data
            now = time.monotonic()
            if ev & selectors.EVENT_WRITE:
                err = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    errors["connect"] += 1
                    finish(c, False, now)
                    continue
                try:
                    c.sock.send(request)
                except OSError:
                    errors["connect"] += 1
                    finish(c, False, now)
                    continue
                sel.modify(c.sock, selectors.EVENT_READ, c)
                continue
            try:
                data = c.sock.recv(262144)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = None
            if not data and not c.buf and c.reused:
                # a kept-alive connection the server had closed meanwhile: retry on a new one
                sched = c.sched
                c.close = True
                finish(c, False, now)
                start(sched)
                continue
            if data:
                c.buf += data
            done = c.complete(eof=not data)
            if done is True:
                finish(c, True, now)
            elif done is None:
                errors["status" if c.head_end >= 0 or data else "read"] += 1
                finish(c, False, now)
    for c in idle:
        c.sock.close()
    sel.close()
    lat.sort()
    service.sort()

    def pct(values, p):
        if not values:
            return 0.0
        return values[min(len(values) - 1, max(0, round(p / 100 * len(values)) - 1))] * 1000

    n = len(lat)
    return {"requests": n, "errors": errors, "offered_rps": rate, "rps": n / seconds,
            "new_connections": new_conns,
            "latency_ms": {"mean": sum(service) / n * 1000 if n else 0.0,
                           **{f"p{p}": pct(service, p) for p in (50, 90, 99, 99.9)}, "max": pct(service, 100)},
            "from_schedule_ms": {f"p{p}": pct(lat, p) for p in (50, 99)}}


if __name__ == "__main__":
    a = sys.argv[1:]
    seed, close = 1, "--close" in a
    if close:
        a.remove("--close")
    if "--seed" in a:
        i = a.index("--seed")
        seed = int(a[i + 1])
        del a[i:i + 2]
    if len(a) != 5:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        sys.exit(2)
    print("BENCHJSON " + json.dumps(run(a[0], int(a[1]), a[2], float(a[3]), float(a[4]), seed, close)))
