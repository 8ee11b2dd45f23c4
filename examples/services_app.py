"""The Python half of the shared-services demo (the Lua half is examples/services_app.lua):
both runtimes share the cache, call each other's RPC functions, get timer signals and take the
same locks. One instance serves both (see examples/services.ini); several instances behind
nginx share a Redis-backed cache (examples/services_cluster.ini, examples/services_nginx.conf).

Endpoints (the last path segment picks the operation, query-string arguments):
    /get?k=K                 value (404 when missing)          /keys           one key per line
    /set?k=K&v=V[&e=SECS]    cache_set (never overwrites)      /update?...     cache_update
    /del?k=K                 /inc?k=K[&n=TIMES]                /num?k=K        cache_num
    /setbig?k=K&size=N       cache_update of N bytes           /setbin?k=K     bytes 0..255
    /call?f=NAME&a=X&a=Y     local RPC (RpcError -> 500)       /rpc?node=H:P&f=NAME&a=X  remote RPC
    /signal?n=N              raise signal N                    /lock?n=N&hold=SECS  hold lock N
    /metric?name=M[&op=inc|dec|set&v=N]                        /wid            worker id, pid
    /mule_msg?v=MSG[&mule=N] send a message to a mule
"""

import os
import time
from urllib.parse import parse_qs

import uwsgi

CACHE = os.environ.get("SERVICES_CACHE") or None   # None = the default (first) cache


def py_upper(*args):
    return b" ".join(a.upper() for a in args)


def py_fail(*args):
    raise ValueError("python says no: " + b",".join(args).decode())


uwsgi.register_rpc("py_upper", py_upper)
uwsgi.register_rpc("py_fail", py_fail)


def on_timer(signum):
    # signal 21, every second, for worker 1: proves where and in which runtime it ran
    uwsgi.cache_update("py_timer", "%d:%d" % (uwsgi.worker_id(), signum), 0, CACHE)
    uwsgi.cache_inc("py_timer_count", 1, 0, CACHE)


def on_broadcast(signum):
    uwsgi.cache_inc("py_bcast_w%d" % uwsgi.worker_id(), 1, 0, CACHE)


uwsgi.register_signal(21, "worker1", on_timer)
uwsgi.add_timer(21, 1)
uwsgi.register_signal(23, "workers", on_broadcast)

try:
    # registered by the app in the master: every mule inherits the handler
    uwsgi.register_signal(27, "mules", lambda sig: uwsgi.cache_inc("mule_bcast_%d" % uwsgi.mule_id(), 1, 0, CACHE))
except ValueError:
    pass    # no mules in this configuration


def _reply(start_response, status, body):
    if isinstance(body, str):
        body = body.encode()
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def application(environ, start_response):
    op = environ.get("PATH_INFO", "/").rstrip("/").rsplit("/", 1)[-1]
    qs = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
    q = {k: v[0] for k, v in qs.items()}
    k = q.get("k", "")
    ok = "200 OK"
    if op == "get":
        v = uwsgi.cache_get(k, CACHE)
        return _reply(start_response, ok, v) if v is not None else _reply(start_response, "404 Not Found", "")
    if op in ("set", "update"):
        fn = uwsgi.cache_set if op == "set" else uwsgi.cache_update
        return _reply(start_response, ok, str(fn(k, q.get("v", ""), int(q.get("e", 0)), CACHE)))
    if op == "del":
        return _reply(start_response, ok, str(uwsgi.cache_del(k, CACHE)))
    if op == "inc":
        for _ in range(int(q.get("n", 1))):
            if not uwsgi.cache_inc(k, 1, 0, CACHE):
                return _reply(start_response, "500 Internal Server Error", "cache_inc failed")
        return _reply(start_response, ok, "ok")
    if op == "num":
        return _reply(start_response, ok, str(uwsgi.cache_num(k, CACHE)))
    if op == "setbig":
        return _reply(start_response, ok, str(uwsgi.cache_update(k, b"x" * int(q["size"]), 0, CACHE)))
    if op == "setbin":
        return _reply(start_response, ok, str(uwsgi.cache_update(k, bytes(range(256)), 0, CACHE)))
    if op == "keys":
        return _reply(start_response, ok, b"\n".join(sorted(uwsgi.cache_keys(CACHE))))
    if op in ("call", "rpc"):
        args = qs.get("a", [])
        try:
            if op == "call":
                res = uwsgi.call(q["f"], *args)
            else:
                res = uwsgi.rpc(q["node"], q["f"], *args)
        except uwsgi.RpcError as e:
            return _reply(start_response, "500 Internal Server Error", "RpcError: %s" % e)
        if res is None:
            return _reply(start_response, "404 Not Found", "no such rpc function")
        return _reply(start_response, ok, res)
    if op == "signal":
        uwsgi.signal(int(q["n"]))
        return _reply(start_response, ok, "raised")
    if op == "lock":
        n = int(q.get("n", 0))
        uwsgi.lock(n)
        try:
            got = time.time()          # wall clock: comparable with the Lua app's uwsgi.micros()
            time.sleep(float(q.get("hold", 0)))
            released = time.time()
        finally:
            uwsgi.unlock(n)
        return _reply(start_response, ok, "%.6f %.6f" % (got, released))
    if op == "metric":
        name = q["name"]
        action = q.get("op", "get")
        if action == "inc":
            uwsgi.metric_inc(name, int(q.get("v", 1)))
        elif action == "dec":
            uwsgi.metric_dec(name, int(q.get("v", 1)))
        elif action == "set":
            uwsgi.metric_set(name, int(q["v"]))
        return _reply(start_response, ok, str(uwsgi.metric_get(name)))
    if op == "mule_msg":
        mule = int(q["mule"]) if q.get("mule") else None
        return _reply(start_response, ok, str(uwsgi.mule_msg(q.get("v", ""), mule)))
    if op == "wid":
        return _reply(start_response, ok, "%d %d %d" % (uwsgi.worker_id(), os.getpid(), os.getppid()))
    return _reply(start_response, "404 Not Found", "unknown operation %r\n" % op)
