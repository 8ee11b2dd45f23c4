"""Cache numbers, as both cache back ends store them: uWSGI's 64-bit signed integers in 8 bytes
(cache_inc/dec/mul/div, cache_setnum), and the int64 arithmetic on them, so that a value reads
the same whichever back end (or real uWSGI) wrote it."""

from __future__ import annotations

import struct

INT64 = struct.Struct("<q")

_I64_MIN, _I64_MAX = -(1 << 63), (1 << 63) - 1


def pack_num(n: int) -> bytes:
    return INT64.pack(wrap64(n))


def unpack_num(value: bytes | None) -> int | None:
    """A cached number (8 bytes, as cache_inc & co. store it), or None for anything else."""
    if value is None or len(value) != 8:
        return None
    return INT64.unpack(value)[0]


def wrap64(n: int) -> int:
    # int64 arithmetic wraps like uWSGI's C int64_t math instead of raising
    if _I64_MIN <= n <= _I64_MAX:
        return n
    return ((n - _I64_MIN) % (1 << 64)) + _I64_MIN


def apply_op(op: str, cur: int, amount: int) -> int:
    """cur OP amount for op in "+", "-", "*", "/", in int64 (amount != 0 for "/")."""
    if op == "+":
        return wrap64(cur + amount)
    if op == "-":
        return wrap64(cur - amount)
    if op == "*":
        return wrap64(cur * amount)
    # C division truncates toward zero
    q = abs(cur) // abs(amount)
    return wrap64(q if (cur >= 0) == (amount >= 0) else -q)
