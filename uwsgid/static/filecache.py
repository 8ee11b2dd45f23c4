"""Small static files kept in each worker's memory: their bytes and their response head fields.

uWSGI reads every file again for every request (realpath, stat, open, read). Here a small file
(up to serve.SMALL bytes) answered once is kept, per worker, with what its answer needs (the
fields of its head, ready-made for a 200, its mtime for If-Modified-Since and Range), under the
request's key: PATH_INFO (with DOCUMENT_ROOT under --check-static-docroot, Accept-Encoding when a
--static-gzip* rule applies, REQUEST_URI when a --static-expires-uri rule does: what else
decides the answer).

Correctness rules:
  * An entry serves only during the wall-clock second it was checked in. The first request of a
    later second resolves the path again, as an uncached request does (serve.py: the roots in
    order, the traversal checks, the .gz/.br variant), and stores a fresh entry: a file changed,
    replaced, removed or moved out of the root is answered as such within a second, and so is a
    file that appears in an earlier root. Expires "now + N" headers are made again each second.
  * A file whose inode changed (ctime) less than 2 seconds before it was read is served but not
    kept: a write landing while it is read could otherwise leave bytes that its later stat does
    not tell apart (timestamps have a clock tick's granularity). ctime, not mtime: no program can
    set it back.
  * A read shorter than the size stat gave (the file shrank meanwhile) is not kept.
  * Bounded per worker: MAX_BYTES of file bytes in at most MAX_ENTRIES entries, the oldest stored
    dropped first.
Threads of a worker share it (dict operations under the GIL; a race only stores an entry twice).
"""

from __future__ import annotations

from uwsgid.net.request import HeaderBlock

MAX_BYTES = 4 * 1024 * 1024
MAX_ENTRIES = 2048
RACY_SECONDS = 2


class Entry:
    """One file's answer. `fields` are the head fields but Content-Length and Last-Modified (what a
    304, 206 or HEAD answer builds on); `ok` is the full 200 head, built once."""

    __slots__ = ("second", "body", "mtime", "fields", "last_modified", "ok")

    def __init__(self, second: int, body: bytes, mtime: int, fields: list, last_modified: tuple):
        self.second = second
        self.body = body
        self.mtime = mtime
        self.fields = fields
        self.last_modified = last_modified
        self.ok = HeaderBlock([*fields, (b"Content-Length", b"%d" % len(body)), last_modified])


class FileCache:
    def __init__(self, by_docroot: bool = False, by_encoding: bool = False, by_uri: bool = False):
        self.entries: dict = {}
        self.size = 0
        import threading  # here: only a worker with static files builds a cache
        self._lock = threading.Lock()
        self.by_docroot = by_docroot
        self.by_encoding = by_encoding
        self.by_uri = by_uri
        self.plain = not (by_docroot or by_encoding or by_uri)
        # the same answers for the native lane (core/cpython/lane_static.c), keyed by PATH_INFO
        # when that is the whole key: path -> (second, uwsgi head block, HTTP head block, header
        # count, body)
        self.lane_entries: dict = {}

    def key(self, path: bytes, v: dict):
        """The request's key: what decides its answer besides the files themselves."""
        if self.plain:
            return path
        return (path, v.get(b"DOCUMENT_ROOT") if self.by_docroot else None,
                v.get(b"HTTP_ACCEPT_ENCODING") if self.by_encoding else None,
                v.get(b"REQUEST_URI") if self.by_uri else None)

    def get(self, key, second: int):
        """The entry checked in during `second`, else None."""
        e = self.entries.get(key)
        if e is not None and e.second == second:
            return e
        return None

    def keep(self, key, st, now: float, body: bytes, mtime: int, fields: list, last_modified: tuple):
        """Store a file's answer read just now, when the rules allow; returns the Entry or None."""
        size = len(body)
        if size != st.st_size or size > MAX_BYTES // 16 or st.st_ctime > now - RACY_SECONDS:
            self.drop(key)
            return None
        e = Entry(int(now), body, mtime, fields, last_modified)
        with self._lock:
            entries = self.entries
            old = entries.pop(key, None)
            if old is not None:
                self.size -= len(old.body)
            while entries and (self.size + size > MAX_BYTES or len(entries) >= MAX_ENTRIES):
                oldest = entries.pop(next(iter(entries)))
                self.size -= len(oldest.body)
            entries[key] = e
            self.size += size
            if self.plain:
                lane = self.lane_entries
                lane.pop(key, None)
                while len(lane) >= len(entries):    # what the loop above dropped
                    lane.pop(next(iter(lane)))
                (ublock, _, _), (hblock, cnt, _) = e.ok.blocks
                lane[key] = (e.second, ublock, hblock, cnt, body)
        return e

    def drop(self, key) -> None:
        """Forget a key whose path is no longer a small file (not found, refused, grown)."""
        if key in self.entries:
            with self._lock:
                old = self.entries.pop(key, None)
                if old is not None:
                    self.size -= len(old.body)
                self.lane_entries.pop(key, None)
