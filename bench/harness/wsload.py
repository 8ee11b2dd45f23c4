"""A WebSocket echo load generator (bench scenario ws-echo): N connections, each sending one
message and waiting for its echo before the next, for S seconds.

    python bench/harness/wsload.py HOST PORT PATH SECONDS [--connections 64] [--size 1024]
                                   [--client python|c|auto]

--client c runs bench/ws_load.c instead (built with gcc on first use, cached by the source's hash
under the temp dir): the same protocol, checks and JSON, at a few microseconds of CPU per message
where this one takes tens, so that a fast server's figure is not the client's. auto: C when gcc
is there, else this one.

Lean on purpose, so the client takes as little of the shared CPU as it can: raw non-blocking
sockets and epoll in one thread, the masked client frame built once (RFC 6455 lets a client
reuse a mask; the server must unmask every frame anyway), and an echo recognised by comparing
the bytes received with the one unmasked frame the server must send back. Every echo is checked
whole; a wrong byte is an error, not a message. Round-trip times are kept (send to full echo).
Prints one JSON line: messages, errors, messages/s, round-trip percentiles in milliseconds.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import ipaddress
import json
import os
import selectors
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

C_SOURCE = Path(__file__).resolve().parents[1] / "ws_load.c"


def build_c_client() -> tuple[Path | None, str | None]:
    """bench/ws_load.c compiled (once per version of the source): (binary, None) or (None, why not)."""
    if shutil.which("gcc") is None:
        return None, "gcc is not installed"
    source = C_SOURCE.read_bytes() + C_SOURCE.with_name("ws_sha1.h").read_bytes()
    out_dir = Path(tempfile.gettempdir()) / f"uwsgid-bench-ws_load-{os.getuid()}"
    binary = out_dir / f"ws_load-{hashlib.sha256(source).hexdigest()[:16]}"
    if binary.exists():
        return binary, None
    out_dir.mkdir(mode=0o700, exist_ok=True)
    tmp = binary.with_name(f"{binary.name}.{os.getpid()}")
    r = subprocess.run(["gcc", "-O2", "-Wall", "-o", str(tmp), str(C_SOURCE)], capture_output=True, text=True,
                       timeout=120)
    if r.returncode != 0:
        return None, f"gcc failed on {C_SOURCE}: {r.stderr.strip()[-300:]}"
    os.replace(tmp, binary)         # atomic: a concurrent run finds it whole or not at all
    return binary, None


def client_frame(payload: bytes, mask: bytes, b0: int = 0x81) -> bytes:
    n = len(payload)
    head = bytes([b0]) + (bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + struct.pack("!H", n))
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + masked


def server_frame(payload: bytes) -> bytes:
    n = len(payload)
    return bytes([0x81]) + (bytes([n]) if n < 126 else bytes([126]) + struct.pack("!H", n)) + payload


def next_frame(buf: bytes) -> tuple[int, bytes, bytes] | None:
    """(opcode, payload, rest) of the first whole (unmasked, server) frame in buf, else None."""
    if len(buf) < 2:
        return None
    n, hl = buf[1] & 0x7F, 2
    if n == 126:
        if len(buf) < 4:
            return None
        n, hl = struct.unpack("!H", buf[2:4])[0], 4
    elif n == 127:
        if len(buf) < 10:
            return None
        n, hl = struct.unpack("!Q", buf[2:10])[0], 10
    if len(buf) < hl + n:
        return None
    return buf[0] & 0x0F, buf[hl:hl + n], buf[hl + n:]


def handshake(host: str, port: int, path: str, timeout: float) -> socket.socket:
    s = socket.create_connection((host, port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        b = s.recv(4096)
        if not b:
            raise OSError(f"closed during the handshake: {head[:120]!r}")
        head += b
    end = head.index(b"\r\n\r\n") + 4
    if not head.startswith(b"HTTP/1.1 101"):
        raise OSError(f"handshake answered {head[:120]!r}")
    s.setblocking(False)
    return s, head[end:]          # a frame may follow the 101 at once (uWSGI's first ping)


def percentile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def run(host: str, port: int, path: str, seconds: float, connections: int, size: int) -> dict:
    payload = (b"0123456789abcdef" * (size // 16 + 1))[:size]
    out_frame = client_frame(payload, b"\x5a\xc3\x17\x9e")
    echo = server_frame(payload)
    elen = len(echo)
    sel = selectors.DefaultSelector()
    errors = {"connect": 0, "mismatch": 0, "closed": 0, "socket": 0}
    socks, bufs, sent_at = {}, {}, {}
    sample = None
    for _ in range(connections):
        try:
            s, early = handshake(host, port, path, 10.0)
        except OSError as exc:
            errors["connect"] += 1
            sample = str(exc)
            continue
        socks[s.fileno()] = s
        bufs[s.fileno()] = early
        sel.register(s, selectors.EVENT_READ)
    rtts: list[float] = []
    messages = pings = 0
    now = time.perf_counter
    t0 = now()
    end = t0 + seconds
    for fd, s in socks.items():
        sent_at[fd] = now()
        s.send(out_frame)            # 1 KB into an empty socket buffer: sent whole
    while socks:
        t = now()
        if t >= end:
            break
        for key, _ in sel.select(end - t):
            s = key.fileobj
            fd = key.fd
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
            while buf:
                if buf[:elen] == echo:                  # the common case: the whole echo
                    t = now()
                    messages += 1
                    rtts.append(t - sent_at[fd])
                    buf = buf[elen:]
                    sent_at[fd] = t
                    s.send(out_frame)
                    continue
                frame = next_frame(buf)
                if frame is None:                       # not whole yet
                    break
                op, body, buf = frame
                if op == 0x9:                           # a server ping: answer it (uWSGI pings)
                    pings += 1
                    s.send(client_frame(body, b"\0\0\0\0", 0x8A))
                elif op == 0x8:
                    errors["closed"] += 1
                    sample = sample or f"the server closed: {body[:60]!r}"
                    buf = b""
                elif op != 0xA:                         # a data frame that is not the echo
                    errors["mismatch"] += 1
                    sample = sample or f"got {body[:60]!r}... ({len(body)} bytes, opcode {op})"
                    sent_at[fd] = now()
                    s.send(out_frame)
            bufs[fd] = buf
    elapsed = now() - t0
    for s in socks.values():
        try:
            s.setblocking(True)
            s.settimeout(0.2)
            s.send(b"\x88\x82\0\0\0\0\x03\xe8")     # close 1000, then go
        except OSError:
            pass
        s.close()
    rtts.sort()
    return {"client": "python", "connections": connections, "opened": connections - errors["connect"], "size": size,
            "messages": messages, "pings_answered": pings, "errors": errors, "error_sample": sample, "duration_s": elapsed,
            "messages_per_s": messages / elapsed if elapsed > 0 else 0.0,
            "rtt_ms": {k: (None if v is None else v * 1000) for k, v in
                       (("p50", percentile(rtts, 0.5)), ("p90", percentile(rtts, 0.9)),
                        ("p99", percentile(rtts, 0.99)), ("max", rtts[-1] if rtts else None))},
            "client_cpu_s": sum(os.times()[:2])}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("host")
    p.add_argument("port", type=int)
    p.add_argument("path")
    p.add_argument("seconds", type=float)
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--client", choices=("python", "c", "auto"), default="python",
                   help="c: bench/ws_load.c (built with gcc); auto: c when gcc is there")
    a = p.parse_args(argv)
    if not 1 <= a.size <= 65535:
        p.error("--size must be 1..65535 bytes")
    if a.client != "python":
        try:
            ipaddress.IPv4Address(a.host)
            binary, why = build_c_client()
        except ValueError:
            binary, why = None, f"{a.host} is not an IPv4 address (ws_load.c takes only those)"
        if binary is not None:
            sys.stdout.flush()
            os.execv(binary, [str(binary), "-c", str(a.connections), "-d", f"{a.seconds:g}", "-s", str(a.size),
                              "-p", a.path, a.host, str(a.port)])
        if a.client == "c":
            p.error(f"--client c: {why}")
    r = run(a.host, a.port, a.path, a.seconds, a.connections, a.size)
    print("BENCHJSON " + json.dumps(r), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
