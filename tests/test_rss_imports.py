"""Worker memory: which modules a worker carries once started.

Everything the master imports before fork is resident in every worker (bench scenario `rss`),
so modules that only error paths, --help, config files, reloads or rare options need are
imported where they are used. These tests fail when a heavy one comes back into a worker at
start-up: a test of imports, not of timing or of a memory figure.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from helpers import EXAMPLES, ROOT, UWSGI, Server, free_port, http_get, http_request, uwsgi_http_get
from hypothesis import given, settings
from hypothesis import strategies as st

# module -> what it costs or what it drags in (figures: RSS of a worker, measured here)
HEAVY = {
    "dataclasses": "inspect, ast, dis, tokenize, copy: ~1.5 MB",
    "inspect": "ast, dis, tokenize",
    "ast": "",
    "dis": "",
    "tempfile": "shutil, random, bz2, lzma: ~1.4 MB",
    "shutil": "",
    "random": "",
    "bz2": "",
    "lzma": "",
    "traceback": "linecache, tokenize, textwrap: ~0.3 MB (error paths import it)",
    "linecache": "",
    "tokenize": "",
    "textwrap": "",
    "difflib": "only for 'did you mean' in option errors",
    "json": "only --json, --stats, --log-format-json and reloads",
    "ctypes": "only --no-orphans and mules",
    "platform": "the banner reads os.uname() instead",
    "sysconfig": "the Lua plugin reads sys.implementation._multiarch instead",
    "pkgutil": "the Lua plugin reads runtime.lua through its package's loader",
    "glob": "only --pythonpath globs and for-glob",
    "shlex": "only --pyargv",
    "runpy": "only mules",
}

MODULES_APP = '''
import sys

def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return ["\\n".join(sorted(sys.modules)).encode()]
'''

needs_binary = pytest.mark.skipif(not UWSGI.exists(), reason="./uwsgi is not built (make build)")


@needs_binary
def test_worker_with_lua_and_python_loaded_carries_no_heavy_module(tmp_path):
    """Both plugins with an app each (as the bench's rss scenario), one request served by each:
    the Python app then lists the worker's modules."""
    app = tmp_path / "modules_app.py"
    app.write_text(MODULES_APP)
    http_port, uwsgi_port = free_port(), free_port()
    args = ["--master", "--processes", "1", "--disable-logging",
            "--http-socket", f"127.0.0.1:{http_port}", "--socket", f"127.0.0.1:{uwsgi_port}",
            "--lua", EXAMPLES / "pippo.lua", "--wsgi-file", app]
    with Server(args, http_port, log_path=tmp_path / "uwsgi.log") as srv:
        status, body = uwsgi_http_get(uwsgi_port, "/", modifier1=6)      # the Lua app
        assert status == 200 and b"Hello Wsapi" in body, srv.log()
        status, _, body = http_get(http_port, "/")                         # the Python app
        assert status == 200, srv.log()
    modules = set(body.decode().split())
    assert {"lua_plugin", "cffi_plugin", "uwsgid.server.worker"} <= modules, sorted(modules)
    found = {name: why for name, why in HEAVY.items() if name in modules}
    assert not found, f"heavy modules in a worker at start-up: {found}"
    # pathlib -> urllib.parse -> ipaddress (~0.9 MB): our code does without them, but a
    # development install's editable finder (a .pth run by site) imports pathlib itself.
    if not any(m.startswith("__editable__") for m in modules):
        assert not {"pathlib", "urllib.parse", "ipaddress"} & modules



def _maps(pid: int) -> str:
    with open(f"/proc/{pid}/maps") as f:
        return f.read()


@needs_binary
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/PID/maps")
def test_httptools_is_imported_with_the_first_head_the_lane_leaves_to_python(tmp_path):
    """A single process serving a Lua app over --http-socket: the native lane parses a plain GET
    in C, so httptools (and typing, which it imports: the largest module of the standard
    library) is not loaded at start-up nor by that request; a POST with a body is parsed by
    Python, which then imports it and answers as before."""
    port = free_port()
    args = ["--http-socket", f"127.0.0.1:{port}", "--http-socket-modifier1", "6",
            "--lua", EXAMPLES / "pippo.lua"]
    with Server(args, port, log_path=tmp_path / "uwsgi.log") as srv:
        status, _, body = http_get(port, "/")
        assert status == 200 and b"Hello Wsapi" in body, srv.log()
        assert "httptools" not in _maps(srv.proc.pid), "httptools loaded for a request the lane parsed"
        status, _, body = http_request(port, "POST", "/posted", body=b"a=1")
        assert status == 200 and b"PATH_INFO: /posted" in body, srv.log()
        assert "httptools" in _maps(srv.proc.pid)


def test_deferred_modules_are_preimported_before_privileges_drop():
    """With --uid/--gid, the interpreter's files may be unreadable after the drop: the modules
    imported on demand are imported before it (not otherwise)."""
    code = (
        "import sys\n"
        "from uwsgid import main\n"
        "class Opts:\n"
        "    http = None\n"
        "    uid = None\n"
        "    gid = None\n"
        "main._preimport(Opts())\n"
        "print(sorted(m for m in main.DEFERRED_IMPORTS if m in sys.modules))\n"
        "Opts.uid = 'nobody'\n"
        "main._preimport(Opts())\n"
        "print(sorted(m for m in main.DEFERRED_IMPORTS if m not in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    without_drop, missing_after_drop = out.stdout.splitlines()
    assert without_drop == "[]", "modules imported on demand were imported without --uid"
    assert missing_after_drop == "[]"


def test_every_standard_module_imported_late_is_preimported():
    """A standard module imported inside a function is read when the function first runs: after
    --uid/--gid dropped privileges, maybe unreadable (an interpreter under a private home). Each
    must be imported at some module's top (main imports every module before the drop) or be in
    main.DEFERRED_IMPORTS. The entry and config layers run before the drop only."""
    import ast
    from uwsgid import main
    top, late = set(), {}
    for path in sorted((ROOT / "uwsgid").rglob("*.py")):
        tree = ast.parse(path.read_text())
        early = path.parent.name == "config" or path.parent == ROOT / "uwsgid"
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)) or getattr(node, "level", 0):
                continue
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
            for name in names:
                if name.split(".")[0] not in sys.stdlib_module_names:
                    continue
                if node.col_offset == 0 or early:
                    top.add(name)
                else:
                    late.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    deferred = set(main.DEFERRED_IMPORTS)
    missing = {m: sorted(p) for m, p in late.items()
               if m not in top and m not in deferred and m.split(".")[0] not in deferred}
    assert not missing, f"imported late, never before a privileges drop (add to main.DEFERRED_IMPORTS): {missing}"


