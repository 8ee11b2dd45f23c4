"""wsgi.input and wsgi.errors.

WSGIInput is a small buffered reader over the request body source (req.input, or anything with
read(n)). It never reads past the body length it was given, tolerates short reads from the source
(readline across chunk boundaries), and treats read(None)/read(-1) as "the rest"."""

from __future__ import annotations

import threading

from uwsgid.util.log import log

CHUNK = 65536


class WSGIInput:
    __slots__ = ("_owner", "_src", "_left", "_buf")

    def __init__(self, owner, length: int = -1):
        # owner: the request (its .input is the body source, made only when first read) or
        # the source itself. length: bytes to read; -1 = until the source's EOF (chunked input).
        self._owner = owner
        self._src = None
        self._left = length
        self._buf = bytearray()

    def _more(self, want: int) -> bytes:
        left = self._left
        if left == 0:
            return b""
        src = self._src
        if src is None:
            owner = self._owner
            src = self._src = owner.input if hasattr(owner, "input") else owner
        n = want if want > CHUNK else CHUNK
        if 0 < left < n:
            n = left
        data = src.read(n)
        if not data:
            self._left = 0          # the source ended early: nothing more will come
            return b""
        if left > 0:
            if len(data) > left:    # a source that ignores n: keep the bound anyway
                data = data[:left]
            self._left = left - len(data)
        return data

    def read(self, size: int | None = -1) -> bytes:
        buf = self._buf
        if size is None or size < 0:
            while True:
                data = self._more(CHUNK)
                if not data:
                    break
                buf += data
            out = bytes(buf)
            buf.clear()
            return out
        while len(buf) < size:
            data = self._more(size - len(buf))
            if not data:
                break
            buf += data
        out = bytes(buf[:size])
        del buf[:size]
        return out

    def readline(self, size: int | None = -1) -> bytes:
        buf = self._buf
        if size is None:
            size = -1
        start = 0
        while True:
            nl = buf.find(b"\n", start)
            if nl >= 0:
                end = nl + 1
                break
            if 0 <= size <= len(buf):
                end = size
                break
            start = len(buf)
            data = self._more(CHUNK)
            if not data:
                end = len(buf)
                break
            buf += data
        if 0 <= size < end:
            end = size
        out = bytes(buf[:end])
        del buf[:end]
        return out

    def readlines(self, hint: int | None = -1) -> list[bytes]:
        lines = []
        total = 0
        while True:
            line = self.readline()
            if not line:
                break
            lines.append(line)
            total += len(line)
            if hint is not None and 0 < hint <= total:
                break
        return lines

    def __iter__(self):
        return self

    def __next__(self) -> bytes:
        line = self.readline()
        if not line:
            raise StopIteration
        return line

    def close(self) -> None:
        """Apps must not close wsgi.input (PEP 3333); accepted and ignored."""


class ErrorStream:
    """wsgi.errors: text written by the app goes to the server log, one log line per text line.
    Partial lines wait (per thread) for their newline or a flush()."""

    def __init__(self):
        self._local = threading.local()

    def write(self, text) -> int:
        if isinstance(text, (bytes, bytearray)):
            text = bytes(text).decode("utf-8", "replace")
        elif not isinstance(text, str):
            raise TypeError(f"wsgi.errors.write() takes str, not {type(text).__name__}")
        pending = getattr(self._local, "pending", "") + text
        if "\n" in pending:
            done, _, pending = pending.rpartition("\n")
            log(done)
        self._local.pending = pending
        return len(text)

    def writelines(self, seq) -> None:
        for line in seq:
            self.write(line)

    def flush(self) -> None:
        pending = getattr(self._local, "pending", "")
        if pending:
            self._local.pending = ""
            log(pending)
