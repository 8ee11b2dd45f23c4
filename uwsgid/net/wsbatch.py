"""Writes batched per loop turn: a green WebSocket session's frames (uwsgid/net/websocket.py
Session.batch) and a green raw TCP handler's sendall (uwsgid/net/raw_socket.py batch_writes).

On loopback most of what an echo costs is waking the client's process: written one by one, the
frames of the green sessions a loop turn resumes wake it once each. A Batch writes them
together at the end of the turn (a `ready` callback of the loop), or as soon as MAX sessions
have some; a session's frames beyond BYTES go out at once, with the usual waits (back-pressure
stays with the app). A frame waits at most for the other sessions of its batch to take their
turn. The writer's side (pending, _flush_pending, the loop's writer for a slow client, what is
left at the end of the request) is in Session and RawSocket: a Batch only calls
_flush_pending() on each at the end of the turn.
"""

from __future__ import annotations


class Batch:
    """The sessions (WebSocket or raw) of one loop with bytes to write at the end of this turn."""

    __slots__ = ("loop", "sessions", "_flush")
    MAX = 32                # sessions per batch: a frame waits for at most 31 others
    BYTES = 65536           # a session's frames beyond this go out at once (with the usual waits)

    def __init__(self, loop):
        self.loop = loop
        self.sessions: list = []
        self._flush = self.flush

    def add(self, session) -> None:
        sessions = self.sessions
        if not sessions:
            self.loop.ready.append(self._flush)
        sessions.append(session)
        if len(sessions) >= self.MAX:
            self.flush()

    def flush(self) -> None:
        sessions = self.sessions
        if sessions:
            self.sessions = []
            for s in sessions:
                s._flush_pending()


def batch_of(loop) -> Batch:
    """The loop's Batch (one per loop, made at its first green WebSocket session or raw handler)."""
    b = getattr(loop, "ws_batch", None)
    if b is None:
        b = loop.ws_batch = Batch(loop)
    return b
