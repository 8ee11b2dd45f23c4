"""Loaded by generate.sh in REAL uWSGI (--spooler-external: no spooler runs them): spools the
fixture tasks at import time, prints SPOOLED, then serves nothing useful."""
import uwsgi

uwsgi.spool({b"task": b"plain", b"n": b"1"})
uwsgi.spool({b"task": b"with_body", b"body": b"\x00binary body\xff" * 3})
uwsgi.spool({b"task": b"prio", b"priority": b"3"})
uwsgi.spool({b"task": b"at", b"at": b"1700000000"})
uwsgi.spool({b"task": b"unicode", "k\u00e9y".encode(): "v\u00e4lue".encode()})
uwsgi.spool({b"task": b"big", b"blob": b"x" * 60000})
print("SPOOLED", flush=True)


def application(environ, start_response):
    start_response("200 OK", [])
    return [b"ok"]
