"""The _uwsgi_native extension (core/cpython/): built by uwsgiconfig.py beside _uwsgi, the asan
profile that fuzzes it, and a tree without it still serving through the Python path."""

import subprocess
import sys
import sysconfig

from build_helpers import ROOT, built

import uwsgiconfig as uc

EXT = sysconfig.get_config_var("EXT_SUFFIX")


def test_core_build_makes_the_native_module():
    lib = built("core") / "build" / "lib"
    so = lib / f"_uwsgi_native{EXT}"
    assert so.is_file()
    code = ("import _uwsgi_native as n; assert n.__file__ == %r; "
            "print(n.parse_vars(b'\\x01\\x00A\\x01\\x00b', 4), n.RESP_HTTP, n.BODY_MAX)" % str(so))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/",
                       env={"PYTHONPATH": str(lib), "PATH": "/usr/bin:/bin"}, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["{b'A':", "b'b'}", "1", "65536"]


def test_native_sources_stay_out_of_the_cffi_module():
    # the CPython-API file includes Python.h objects cffi's module and the executable must not get
    assert all(p.parent == uc.CORE for p in uc.core_sources())
    assert (uc.NATIVE_DIR / "module.c").is_file() and (uc.NATIVE_DIR / "native.h").is_file()


def test_asan_profile():
    cfg = uc.Config("asan", env={})
    assert "-fsanitize=address" in cfg.cflags and "-fsanitize=address" in cfg.ldflags
    assert cfg.embedded == [] and cfg.plugins == []


PURE = r"""
import sys
sys.modules["_uwsgi_native"] = None          # as if the tree had no build of it
sys.path[:0] = [%(root)r, %(root)r + "/plugins/cffi"]
from uwsgid.net import request as R
from uwsgid.net.protocols import uwsgi as U
from cffi_plugin import environ as E
assert R._native_response is None and U._native_vars is None and E._native_environ is None

class Conn:
    fd = -1; is_http = False; closed = False; out = None; peer = "test"
    def __init__(self): self.queue = []; self.sent = []
    def send(self, d): self.sent.append(d)
    send_last = send
from uwsgid.net.protocols import Limits
from uwsgid.net.packet import build_packet
c = Conn()
p = U.UwsgiParser(c, Limits())
p.feed(build_packet(0, {b"REQUEST_METHOD": b"GET", b"PATH_INFO": b"/x", b"HTTPS": b"on"}))
req = c.queue[0]
req.core = None
env = E.build_environ(req, E.base_defaults())
assert env["PATH_INFO"] == "/x" and env["wsgi.url_scheme"] == "https", env
assert req.respond(b"200 OK", [], [b"x"]) is False
print("pure ok")
"""


def test_a_tree_without_the_module_takes_the_python_path():
    r = subprocess.run([sys.executable, "-c", PURE % {"root": str(ROOT)}], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "pure ok"
