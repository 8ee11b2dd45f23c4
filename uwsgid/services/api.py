"""The shared services as plain functions: what both `uwsgi` modules (Lua's table, Python's module)
wrap. Signatures follow uWSGI's Python module; keys, values, names and RPC arguments may be given as
bytes or str (str is encoded UTF-8; Lua numbers as int/float are turned into their decimal text, as
lua_tolstring does); every value returned is bytes.

Error conventions (the plugins turn exceptions into Lua errors / Python exceptions):
  * "not found" (missing key, unknown RPC function, undeclared metric in metric_get) -> None
  * an operation that cannot be done (value larger than the blocksize, cache full, key already
    set for cache_set, division by zero) -> False, nothing written (never a partial write)
  * a caller mistake (unknown cache name, lock number out of range, bad signal number, bad
    target, wrong argument type, more than 254 RPC args) -> ValueError with a clear message
  * an RPC function that raised, or a remote node that failed -> RpcError (the remote message)

Caches: `cache=None` is the default cache (the first --cache2 / --cache); a cache name may also be
"name@host:port" to reach a remote instance's cache (not supported: ValueError).
"""

from __future__ import annotations

from uwsgid.services import cache as _cache_mod
from uwsgid.services import channels as _channels
from uwsgid.services import locks as _locks
from uwsgid.services import metrics as _metrics
from uwsgid.services import mules as _mules
from uwsgid.services import remote_signals as _remote_signals
from uwsgid.services import rpc as _rpc
from uwsgid.services import signal_receiver as _signal_receiver
from uwsgid.services import signals as _signals
from uwsgid.services import spool_file as _spool_file
from uwsgid.services import spooler as _spooler
from uwsgid.services import timers as _timers
from uwsgid.services.rpc import RpcError  # noqa: F401  (re-exported for the plugins)
from uwsgid.services.spec import to_bytes


def _c(cache):
    _channels.ensure()
    return _cache_mod.get_cache(None if cache is None else to_bytes(cache, "cache name"))


def _expires(expires) -> int:
    if expires is None:
        return 0
    try:
        e = int(expires)
    except (TypeError, ValueError):
        raise ValueError(f"expires must be a number of seconds, not {expires!r}") from None
    if e < 0:
        raise ValueError(f"expires must be >= 0 (got {e})")
    return e


def _int(value, what: str) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, (bytes, str)):
        try:
            return int(value)
        except ValueError:
            pass
    raise ValueError(f"{what} must be an integer, not {value!r}")


# ---- cache -------------------------------------------------------------------------------

def cache_get(key, cache=None) -> bytes | None:
    return _c(cache).get(to_bytes(key, "key"))


def cache_set(key, value, expires=0, cache=None) -> bool:
    """Store key only if it is not set (or expired): uWSGI's cache_set never overwrites."""
    return _c(cache).set(to_bytes(key, "key"), to_bytes(value), _expires(expires), update=False)


def cache_update(key, value, expires=0, cache=None) -> bool:
    """Store key, overwriting any existing value."""
    return _c(cache).set(to_bytes(key, "key"), to_bytes(value), _expires(expires), update=True)


def cache_del(key, cache=None) -> bool:
    return _c(cache).delete(to_bytes(key, "key"))


def cache_exists(key, cache=None) -> bool:
    return _c(cache).exists(to_bytes(key, "key"))


def cache_clear(cache=None) -> bool:
    _c(cache).clear()
    return True


def cache_keys(cache=None) -> list[bytes]:
    return _c(cache).keys()


def cache_inc(key, amount=1, expires=0, cache=None) -> bool:
    """Values touched by the math functions are 64-bit signed integers stored as 8 bytes
    (native byte order), as in uWSGI; a missing key starts from 0. False when the existing
    value is not an 8-byte number."""
    return _c(cache).math(to_bytes(key, "key"), "+", _int(amount, "amount"), _expires(expires))


def cache_dec(key, amount=1, expires=0, cache=None) -> bool:
    return _c(cache).math(to_bytes(key, "key"), "-", _int(amount, "amount"), _expires(expires))


def cache_mul(key, amount=2, expires=0, cache=None) -> bool:
    return _c(cache).math(to_bytes(key, "key"), "*", _int(amount, "amount"), _expires(expires))


def cache_div(key, amount=2, expires=0, cache=None) -> bool:
    amount = _int(amount, "amount")
    if amount == 0:
        raise ValueError("cache_div: division by zero")
    return _c(cache).math(to_bytes(key, "key"), "/", amount, _expires(expires))


