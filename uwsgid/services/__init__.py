"""Shared services for both runtimes: cache, RPC, signals/timers, locks, metrics.
The functions apps call are in uwsgid.services.api."""
