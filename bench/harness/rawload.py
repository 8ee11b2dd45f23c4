"""A raw TCP echo load generator (bench scenario raw-echo): N connections, each sending one
SIZE-byte line (SIZE - 1 bytes and a newline) and waiting for its echo before the next, for S
seconds.

    python bench/harness/rawload.py HOST PORT PATH SECONDS [--connections 64] [--size 1024]

PATH is ignored (the harness's client signature). Lean like wsload.py: non-blocking sockets
and epoll in one thread, the line built once, every echo compared whole (a wrong byte is an
error, not a message). Prints one JSON line (BENCHJSON ...): messages, errors, messages/s,
round-trip percentiles in milliseconds. `--check` makes one exchange and exits 0 or 1 (the
harness's preflight).
"""

from __future__ import annotations

import argparse
import json
import selectors
import socket
import sys
import time


def line(size: int) -> bytes:
    return (b"0123456789abcdef" * (size // 16 + 1))[:size - 1] + b"\n"


def check(host: str, port: int, size: int, timeout: float = 5.0) -> str | None:
    """None when one line comes back whole, else why not."""
    msg = line(size)
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(msg)
            got = b""
            while len(got) < len(msg):
                b = s.recv(65536)
                if not b:
                    break
                got += b
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}"
    return None if got == msg else f"echo mismatch: {got[:60]!r}"


def percentile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def run(host: str, port: int, seconds: float, connections: int, size: int) -> dict:
    msg = line(size)
    n = len(msg)
    sel = selectors.DefaultSelector()
    errors = {"connect": 0, "mismatch": 0, "closed": 0, "socket": 0}
    socks, bufs, sent_at = {}, {}, {}
    sample = None
    for _ in range(connections):
        try:
            s = socket.create_connection((host, port), timeout=10)
        except OSError as exc:
            errors["connect"] += 1
            sample = str(exc)
            continue
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.setblocking(False)
        socks[s.fileno()] = s
        bufs[s.fileno()] = b""
        sel.register(s, selectors.EVENT_READ)
    rtts: list[float] = []
    messages = 0
    now = time.perf_counter
    t0 = now()
    end = t0 + seconds
    for fd, s in socks.items():
        sent_at[fd] = now()
        s.send(msg)
    while socks:
        t = now()
        if t >= end:
            break
        for key, _ in sel.select(end - t):
            s, fd = key.fileobj, key.fd
            try:
                data = s.recv(65536)
            except BlockingIOError:
                continue
            except OSError as exc:
                data, sample = b"", f"{type(exc).__name__}: {exc}"
                errors["socket"] += 1
            if not data:
                errors["closed"] += 1
                sel.unregister(s)
                s.close()
                del socks[fd]
                continue
            buf = bufs[fd] + data
            if len(buf) < n:
                bufs[fd] = buf
                continue
            if buf != msg:
                errors["mismatch"] += 1
                sample = sample or f"unexpected echo {buf[:60]!r}"
                sel.unregister(s)
                s.close()
                del socks[fd]
                continue
            t = now()
            messages += 1
            rtts.append(t - sent_at[fd])
            bufs[fd] = b""
            sent_at[fd] = t
            s.send(msg)
    elapsed = now() - t0
    for s in socks.values():
        s.close()
    rtts.sort()
    ms = {k: (None if v is None else round(v * 1000, 3))
          for k, v in (("p50", percentile(rtts, 0.5)), ("p99", percentile(rtts, 0.99)), ("max", rtts[-1] if rtts else None))}
    return {"messages": messages, "messages_per_s": messages / elapsed if elapsed > 0 else 0.0, "errors": errors,
            "error_sample": sample, "rtt_ms": ms, "connections": connections, "size": size}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("host")
    p.add_argument("port", type=int)
    p.add_argument("path")
    p.add_argument("seconds", type=float)
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--check", action="store_true")
    a = p.parse_args(argv)
    if a.check:
        why = check(a.host, a.port, a.size)
        print(why or "ok")
        return 1 if why else 0
    print("BENCHJSON " + json.dumps(run(a.host, a.port, a.seconds, a.connections, a.size)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
