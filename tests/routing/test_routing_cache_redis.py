"""The router_cache actions on a shared cache with the Redis back end (--cache2
...,backend=redis://): each family against a real redis-server on a free port, its effect checked
both through the server and in Redis itself (redis-py). Skipped when redis-server or the redis
package is missing (scripts/setup-system.sh installs redis-server)."""

from __future__ import annotations

import http.client
import shutil
import struct
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from helpers import Server, free_port  # noqa: E402

redis = pytest.importorskip("redis")
if shutil.which("redis-server") is None:
    pytest.skip("redis-server is not installed (Debian package redis-server)", allow_module_level=True)

from services_helpers import RedisServer  # noqa: E402

ROUTES = [
    "--route-if", "equal:${HTTP_X_RUNTIME};lua setmodifier1:6",
    # cache / cachestore: the first request stores the app's body, the next ones are answered by Redis
    "--route", "^/page cache:key=page-${PATH_INFO},name=rc,content_type=text/x-cached",
    "--route", "^/page cache-store:key=page-${PATH_INFO},name=rc,expires=60",   # cachestore's alias
    # cache-continue: answered from the cache, then the next routes still run
    "--route", "^/cc cache-continue:key=cc,name=rc",
    "--route", "^/cc log:CC-CONTINUED ${QUERY_STRING}",
    "--route", "^/cc break:",
    # cacheset (never overwrites, as uWSGI), cachevar, the incache condition
    "--route", "^/set/([a-z]+)/(.*)$ cacheset:key=k-$1,value=$2,name=rc",
    "--route", "^/set/ break-with-status:204",
    "--route", "^/getvar/(.*)$ cachevar:key=k-$1,var=CACHED,name=rc",
    "--route-if", "incache:key=k-one,name=rc addheader:X-In-Cache: yes",
    # 64-bit math: cacheinc, cachedec, cachemul, cachediv, read back with cachevar num=1
    "--route", "^/math/inc cacheinc:key=n,name=rc",
    "--route", "^/math/dec cachedec:key=n,value=4,name=rc",
    "--route", "^/math/mul cachemul:key=n,value=10,name=rc",
    "--route", "^/math/div cachediv:key=n,name=rc",
    "--route", "^/math/ cachevar:key=n,var=COUNT,num=1,name=rc",
]


@pytest.fixture(scope="module")
def redis_server():
    with RedisServer() as r:
        yield r


@pytest.fixture(scope="module")
def server(redis_server):
    port = free_port()
    args = ["--plugins", "lua,cffi", "--http-socket", f"127.0.0.1:{port}",
            "--wsgi-file", str(HERE / "route_app.py"), "--lua", str(HERE / "route_app.lua"),
            "--master", "--processes", "2",
            "--cache2", f"name=rc,items=100,backend={redis_server.url},prefix=rt:", *ROUTES]
    with Server(args, port) as s:
        s.redis = redis.Redis.from_url(redis_server.url)
        yield s


def get(s, path, runtime="python"):
    c = http.client.HTTPConnection("127.0.0.1", s.port, timeout=20)
    try:
        c.request("GET", path, headers={"X-Runtime": runtime})
        r = c.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        c.close()


def var(body: bytes, name: bytes) -> bytes:
    return body.split(name + b"=")[1].split(b"\n")[0]


@pytest.mark.parametrize("runtime", ["python", "lua"])
def test_cache_and_cachestore(server, runtime):
    path = f"/page-{runtime}"
    status, headers, body = get(server, path, runtime)
    assert status == 200 and headers["Content-Type"] == "text/plain" and f"runtime={runtime}".encode() in body
    assert server.redis.get(f"rt:page-{path}".encode()) == body       # stored whole in Redis
    assert 0 < server.redis.ttl(f"rt:page-{path}".encode()) <= 60
    status, headers, again = get(server, path, runtime)
    assert (status, headers["Content-Type"], again) == (200, "text/x-cached", body)
    server.redis.set(f"rt:page-{path}".encode(), b"changed in redis")   # shared: every worker sees it
    assert {get(server, path, runtime)[2] for _ in range(4)} == {b"changed in redis"}


def test_cache_continue(server):
    server.redis.set(b"rt:cc", b"from redis")
    status, headers, body = get(server, "/cc?marker=1")
    assert (status, body) == (200, b"from redis")
    server.wait_log("CC-CONTINUED marker=1")


def test_cacheset_cachevar_incache(server):
    assert get(server, "/set/one/first")[0] == 204
    assert get(server, "/set/one/second")[0] == 204        # kept: cacheset does not overwrite
    assert server.redis.get(b"rt:k-one") == b"first"
    status, headers, body = get(server, "/getvar/one", "lua")
    assert var(body, b"CACHED") == b"first" and headers.get("X-In-Cache") == "yes"
    server.redis.delete(b"rt:k-one")
    status, headers, body = get(server, "/getvar/one")
    assert var(body, b"CACHED") == b"" and "X-In-Cache" not in headers


def test_cache_math(server):
    server.redis.delete(b"rt:n")
    counts = [int(var(get(server, p)[2], b"COUNT"))
              for p in ("/math/inc", "/math/inc", "/math/mul", "/math/dec", "/math/div")]
    assert counts == [1, 2, 20, 16, 8]
    assert struct.unpack("<q", server.redis.get(b"rt:n")) == (8,)   # uWSGI's 64-bit item
