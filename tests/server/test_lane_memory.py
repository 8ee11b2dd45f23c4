"""What a Lane object makes resident (issue 20): each thread loop has one, so its pages are
private memory in every thread of every worker. A Lane is ~28 KB, 20 KB of it the read buffer
and the vars' offsets, which a request writes before it reads them: they are left untouched at
creation (lane_alloc, core/cpython/lane_type.c), and only the pages a request uses become
resident. Zeroing all of it (PyType_GenericAlloc) cost ~16 KB more per thread of a Lua worker."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.net.native_support import ROOT, load_native

native = load_native()
if not hasattr(native, "Lane"):
    pytest.skip("the native module has no lane (an old build)", allow_module_level=True)

LANES = 200
# per Lane: its fields and name caches (~7.5 KB: 2 to 3 pages) and malloc's header; all of
# it zeroed would be 7 pages (28 KB)
BOUND_KB = 16

_CODE = f"""
import _uwsgi_native as native
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * {os.sysconf("SC_PAGE_SIZE")} // 1024
lanes = [native.Lane(native.LANE_HTTP, 4096, 100, True, None, b"h", b"80")]
before = rss()
lanes += [native.Lane(native.LANE_HTTP, 4096, 100, True, None, b"h", b"80") for _ in range({LANES})]
print(rss() - before)
"""


def test_a_new_lane_leaves_its_buffers_untouched():
    lib = os.path.dirname(native.__file__)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([lib, str(ROOT)])}
    out = subprocess.run([sys.executable, "-c", _CODE], capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0, out.stderr
    per_lane = int(out.stdout) / LANES
    assert per_lane < BOUND_KB, f"{per_lane:.1f} KB resident per new Lane"
