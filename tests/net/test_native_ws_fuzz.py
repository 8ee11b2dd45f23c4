"""core/cpython/ws.c (ws_recv, ws_send: a WebSocket session's one-call read and write) against
the pure-Python frame reader (uwsgid/net/wsframes.py) as the oracle, with random, truncated and
mutated client frames over a socketpair, and bad arguments: the answers agree and nothing crashes.
Longer runs: `.venv/bin/python tests/net/test_native_ws_fuzz.py SECONDS` (under an ASan build as
tests/net/native_support.py shows)."""

from __future__ import annotations

import errno
import os
import random
import socket
import struct
import sys
import time

import pytest

from tests.net.native_support import load_native
from uwsgid.net.wsframes import FrameReader, Violation

native = load_native()
if not hasattr(native, "ws_recv"):
    pytest.skip("the native module has no ws_recv (an old build)", allow_module_level=True)

RECV = native.WS_RECV
MORE, TOO_BIG = -1, -7      # uwsgi.h's enum uwsgi_ws_frame_error (what ws_recv's info gives)


def client_frame(rng: random.Random) -> bytes:
    """A client frame, often valid, sometimes bent (reserved bits, bad opcode, unmasked, a
    control frame too big or fragmented, a 64-bit length), often cut short or with more after it."""
    opcode = rng.choice([0x0, 0x1, 0x2, 0x8, 0x9, 0xA, rng.randrange(16)])
    n = rng.choice([0, 1, 125, 126, 127, 1024, 65535, 65536, 70000, rng.randrange(300)])
    if opcode >= 0x8 and rng.random() < 0.8:
        n = min(n, 125)
    b0 = (0x80 if rng.random() < 0.85 else 0) | opcode | (rng.choice([0x10, 0x40]) if rng.random() < 0.05 else 0)
    masked = 0x80 if rng.random() < 0.95 else 0
    if n < 126 and rng.random() < 0.9:
        head = struct.pack("!BB", b0, masked | n)
    elif n <= 0xFFFF and rng.random() < 0.9:
        head = struct.pack("!BBH", b0, masked | 126, n)
    else:
        head = struct.pack("!BBQ", b0, masked | 127, n if rng.random() < 0.95 else rng.getrandbits(64))
    mask = rng.randbytes(4)
    data = head + mask + bytes(b ^ mask[i & 3] for i, b in enumerate(rng.randbytes(n)))
    r = rng.random()
    if r < 0.2:
        data = data[:rng.randrange(len(data) + 1)]
    elif r < 0.3:
        data += rng.randbytes(rng.randrange(40))
    elif r < 0.35 and data:
        i = rng.randrange(len(data))
        data = data[:i] + bytes([rng.randrange(256)]) + data[i + 1:]
    return data


def oracle(data: bytes, max_size: int, message_size: int):
    """What ws_recv must answer for these bytes read: ('frame', fin, opcode, payload, rest),
    ('more',) or ('violation', close code)."""
    reader = FrameReader(max_size)
    reader.message_size = message_size
    reader.feed(data)
    try:
        got = reader._next_frame_py(reader.buf) if len(data) >= 2 else None
    except Violation as v:
        return ("violation", v.code)
    if got is None:
        return ("more",)
    return ("frame", *got, bytes(reader.buf))


def check_one(rng: random.Random, a: socket.socket, b: socket.socket) -> None:
    data = client_frame(rng)
    max_size = rng.choice([0, 125, 1024, 65536, 1 << 20])
    message_size = rng.choice([0, 0, 100, 1 << 20])
    cut = rng.random() < 0.9
    b.sendall(data)
    read = data[:RECV]
    got = native.ws_recv(a.fileno(), max_size, message_size, cut)
    if not data:
        assert got == -errno.EAGAIN
        return
    info, payload, rest, filled = got
    assert filled == (len(read) == RECV)
    left = len(data) - len(read)        # the rest of a big frame: not this read's
    while left > 0:
        try:
            left -= len(a.recv(left))
        except BlockingIOError:
            pass
    want = oracle(read, max_size, message_size) if cut else ("more",)
    if want[0] == "frame":
        assert info >= 0 and (bool(info & 16), info & 15, payload, rest) == want[1:]
        return
    assert payload is None and rest == read         # handed back untouched
    if want[0] == "more":
        assert info == MORE
    else:
        assert info < MORE and (info == TOO_BIG) == (want[1] == 1009)


def fuzz(seconds: float, seed: int) -> int:
    rng = random.Random(seed)
    a, b = socket.socketpair()
    a.setblocking(False)
    a.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    b.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    n = 0
    end = time.monotonic() + seconds
    try:
        while time.monotonic() < end:
            check_one(rng, a, b)
            n += 1
    finally:
        a.close()
        b.close()
    return n


def test_random_frames_agree_with_the_python_reader():
    assert fuzz(2.0, seed=15) > 100


def read_server_frame(sock: socket.socket) -> tuple[int, bytes]:
    head = sock.recv(2, socket.MSG_WAITALL)
    n = head[1] & 0x7F
    assert not head[1] & 0x80       # a server frame is never masked
    if n == 126:
        n = struct.unpack("!H", sock.recv(2, socket.MSG_WAITALL))[0]
    elif n == 127:
        n = struct.unpack("!Q", sock.recv(8, socket.MSG_WAITALL))[0]
    return head[0], sock.recv(n, socket.MSG_WAITALL) if n else b""


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 70000])
def test_ws_send_writes_one_whole_frame(size):
    a, b = socket.socketpair()
    with a, b:
        a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        b.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        payload = os.urandom(size)
        assert native.ws_send(a.fileno(), 0x82, memoryview(payload)) == 0
        assert read_server_frame(b) == (0x82, payload)


def test_ws_send_says_what_a_full_socket_did_not_take():
    a, b = socket.socketpair()
    with a, b:
        a.setblocking(False)
        left = native.ws_send(a.fileno(), 0x81, b"x" * (4 << 20))
        assert 0 < left < (4 << 20) + 10
        assert native.ws_send(a.fileno(), 0x81, b"y" * 100) == 102      # nothing taken: all of it


def test_bad_arguments_and_fds_are_answers_not_crashes():
    r, w = os.pipe()
    os.close(r)
    os.close(w)
    assert native.ws_recv(r, 1024, 0, True) == -errno.EBADF
    assert native.ws_send(w, 0x81, b"x") == -errno.EBADF
    with pytest.raises(ValueError):
        native.ws_recv(-1, 1024, 0, True)
    with pytest.raises(ValueError):
        native.ws_send(3, 256, b"x")
    with pytest.raises(TypeError):
        native.ws_send(3, 0x81, "text")
    with pytest.raises(TypeError):
        native.ws_recv(3, 1024)
    with pytest.raises(OverflowError):
        native.ws_recv(3, -1, 0, True)
    a, b = socket.socketpair()
    with a, b:
        b.close()
        assert native.ws_recv(a.fileno(), 1024, 0, True) == 0        # the end of the stream


if __name__ == "__main__":
    secs = float(sys.argv[1]) if len(sys.argv) > 1 else 30.0
    print(f"{fuzz(secs, seed=int(time.time()))} frames, no disagreement")