def cache_num(key, cache=None) -> int | None:
    """The 64-bit number stored by cache_inc/.../cache_setnum; None when missing or not a number."""
    return _c(cache).num(to_bytes(key, "key"))


cache_getnum = cache_num


def cache_setnum(key, value, expires=0, cache=None) -> bool:
    """Store an integer in the math functions' format (overwrites)."""
    return _c(cache).set(to_bytes(key, "key"), _cache_mod.pack_num(_int(value, "value")),
                         _expires(expires), update=True)


def cache_names() -> list[bytes]:
    """Names of the configured caches, the default first."""
    return _cache_mod.names()


# ---- RPC ---------------------------------------------------------------------------------

def register_rpc(name, fn, argc=0) -> bool:
    """fn(*args: bytes) -> bytes | str | None. argc (uWSGI's) is accepted and ignored: any
    number of arguments up to 254 is passed through."""
    if not callable(fn):
        raise ValueError("register_rpc: the function must be callable")
    return _rpc.register(to_bytes(name, "rpc name"), fn)


def rpc(node, name, *args) -> bytes | None:
    """Call `name` on node ("host:port" or a unix path); node None or "" = this worker."""
    node_b = b"" if node is None else to_bytes(node, "node")
    bargs = [to_bytes(a, "rpc argument") for a in args]
    if not node_b:
        return _rpc.call_local(to_bytes(name, "rpc name"), bargs)
    return _rpc.call_remote(node_b.decode("utf-8", "replace"), to_bytes(name, "rpc name"), bargs)


def call(name, *args) -> bytes | None:
    """Call a locally registered RPC function (None when no function has that name)."""
    return _rpc.call_local(to_bytes(name, "rpc name"), [to_bytes(a, "rpc argument") for a in args])


def rpc_list() -> list[bytes]:
    return _rpc.names()


# ---- signals, timers, file monitors, crons -----------------------------------------------

def register_signal(num, target, fn) -> bool:
    """target: "" / "worker" (the first available worker), "workers" (all), "worker<N>",
    "active-workers", "mule", "mule<N>", "mules"; fn(signum: int) runs in that worker
    between requests. Register in the master (app load) or identically in every worker."""
    if not callable(fn):
        raise ValueError("register_signal: the handler must be callable")
    t = to_bytes(target if target is not None else b"", "target").decode("utf-8", "replace")
    return _signals.register(_int(num, "signal number"), t, fn)


def signal(num, remote=None) -> None:
    """Raise signal num in this instance (routed by the master), or on `remote` host:port."""
    if remote:
        _remote_signals.send_remote(to_bytes(remote, "remote").decode(), _int(num, "signal number"))
    else:
        _signals.raise_signal(_int(num, "signal number"))


def signal_registered(num) -> bool:
    return _signals.registered(_int(num, "signal number"))


def signal_wait(num=None, timeout=None) -> int | None:
    """Block until a signal reaches this worker (num: only that one); its handler is not run.
    Returns the signal number, None on timeout."""
    return _signal_receiver.wait(None if num is None else _int(num, "signal number"),
                         None if timeout is None else float(timeout))


def signal_received() -> int | None:
    """The last signal returned by signal_wait in this process."""
    return _signal_receiver.last_received()


def add_timer(num, secs) -> bool:
    return _timers.add_timer(_int(num, "signal number"), _secs(secs))


def add_rb_timer(num, secs, iterations=0) -> bool:
    return _timers.add_timer(_int(num, "signal number"), _secs(secs), _int(iterations, "iterations"))


def add_file_monitor(num, path) -> bool:
    return _timers.add_file_monitor(_int(num, "signal number"), to_bytes(path, "path").decode())


def add_cron(num, minute, hour, day, month, weekday) -> bool:
    """-1 = any; a negative -N = every N (uWSGI's convention)."""
    fields = [_int(v, "cron field") for v in (minute, hour, day, month, weekday)]
    return _timers.add_cron(_int(num, "signal number"), *fields)


def _secs(secs) -> float:
    try:
        s = float(secs)
    except (TypeError, ValueError):
        raise ValueError(f"timer seconds must be a number, not {secs!r}") from None
    if s <= 0:
        raise ValueError(f"timer seconds must be > 0 (got {secs!r})")
    return s


# ---- locks ---------------------------------------------------------------------------------

def lock(n=0) -> None:
    """Block until user lock n (0 .. --locks) is held by this thread; across processes too."""
    _channels.ensure()
    _locks.lock(_int(n, "lock number"))


