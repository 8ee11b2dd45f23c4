"""A plain (not generator) Python hook that waits: under --greenlet, uwsgi.async_sleep() switches
the core inside the call (tests/routing/test_code_hooks.py)."""

import uwsgi


def nap(r):
    uwsgi.async_sleep(1)
    r.ctx["napped"] = "yes"
