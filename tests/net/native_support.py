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
import os
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


def random_packet(rng: random.Random) -> bytes:
    """A uwsgi packet for the lane: a plausible one, or its block random, truncated or mutated,
    its header odd (another modifier, a size past the data), or random bytes."""
    pick = rng.random()
    if pick < 0.1:
        return rng.randbytes(rng.randrange(0, 40))
    block = b"".join(enc(k, v) for k, v in NGINX_VARS) if pick < 0.5 else random_block(rng)
    size = len(block) if rng.random() < 0.9 else rng.randrange(65536)
    m1 = rng.choice((0, 6)) if rng.random() < 0.9 else rng.randrange(256)
    m2 = 0 if rng.random() < 0.95 else rng.randrange(256)
    packet = struct.pack("<BHB", m1, size & 0xffff, m2) + block
    if rng.random() < 0.1:
        packet = packet[:rng.randrange(len(packet) + 1)]
    return packet


def random_app(rng: random.Random):
    """A WSGI app of a random shape: the lane's own or one it hands back."""
    def some_str(n):
        return "".join(rng.choice("Ab: \r\n09-\x00\xff\u0101") for _ in range(rng.randrange(n)))
    status = rng.choice(("200 OK", "204 No Content", "304 X", "999", some_str(8), b"200 OK"))
    headers = [rng.choice(((some_str(6), some_str(8)), ("Content-Length", str(rng.randrange(50))),
                           ("Connection", "close"), ["X", "y"], ("X",), ("Upgrade", "x")))
               for _ in range(rng.randrange(4))]
    body = [rng.randbytes(rng.randrange(30)) for _ in range(rng.randrange(3))]
    body = rng.choice((body, tuple(body), body + ["s"], iter(body), b"bytes", None))
    how = rng.random()

    def app(env, start_response):
        assert isinstance(env["PATH_INFO" if "PATH_INFO" in env else "SCRIPT_NAME"], str)
        if how < 0.05:
            raise ValueError("app error")
        write = start_response(status, headers)
        if how < 0.1:
            write(b"w")
        if how < 0.15:
            start_response(status, headers, (None, None, None))
        return body
    return app


HTTP_PIECES = [b"GET", b"HEAD", b"POST", b"BREW", b" ", b"/", b"/a%41%zz?q=1", b"#f", b"{", b" HTTP/1.1", b" HTTP/1.0",
               b" HTTP/2.0", b"\r\n", b"\n", b"Host: x", b"Host: [::1]", b"Host: a:b", b"X-A: v ", b"X_B: v",
               b"Connection: close", b"Connection: keep-alive", b"Connection: up", b"Content-Length: 0",
               b"Content-Length: 5", b"Transfer-Encoding: chunked", b"\t", b":", b"\x00", b"\xff", b"a" * 300]


def random_head(rng: random.Random) -> bytes:
    """An HTTP head for the lane: a plausible one, or a mix of the pieces that make heads odd."""
    if rng.random() < 0.4:
        fields = b"".join(rng.choice(HTTP_PIECES[14:25]) + b"\r\n" for _ in range(rng.randrange(6)))
        return rng.choice((b"GET /x?y HTTP/1.1\r\nHost: h\r\n", b"GET / HTTP/1.0\r\n")) + fields + b"\r\n"
    return b"".join(rng.choice(HTTP_PIECES) for _ in range(rng.randrange(1, 14)))


def random_block_app(rng: random.Random):
    """A block app (the Lua plugin's shape): a whole response, or something for the Python path."""
    pick = rng.random()

    def app(block):
        assert isinstance(block, bytes)
        if pick < 0.05:
            raise ValueError("app error")
        if pick < 0.6:
            return (rng.choice((b"200 OK", b"204 No Content", b"99", b"200 \r\nX")),
                    [(b"X-A", b"b")] if pick < 0.4 else [[b"X", b"y"]], rng.randbytes(rng.randrange(40)))
        return rng.choice(((1, 2), None, (b"200 OK", [], "str body")))
    return app


def fuzz_lane(native, seconds: float, seed: int = 0) -> int:
    """The lane (lane.c) on a real loopback listener: random uwsgi packets and HTTP heads in,
    random WSGI and block app shapes; every answer must be one of its kinds, every fd it hands
    back open, and nothing may crash (under ASan: nothing may touch memory it should not)."""
    import socket as socket_
    rng = random.Random(seed)
    lst = socket_.create_server(("127.0.0.1", 0))
    lst.setblocking(False)
    port = lst.getsockname()[1]
    base = {"wsgi.version": (1, 0), "SCRIPT_NAME": "", "wsgi.url_scheme": "http"}

    def check(status, headers):
        if not isinstance(status, str):
            raise TypeError("status")
        return status.encode("latin-1"), [(str(k).encode("latin-1"), str(v).encode("latin-1")) for k, v in headers]
    kinds = {native.LANE_IDLE, native.LANE_FULL, native.LANE_START, native.LANE_RESUME, native.LANE_TAIL,
             native.LANE_GONE, native.LANE_KEEP}
    end = time.monotonic() + seconds
    n = 0
    try:
        while time.monotonic() < end:
            http = rng.random() < 0.5
            lane = native.Lane(native.LANE_HTTP if http else native.LANE_UWSGI, rng.choice((64, 4096)),
                               rng.choice((1, 64)), rng.random() < 0.5, None, b"host", b"80")
            lane.set_core(0, 0)
            if rng.random() < 0.3:      # small static files (lane_static.c): one cached, now or stale
                block = b"Content-Type: text/plain\r\nContent-Length: 3\r\n"
                entries = {rng.choice((b"/", b"/x", b"/aA%zz")): (int(time.time()) - rng.choice((0, 0, 5)), block,
                                                                  block, 2, b"abc")}
                lane.set_static(entries, rng.choice((None, (b"/",), (b"/s", b"/a"))))
            if rng.random() < 0.5:
                lane.add_app(0, random_app(rng), base, check, RuntimeError)
            else:
                lane.add_app(0 if http else 6, random_block_app(rng), after=(lambda: None))
            c = socket_.create_connection(("127.0.0.1", port))
            try:
                c.sendall(random_head(rng) if http else random_packet(rng))
                time.sleep(0)
                try:
                    r = lane.serve(lst.fileno(), 1, 0)
                except RuntimeError:
                    r = None        # the check's error class, raised by start_response: the app's to see
                if r is not None:
                    assert r[1] in kinds or r[1] < 0, r
                    if r[1] in (native.LANE_START, native.LANE_RESUME, native.LANE_TAIL, native.LANE_KEEP):
                        os.close(r[2])     # handed back: ours to close (EBADF here would be a bug)
            finally:
                c.close()
            n += 1
    finally:
        lst.close()
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
    print(f"lane: seed {a.seed}, {fuzz_lane(mod, a.seconds, a.seed)} packets, no crash")
