"""The WebSocket frame codec (uwsgid/net/wsframes.py: core/wsframe.c and its pure-Python
fallback, every test runs with each) and session (uwsgid/net/websocket.py) against RFC 6455's
own examples (section 5.7 and 1.3) and its rules for bad frames, over a socketpair."""

from __future__ import annotations

import random
import threading
import socket
import struct

import pytest

from uwsgid.net import websocket as ws
from uwsgid.net import wsframes

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


@pytest.fixture(autouse=True, params=["native", "c", "python"])
def codec(request, monkeypatch):
    """Each test with the session's one-call reads and writes (_uwsgi_native: core/cpython/ws.c),
    with the cffi codec alone (the build's _uwsgi: core/wsframe.c) and with the pure-Python
    fallback."""
    if request.param == "native":
        if ws._ws_recv is None or wsframes._c_frame is None:
            pytest.skip("the _uwsgi_native module (core/cpython/ws.c) is not built")
        return request.param
    monkeypatch.setattr(ws, "_ws_recv", None)
    monkeypatch.setattr(ws, "_ws_send", None)
    if request.param == "c":
        if wsframes._c_frame is None or ws._c_read is None:
            pytest.skip("the _uwsgi module (core/wsframe.c) is not built")
    else:
        monkeypatch.setattr(wsframes, "_c_frame", None)
        monkeypatch.setattr(ws, "_c_read", None)
    return request.param


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


@pytest.mark.parametrize("data, code, why", [
    (bytes.fromhex("810548656c6c6f"), ws.CLOSE_PROTOCOL, "unmasked"),    # 5.7's unmasked frame, from a client
    (masked(0x3, b"x"), ws.CLOSE_PROTOCOL, "unknown opcode 0x3"),        # reserved opcode
    (masked(0xB, b"x"), ws.CLOSE_PROTOCOL, "unknown opcode 0xb"),        # reserved control opcode
    (masked(ws.OP_TEXT, b"x", rsv=0x40), ws.CLOSE_PROTOCOL, "reserved bits"),   # RSV1 without an extension
    (masked(ws.OP_PING, b"x", fin=False), ws.CLOSE_PROTOCOL, "fragmented control"),
    (masked(ws.OP_PING, b"x" * 126), ws.CLOSE_PROTOCOL, "control frame over 125"),
    (masked(ws.OP_BINARY, b"x" * 2000), ws.CLOSE_TOO_BIG, "over 1000 bytes (--websocket-max-size)"),
])
def test_bad_frames_raise_the_close_code(data, code, why):
    r = ws.FrameReader(1000)
    r.feed(data)
    with pytest.raises(ws.Violation) as e:
        r.next_frame()
    assert e.value.code == code and why in str(e.value)     # the log line's reason, C or Python


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


def test_a_stream_cut_anywhere_gives_the_same_frames():
    rnd = random.Random(7)
    frames = [(rnd.random() < 0.8, rnd.choice((ws.OP_TEXT, ws.OP_BINARY, ws.OP_CONT)),
               bytes(rnd.randrange(256) for _ in range(rnd.choice((0, 1, 7, 125, 126, 127, 300, 70000)))))
              for _ in range(40)]
    frames += [(True, ws.OP_PING, b"ping"), (True, ws.OP_CLOSE, b"\x03\xe8")]
    stream = b"".join(masked(op, p, fin) for fin, op, p in frames)
    r = ws.FrameReader(1 << 20)
    got, pos = [], 0
    while pos < len(stream):
        step = rnd.choice((1, 2, 3, 13, 1000, 65536))
        r.feed(stream[pos:pos + step])
        pos += step
        while (f := r.next_frame()) is not None:
            got.append(f)
    assert got == frames and not r.buf


def _read_into(b, data):
    wsframes._ffi.memmove(b, data, len(data))
    return len(data)


@pytest.mark.parametrize("codec", ["c"], indirect=True)      # take_read is the cffi read's path
def test_a_read_holding_one_whole_frame_is_cut_in_place(codec):
    b = wsframes.read_buffer()
    r = ws.FrameReader(1000)
    r.take_read(b, _read_into(b, masked(ws.OP_TEXT, b"Hello")))
    assert r.ready == (True, ws.OP_TEXT, b"Hello") and not r.buf      # no copy into buf
    assert r.pending() and r.next_frame() == (True, ws.OP_TEXT, b"Hello") and not r.pending()
    # a whole frame and the start of the next: the rest waits in buf, masked as it came
    second = masked(ws.OP_BINARY, b"x" * 300)
    r.take_read(b, _read_into(b, masked(ws.OP_PING, b"p") + second[:5]))
    assert r.ready == (True, ws.OP_PING, b"p") and bytes(r.buf) == second[:5]
    r.take_read(b, _read_into(b, second[5:]))       # bytes pending: appended, cut by next_frame
    assert r.next_frame() == (True, ws.OP_PING, b"p")
    assert r.next_frame() == (True, ws.OP_BINARY, b"x" * 300) and not r.pending()


@pytest.mark.parametrize("codec", ["c"], indirect=True)
@pytest.mark.parametrize("data, code", [
    (masked(ws.OP_BINARY, b"x" * 2000), ws.CLOSE_TOO_BIG),
    (bytes.fromhex("810548656c6c6f"), ws.CLOSE_PROTOCOL),
    (masked(0x3, b"x"), ws.CLOSE_PROTOCOL),
])
def test_a_bad_frame_read_whole_still_raises_at_next_frame(codec, data, code):
    b = wsframes.read_buffer()
    r = ws.FrameReader(1000)
    r.take_read(b, _read_into(b, data))
    assert r.ready is None
    with pytest.raises(ws.Violation) as e:
        r.next_frame()
    assert e.value.code == code


