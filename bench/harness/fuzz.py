"""Bad input for the soak: random and mutated HTTP requests and uwsgi packets, each sent on a
connection of its own, and how the server answered it.

Answers to bad input (a 4xx, a close) are what a server should do: they are counted by kind,
never as failures. What the soak watches for is the server's health around them (a worker
that dies, a 5xx, silence).

Every input comes from a seeded random.Random, so a run can be repeated input for input.
"""

from __future__ import annotations

import random
import socket
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field

from .soakclients import uwsgi_packet, uwsgi_vars

HTTP_SEEDS = [
    b"GET / HTTP/1.1\r\nHost: fuzz\r\n\r\n",
    b"GET /a/b?c=d&e=f HTTP/1.0\r\nUser-Agent: fuzz\r\n\r\n",
    b"HEAD / HTTP/1.1\r\nHost: fuzz\r\nConnection: close\r\n\r\n",
    b"POST /form HTTP/1.1\r\nHost: fuzz\r\nContent-Type: application/x-www-form-urlencoded\r\n"
    b"Content-Length: 11\r\n\r\nhello=world",
    b"POST /up HTTP/1.1\r\nHost: fuzz\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: fuzz\r\nCookie: a=1\r\nCookie: b=2\r\nAccept: */*\r\nAccept: text/html\r\n\r\n",
    b"GET /1 HTTP/1.1\r\nHost: fuzz\r\n\r\nGET /2 HTTP/1.1\r\nHost: fuzz\r\nConnection: close\r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\nHost: fuzz\r\n\r\n",
]

# Known-hostile shapes spliced into mutated requests (smuggling, framing and size attacks).
HTTP_SPLICES = [
    b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
    b"Content-Length: 5\r\nContent-Length: 6\r\n",
    b"Transfer-Encoding: chunked, identity\r\n",
    b"Content-Length: -1\r\n",
    b"Content-Length: 99999999999999999999\r\n",
    b"Content-Length: 0x10\r\n",
    b"X-Folded: a\r\n b\r\n",
    b"X-Bare-LF: a\nX-Other: b\r\n",
    b"Host: fuzz\r\nHost: other\r\n",
    b" Leading-Space: x\r\n",
    b"No-Colon\r\n",
    b"X-Nul: a\x00b\r\n",
    b"X-Latin1: \xe9\xff\r\n",
    b"X-Big: " + b"b" * 9000 + b"\r\n",
    b"".join(b"X-Many-%d: v\r\n" % i for i in range(150)),
]


