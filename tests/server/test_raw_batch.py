"""Raw TCP writes batched per loop turn (--greenlet: RawSocket.batch_writes, uwsgid/net/wsbatch.py):
what sendall holds goes out in order with send / close / flush / os.write, at the handler's
end (even when it raises), and to a peer that stops reading for a while (the loop's writer,
then the handler's own waits) without a byte lost or reordered; and the recv that waits
before reading (the last read emptied the socket) still meets --socket-timeout."""

from __future__ import annotations

import socket
import textwrap
import time

import pytest

from tests.helpers import EXAMPLES, Server, free_port

HANDLER = textwrap.dedent('''
    import os

    def application(sock):
        cmd = sock.recvline().strip()
        if cmd == b"order":
            buf = bytearray(b"1")
            sock.sendall(buf)
            buf[0] = ord("X")           # sendall copied it: the peer gets "1"
            sock.sendall(b"2")
            sock.send(b"3")             # after what sendall holds
            sock.sendall(b"4" * 100000)  # beyond the batch: out now, in order
            sock.sendall(b"5")
            os.write(sock.fileno(), b"6")   # fileno() writes what sendall holds first
            sock.sendall(b"7")
            sock.flush()
            os.write(sock, b"8")        # the object as the fd (uWSGI's handlers get one)
            sock.sendall(b"9")
            sock.close()                # flushes first
        elif cmd == b"end":
            sock.sendall(b"held until the end\\n")
        elif cmd == b"raise":
            sock.sendall(b"before the error\\n")
            raise RuntimeError("handler bug")
        elif cmd == b"slow":
            n = 0
            while True:
                line = sock.recvline()
                if not line:
                    return
                n += 1
                sock.sendall(b"%06d" % n + b"." * 59993 + b"\\n")
''')


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    d = tmp_path_factory.mktemp("rawbatch")
    (d / "batch.py").write_text(HANDLER)
    port = free_port()
    with Server(["--raw-socket", f"127.0.0.1:{port}", "--master", "--processes", "1", "--async", "8",
                 "--greenlet", "--python-raw", d / "batch.py", "--socket-timeout", "30"], port) as srv:
        yield srv


def _all(s: socket.socket) -> bytes:
    s.settimeout(20)
    out = b""
    while chunk := s.recv(65536):
        out += chunk
    return out


def _ask(port: int, cmd: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        s.sendall(cmd + b"\n")
        return _all(s)


def test_sendall_keeps_its_order_with_send_flush_fileno_and_close(server):
    assert _ask(server.port, b"order") == b"123" + b"4" * 100000 + b"56789"


def test_what_sendall_holds_goes_out_when_the_handler_returns(server):
    assert _ask(server.port, b"end") == b"held until the end\n"


def test_and_when_it_raises(server):
    assert _ask(server.port, b"raise") == b"before the error\n"
    assert "handler bug" in server.wait_log("RuntimeError: handler bug")


def test_a_peer_that_stops_reading_loses_nothing(server):
    lines = 120     # 7 MB of answers: far more than the socket buffers take while it sleeps
    with socket.create_connection(("127.0.0.1", server.port), timeout=20) as s:
        s.sendall(b"slow\n")
        for _ in range(lines):
            # one line at a time, nothing read: each answer waits for the turn's end, the
            # buffers fill, the loop's writer takes the rest, then the handler's own waits
            s.sendall(b"go\n")
            time.sleep(0.005)
        s.shutdown(socket.SHUT_WR)
        data = _all(s)
    got = data.split(b"\n")
    assert got[-1] == b""
    assert [int(x[:6]) for x in got[:-1]] == list(range(1, lines + 1))
    assert all(len(x) == 59999 for x in got[:-1])


def test_a_recv_that_waits_first_still_times_out(tmp_path):
    """After an answer the echo's next recvline waits before reading (the last read emptied the
    socket): a silent peer still meets --socket-timeout, and the line so far is not lost."""
    port = free_port()
    with Server(["--raw-socket", f"127.0.0.1:{port}", "--master", "--processes", "1", "--async", "4",
                 "--greenlet", "--python-raw", EXAMPLES / "raw_echo.py", "--socket-timeout", "1"], port) as srv:
        with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
            s.sendall(b"hel")
            time.sleep(0.2)
            s.sendall(b"lo\n")
            assert s.recv(100) == b"hello\n"
            t0 = time.monotonic()
            assert s.recv(10) == b""
            assert 0.8 < time.monotonic() - t0 < 10
        log = srv.wait_log("(RAW 408)")
        assert "(--socket-timeout)" in log and "Traceback" not in log
