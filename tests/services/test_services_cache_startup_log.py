"""A cache logs one start-up line whatever its back end (issue 21, item 10): a shared-memory cache
says its items, blocksize and memory; a Redis-backed one (--cache2 ...,backend=redis://...) says
the same way which server, blocksize and key prefix it uses, with a password in the URL masked.
Against a real ./uwsgi and a real redis-server on free loopback ports."""

from __future__ import annotations

import re
import shutil

import pytest
from helpers import ROOT, Server, free_port, http_get
from services_helpers import RedisServer, reset_services, uwsgi_command

pytestmark = pytest.mark.skipif(not shutil.which("redis-server"), reason="redis-server is not installed")


def _startup_lines(log: str) -> list[str]:
    return [line for line in log.splitlines() if re.match(r"cache '[^']*': ", line)]


def test_redis_cache_logs_a_startup_line_like_a_shm_cache(tmp_path):
    with RedisServer() as redis:
        port = free_port()
        args = ["--http-socket", f"127.0.0.1:{port}", "--wsgi-file", "examples/hello.py",
                "--cache2", "name=local,items=10,blocksize=1024",
                "--cache2", f"name=x,items=10,backend={redis.url}",
                "--cache2", f"name=bare,backend={redis.url},prefix=,blocksize=512"]
        with Server(args, port, command=uwsgi_command(), log_path=tmp_path / "server.log", cwd=ROOT) as srv:
            assert http_get(port, "/")[0] == 200
            log = srv.log()
    lines = _startup_lines(log)
    assert [line.split("'")[1] for line in lines if "does not apply" not in line] == ["local", "x", "bare"], log
    assert "cache 'local': 10 items, blocksize 1024, " in log, log
    assert f"cache 'x': redis backend {redis.url}, blocksize 65536, keys prefixed 'x:'" in log, log
    assert f"cache 'bare': redis backend {redis.url}, blocksize 512, bare keys (no prefix)" in log, log
    assert "not reachable" not in log, log


def test_redis_startup_line_masks_the_password(capfd):
    port = free_port()      # nothing listens: the server need not be up for the start-up line
    from services_helpers import make_opts
    try:
        reset_services(make_opts(cache2=[f"name=s,backend=redis://app:s3cret@127.0.0.1:{port}/0",
                                         f"name=u,backend=unix:///run/redis.sock?db=1&password=s3cret"]))
        err = capfd.readouterr().err
    finally:
        reset_services()
    lines = _startup_lines(err)
    start = [line for line in lines if "blocksize" in line]
    assert start == [f"cache 's': redis backend redis://app:***@127.0.0.1:{port}/0, blocksize 65536, "
                     "keys prefixed 's:'",
                     "cache 'u': redis backend unix:///run/redis.sock?db=1&password=***, blocksize 65536, "
                     "keys prefixed 'u:'"], err


def test_redis_failure_lines_and_stats_mask_the_password(capfd):
    from uwsgid.services.cache.redis import RedisCache
    cache = RedisCache(b"f", f"redis://app:s3cret@127.0.0.1:{free_port()}/0")   # nothing listens
    assert cache.get(b"k") is None
    err = capfd.readouterr().err
    assert "redis backend redis://app:***@127.0.0.1:" in err and "s3cret" not in err, err
    assert "s3cret" not in cache.stats()["backend"]
    try:
        RedisCache(b"b", "http://app:s3cret@example/0")
    except ValueError as e:
        assert "s3cret" not in str(e) and "app:***@" in str(e)
    else:
        raise AssertionError("a non-redis URL was accepted")
