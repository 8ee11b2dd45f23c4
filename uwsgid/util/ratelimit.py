"""Log lines under a rate limit, so that a flood (of bad requests, say) cannot fill the disk.

    lines = RateLimitedLog(per_second=20, what="rejected requests")
    lines.log("400 127.0.0.1:53422 chunk size line is not hex")

At most `per_second` lines are written in each second; the others are counted, and the count is
written as one line ("rejected requests: 1234 more lines not logged in the last 2s ...") before
the next line that is let through (the first line of a later second). A process that logs
nothing more never reports a pending count: the next logged line does. One instance per process
(a worker, the router); the threads of a process share it without a lock: a race can only
miscount a line, never lose the suppressed count's line.
"""

from __future__ import annotations

import time

from uwsgid.util.log import log as _log


class RateLimitedLog:
    __slots__ = ("per_second", "what", "clock", "write", "window", "count", "suppressed", "since")

    def __init__(self, per_second: int = 20, what: str = "lines", clock=time.monotonic, write=_log):
        self.per_second = per_second
        self.what = what
        self.clock = clock
        self.write = write
        self.window = -1       # the second (int(clock())) being counted
        self.count = 0         # lines written in it
        self.suppressed = 0    # lines dropped since `since`
        self.since = 0.0

    def log(self, line: str) -> bool:
        """Write `line` unless this second's quota is spent; True if it was written."""
        now = self.clock()
        second = int(now)
        if second != self.window:
            if self.suppressed:
                n, self.suppressed = self.suppressed, 0
                self.write(f"{self.what}: {n} more line{'s' if n != 1 else ''} not logged in the last "
                           f"{max(1, round(now - self.since))}s (at most {self.per_second} a second)")
            self.window = second
            self.count = 0
        if self.count >= self.per_second:
            if not self.suppressed:
                self.since = now
            self.suppressed += 1
            return False
        self.count += 1
        self.write(line)
        return True
