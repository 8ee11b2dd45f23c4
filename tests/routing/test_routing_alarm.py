"""The routing's alarm: action (uWSGI's `alarm:NAME MESSAGE`, both translated): the alarm made
with --alarm runs with the message, the request goes on to the app; an unknown alarm name is
said once in the log."""

from __future__ import annotations

from helpers import Server, free_port, http_get, wait_file


def test_route_alarm_action(tmp_path):
    port = free_port()
    out = tmp_path / "routed.txt"
    args = ["--http-socket", f"127.0.0.1:{port}", "--wsgi-file", "examples/hello.py", "--master",
            "--alarm", f"web cmd:cat >> {out}",
            "--route", "^/admin alarm:web someone asked for ${REQUEST_URI}",
            "--route", "^/typo alarm:wbe nobody hears this"]
    with Server(args, port) as s:
        status, _h, body = http_get(port, "/admin/x")
        assert (status, body) == (200, b"Hello World")          # the request went on
        assert wait_file(out, "someone asked for /admin/x") == "someone asked for /admin/x"
        for _ in range(2):
            assert http_get(port, "/typo")[0] == 200
        log = s.wait_log("no alarm named 'wbe'")
    assert log.count("no alarm named 'wbe'") == 1
