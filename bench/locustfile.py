"""The locust user for bench/run.py's locust-shop scenario (headless, fixed users, fixed duration,
the same on both sides).

Shop  a realistic mix on bench/apps/shop.py: pages, an item page, a form POST, and a fragment the
      app keeps in the uWSGI cache, each user at a fixed rate of tasks (constant_throughput), so
      the offered load is the same whatever the server's speed.

Locust rounds its own percentiles to whole milliseconds; these listeners keep every latency exactly
and write the figures to $BENCH_LOCUST_OUT when the run ends.
"""

import json
import os
import random
import time

from locust import FastHttpUser, constant_throughput, events, task

SHOP_RATE = float(os.environ.get("BENCH_SHOP_RATE", "5"))  # task runs/s per Shop user

_latencies_ms: list[float] = []
_failures: list[str] = []
_clock = {"start": None, "stop": None}


@events.request.add_listener
def _record(request_type, name, response_time, response_length, exception=None, **kw):
    if exception is not None:
        _failures.append(f"{request_type} {name}: {exception}"[:200])
    else:
        _latencies_ms.append(response_time)


@events.test_start.add_listener
def _start(environment, **kw):
    _clock["start"] = time.monotonic()


@events.test_stop.add_listener
def _stop(environment, **kw):
    _clock["stop"] = time.monotonic()


def _percentile(sorted_values, p):
    if not sorted_values:
        return 0.0
    k = min(len(sorted_values) - 1, max(0, round(p / 100 * len(sorted_values)) - 1))
    return sorted_values[k]


@events.quitting.add_listener
def _write(environment, **kw):
    out = os.environ.get("BENCH_LOCUST_OUT")
    if not out:
        return
    lat = sorted(_latencies_ms)
    secs = (_clock["stop"] or time.monotonic()) - (_clock["start"] or time.monotonic())
    n = len(lat) + len(_failures)
    figures = {
        "requests": n, "failures": len(_failures), "failure_sample": _failures[:3],
        "duration_s": secs, "rps": n / secs if secs > 0 else 0.0,
        "latency_ms": {"mean": sum(lat) / len(lat) if lat else 0.0,
                       **{f"p{p}": _percentile(lat, p) for p in (50, 90, 95, 99)},
                       "max": lat[-1] if lat else 0.0},
    }
    with open(out, "w") as f:
        json.dump(figures, f)


class Shop(FastHttpUser):
    wait_time = constant_throughput(SHOP_RATE)

    @task(4)
    def home(self):
        self.client.get("/")

    @task(3)
    def item(self):
        self.client.get(f"/item/{random.randint(1, 50)}", name="/item/[n]")

    @task(3)
    def fragment(self):
        with self.client.get("/fragment/sidebar", catch_response=True) as r:
            if r.status_code != 200 or b"<aside" not in (r.content or b""):
                r.failure(f"status {r.status_code}")

    @task(1)
    def order(self):
        self.client.get("/order")
        qty = random.randint(1, 9)
        with self.client.post("/order", data={"item": str(random.randint(1, 50)), "qty": str(qty),
                                              "email": "bench@example.org"},
                              catch_response=True) as r:
            if r.status_code != 200 or f"qty={qty}".encode() not in (r.content or b""):
                r.failure(f"status {r.status_code}")
