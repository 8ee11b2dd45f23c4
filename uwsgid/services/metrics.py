"""User metrics (--metric name=NAME[,type=counter|gauge|absolute][,initial_value=N]): 64-bit
signed values in shared memory, changed from either runtime with metric_set/inc/dec/mul/div,
exported in the stats JSON ("metrics": {name: {"type", "value"}}) and, with --metrics-dir, as one
text file per metric (rewritten by the master about once a second), as uWSGI does.
"""

from __future__ import annotations

import mmap
import os
import struct

from uwsgid.services.locks import ProcessLock
from uwsgid.services.spec import keyvals
from uwsgid.util.log import log

TYPES = ("counter", "gauge", "absolute")
_Q = struct.Struct("<q")
_I64_MIN, _I64_MAX = -(1 << 63), (1 << 63) - 1
# uWSGI keys accepted and ignored (collectors, SNMP, pushers)
_IGNORED = {"oid", "collector", "freq", "reset_after_push", "children", "alias", "arg1", "arg2",
            "arg1n", "arg2n", "arg3", "arg3n"}


class MetricError(ValueError):
    pass


_names: dict[bytes, int] = {}      # name -> slot
_types: list[str] = []
_mm: mmap.mmap | None = None
_lock: ProcessLock | None = None
_dir: str | None = None


def parse(spec: str) -> dict:
    if "=" not in spec:
        conf = {"name": spec.strip()}
    else:
        conf = {}
        for k, v in keyvals(spec, "metric", MetricError):
            if k in ("name", "type"):
                conf[k] = v.strip()
            elif k in ("initial_value", "initial"):
                try:
                    conf["initial_value"] = int(v)
                except ValueError:
                    raise MetricError(f"--metric {spec}: initial_value must be an integer") from None
            elif k in _IGNORED:
                log(f"--metric {conf.get('name', spec)}: option {k!r} is not supported, ignored")
            else:
                raise MetricError(f"--metric {spec}: unknown key {k!r} (known: name, type, initial_value)")
    if not conf.get("name"):
        raise MetricError(f"--metric {spec}: a name is required (name=NAME)")
    conf.setdefault("type", "counter")
    if conf["type"] not in TYPES:
        raise MetricError(f"--metric {conf['name']}: unknown type {conf['type']!r} (counter, gauge, absolute)")
    return conf


def setup(specs: list[str], metrics_dir: str | None = None, restore: bool = False) -> None:
    """Declare the metrics and allocate their shared values (master, before fork)."""
    global _mm, _lock, _dir
    if _mm is not None:
        return
    confs = [parse(s) for s in specs]
    for c in confs:
        name = c["name"].encode()
        if name in _names:
            raise MetricError(f"--metric {c['name']}: declared twice")
        _names[name] = len(_types)
        _types.append(c["type"])
    _mm = mmap.mmap(-1, max(8, 8 * len(confs)), mmap.MAP_SHARED | mmap.MAP_ANONYMOUS)
    _lock = ProcessLock()
    _dir = metrics_dir
    if metrics_dir:
        os.makedirs(metrics_dir, exist_ok=True)
    for c in confs:
        value = c.get("initial_value", 0)
        if restore and metrics_dir:
            try:
                with open(os.path.join(metrics_dir, c["name"])) as f:
                    value = int(f.read().strip() or 0)
            except (OSError, ValueError):
                pass
        _Q.pack_into(_mm, 8 * _names[c["name"].encode()], value)


def _slot(name: bytes) -> int | None:
    return _names.get(name)


def get(name: bytes) -> int | None:
    slot = _slot(name)
    if slot is None or _mm is None:
        return None
    return _Q.unpack_from(_mm, 8 * slot)[0]


def update(name: bytes, op: str, value: int) -> bool:
    slot = _slot(name)
    if slot is None or _mm is None:
        known = ", ".join(n.decode() for n in _names) or "none"
        raise ValueError(f"no metric named {name.decode('utf-8', 'replace')!r}: declare it with "
                         f"--metric name={name.decode('utf-8', 'replace')} (declared: {known})")
    off = 8 * slot
    with _lock:
        cur = _Q.unpack_from(_mm, off)[0]
        if op == "=":
            new = value
        elif op == "+":
            new = cur + value
        elif op == "-":
            new = cur - value
        elif op == "*":
            new = cur * value
        else:
            q = abs(cur) // abs(value)
            new = q if (cur >= 0) == (value >= 0) else -q
        if not _I64_MIN <= new <= _I64_MAX:
            new = ((new - _I64_MIN) % (1 << 64)) + _I64_MIN
        _Q.pack_into(_mm, off, new)
    return True


def snapshot() -> dict:
    """The stats JSON "metrics" object."""
    return {n.decode("utf-8", "replace"): {"type": _types[s], "value": _Q.unpack_from(_mm, 8 * s)[0]}
            for n, s in _names.items()} if _mm is not None else {}


def write_dir() -> None:
    """--metrics-dir: one file per metric holding its value (the master calls this each tick)."""
    if not _dir or _mm is None:
        return
    for n, s in _names.items():
        path = os.path.join(_dir, n.decode("utf-8", "replace"))
        data = str(_Q.unpack_from(_mm, 8 * s)[0]).encode()
        try:
            tmp = path + ".tmp"
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except OSError as exc:
            log(f"metrics-dir: cannot write {path}: {exc}")


def _reset_for_tests() -> None:
    global _mm, _lock, _dir
    _names.clear()
    _types.clear()
    _mm = _lock = _dir = None
