"""nginx in front of the server under test: a foreground nginx in its own prefix (a test's tmp dir)
on a free port, stopped by PID, and the configs the tests use (an example config with the test's
ports, or a generated one with one location per modifier1)."""

from __future__ import annotations

import os
import shutil
import signal
import textwrap
from pathlib import Path

from helpers import Server

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
AVAILABLE = os.path.exists(NGINX)


class Nginx(Server):
    """`with Nginx(prefix, conf_text, port):` writes prefix/nginx.conf, runs nginx -p prefix until
    `port` accepts; stopped with SIGQUIT (graceful), then its process group. Its log:
    prefix/nginx.log (`.log()`)."""

    def __init__(self, prefix, conf_text: str, port: int):
        prefix = Path(prefix)
        prefix.mkdir(parents=True, exist_ok=True)
        conf = prefix / "nginx.conf"
        if os.geteuid() == 0 and not conf_text.lstrip().startswith("user "):
            # as root nginx's workers run as nobody and could not write temp files in the prefix
            conf_text = "user root;\n" + conf_text
        conf.write_text(conf_text)
        super().__init__(["-p", str(prefix), "-c", str(conf), "-e", "stderr"], port, binary=NGINX,
                         cwd=prefix, log_path=prefix / "nginx.log", stop_signal=signal.SIGQUIT)


def example_conf(name: str, http_port: int, *uwsgi_ports: int) -> str:
    """examples/NAME with the test's ports: listen 8080 -> http_port, upstreams 3031, 3032, ... ->
    uwsgi_ports (in order)."""
    text = (Path(__file__).resolve().parent.parent / "examples" / name).read_text()
    text = text.replace("listen 127.0.0.1:8080", f"listen 127.0.0.1:{http_port}")
    for i, port in enumerate(uwsgi_ports):
        text = text.replace(f"127.0.0.1:{3031 + i}", f"127.0.0.1:{port}")
    return text


def uwsgi_pass_conf(prefix, listen: int, upstream: int, locations: dict[str, int], http_extra: str = "") -> str:
    """One server on 127.0.0.1:listen passing each location (-> its modifier1) to the uwsgi socket
    on 127.0.0.1:upstream with Debian's stock uwsgi_params (which send no SCRIPT_NAME)."""
    blocks = "".join(f"""
            location {loc} {{
                include /etc/nginx/uwsgi_params;
                uwsgi_pass 127.0.0.1:{upstream};
                uwsgi_modifier1 {m1};
            }}""" for loc, m1 in locations.items())
    return textwrap.dedent(f"""
        worker_processes 1;
        daemon off;
        pid {prefix}/nginx.pid;
        events {{ worker_connections 64; }}
        http {{
            access_log off;
            client_body_temp_path {prefix}/body;
            proxy_temp_path {prefix}/proxy;
            fastcgi_temp_path {prefix}/fastcgi;
            uwsgi_temp_path {prefix}/uwsgi;
            scgi_temp_path {prefix}/scgi;
            {http_extra}
            server {{
                listen 127.0.0.1:{listen};{blocks}
            }}
        }}
    """)
