"""Shared by the tests of the _uwsgi_native extension (core/cpython/native.c): the module (built
for the tests when the tree has not been), an independent oracle of the uwsgi vars format, and
a bounded random feeder used by the fuzz test and, for longer runs under an ASan build, from
the command line:

    UWSGI_BUILD_DIR=/tmp/asan .venv/bin/python uwsgiconfig.py --build asan
    LD_PRELOAD=$(gcc -print-file-name=libasan.so) ASAN_OPTIONS=detect_leaks=0 \\
        .venv/bin/python tests/net/native_support.py --lib /tmp/asan/build/lib --seconds 300
"""

from __future__ import annotations

import importlib
import random
import struct
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def load_native():
    """The _uwsgi_native module: the tree's build, else built for the tests (core profile)."""
    try:
        return importlib.import_module("_uwsgi_native")
    except ImportError:
        sys.path.insert(0, str(ROOT / "tests"))
        from build_helpers import built
        lib = str(built("core") / "build" / "lib")
        if lib not in sys.path:
            sys.path.append(lib)
        return importlib.import_module("_uwsgi_native")


def enc(k: bytes, v: bytes) -> bytes:
    return struct.pack("<H", len(k)) + k + struct.pack("<H", len(v)) + v


def oracle(data: bytes, max_vars: int = 64):
    """A deliberately naive reading of the vars format: a dict, or the error's kind."""
    out, count, pos = {}, 0, 0
    while pos < len(data):
        if pos + 2 > len(data):
            return "truncated"
        (klen,) = struct.unpack("<H", data[pos:pos + 2])
        if klen == 0:
            return "empty"
        key = data[pos + 2:pos + 2 + klen]
        if len(key) < klen:
            return "truncated"
        pos += 2 + klen
        if pos + 2 > len(data):
            return "truncated"
        (vlen,) = struct.unpack("<H", data[pos:pos + 2])
        value = data[pos + 2:pos + 2 + vlen]
        if len(value) < vlen:
            return "truncated"
        pos += 2 + vlen
        count += 1
        if count > max_vars:
            return "too many"
        out[key] = value
    return out


# uwsgi.h's enum uwsgi_packet_error
KINDS = {-2: "empty", -3: "truncated", -4: "too many"}


def native_kind(native, data: bytes, max_vars: int = 64):
    r = native.parse_vars(data, max_vars)
    return KINDS.get(r, r) if isinstance(r, int) else r


NGINX_VARS = [
    (b"QUERY_STRING", b""), (b"REQUEST_METHOD", b"GET"), (b"CONTENT_TYPE", b""), (b"CONTENT_LENGTH", b""),
    (b"REQUEST_URI", b"/"), (b"PATH_INFO", b"/"), (b"DOCUMENT_ROOT", b"/usr/share/nginx/html"),
    (b"SERVER_PROTOCOL", b"HTTP/1.1"), (b"REQUEST_SCHEME", b"http"), (b"REMOTE_ADDR", b"127.0.0.1"),
    (b"REMOTE_PORT", b"50000"), (b"SERVER_PORT", b"8080"), (b"SERVER_NAME", b"localhost"),
    (b"HTTP_HOST", b"localhost:8080"), (b"HTTP_USER_AGENT", b"curl"),
]


