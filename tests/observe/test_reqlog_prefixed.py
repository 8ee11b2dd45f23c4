"""%(PREFIX.name) request-log variables come from the services through reqlog.provide(): the
request log never imports a service (docs/ARCHITECTURE.md)."""

import uwsgid.services  # noqa: F401  (provides "metric")
from uwsgid.observe import reqlog
from uwsgid.services import metrics


def test_metric_value_in_the_log_format():
    metrics._reset_for_tests()
    try:
        metrics.setup(["name=hits,initial_value=7"])
        parts = reqlog.compile_format("hits=%(metric.hits) none=%(metric.nope)")
        values = [p if isinstance(p, bytes) else p[1](None, None) for p in parts]
        assert b"".join(values) == b"hits=7 none="
    finally:
        metrics._reset_for_tests()


def test_a_failing_provider_gives_an_empty_value(monkeypatch):
    def broken(name):
        raise RuntimeError("gone")
    monkeypatch.setitem(reqlog.PREFIXED, "broken", broken)
    assert reqlog.chunk("broken.x")(None, None) == b""
    # an unknown prefix is an app's log variable (uwsgi.set_logvar), as before

    class Req:
        logvars = {"nosuch.x": b"set by the app"}
    assert reqlog.chunk("nosuch.x")(Req, None) == b"set by the app"
