"""docs/ROUTING.md is what uwsgid.routing.doc generates, and every action, condition and route
var there names at least one test."""

from __future__ import annotations

from pathlib import Path

from uwsgid.routing import chains, doc

ROOT = Path(__file__).resolve().parents[2]


def test_routing_md_is_generated():
    page = (ROOT / "docs" / "ROUTING.md").read_text()
    assert page == doc.render(), "docs/ROUTING.md is stale: .venv/bin/python -m uwsgid.routing.doc > docs/ROUTING.md"


def test_every_name_has_a_test():
    cov = doc.coverage()
    gaps = {f"{kind} {name}" for kind, names in cov.items() for name, tests in names.items() if not tests}
    if not (doc.TESTS_DIR / "test_code_hooks.py").exists():
        # the code-calling actions and their ${hook[...]} var are tested there (another change)
        code = {n for n, (factory, _) in chains.ACTIONS.items() if factory.__module__.endswith("actions_code")}
        gaps -= {f"action {n}" for n in code} | {"var hook"}
    assert not gaps, f"no test uses: {sorted(gaps)}"


def test_coverage_reads_real_routes():
    cov = doc.coverage()
    assert "test_routing_uwsgi_compat.py" in cov["action"]["redirect-301"]     # via routes_spec.py
    assert "test_routing_leaning.py" in cov["action"]["static"]                # via leaning_spec.py
    assert "test_routing_cache_redis.py" in cov["action"]["cacheinc"]
    assert "test_routing_units.py" in cov["condition"]["ipv6in"]
    assert cov["action"]["file"] and "test_routing_units.py" not in cov["action"]["sendfile"]
