"""RawSocket._flush_pending (uwsgid/net/raw_socket.py), the batch's write at the end of a loop
turn, in-process with a fake socket: what the socket takes is counted and dropped, a peer that
takes part leaves the rest to the loop's writer (batching ends for it), a full socket keeps it
all, and a failed write is kept for the handler's next write, never raised on the loop."""

from __future__ import annotations

import errno

import pytest

from uwsgid.net.raw_socket import RawSocket


class FakeSock:
    def __init__(self, takes):
        self.takes = takes      # per send: bytes taken, or an exception to raise
        self.sent = []

    def send(self, data):
        t = self.takes.pop(0)
        if isinstance(t, BaseException):
            raise t
        self.sent.append(bytes(data[:t]))
        return t


class FakeLoop:
    def __init__(self):
        self.writers = {}

    def add_writer(self, fd, cb):
        self.writers[fd] = cb


class FakeBatch:
    def __init__(self):
        self.loop = FakeLoop()


class FakeReq:
    response_size = 0


def _sock(takes, pending=b"hello world"):
    s = RawSocket.__new__(RawSocket)    # no connection: only what _flush_pending touches
    s._sock = FakeSock(list(takes))
    s._req = FakeReq()
    s.fd = 7
    s.closed = False
    s.pending = pending
    s.batch = FakeBatch()
    s._error = None
    s._deadline = 123.0
    s._drain_loop = None
    return s


def test_all_taken():
    s = _sock([11])
    batch = s.batch
    s._flush_pending()
    assert s.pending is None and s._req.response_size == 11 and s._deadline is None
    assert s.batch is batch and not batch.loop.writers


def test_part_taken_leaves_the_rest_to_the_loops_writer():
    s = _sock([5])
    loop = s.batch.loop
    s._flush_pending()
    assert s.pending == b" world" and s._req.response_size == 5 and s._deadline is None
    assert s.batch is None and s._drain_loop is loop and loop.writers[7] == s._drain


def test_a_full_socket_keeps_it_all():
    s = _sock([BlockingIOError(errno.EAGAIN, "full")])
    s._flush_pending()
    assert s.pending == b"hello world" and s._req.response_size == 0 and s._deadline == 123.0
    assert s.batch is None and 7 in s._drain_loop.writers


def test_an_error_waits_for_the_handlers_next_write():
    s = _sock([ConnectionResetError(errno.ECONNRESET, "reset")])
    batch = s.batch
    s._flush_pending()      # not raised here, on the loop
    assert s.pending is None and s.batch is batch and not batch.loop.writers
    with pytest.raises(ConnectionResetError):
        s.flush()
    assert s._error is None


@pytest.mark.parametrize("pending, closed", [(None, False), (b"x", True)])
def test_nothing_to_write(pending, closed):
    s = _sock([], pending)
    s.closed = closed
    s._flush_pending()
    assert s._sock.sent == [] and s._req.response_size == 0
