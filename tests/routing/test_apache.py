"""Behind Debian's apache2 with mod_proxy_uwsgi, which always sends modifier1 0: a route
(`--route ^/lua/ setmodifier1:6`) is the only way to reach the Lua app, the rest goes to Python.
apache2 runs in the foreground (-X: one process) with its own ServerRoot in the test's tmp dir on
a free loopback port, stopped by PID. Skipped when apache2 or the module is missing
(scripts/setup-system.sh installs apache2 and libapache2-mod-proxy-uwsgi)."""

from __future__ import annotations

import http.client
import os
import signal
import sys
import textwrap
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from helpers import Server, free_port  # noqa: E402

APACHE = "/usr/sbin/apache2"
MODULES = Path("/usr/lib/apache2/modules")
NEEDED = ("mod_mpm_event.so", "mod_authz_core.so", "mod_unixd.so", "mod_proxy.so", "mod_proxy_uwsgi.so")

if not os.path.exists(APACHE) or not all((MODULES / m).exists() for m in NEEDED if m != "mod_unixd.so"):
    pytest.skip("apache2 with mod_proxy_uwsgi is not installed (Debian packages apache2, "
                "libapache2-mod-proxy-uwsgi)", allow_module_level=True)


def apache_conf(root: Path, listen: int, upstream: int) -> str:
    # mod_unixd is built into Debian's apache2 (no .so): User/Group are needed when run as root
    loads = "\n".join(f"LoadModule {m[4:-3]}_module {MODULES / m}" for m in NEEDED if (MODULES / m).exists())
    user = "User www-data\nGroup www-data" if os.geteuid() == 0 else ""
    return textwrap.dedent(f"""\
        ServerRoot {root}
        ServerName localhost
        Listen 127.0.0.1:{listen}
        PidFile {root}/apache2.pid
        DefaultRuntimeDir {root}
        Mutex file:{root} default
        ErrorLog {root}/error.log
        LogLevel warn
        """) + loads + "\n" + user + textwrap.dedent(f"""
        ProxyPass / uwsgi://127.0.0.1:{upstream}/
        """)


class Apache(Server):
    """`with Apache(root, listen, upstream):` apache2 -X -f root/apache2.conf until `listen`
    accepts; stopped by PID with SIGTERM (then its process group)."""

    def __init__(self, root: Path, listen: int, upstream: int):
        root.mkdir(parents=True, exist_ok=True)
        conf = root / "apache2.conf"
        conf.write_text(apache_conf(root, listen, upstream))
        super().__init__(["-X", "-d", str(root), "-f", str(conf)], listen, binary=APACHE, cwd=root,
                         log_path=root / "apache2.out", stop_signal=signal.SIGTERM)


@pytest.fixture(scope="module")
def front(tmp_path_factory):
    root = tmp_path_factory.mktemp("apache")
    uport, aport = free_port(), free_port()
    args = ["--plugins", "lua,cffi", "--socket", f"127.0.0.1:{uport}",
            "--wsgi-file", str(HERE / "route_app.py"), "--lua", str(HERE / "route_app.lua"),
            "--master", "--processes", "1",
            "--route", "^/lua/ setmodifier1:6",
            "--log-format", "APACHE %(uri) modifier1=%(modifier1)",
            "--response-route-run", "addheader:X-Status-Seen: ${uwsgi[status]}"]
    with Server(args, uport) as backend, Apache(root / "httpd", aport, uport) as apache:
        yield backend, apache


def get(port: int, path: str):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        c.close()


def test_setmodifier1_reaches_the_lua_app_behind_apache(front):
    backend, apache = front
    status, headers, body = get(apache.port, "/lua/hello?x=1")
    assert status == 200, (body, apache.log(), (apache.log_path.parent / "error.log").read_text())
    assert b"runtime=lua" in body and b"PATH_INFO=/lua/hello" in body and b"QUERY_STRING=x=1" in body
    assert headers.get("X-Status-Seen") == "200"
    backend.wait_log("APACHE /lua/hello?x=1 modifier1=6")
    status, headers, body = get(apache.port, "/python/hello")
    assert status == 200 and b"runtime=python" in body and b"PATH_INFO=/python/hello" in body


def test_apache_sends_modifier1_zero(front):
    # a path no route changes keeps what Apache sent: modifier1 0, the Python app
    backend, apache = front
    status, headers, body = get(apache.port, "/lu/x")
    assert status == 200 and b"runtime=python" in body
    backend.wait_log("APACHE /lu/x modifier1=0")
