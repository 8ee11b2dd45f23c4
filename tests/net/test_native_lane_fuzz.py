"""The native lane (core/cpython/lane.c) fed random, truncated and mutated uwsgi packets and apps
of random shapes on a real loopback listener (tests/net/native_support.py's fuzz_lane; longer runs
under ASan from its command line)."""

from __future__ import annotations

import pytest

from tests.net.native_support import fuzz_lane, load_native

native = load_native()
if not hasattr(native, "Lane"):
    pytest.skip("the native module has no lane (an old build)", allow_module_level=True)


def test_random_packets_and_apps():
    assert fuzz_lane(native, 3.0, seed=16) > 100
