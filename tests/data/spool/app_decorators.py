"""The spooler tests' Python app: PyPI's uwsgidecorators, unmodified, over our `uwsgi` module.
Every task run appends `KIND:ID:PID` to $SPOOL_RECORDS; GET /spool?fn=NAME&k=v... spools through
the decorated function NAME, /pid answers the spooler's pid, /signal?n=N raises a signal."""

import os
import time
from urllib.parse import parse_qsl

import uwsgi
from uwsgidecorators import signal, spool, spoolforever, spoolraw

RECORDS = os.environ["SPOOL_RECORDS"]


def record(*fields):
    with open(RECORDS, "a") as f:
        f.write(":".join(str(x) for x in fields) + "\n")


def attempts(kind, tid):
    try:
        with open(RECORDS) as f:
            return sum(1 for line in f if line.startswith(f"{kind}:{tid}:"))
    except FileNotFoundError:
        return 0


@spool
def ok(args):
    record("ok", args["id"], os.getpid())


@spool(pass_arguments=True)
def with_args(tid, numbers, flag=None):
    record("args", tid, os.getpid(), sum(numbers), flag)


@spoolforever
def forever(args):
    record("forever", args["id"], os.getpid())


@spoolraw
def raw(args):
    kind, tid = args["kind"], args["id"]
    record(kind, tid, os.getpid())
    if kind == "retry":                 # SPOOL_RETRY twice, then done
        return uwsgi.SPOOL_OK if attempts(kind, tid) >= 3 else uwsgi.SPOOL_RETRY
    if kind == "raise":                 # an exception the first time, then done
        if attempts(kind, tid) < 2:
            raise RuntimeError(f"boom {tid}")
        return uwsgi.SPOOL_OK
    if kind == "sleep":
        time.sleep(float(args["secs"]))
        record("slept", tid, os.getpid())
    return uwsgi.SPOOL_OK


@signal(17, target="spooler")
def in_the_spooler(num):
    record("signal", num, os.getpid(), uwsgi.i_am_the_spooler())


FUNCS = {"ok": ok, "forever": forever, "raw": raw}


def application(environ, start_response):
    path = environ["PATH_INFO"]
    qs = dict(parse_qsl(environ["QUERY_STRING"]))
    if path == "/spool":
        fn = FUNCS[qs.pop("fn")]
        out = fn(qs)
    elif path == "/spool_args":
        out = with_args.spool(qs["id"], [1, 2, 3], flag="on")
    elif path == "/pid":
        out = str(uwsgi.spooler_pid()).encode()
    elif path == "/pids":
        out = ",".join(map(str, uwsgi.spooler_pids())).encode()
    elif path == "/signal":
        uwsgi.signal(int(qs["n"]))
        out = b"ok"
    else:
        out = b"?"
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [out if isinstance(out, bytes) else str(out).encode()]
