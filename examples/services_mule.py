"""A Python mule for the shared-services demo: ./uwsgi ... --mule examples/services_mule.py
It stores every message it gets (uwsgi.mule_msg from either app) in the cache, and answers
signal 25 (registered here, target "mule<N>" of this mule) with a counter."""

import os

import uwsgi

me = uwsgi.mule_id()
uwsgi.register_signal(25, "mule%d" % me, lambda sig: uwsgi.cache_inc("py_mule_signals"))
uwsgi.cache_update("py_mule_ready", "%d:%d" % (me, os.getpid()))
while True:
    msg = uwsgi.mule_get_msg()
    uwsgi.cache_update("py_mule_last", msg)
