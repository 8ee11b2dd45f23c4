"""bench/uwsgi_load.c, the uwsgi-protocol load client (--socket without nginx): it builds, loads
a real ./uwsgi --socket for a second with every response a 200, counts refused connections as
errors, and says what is wrong with bad arguments."""

import json
import subprocess

import pytest
from helpers import ROOT, Server, free_port

SOURCE = ROOT / "bench" / "uwsgi_load.c"


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    out = tmp_path_factory.mktemp("uwsgi_load") / "uwsgi_load"
    r = subprocess.run(["gcc", "-O2", "-Wall", "-Werror", "-o", str(out), str(SOURCE)], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return out


def run(client, *args, timeout=30):
    return subprocess.run([str(client), *map(str, args)], capture_output=True, text=True, timeout=timeout)


def test_loads_a_uwsgi_socket(client):
    port = free_port()
    with Server(["--socket", f"127.0.0.1:{port}", "--wsgi-file", ROOT / "examples" / "hello.py",
                 "--disable-logging"], port):
        r = run(client, "-c", 4, "-d", 1, "127.0.0.1", port)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["requests"] > 10, out
    assert out["errors"] == {"connect": 0, "read": 0, "status": 0}, out
    assert 0 < out["rps"] and 900_000 < out["duration_us"] < 5_000_000, out


def test_non_2xx_counts_as_a_status_error(client):
    port = free_port()
    with Server(["--socket", f"127.0.0.1:{port}", "--wsgi-file", ROOT / "examples" / "hello.py",
                 "--disable-logging"], port):
        r = run(client, "-c", 2, "-d", 0.5, "-m", 9, "127.0.0.1", port)   # no plugin on modifier1 9: 503
    out = json.loads(r.stdout)
    assert out["requests"] == 0 and out["errors"]["status"] > 0, out


def test_refused_connections_are_errors(client):
    r = run(client, "-c", 2, "-d", 0.3, "127.0.0.1", free_port())
    out = json.loads(r.stdout)
    assert out["requests"] == 0 and out["errors"]["connect"] + out["errors"]["read"] > 0, out


@pytest.mark.parametrize("args", [[], ["127.0.0.1"], ["-c", "0", "127.0.0.1", "80"], ["-m", "300", "127.0.0.1", "80"],
                                  ["localhost", "80"], ["127.0.0.1", "99999"], ["-x", "127.0.0.1", "80"]])
def test_bad_arguments(client, args):
    r = run(client, *args)
    assert r.returncode == 2 and r.stderr.strip() and not r.stdout, r
