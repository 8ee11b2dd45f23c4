"""uwsgid.server.prefork: what the master does before it forks its workers (issue 20). The
memory figures it improves (worker RSS, PSS) are measured in bench/memory.py; here, in process,
each of its two effects."""

from __future__ import annotations

import gc

from uwsgid.server import prefork


def _rss_kb() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def test_prepare_freezes_what_was_made_since_the_last_freeze():
    made = [[i] for i in range(1000)]     # tracked by the cyclic GC
    before = gc.get_freeze_count()
    try:
        prefork.prepare()
        assert gc.get_freeze_count() >= before + len(made)
    finally:
        gc.unfreeze()


def test_prepare_gives_mallocs_free_heap_back():
    # 32 MB in 64 KB blocks (under malloc's mmap threshold: they are in its heap), the last one
    # kept so that the heap's top cannot shrink by itself: free() keeps the pages of the others
    blocks = [bytearray(b"x" * 65536) for _ in range(512)]
    keep = blocks.pop()
    del blocks
    gc.collect()
    held = _rss_kb()
    try:
        prefork.prepare()
        assert held - _rss_kb() > 16 * 1024, "malloc's free memory is still resident after prepare()"
    finally:
        gc.unfreeze()
        del keep