def test_a_drained_socket_is_not_read_again_before_the_wait(pair):
    session, client = pair
    reads, waits = [], []
    real_read = session._read

    def counting_read():
        got = real_read()
        reads.append(got)
        return got

    def wait_readable(fd, timeout):
        waits.append(timeout)
        client.sendall(masked(ws.OP_TEXT, b"second"))      # arrives while the session waits
        return True

    session._read = counting_read
    session.wait_readable = wait_readable
    client.sendall(masked(ws.OP_TEXT, b"first"))
    assert session.recv() == b"first"
    assert session.recv() == b"second"
    # one read per message: none that finds nothing before the wait
    assert reads == [True, True] and len(waits) == 1


def test_bytes_that_came_while_nobody_waited_are_received(pair):
    session, client = pair
    client.sendall(masked(ws.OP_TEXT, b"first"))
    assert session.recv() == b"first"
    client.sendall(masked(ws.OP_TEXT, b"second"))      # the session is not reading now
    assert session.recv() == b"second"                  # poll says readable at once
    assert session.recv(block=False) is None            # recv_nb always reads
    client.sendall(masked(ws.OP_BINARY, b"third"))
    assert session.recv(block=False) == b"third"


# ---- recv_nb: uWSGI's websocket_recv_nb, the async cores' receive ------------------------------

def test_recv_nb_gives_each_message_and_leaves_the_rest_to_the_session(pair):
    session, client = pair
    assert session.recv_nb() is None                    # nothing yet
    client.sendall(masked(ws.OP_TEXT, b"one"))
    assert session.recv_nb() == b"one" and session.last_opcode == ws.OP_TEXT
    client.sendall(masked(ws.OP_BINARY, bytes(range(256)) * 2))
    assert session.recv_nb() == bytes(range(256)) * 2 and session.last_opcode == ws.OP_BINARY
    # a ping, two messages in one read, a fragmented one and UTF-8 text: the general path
    client.sendall(masked(ws.OP_PING, b"hi") + masked(ws.OP_TEXT, b"two") + masked(ws.OP_TEXT, b"three"))
    assert session.recv_nb() == b"two"
    assert _read_frame(client) == (ws.OP_PONG, b"hi")
    assert session.recv_nb() == b"three"
    client.sendall(masked(ws.OP_TEXT, b"fo", fin=False) + masked(ws.OP_CONT, b"ur"))
    assert session.recv_nb() == b"four"
    client.sendall(masked(ws.OP_TEXT, "héllo".encode()))
    assert session.recv_nb() == "héllo".encode()
    assert session.recv_nb() is None


@pytest.mark.parametrize("data, code", [
    (masked(ws.OP_TEXT, b"\xff\xfe"), ws.CLOSE_BAD_DATA),
    (bytes.fromhex("810548656c6c6f"), ws.CLOSE_PROTOCOL),      # unmasked
    (masked(ws.OP_BINARY, b"x" * 2000), ws.CLOSE_TOO_BIG),
])
def test_recv_nb_closes_on_a_bad_frame(pair, data, code):
    session, client = pair
    client.sendall(data)
    with pytest.raises(OSError):
        session.recv_nb()
    assert session.close_code == code
    assert _read_frame(client) == (ws.OP_CLOSE, struct.pack("!H", code))
    with pytest.raises(OSError):
        session.recv_nb()


def test_recv_nb_ends_when_the_client_leaves(pair):
    session, client = pair
    client.sendall(masked(ws.OP_TEXT, b"last"))
    client.shutdown(socket.SHUT_WR)
    assert session.recv_nb() == b"last"
    with pytest.raises(OSError):
        session.recv_nb()


def test_recv_nb_skips_one_read_in_the_step_that_drained_the_socket(pair, codec):
    session, client = pair
    client.sendall(masked(ws.OP_TEXT, b"first"))
    assert session.recv_nb(step=7) == b"first"
    client.sendall(masked(ws.OP_TEXT, b"second"))
    if codec == "native":
        # the same step: the socket was empty a moment ago, so no read (the app waits next,
        # and the level-triggered loop wakes it at once); once only
        assert session.recv_nb(step=7) is None
    assert session.recv_nb(step=7) == b"second"
    client.sendall(masked(ws.OP_TEXT, b"third"))
    assert session.recv_nb(step=8) == b"third"          # a later step reads
    client.sendall(masked(ws.OP_TEXT, b"fourth"))
    assert session.recv_nb(step=-1) == b"fourth"        # not on an async core: never skips


def test_a_message_bigger_than_the_socket_takes_goes_out_whole(pair):
    session, client = pair
    payload = bytes(range(256)) * 8192          # 2 MB: the first write takes part of it
    got = []

    def read_all():         # (MSG_WAITALL gives up early on a socket with a timeout)
        data = b""
        while len(data) < 10 + len(payload):
            data += client.recv(1 << 16)
        got.append((data[0] & 0x0F, data[10:]) if data[1] == 127 else None)

    reader = threading.Thread(target=read_all)
    reader.start()
    session.send(payload, binary=True)
    reader.join(10)
    assert got == [(ws.OP_BINARY, payload)]
