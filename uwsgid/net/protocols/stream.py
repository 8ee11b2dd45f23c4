"""A request body handed to the app as it arrives (ASGI apps), instead of held until complete.

The parser queues such a request at the end of its head (`Limits.stream_body` says which: the
ASGI plugin installs it) and then adds the body's bytes here as they are read; the app takes
them (`take`). Back-pressure: past HIGH_WATER bytes not yet taken, the connection's reader is
removed, and put back when the app has taken enough, so that a 50 MB upload costs HIGH_WATER of
memory and the client waits on TCP's window. When the request ends with the body not all taken,
the rest is read and dropped (`abandon`), so that the next pipelined request is parsed where it
starts. A client that stops sending the body gets --socket-timeout (while the reader is not
held), then the connection closes and the app sees the client gone.
"""

from __future__ import annotations

import time
from collections import deque

HIGH_WATER = 256 * 1024     # bytes buffered, not yet taken, before the connection stops reading
_monotonic = time.monotonic


class BodyStream:
    __slots__ = ("conn", "chunks", "buffered", "size", "done", "gone", "refused", "discard", "held", "waiter")

    def __init__(self, conn):
        self.conn = conn
        self.chunks = deque()
        self.buffered = 0       # bytes in chunks
        self.size = 0           # bytes of body received so far (for --limit-post and the log)
        self.done = False       # the whole body arrived
        self.gone = False       # the client went away (or the body was refused) before its end
        self.refused = False    # the parser refused the body (--limit-post, bad chunking): the
                                # connection answers that error once the request ends
        self.discard = False    # the request ended: what still comes is dropped
        self.held = False       # we removed the connection's reader (back-pressure)
        self.waiter = None      # called when something changed (the app waits in receive())

    # ---- the parser's and the connection's side --------------------------------------------
    def add(self, data) -> None:
        self.size += len(data)
        if self.discard:
            return
        self.chunks.append(bytes(data))
        self.buffered += len(data)
        if self.buffered >= HIGH_WATER and not self.held:
            self._hold()
        self._notify()

    def end(self) -> None:
        """The body is complete."""
        self.done = True
        self._notify()

    def client_gone(self) -> None:
        """The connection closed or reached EOF, or the body was refused, before its end."""
        if self.done or self.gone:
            return
        self.gone = True
        self._notify()

    def refuse(self) -> None:
        """The parser refused the rest of the body; its error reply follows the request."""
        self.refused = True
        self.client_gone()

    def _notify(self) -> None:
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            waiter()

    # ---- the app's side ---------------------------------------------------------------------
    @property
    def finished(self) -> bool:
        """Nothing more will come: taken to the end, or the client gone."""
        return not self.chunks and (self.done or self.gone)

    def take(self) -> bytes:
        """What arrived and was not taken yet (b"" if nothing): the connection reads again."""
        chunks = self.chunks
        if not chunks:
            data = b""
        elif len(chunks) == 1:
            data = chunks.popleft()
        else:
            data = b"".join(chunks)
            chunks.clear()
        self.buffered = 0
        if self.held:
            self._release()
        return data

    def abandon(self) -> None:
        """The request ended without taking the whole body: drop the rest as it arrives."""
        self.discard = True
        self.waiter = None
        self.chunks.clear()
        self.buffered = 0
        if self.held:
            self._release()

    # ---- the connection's reader ------------------------------------------------------------
    def _hold(self) -> None:
        conn = self.conn
        if conn is None or conn.closed or conn.paused or conn.eof:
            return
        self.held = True
        conn.paused = True
        conn.loop.remove_reader(conn.fd)

    def _release(self) -> None:
        self.held = False
        conn = self.conn
        if conn is None or conn.closed or conn.eof or conn.lingering:
            return
        conn.paused = False
        conn.deadline = _monotonic() + conn.timeout     # --socket-timeout counts from now
        conn.loop.add_reader(conn.fd, conn.on_readable)
