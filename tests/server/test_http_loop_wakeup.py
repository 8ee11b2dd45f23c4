"""The loop's wake-up pipe after close(): a late wakeup() from another thread or a signal
handler must not write into whatever file now has the pipe's old fd number (it put "xxxx"
over the header of Sputnik's SQLite database when workers with --threads stopped)."""

from __future__ import annotations

import os

from uwsgid.net.loop import Loop


def test_wakeup_after_close_writes_nowhere(tmp_path):
    loop = Loop()
    old_ww = loop._ww
    loop.close()
    files = []
    try:
        # Reopen files until one takes the closed pipe's write end (the lowest free fds).
        for i in range(8):
            path = tmp_path / f"f{i}"
            path.write_bytes(b"SQLite format 3\0")
            fd = os.open(path, os.O_RDWR)
            files.append((fd, path))
            if fd == old_ww:
                break
        loop.wakeup()
        loop.wakeup()
        for fd, path in files:
            assert path.read_bytes() == b"SQLite format 3\0"
    finally:
        for fd, _ in files:
            os.close(fd)


def test_wakeup_before_close_still_wakes():
    loop = Loop()
    try:
        loop.wakeup()
        assert os.read(loop._wr, 16) == b"x"
    finally:
        loop.close()
    loop.close()   # idempotent
