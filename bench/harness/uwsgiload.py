"""The uwsgi-protocol load client of the `wsgi-socket` scenario (issue 16): bench/uwsgi_load.c,
built with gcc on first use and cached by its source's hash under the temp dir, run against a
--socket with no nginx in front. `check` is the scenario's preflight: one packet, a 200 back."""

from __future__ import annotations

import hashlib
import json
import resource
import shutil
import socket
import struct
import subprocess
import tempfile
from pathlib import Path

C_SOURCE = Path(__file__).resolve().parents[1] / "uwsgi_load.c"


def build() -> tuple[Path | None, str | None]:
    """(the client's binary, None), or (None, why it cannot be built)."""
    if shutil.which("gcc") is None:
        return None, "gcc is not installed (the uwsgi-protocol client is C: bench/uwsgi_load.c)"
    source = C_SOURCE.read_bytes()
    binary = Path(tempfile.gettempdir()) / f"uwsgi_load-{hashlib.sha256(source).hexdigest()[:16]}"
    if not binary.exists():
        tmp = binary.with_suffix(".tmp")
        r = subprocess.run(["gcc", "-O2", "-o", str(tmp), str(C_SOURCE)], capture_output=True, text=True)
        if r.returncode != 0:
            return None, f"gcc failed on {C_SOURCE.name}: {r.stderr.strip()[:300]}"
        tmp.rename(binary)
    return binary, None


def missing() -> str | None:
    return build()[1]


def command(binary, port, seconds, connections: int) -> list[str]:
    return [str(binary), "-c", str(connections), "-d", str(seconds), "127.0.0.1", str(port)]


def run(port: int, seconds: float, connections: int) -> dict:
    """One load run: the client's JSON (requests, errors, rps), with `problem` set when it failed."""
    binary, why = build()
    if binary is None:
        return {"value": None, "problem": why, "count": 0}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    r = subprocess.run(command(binary, port, max(1, round(seconds)), connections), capture_output=True, text=True,
                       timeout=seconds + 30)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    # the client's own CPU (it is the only child reaped meanwhile): on a shared 2-core machine
    # req/s is bounded by client + server CPU per request, whatever the server saves
    client_cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    try:
        out = json.loads(r.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"value": None, "problem": f"uwsgi_load printed no result: {r.stderr.strip()[:200]}", "count": 0}
    errors = sum(out["errors"].values())
    problem = None
    if errors > 0.01 * max(1, out["requests"]):
        problem = f"{errors} errors in {out['requests']} requests: {out['errors']}"
    client = {"client_cpu_us_per_request": client_cpu * 1e6 / out["requests"]} if out["requests"] else {}
    return {"value": out["rps"], "problem": problem, "count": out["requests"], **out, **client}


def _var(k: bytes, v: bytes) -> bytes:
    return struct.pack("<H", len(k)) + k + struct.pack("<H", len(v)) + v


def check(port: int) -> str | None:
    """One GET / over the uwsgi protocol: None when it answers 200, else what went wrong."""
    block = b"".join(_var(k, v) for k, v in (
        (b"REQUEST_METHOD", b"GET"), (b"REQUEST_URI", b"/"), (b"PATH_INFO", b"/"), (b"QUERY_STRING", b""),
        (b"SERVER_PROTOCOL", b"HTTP/1.1"), (b"SERVER_NAME", b"localhost"), (b"SERVER_PORT", b"80"),
        (b"REMOTE_ADDR", b"127.0.0.1"), (b"HTTP_HOST", b"localhost")))
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(struct.pack("<BHB", 0, len(block), 0) + block)
            answer = b""
            while chunk := s.recv(65536):
                answer += chunk
    except OSError as e:
        return f"uwsgi request failed: {e}"
    if not answer.startswith(b"HTTP/1.1 200") and not answer.startswith(b"HTTP/1.0 200"):
        return f"uwsgi request answered {answer[:60]!r}"
    return None
