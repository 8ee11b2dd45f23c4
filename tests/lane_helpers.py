"""For the native lane's tests: the same server twice, with the lane (the default) and with
UWSGI_NO_LANE=1 (the Python path), so that their answers and log lines can be compared."""

from __future__ import annotations

import re
import time

from tests.helpers import Server, free_port

NO_LANE = {"UWSGI_NO_LANE": "1"}


def lane_env(lane: bool) -> dict:
    return {} if lane else dict(NO_LANE)


def start_pair(argv) -> list[Server]:
    """[the lane's server, the Python path's], both started; argv(port) -> the arguments."""
    servers = []
    try:
        for lane in (True, False):
            port = free_port()
            servers.append(Server(argv(port), port, env=lane_env(lane)).start())
    except BaseException:
        for s in servers:
            s.stop()
        raise
    return servers


def log_lines(srv, marker: str, count: int) -> list[str]:
    """The request log lines naming marker (waiting up to 20 s for count of them), with what
    differs by construction between two servers masked: the pid, the time, the duration."""
    deadline = time.monotonic() + 20
    while True:     # the request lines only (an error's lines name the request too)
        lines = [ln for ln in srv.log().splitlines() if ln.startswith("[pid: ") and marker in ln]
        if len(lines) >= count or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    out = []
    for ln in lines:
        ln = re.sub(r"\[pid: \d+\|", "[pid: P|", ln)
        ln = re.sub(r"\[[A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \d{4}\]", "[T]", ln)
        ln = re.sub(r"in \d+ (msecs|micros)", r"in N \1", ln)
        out.append(ln)
    return out
