"""The chunk-delay client (bench scenario chunk-delay): N concurrent streams of
bench/apps/paced_stream.py, each new stream started as one ends, for S seconds (streams under
way then run to their end).

    python bench/harness/chunkload.py HOST PORT PATH SECONDS [--streams 16]

Each stream is `GET PATH` with Connection: close. Every recv is timestamped (time.time(), the
clock the app stamps its chunks with, on the same machine); a chunk `N@STAMP;` counts as arrived
with the recv that brings its closing `;`. Its delay is arrival - STAMP: the time the server
held the chunk after the app yielded it (plus this client's own wake-up, well under 1 ms when
the machine is idle). Chunk framing (ours: chunked encoding; uWSGI: the raw body, closed) does
not matter: the markers are found in the byte stream. A stream that ends without `end;`, or
with a chunk missing, is an error.
Prints one JSON line: streams, chunks, errors, delay percentiles in milliseconds.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import selectors
import socket
import sys
import time

MARK = re.compile(rb"(\d+)@(\d+\.\d+);")


class Stream:
    __slots__ = ("sock", "data", "scanned", "delays", "next_chunk")

    def __init__(self, sock):
        self.sock = sock
        self.data = b""
        self.scanned = 0
        self.delays: list[float] = []
        self.next_chunk = 0


def percentile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def run(host: str, port: int, path: str, seconds: float, streams: int) -> dict:
    request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode()
    sel = selectors.DefaultSelector()
    delays: list[float] = []
    errors = {"connect": 0, "incomplete": 0, "out_of_order": 0}
    sample = None
    done = 0
    end = time.monotonic() + seconds

    def open_stream() -> None:
        nonlocal sample
        try:
            s = socket.create_connection((host, port), timeout=10)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.sendall(request)
            s.setblocking(False)
        except OSError as exc:
            errors["connect"] += 1
            sample = sample or f"connect: {exc}"
            return
        sel.register(s, selectors.EVENT_READ, Stream(s))

    for _ in range(streams):
        open_stream()
    while sel.get_map():
        for key, _ in sel.select(30):
            st: Stream = key.data
            try:
                b = st.sock.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                b = b""
            now = time.time()
            if b:
                st.data += b
                for m in MARK.finditer(st.data, st.scanned):
                    if int(m.group(1)) != st.next_chunk:
                        errors["out_of_order"] += 1
                    st.next_chunk = int(m.group(1)) + 1
                    st.delays.append(now - float(m.group(2)))
                    st.scanned = m.end()
                continue
            sel.unregister(st.sock)
            st.sock.close()
            if b"end;" in st.data[st.scanned:] and st.data.startswith(b"HTTP/1.1 200"):
                done += 1
                delays.extend(st.delays)
            else:
                errors["incomplete"] += 1
                sample = sample or f"stream ended after {len(st.data)} bytes: {st.data[-80:]!r}"
            if time.monotonic() < end:
                open_stream()
    delays.sort()
    return {"streams": done, "chunks": len(delays), "errors": errors, "error_sample": sample,
            "concurrent": streams,
            "delay_ms": {k: (None if v is None else v * 1000) for k, v in
                         (("p50", percentile(delays, 0.5)), ("p90", percentile(delays, 0.9)),
                          ("p99", percentile(delays, 0.99)), ("max", delays[-1] if delays else None))},
            "client_cpu_s": sum(os.times()[:2])}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("host")
    p.add_argument("port", type=int)
    p.add_argument("path")
    p.add_argument("seconds", type=float)
    p.add_argument("--streams", type=int, default=16)
    a = p.parse_args(argv)
    print("BENCHJSON " + json.dumps(run(a.host, a.port, a.path, a.seconds, a.streams)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