def _mutate(rng: random.Random, data: bytes, splices: list[bytes]) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(11)
        n = len(b)
        pos = rng.randrange(n + 1) if n else 0
        if op == 0 and n:                                   # flip a bit
            i = rng.randrange(n)
            b[i] ^= 1 << rng.randrange(8)
        elif op == 1 and n:                                 # replace a byte
            b[rng.randrange(n)] = rng.randrange(256)
        elif op == 2:                                       # insert random bytes
            b[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
        elif op == 3 and n:                                 # delete a span
            b[pos:pos + rng.randint(1, 32)] = b""
        elif op == 4 and n:                                 # duplicate a span
            span = b[pos:pos + rng.randint(1, 64)]
            b[pos:pos] = span
        elif op == 5 and n:                                 # truncate
            del b[rng.randrange(n):]
        elif op == 6:                                       # line endings: CRLF -> LF or CR
            b = bytearray(bytes(b).replace(b"\r\n", rng.choice([b"\n", b"\r", b"\r\r\n"]), rng.randint(1, 3)))
        elif op == 7:                                       # a hostile header line after the first line
            i = bytes(b).find(b"\r\n")
            i = i + 2 if i >= 0 else pos
            b[i:i] = rng.choice(splices)
        elif op == 8:                                       # control or high bytes
            b[pos:pos] = bytes([rng.choice([0, 1, 8, 9, 11, 12, 13, 10, 127, 128, 200, 255])])
        elif op == 9:                                       # the method, target or version
            first = bytes(b).split(b"\r\n", 1)
            parts = first[0].split(b" ")
            j = rng.randrange(len(parts))
            parts[j] = rng.choice([b"", b"-BLARGH", b"G\x00T", b"HTTP/9.9", b"HTTP/1.1x", b"/" * 5000,
                                   b"http://evil/", b"%00%zz", b"\xff\xfe", b"GET GET", b"*"])
            b = bytearray(b" ".join(parts) + (b"\r\n" + first[1] if len(first) > 1 else b""))
        else:                                               # repeat the whole thing
            b = b + b[: rng.randint(0, n)]
    return bytes(b)


def http_input(rng: random.Random) -> tuple[str, bytes]:
    r = rng.random()
    if r < 0.1:
        return "random", bytes(rng.randrange(256) for _ in range(rng.randint(1, 2000)))
    if r < 0.15:
        return "random-ascii", bytes(rng.randrange(32, 127) for _ in range(rng.randint(1, 400))) + b"\r\n\r\n"
    return "mutated", _mutate(rng, rng.choice(HTTP_SEEDS), HTTP_SPLICES)


def _uwsgi_seed(rng: random.Random) -> bytes:
    body = b"" if rng.random() < 0.7 else b"x" * rng.randint(1, 300)
    mod = rng.choice([0, 6])
    v = uwsgi_vars(rng.choice(["/", "/fuzz", "/a?b"]), rng.choice(["GET", "POST", "PUT"]), body)
    return uwsgi_packet(mod, v) + body


def uwsgi_input(rng: random.Random) -> tuple[str, bytes]:
    r = rng.random()
    if r < 0.1:
        return "random", bytes(rng.randrange(256) for _ in range(rng.randint(1, 2000)))
    seed = bytearray(_uwsgi_seed(rng))
    if r < 0.25:      # a header that lies about the vars' size
        size = rng.choice([0, 1, 3, len(seed) - 4 + rng.randint(1, 100), 65535, rng.randrange(65536)])
        seed[1:3] = size.to_bytes(2, "little")
        return "bad-size", bytes(seed)
    if r < 0.35:      # one var's length field corrupted
        if len(seed) > 6:
            i = 4 + rng.randrange(len(seed) - 6)
            seed[i:i + 2] = rng.randrange(65536).to_bytes(2, "little")
        return "bad-var-length", bytes(seed)
    if r < 0.42:      # an unknown modifier1 (or modifier2)
        seed[rng.choice([0, 3])] = rng.choice([1, 2, 5, 7, 9, 17, 30, 99, 250])
        return "bad-modifier", bytes(seed)
    if r < 0.5:       # CONTENT_LENGTH that promises more body than is sent
        v = uwsgi_vars("/", "POST", b"x")
        v[b"CONTENT_LENGTH"] = rng.choice([b"1000000", b"-5", b"abc", b"99999999999999999999"])
        return "bad-content-length", uwsgi_packet(rng.choice([0, 6]), v) + b"x" * rng.randint(0, 10)
    return "mutated", _mutate(rng, bytes(seed), [b"\x05\x00"])


@dataclass
class FuzzTally:
    """What the server did with the bad input, by protocol and answer."""
    sent: Counter = field(default_factory=Counter)          # proto -> inputs
    answers: Counter = field(default_factory=Counter)       # (proto, answer) -> count
    by_input: Counter = field(default_factory=Counter)      # (proto, input kind, answer) -> count
    recent: deque = field(default_factory=lambda: deque(maxlen=40))   # (monotonic, proto, answer, bytes)
    samples: dict = field(default_factory=dict)    # (proto, answer) -> a few inputs, for answers worth a look
    lock: threading.Lock = field(default_factory=threading.Lock)

    WORTH_A_LOOK = ("5xx", "no answer", "other bytes")

    def add(self, proto: str, kind: str, answer: str, data: bytes, reply: bytes = b"") -> None:
        with self.lock:
            self.sent[proto] += 1
            self.answers[(proto, answer)] += 1
            self.by_input[(proto, kind, answer)] += 1
            self.recent.append((time.monotonic(), proto, answer, data[:600]))
            if answer in self.WORTH_A_LOOK or answer.startswith("error"):
                keep = self.samples.setdefault(f"{proto} {answer}", [])
                if len(keep) < 5:
                    keep.append({"kind": kind, "input": data[:400].decode("latin-1"),
                                 "reply": reply[:200].decode("latin-1")})

    def recent_before(self, t: float, seconds: float = 3.0) -> list[dict]:
        with self.lock:
            return [{"t": round(x[0], 3), "proto": x[1], "answer": x[2], "hex": x[3].hex()}
                    for x in self.recent if t - seconds <= x[0] <= t + 0.5]


def answer_of(data: bytes) -> str:
    """The answer class of what came back: '2xx'...'5xx', or 'other bytes'."""
    if data.startswith(b"HTTP/") and len(data) >= 12 and data[9:12].isdigit():
        return f"{chr(data[9])}xx"
    return "other bytes"


def send_one(addr: tuple[str, int], data: bytes, wait: float = 0.0, after_eof: float = 3.0) -> tuple[str, bytes]:
    """Send one input and classify the answer: 'Nxx', 'other bytes', 'closed' (no bytes), 'reset',
    'no answer' (silent even after our half-close), 'refused', 'connect timeout'.

    The input is sent; if nothing comes back within `wait` seconds we half-close (the server sees
    end of input: an incomplete request cannot complete now) and wait `after_eof` more. The soak
    half-closes at once (wait 0): a truncated input must not hold a sync worker while it waits
    for the rest (that is the slowloris part's business), so the fuzzer never slows the load."""
    s = socket.socket()
    s.settimeout(3.0)
    try:
        try:
            s.connect(addr)
        except ConnectionRefusedError:
            return "refused", b""
        except (socket.timeout, TimeoutError):
            return "connect timeout", b""
        try:
            s.sendall(data)
        except (ConnectionResetError, BrokenPipeError):
            return "reset", b""
        except (socket.timeout, TimeoutError):
            pass   # the server stopped reading: see what it says
        got = b""
        half_closed = False
        deadline = time.monotonic() + wait
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                if got:
                    return answer_of(got), got
                if half_closed:
                    return "no answer", b""
                try:
                    s.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                half_closed = True
                deadline = time.monotonic() + after_eof
                continue
            s.settimeout(left)
            try:
                chunk = s.recv(4096)
            except (socket.timeout, TimeoutError):
                continue
            except ConnectionResetError:
                return (answer_of(got), got) if got else ("reset", b"")
            if not chunk:
                return (answer_of(got), got) if got else ("closed", b"")
            got += chunk
            if len(got) >= 12 and (b"\r\n\r\n" in got or len(got) >= 400):
                return answer_of(got), got
    finally:
        s.close()


class Fuzzer:
    """Threads sending bad input at a fixed pace until stopped: HTTP to one port, uwsgi to the other."""

    def __init__(self, host: str, http_port: int, uwsgi_port: int, rate: float, seed: int,
                 threads_per_proto: int = 2):
        self.host, self.ports = host, {"http": http_port, "uwsgi": uwsgi_port}
        self.rate, self.seed, self.threads = rate, seed, threads_per_proto
        self.tally = FuzzTally()

    def start(self, stop: threading.Event) -> list[threading.Thread]:
        per_thread = self.rate / (2 * self.threads)
        ts = []
        for proto, gen in (("http", http_input), ("uwsgi", uwsgi_input)):
            for i in range(self.threads):
                t = threading.Thread(target=self._loop, args=(proto, gen, i, per_thread, stop), daemon=True,
                                     name=f"fuzz-{proto}-{i}")
                t.start()
                ts.append(t)
        return ts

    def _loop(self, proto, gen, i, rate, stop) -> None:
        rng = random.Random(f"{self.seed}-{proto}-{i}")
        interval = 1.0 / rate
        nxt = time.monotonic() + rng.random() * interval
        while not stop.is_set():
            delay = nxt - time.monotonic()
            if delay > 0 and stop.wait(delay):
                break
            kind, data = gen(rng)
            try:
                answer, reply = send_one((self.host, self.ports[proto]), data)
            except OSError as exc:
                answer, reply = f"error {type(exc).__name__}", b""
            self.tally.add(proto, kind, answer, data, reply)
            nxt = max(nxt + interval, time.monotonic())
