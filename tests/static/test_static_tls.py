"""Static files over --https-socket: a body larger than what goes with the head (and one that
--offload-threads would take on a plain socket) is encrypted a slice at a time, never sent with
sendfile(2) past TLS; a Range of it too. The request line still says "via sendfile()", as uWSGI's
(its SSL sendfile reads and encrypts as well)."""

from __future__ import annotations

import http.client
import os
import shutil
import ssl
import subprocess

import pytest
from helpers import Server, free_port


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    d = tmp_path_factory.mktemp("static-tls")
    cert, key = d / "c.pem", d / "k.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                    "-out", str(cert), "-days", "2", "-subj", "/CN=localhost"], check=True, capture_output=True)
    root = d / "root"
    root.mkdir()
    (root / "big.bin").write_bytes(os.urandom(3 << 20))
    return d, cert, key, root


def _get(port: int, path: str, headers=None):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=30)
    try:
        conn.request("GET", path, headers=headers or {})
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


@pytest.mark.parametrize("offload", [False, True])
def test_large_static_file_over_tls(tls, offload):
    d, cert, key, root = tls
    port = free_port()
    args = ["--https-socket", f"127.0.0.1:{port},{cert},{key}", "--static-map", f"/s={root}",
            "--wsgi-file", "examples/hello.py", *(["--offload-threads", "1"] if offload else [])]
    data = (root / "big.bin").read_bytes()
    with Server(args, port) as s:
        assert _get(port, "/s/big.bin") == (200, data)
        assert _get(port, "/s/big.bin", {"Range": "bytes=100000-2000000"}) == (206, data[100000:2000001])
        assert _get(port, "/s/big.bin") == (200, data)       # keep-alive state intact after it
        log = s.wait_log(f"GET /s/big.bin => generated {len(data)} bytes")
    assert "via sendfile()" in log and "TLS error" not in log
