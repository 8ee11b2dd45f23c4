"""The static file scenarios' material: the files served, and the check that a worker is free
while it sends a large file through an offload thread.

Both servers serve the same directory with `--static-map /static=DIR`: a 1 KiB text file and a
10 MiB binary file, written once per machine (same bytes every time) and left at least
STABLE_S old before any figure counts: our per-worker file cache (uwsgid/static/filecache.py)
does not keep a file changed less than 2 s earlier, and the figures are about the steady state
of a site whose files do not change.
"""

from __future__ import annotations

import os
import random
import socket
import tempfile
import time
from pathlib import Path

DIR = Path(tempfile.gettempdir()) / "uwsgid-bench-static"
WWW = DIR / "www"
SMALL = WWW / "small.txt"
LARGE = WWW / "large.bin"
SMALL_SIZE = 1024
LARGE_SIZE = 10 * 1024 * 1024
MOUNT = "/static"
SMALL_URL = f"{MOUNT}/small.txt"
LARGE_URL = f"{MOUNT}/large.bin"
STABLE_S = 2.5


def _content(size: int, text: bool) -> bytes:
    rnd = random.Random(size)       # the same bytes on every run and machine
    if text:
        line = b"static file benchmark, the same bytes on both sides\n"
        return (line * (size // len(line) + 1))[:size]
    return rnd.randbytes(size)


def prepare() -> Path:
    """Write the files when missing or wrong; wait until they are STABLE_S old. Returns the root."""
    WWW.mkdir(parents=True, exist_ok=True)
    for path, size, text in ((SMALL, SMALL_SIZE, True), (LARGE, LARGE_SIZE, False)):
        try:
            ok = path.stat().st_size == size
        except OSError:
            ok = False
        if not ok:
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(_content(size, text))
            tmp.replace(path)
    newest = max(os.stat(p).st_ctime for p in (SMALL, LARGE))
    wait = newest + STABLE_S - time.time()
    if wait > 0:
        time.sleep(wait)
    return WWW


def small_expect() -> bytes:
    return _content(SMALL_SIZE, True)[:40]


def worker_free(port: int, timeout: float = 10.0) -> dict:
    """With one worker: start a 10 MiB download and stop reading it (the server's socket fills,
    the transfer waits on the client), then GET the small file on a new connection. A worker
    that sends the large file itself cannot answer until the download ends; one that handed it
    to an offload thread answers at once. Returns {"answered", "latency_ms", "download_pending",
    "download_complete", "problem"}."""
    out = {"answered": False, "latency_ms": None, "download_pending": None, "download_complete": None,
           "problem": None}
    big = socket.socket()
    big.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)   # before connect: a small window
    try:
        big.settimeout(timeout)
        big.connect(("127.0.0.1", port))
        big.sendall(f"GET {LARGE_URL} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
        head = big.recv(65536)
        got = len(head)
        time.sleep(0.5)        # the server fills the socket buffers and waits for this client
        # pending by construction: with this window, 10 MiB cannot have arrived unread
        out["download_pending"] = got < LARGE_SIZE
        t0 = time.monotonic()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
                s.sendall(f"GET {SMALL_URL} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n".encode())
                data = b""
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    data += chunk
            out["answered"] = data.startswith(b"HTTP/1.1 200") and small_expect() in data
            out["latency_ms"] = round((time.monotonic() - t0) * 1000, 1)
            if not out["answered"]:
                out["problem"] = f"the small file's answer: {data[:120]!r}"
        except OSError as e:
            out["problem"] = f"the small file during the download: {type(e).__name__}: {e}"
        end = head.find(b"\r\n\r\n")
        body = got - (end + 4) if end >= 0 else 0
        while body < LARGE_SIZE:
            chunk = big.recv(1 << 20)
            if not chunk:
                break
            body += len(chunk)
        out["download_complete"] = body == LARGE_SIZE
    except OSError as e:
        out["problem"] = out["problem"] or f"the download: {type(e).__name__}: {e}"
    finally:
        big.close()
    return out
