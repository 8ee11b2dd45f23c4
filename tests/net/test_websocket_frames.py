"""The WebSocket frame codec and session (uwsgid/net/websocket.py) against RFC 6455's own
examples (section 5.7 and 1.3) and its rules for bad frames, over a socketpair."""

from __future__ import annotations

import socket
import struct

import pytest

from uwsgid.net import websocket as ws

MASK = bytes.fromhex("37fa213d")


def masked(opcode: int, payload: bytes, fin: bool = True, rsv: int = 0) -> bytes:
    n = len(payload)
    b0 = (0x80 if fin else 0) | rsv | opcode
    if n < 126:
        head = struct.pack("!BB", b0, 0x80 | n)
    elif n <= 0xFFFF:
        head = struct.pack("!BBH", b0, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", b0, 0x80 | 127, n)
    return head + MASK + bytes(b ^ MASK[i % 4] for i, b in enumerate(payload))


def test_accept_key_is_the_rfc_example():
    assert ws.accept_key(b"dGhlIHNhbXBsZSBub25jZQ==") == b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_rfc_examples_decode():
    r = ws.FrameReader(1 << 20)
    # 5.7: a single-frame masked text message "Hello"
    r.feed(bytes.fromhex("818537fa213d7f9f4d5158"))
    assert r.next_frame() == (True, ws.OP_TEXT, b"Hello")
    # a masked Pong "Hello", fed a byte at a time
    for b in bytes.fromhex("8a8537fa213d7f9f4d5158"):
        assert r.next_frame() is None
        r.feed(bytes([b]))
    assert r.next_frame() == (True, ws.OP_PONG, b"Hello")
    # 256 bytes and 64 KiB binary messages (16- and 64-bit lengths), masked
    for n in (256, 65536):
        r.feed(masked(ws.OP_BINARY, bytes(range(256)) * (n // 256)))
        assert r.next_frame() == (True, ws.OP_BINARY, bytes(range(256)) * (n // 256))


def test_server_frames_are_the_rfc_unmasked_examples():
    assert ws.frame(ws.OP_TEXT, b"Hello") == bytes.fromhex("810548656c6c6f")
    assert ws.frame(ws.OP_TEXT, b"Hel", fin=False) == bytes.fromhex("010348656c")
    assert ws.frame(ws.OP_CONT, b"lo") == bytes.fromhex("80026c6f")
    assert ws.frame(ws.OP_PING, b"Hello") == bytes.fromhex("890548656c6c6f")
    assert ws.frame(ws.OP_BINARY, bytes(256))[:4] == bytes.fromhex("827e0100")
    assert ws.frame(ws.OP_BINARY, bytes(65536))[:10] == bytes.fromhex("827f0000000000010000")


@pytest.mark.parametrize("data, code", [
    (bytes.fromhex("810548656c6c6f"), ws.CLOSE_PROTOCOL),              # 5.7's unmasked frame, from a client
    (masked(0x3, b"x"), ws.CLOSE_PROTOCOL),                              # reserved opcode
    (masked(0xB, b"x"), ws.CLOSE_PROTOCOL),                              # reserved control opcode
    (masked(ws.OP_TEXT, b"x", rsv=0x40), ws.CLOSE_PROTOCOL),             # RSV1 without an extension
    (masked(ws.OP_PING, b"x", fin=False), ws.CLOSE_PROTOCOL),            # fragmented control frame
    (masked(ws.OP_PING, b"x" * 126), ws.CLOSE_PROTOCOL),                 # control frame over 125 bytes
    (masked(ws.OP_BINARY, b"x" * 2000), ws.CLOSE_TOO_BIG),               # over max_size (1000)
])
def test_bad_frames_raise_the_close_code(data, code):
    r = ws.FrameReader(1000)
    r.feed(data)
    with pytest.raises(ws.Violation) as e:
        r.next_frame()
    assert e.value.code == code


def test_oversized_frame_is_refused_from_its_header_alone():
    # nothing is buffered beyond the limit: the 8-byte length is enough to refuse
    r = ws.FrameReader(1000)
    r.feed(bytes.fromhex("82ff") + struct.pack("!Q", 1 << 40))
    with pytest.raises(ws.Violation) as e:
        r.next_frame()
    assert e.value.code == ws.CLOSE_TOO_BIG


@pytest.fixture
def pair():
    a, b = socket.socketpair()
    a.setblocking(False)
    session = ws.Session(a.fileno(), b"", "GET /ws (test)", ping_freq=30, pong_tolerance=3,
                         max_size=1000, send_timeout=2)
    b.settimeout(5)
    yield session, b
    a.close()
    b.close()


def _read_frame(sock) -> tuple[int, bytes]:
    head = sock.recv(2, socket.MSG_WAITALL)
    n = head[1] & 0x7F
    if n == 126:
        n = struct.unpack("!H", sock.recv(2, socket.MSG_WAITALL))[0]
    elif n == 127:
        n = struct.unpack("!Q", sock.recv(8, socket.MSG_WAITALL))[0]
    return head[0] & 0x0F, sock.recv(n, socket.MSG_WAITALL) if n else b""


def test_session_reassembles_fragments_and_answers_pings(pair):
    session, client = pair
    client.sendall(masked(ws.OP_TEXT, b"Hel", fin=False) + masked(ws.OP_PING, b"p!")
                   + masked(ws.OP_CONT, b"lo"))
    assert session.recv() == b"Hello"
    assert _read_frame(client) == (ws.OP_PONG, b"p!")
    session.send(b"\x00\xff", binary=True)
    assert _read_frame(client) == (ws.OP_BINARY, b"\x00\xff")
    assert session.recv(block=False) is None


@pytest.mark.parametrize("data, code", [
    (masked(ws.OP_TEXT, b"\xff\xfe"), ws.CLOSE_BAD_DATA),
    (masked(ws.OP_CONT, b"x"), ws.CLOSE_PROTOCOL),
    (masked(ws.OP_TEXT, b"a", fin=False) + masked(ws.OP_TEXT, b"b"), ws.CLOSE_PROTOCOL),
    (masked(ws.OP_TEXT, b"a" * 600, fin=False) + masked(ws.OP_CONT, b"b" * 600), ws.CLOSE_TOO_BIG),
])
def test_session_closes_with_the_code_and_raises(pair, data, code):
    session, client = pair
    client.sendall(data)
    with pytest.raises(OSError, match="unable to receive websocket message"):
        session.recv()
    assert _read_frame(client) == (ws.OP_CLOSE, struct.pack("!H", code))
    with pytest.raises(OSError):
        session.send(b"late")


@pytest.mark.parametrize("payload, echoed", [
    (b"", 1000), (struct.pack("!H", 1001) + b"bye", 1001), (struct.pack("!H", 999), 1002),
    (b"\x03", 1002), (struct.pack("!H", 1000) + b"\xff", 1007), (struct.pack("!H", 4000), 4000),
])
def test_close_frame_is_answered_with_its_code(pair, payload, echoed):
    session, client = pair
    client.sendall(masked(ws.OP_CLOSE, payload))
    with pytest.raises(OSError):
        session.recv()
    assert _read_frame(client) == (ws.OP_CLOSE, struct.pack("!H", echoed))


def test_silent_client_is_pinged_then_dropped():
    a, b = socket.socketpair()
    a.setblocking(False)
    session = ws.Session(a.fileno(), b"", "GET /ws (test)", ping_freq=0.2, pong_tolerance=0.3,
                         max_size=1000, send_timeout=2)
    b.settimeout(5)
    with pytest.raises(OSError):
        session.recv()          # pings after 0.2 s, gives up 0.3 s later: the client never answers
    assert _read_frame(b) == (ws.OP_PING, b"")
    a.close()
    b.close()


def test_client_gone_ends_the_session(pair):
    session, client = pair
    client.close()
    with pytest.raises(OSError):
        session.recv()
