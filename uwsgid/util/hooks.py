"""Extension points for services that live beside the data plane (cache, rpc, signals, timers,
metrics). A service registers callables here; the master, the worker and the stats server call
them at the named moments. Keeps the dependency direction: services -> core, never back.

    master_start(server)          master, after sockets are bound, before the first fork
    master_tick(server)           master loop, about once a second and after signals
    worker_start(worker)          each worker after fork, before plugins' post_fork
    worker_loop_start(loop)       each worker loop (thread) before it serves: may add readers
    stats(stats_dict)             may add top-level keys to the stats JSON (e.g. "metrics")
    shutdown(server)              master, on final stop
    child_exited(pid, status)     master, when it reaps a child that is not a worker or the router
                                  (a service's process: mule, spooler, daemon); status as waitpid's
"""

from __future__ import annotations

from collections import defaultdict

_hooks: dict[str, list] = defaultdict(list)

NAMES = ("master_start", "master_tick", "worker_start", "worker_loop_start", "stats", "shutdown",
         "child_exited")


def register(name: str, fn) -> None:
    if name not in NAMES:
        raise ValueError(f"unknown hook {name!r}")
    _hooks[name].append(fn)


def run(name: str, *args) -> None:
    for fn in _hooks.get(name, ()):
        fn(*args)