def random_block(rng: random.Random) -> bytes:
    """A vars block: valid, truncated, mutated, or random bytes."""
    pick = rng.random()
    if pick < 0.25:
        return rng.randbytes(rng.randrange(0, 300))
    vars_ = list(NGINX_VARS) if rng.random() < 0.5 else []
    for _ in range(rng.randrange(0, 40)):
        vars_.append((rng.randbytes(rng.randrange(1, 20)), rng.randbytes(rng.randrange(0, 40))))
    block = b"".join(enc(k, v) for k, v in vars_)
    if pick < 0.5 and block:
        return block[:rng.randrange(len(block))]            # truncated
    if pick < 0.75 and block:
        b = bytearray(block)                                # a few bytes flipped (lengths too)
        for _ in range(rng.randrange(1, 6)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        return bytes(b)
    return block


def random_response(rng: random.Random):
    """response() arguments, mostly plausible, some of the wrong types or shapes."""
    def some_bytes(n):
        return bytes(rng.choice(b"Ab: \r\n0123456789-\x00\xff") for _ in range(rng.randrange(n)))
    status = rng.choice((b"200 OK", b"204", b"304 X", b"101 Y", some_bytes(12), "200 OK"))
    headers = []
    for _ in range(rng.randrange(6)):
        name = rng.choice((b"Content-Length", b"Connection", b"transfer-encoding", b"Keep-Alive", some_bytes(8)))
        value = rng.choice((b"close", b"%d" % rng.randrange(100), some_bytes(10)))
        headers.append(rng.choice(((name, value), (name, value), [name, value], (name,), ("x", "y"))))
    if rng.random() < 0.2:
        headers = tuple(headers)
    body = [some_bytes(40) for _ in range(rng.randrange(4))]
    body = rng.choice((body, tuple(body), b"".join(body), body + ["s"], body + [bytearray(b"x")], None))
    return status, headers, body, rng.randrange(16)


def check_response(native, args) -> None:
    r = native.response(*args)
    if r is None:
        return
    data, code, keepalive, headers_size, header_cnt, response_size = r
    assert 100 <= code <= 999 and keepalive in (0, 1), r
    assert len(data) == headers_size + response_size and data.startswith(b"HTTP/1.1 "), r
    assert data[headers_size - 4:headers_size] == b"\r\n\r\n" and header_cnt <= len(args[1]), r


HTTP_KEYS = {b"Host": b"HTTP_HOST", b"Content-Length": b"CONTENT_LENGTH", b"X_Y": b"SCRIPT_NAME",
             b"Expect": b"HTTP_EXPECT", b"Accept": b"HTTP_ACCEPT", b"Odd": "not bytes"}


def check_http_vars(native, rng: random.Random) -> None:
    """http_vars on random targets and fields: what it returns must be what the Python code makes."""
    from uwsgid.net.protocols import unquote_to_bytes
    url = bytes(rng.choice(b"/?#%aZ09\x00\xff") for _ in range(rng.randrange(12)))
    fields = [(rng.choice(list(HTTP_KEYS) + [b"New"]),
               bytes(rng.choice(b"0123 \t\xffa") for _ in range(rng.randrange(6)))) for _ in range(rng.randrange(5))]
    r = native.http_vars({b"SCRIPT_NAME": b""}, b"GET", b"HTTP/1.1", url, fields, HTTP_KEYS)
    if r is None:
        return
    v, cl, host = r
    path, _, query = url.partition(b"?")
    assert v[b"PATH_INFO"] == unquote_to_bytes(path) and v[b"QUERY_STRING"] == query, (url, v)
    assert v[b"REQUEST_URI"] == url and (cl == -1) == (b"CONTENT_LENGTH" not in v), (fields, v)
    assert host is None or v[b"HTTP_HOST"] is host


def fuzz(native, seconds: float, seed: int = 0) -> int:
    """Feed random and truncated blocks to parse_vars (checked against the oracle), their dicts
    to environ, random arguments to response and http_vars, for `seconds`. Returns the number of blocks. AssertionError on a mismatch."""
    rng = random.Random(seed)
    base = {"wsgi.version": (1, 0), "SCRIPT_NAME": "", "wsgi.url_scheme": "http"}
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        for _ in range(200):
            block = random_block(rng)
            max_vars = rng.choice((0, 1, 5, 64, 1000))
            want = oracle(block, max_vars)
            got = native_kind(native, block, max_vars)
            assert got == want, (block, max_vars, got, want)
            if isinstance(got, dict):
                env = native.environ(got, base)
                for k, v in got.items():
                    name = k.decode("latin-1")
                    if name not in ("HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH", "SCRIPT_NAME"):
                        assert env[name] == v.decode("latin-1"), (k, v)
            check_response(native, random_response(rng))
            check_http_vars(native, rng)
            n += 1
    return n


if __name__ == "__main__":
    import argparse
    p = argparse.ArgumentParser(description="fuzz _uwsgi_native.parse_vars/environ/response/http_vars")
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--seed", type=int, default=int(time.time()))
    p.add_argument("--lib", help="the build/lib holding the _uwsgi_native to test (an ASan build)")
    a = p.parse_args()
    if a.lib:
        sys.path.insert(0, a.lib)
    sys.path.insert(1, str(ROOT))
    mod = load_native()
    print(f"{mod.__file__}: seed {a.seed}, {fuzz(mod, a.seconds, a.seed)} blocks, no mismatch")