def unlock(n=0) -> None:
    _locks.unlock(_int(n, "lock number"))


def is_locked(n=0) -> bool:
    return _locks.is_locked(_int(n, "lock number"))


# ---- metrics -------------------------------------------------------------------------------

def metric_get(name) -> int | None:
    _channels.ensure()
    return _metrics.get(to_bytes(name, "metric name"))


def metric_set(name, value) -> bool:
    _channels.ensure()
    return _metrics.update(to_bytes(name, "metric name"), "=", _int(value, "value"))


def metric_inc(name, value=1) -> bool:
    _channels.ensure()
    return _metrics.update(to_bytes(name, "metric name"), "+", _int(value, "value"))


def metric_dec(name, value=1) -> bool:
    _channels.ensure()
    return _metrics.update(to_bytes(name, "metric name"), "-", _int(value, "value"))


def metric_mul(name, value=1) -> bool:
    _channels.ensure()
    return _metrics.update(to_bytes(name, "metric name"), "*", _int(value, "value"))


def metric_div(name, value=1) -> bool:
    _channels.ensure()
    value = _int(value, "value")
    if value == 0:
        raise ValueError("metric_div: division by zero")
    return _metrics.update(to_bytes(name, "metric name"), "/", value)


# ---- mules ---------------------------------------------------------------------------------

def mule_msg(msg, mule=None) -> bool:
    """Queue msg for a mule (mule: its id 1..N, or None = any mule)."""
    return _mules.mule_msg(to_bytes(msg, "message"), None if mule is None else _int(mule, "mule id"))


def mule_get_msg(timeout=None) -> bytes | None:
    """In a mule: block until a message arrives (None on timeout)."""
    return _mules.mule_get_msg(None if timeout is None else float(timeout))


mule_msg_get = mule_get_msg


def mule_id() -> int:
    return _mules.mule_id()


# ---- spooler -------------------------------------------------------------------------------

def _spool_value(key: bytes, value) -> bytes:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value).encode()
    if hasattr(value, "__bytes__"):
        return bytes(value)
    raise ValueError(f"spool: the value of {key.decode('utf-8', 'replace')!r} must be bytes or str, "
                     f"not {type(value).__name__}")


def spool(*args, **kwargs) -> bytes:
    """uwsgi.spool(dict) or uwsgi.spool(key=value, ...): write a task for the spooler (keys and
    values bytes or str; `body` apart, any size; `spooler` = a spool dir, `priority` = a number,
    `at` = a Unix time). Returns the task file's path."""
    if args and kwargs:
        raise ValueError("spool: give a dictionary or keyword arguments, not both")
    if args:
        if len(args) != 1 or not isinstance(args[0], dict):
            raise ValueError("The argument of spooler callable must be a dictionary")
        given = args[0]
    else:
        given = kwargs
    items: dict[bytes, bytes] = {}
    body = None
    for key, value in given.items():
        if isinstance(key, str):
            key = key.encode("utf-8")
        elif not isinstance(key, bytes):
            raise ValueError("spooler callable dictionary must contains only bytes")
        if key == b"body" and isinstance(value, (bytes, bytearray, memoryview, str)):
            body = value.encode("utf-8") if isinstance(value, str) else bytes(value)
            continue
        items[key] = _spool_value(key, value)
    return _spooler.spool(items, body)


send_to_spooler = spool


def spooler_pid() -> int:
    """The first spooler process's pid (0: none)."""
    return _spooler.first_pid()


def spooler_pids() -> list[int]:
    """Every spooler slot's pid (0 for --spooler-external dirs and a process being respawned)."""
    return _spooler.all_pids()


def spooler_jobs() -> list[bytes]:
    """The task files waiting in the first spool dir."""
    return _spooler.jobs()


def spooler_get_task(path) -> dict | None:
    """A task file's content as the spooler function gets it (None when it is missing, broken or
    being run): its args (bytes keys), "spooler_task_name" = path, "body" when there is one."""
    path_b = to_bytes(path, "path")
    task = _spool_file.read(path_b.decode("utf-8", "surrogateescape"))
    if task is None:
        return None
    args, body = task
    out: dict = {"spooler_task_name": path_b}
    out.update(args)
    if body:
        out["body"] = body
    return out


def set_spooler_frequency(secs) -> bool:
    return _spooler.set_frequency(_int(secs, "seconds"))


def i_am_the_spooler() -> bool | None:
    """True in a spooler process, None elsewhere (as uWSGI)."""
    return True if _spooler.in_spooler() else None
