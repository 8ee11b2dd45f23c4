"""bench/ws_load.c, the C websocket echo load client of the ws-echo scenario: it builds, loads
our server (and real uWSGI when installed) with every echo checked and no error, takes a wrong
echo, a refused port and a non-WebSocket answer as errors, says what is wrong with bad
arguments; bench/harness/wsload.py runs it with --client c and keeps its own client otherwise."""

import json
import os
import subprocess

import pytest
from helpers import PY, ROOT, Server, free_port

SOURCE = ROOT / "bench" / "ws_load.c"
WSLOAD = ROOT / "bench" / "harness" / "wsload.py"
ECHO = ROOT / "bench" / "apps" / "ws_echo.py"
REAL = "/usr/bin/uwsgi"

pytestmark = pytest.mark.skipif(subprocess.run(["which", "gcc"], capture_output=True).returncode != 0,
                                reason="gcc is not installed")

# echoes every message upper-cased: a server that answers, but not with the echo
UPPER_APP = '''
import uwsgi
def application(environ, start_response):
    uwsgi.websocket_handshake(environ["HTTP_SEC_WEBSOCKET_KEY"], "")
    try:
        while True:
            uwsgi.websocket_send(uwsgi.websocket_recv().upper())
    except OSError:
        return []
'''


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    out = tmp_path_factory.mktemp("ws_load") / "ws_load"
    r = subprocess.run(["gcc", "-O2", "-Wall", "-Wextra", "-Werror", "-o", str(out), str(SOURCE)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return out


def run(client, *args, timeout=60):
    r = subprocess.run([str(client), *map(str, args)], capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, r.stderr
    line = r.stdout.strip()
    assert line.startswith("BENCHJSON "), line
    return json.loads(line[len("BENCHJSON "):])


def no_errors(out):
    return sum(out["errors"].values()) == 0 and out["error_sample"] is None


def echo_server(port, *extra):
    return Server(["--http-socket", f"127.0.0.1:{port}", "--wsgi-file", ECHO, "--disable-logging",
                   "--threads", 4, *extra], port)


def test_loads_our_server_and_checks_every_echo(client):
    port = free_port()
    with echo_server(port):
        out = run(client, "-c", 3, "-d", 1, "-s", 1000, "-p", "/ws", "127.0.0.1", port)
    assert no_errors(out), out
    assert out["client"] == "c" and out["opened"] == 3 and out["size"] == 1000, out
    assert out["messages"] > 50 and out["messages_per_s"] > 0, out
    assert 0.9 < out["duration_s"] < 5 and 0 < out["rtt_ms"]["p50"] <= out["rtt_ms"]["max"], out


@pytest.mark.parametrize("size", [1, 125, 126, 65535])
def test_frame_length_forms(client, size):
    # 7-bit, the 126 boundary (16-bit length) and the largest this client sends
    port = free_port()
    with echo_server(port):
        out = run(client, "-c", 1, "-d", 0.3, "-s", size, "-p", "/ws", "127.0.0.1", port)
    assert no_errors(out) and out["messages"] > 0, out


@pytest.mark.skipif(not os.path.exists(REAL), reason="real uWSGI (/usr/bin/uwsgi) is not installed")
def test_loads_real_uwsgi(client):
    if not os.path.exists("/usr/lib/uwsgi/plugins/python3_plugin.so"):
        pytest.skip("uWSGI's python3 plugin is not installed")
    port = free_port()
    with Server(["--plugin", "python3", "--http-socket", f"127.0.0.1:{port}", "--wsgi-file", ECHO,
                 "--disable-logging", "--threads", 4], port, binary=REAL):
        out = run(client, "-c", 3, "-d", 1, "-p", "/ws", "127.0.0.1", port)
    assert no_errors(out) and out["messages"] > 50, out


def test_a_wrong_echo_is_an_error_not_a_message(client, tmp_path):
    app = tmp_path / "upper.py"
    app.write_text(UPPER_APP)
    port = free_port()
    with Server(["--http-socket", f"127.0.0.1:{port}", "--wsgi-file", app, "--disable-logging",
                 "--threads", 2], port):
        out = run(client, "-c", 2, "-d", 0.5, "127.0.0.1", port)
    assert out["messages"] == 0 and out["errors"]["mismatch"] == 2, out
    assert "wrong echo" in out["error_sample"], out


def test_a_plain_http_answer_fails_the_handshake(client):
    port = free_port()
    with echo_server(port):
        out = run(client, "-c", 2, "-d", 0.3, "-p", "/plain", "127.0.0.1", port)
    assert out["messages"] == 0 and out["opened"] == 0 and out["errors"]["handshake"] == 2, out
    assert "HTTP/1.1 200" in out["error_sample"], out


def test_refused_connections_are_errors(client):
    out = run(client, "-c", 2, "-d", 0.2, "127.0.0.1", free_port())
    assert out["messages"] == 0 and out["errors"]["connect"] == 2, out


@pytest.mark.parametrize("args", [[], ["127.0.0.1"], ["-c", "0", "127.0.0.1", "80"], ["-s", "0", "127.0.0.1", "80"],
                                  ["-s", "65536", "127.0.0.1", "80"], ["-d", "0", "127.0.0.1", "80"],
                                  ["-p", "no-slash", "127.0.0.1", "80"], ["localhost", "80"],
                                  ["127.0.0.1", "99999"], ["-x", "127.0.0.1", "80"]])
def test_bad_arguments(client, args):
    r = subprocess.run([str(client), *args], capture_output=True, text=True, timeout=10)
    assert r.returncode == 2 and r.stderr.startswith("ws_load: ") and not r.stdout, r


@pytest.mark.parametrize("choice, expect", [("c", "c"), ("python", "python")])
def test_wsload_runs_either_client(choice, expect):
    port = free_port()
    with echo_server(port):
        r = subprocess.run([PY, str(WSLOAD), "127.0.0.1", str(port), "/ws", "0.5", "--connections", "2",
                            "--client", choice], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.split("BENCHJSON ", 1)[1])
    assert out["client"] == expect and no_errors(out) and out["messages"] > 10, out
