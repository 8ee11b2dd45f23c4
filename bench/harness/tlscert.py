"""The https scenarios' material: a self-signed certificate (openssl, RSA 2048, CN 127.0.0.1)
written once per machine in the temp directory, and whether the peer uWSGI was built with TLS."""

from __future__ import annotations

import functools
import shutil
import subprocess
import tempfile
from pathlib import Path

from .servers import PEER_UWSGI

DIR = Path(tempfile.gettempdir()) / "uwsgid-bench-tls"
CERT = DIR / "cert.pem"
KEY = DIR / "key.pem"


def prepare() -> Path:
    """Write the certificate and key when missing; returns the directory."""
    if CERT.exists() and KEY.exists():
        return DIR
    DIR.mkdir(parents=True, exist_ok=True)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "365",
                    "-subj", "/CN=127.0.0.1", "-keyout", str(KEY), "-out", str(CERT)],
                   check=True, capture_output=True, timeout=60)
    return DIR


def openssl_missing() -> str | None:
    return None if shutil.which("openssl") else "missing: openssl (apt-get install openssl)"


def https_socket(port: int) -> tuple[str, str]:
    """The --https-socket option both servers take: ADDR,CERT,KEY."""
    return "--https-socket", f"127.0.0.1:{port},{CERT},{KEY}"


@functools.lru_cache(maxsize=1)
def peer_tls_missing() -> str | None:
    """None when the peer uWSGI knows --https-socket (built with OpenSSL), else why not."""
    if not PEER_UWSGI.exists():
        return "missing: /usr/bin/uwsgi (apt-get install uwsgi-core; `make bench` does it)"
    try:
        out = subprocess.run([str(PEER_UWSGI), "--help"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"missing: /usr/bin/uwsgi --help failed: {exc}"
    return None if "--https-socket" in out else "missing: TLS in /usr/bin/uwsgi (built without OpenSSL)"