def test_options_keep_their_value_semantics():
    """Option and Entry are plain classes with __slots__ (no dataclasses): equal by value,
    unhashable, readable repr, the same defaults."""
    from uwsgid.config.entries import Entry
    from uwsgid.config.options import Option

    a = Option("rss-test-opt", "z", kind="int", default=3, help="h")
    assert a == Option("rss-test-opt", "z", kind="int", default=3, help="h")
    assert a != Option("rss-test-opt", "z", kind="int", default=4, help="h")
    assert Option("rss-multi", multi=True).default == []
    assert Option("rss-flag", kind="flag").default is False
    assert a.attr == "rss_test_opt"
    assert "Option(name='rss-test-opt', short='z', kind='int', default=3" in repr(a)
    with pytest.raises(TypeError):
        hash(a)
    with pytest.raises(ValueError):
        Option("rss-bad", kind="nope")
    with pytest.raises(AttributeError):
        a.not_a_field = 1

    e = Entry("max_requests", "5", "command line")
    assert (e.key, e.display, e.strict, e.placeholder_only) == ("max-requests", "--max-requests", False, False)
    assert e == Entry("max-requests", "5", "command line")
    assert "Entry(key='max-requests'" in repr(e)


@settings(max_examples=3000, deadline=None)
@given(st.lists(st.sampled_from(list(b"%0123456789abcdefABCDEFgz/ \xff")), max_size=24).map(bytes))
def test_percent_decoding_matches_urllib(raw):
    """uwsgid.net.protocols.unquote_to_bytes replaces urllib.parse's (which imports ipaddress)."""
    from urllib.parse import unquote_to_bytes as reference

    from uwsgid.net.protocols import unquote_to_bytes
    assert unquote_to_bytes(raw) == reference(raw)
