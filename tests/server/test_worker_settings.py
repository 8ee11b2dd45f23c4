"""uwsgid.server.worker_settings: what every worker derives from the options alone, made once by
the master before it forks (issue 20) and reused by each Worker instead of rebuilt after fork."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from uwsgid.net.protocols import Limits
from uwsgid.observe.reqlog import RequestLogger
from uwsgid.server import prefork
from uwsgid.server.worker import Worker
from uwsgid.server.worker_settings import WorkerSettings


def _server(**opts):
    return SimpleNamespace(opts=SimpleNamespace(**opts), listeners=[], plugins={}, scoreboard=None)


def test_settings_read_the_options():
    s = WorkerSettings(SimpleNamespace(threads=4, max_requests="100", reload_on_rss=64, lazy_apps=True,
                                       http_header_timeout=None, http_keepalive="0", disable_logging=True))
    assert (s.threads, s.async_cores, s.max_requests, s.reload_on_rss) == (4, 1, 100, 64 << 20)
    assert s.lazy and not s.gevent and not s.http_keepalive
    assert s.head_timeout == 5.0            # unset (None): the default
    assert s.reqlog.disabled and s.reqlog.worker is None
    assert s.max_pending >= 16


def test_a_worker_reuses_the_masters_settings(monkeypatch):
    server = _server(disable_logging=True, max_requests=7)
    prefork.prepare(server)      # what the master does before it forks
    try:
        settings = server.worker_settings

        def rebuilt(*_):
            raise AssertionError("a worker read the options again")
        monkeypatch.setattr(Limits, "from_opts", classmethod(rebuilt))
        monkeypatch.setattr(RequestLogger, "__init__", rebuilt)
        w1, w2 = Worker(1, server), Worker(2, server)
    finally:
        import gc
        gc.unfreeze()
    assert w1.limits is settings.limits and w1.max_requests == 7
    # each worker its own logger (it refers to its worker), with the master's settings
    assert w1.reqlog is not w2.reqlog and w1.reqlog is not settings.reqlog
    assert (w1.reqlog.worker, w2.reqlog.worker) == (w1, w2)
    assert w1.reqlog.disabled and w1.reqlog.silent
    assert settings.reqlog.worker is None


def test_a_worker_without_a_master_makes_its_own():
    w = Worker(1, _server(threads=2, max_pending_heads=40))
    assert w.settings.threads == 2 and w.max_pending_per_loop == 20
    assert isinstance(w.limits, Limits) and w.reqlog.worker is w


@pytest.mark.parametrize("opts", [{}, {"log_format": "%(method) %(uri)", "log_x_forwarded_for": True}])
def test_the_worker_copy_logs_as_the_original(opts):
    original = RequestLogger(SimpleNamespace(**opts), "w")
    copy = original.for_worker("w2")
    assert {k: v for k, v in vars(copy).items() if k != "worker"} == \
        {k: v for k, v in vars(original).items() if k != "worker"}
    assert copy.worker == "w2" and original.worker == "w"
