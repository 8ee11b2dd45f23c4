"""Integration tests of the Python plugin against a real ./uwsgi: HTTP (--http-socket), behind
nginx (uwsgi protocol, modifier1 0), Flask and Django apps under --mount with
--manage-script-name, uwsgidecorators, --async and --threads, errors, exit 22."""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import subprocess
import threading
import time

import pytest
import requests
from cffi_apps import BAD_IMPORT_APP, DECORATORS_APP, DJANGO_APP, FLASK_APP, PROBE_APP, VALIDATED_APP
from helpers import EXAMPLES, ROOT, Server, free_port, http_get, run_uwsgi
from nginx import AVAILABLE as NGINX_AVAILABLE
from nginx import Nginx, example_conf


def http_server(tmp_path, *args, port=None):
    port = port or free_port()
    return Server(["--http-socket", f"127.0.0.1:{port}", *args], port,
                  log_path=tmp_path / "uwsgi.log")


@pytest.fixture
def probe(tmp_path):
    path = tmp_path / "probe.py"
    path.write_text(PROBE_APP)
    return path


def get(port, path, **kw):
    return requests.get(f"http://127.0.0.1:{port}{path}", timeout=20, **kw)


# ---- basics over HTTP --------------------------------------------------------------------------

def test_hello_example(tmp_path):
    with http_server(tmp_path, "--wsgi-file", EXAMPLES / "hello.py") as s:
        status, headers, body = http_get(s.port, "/")
        assert (status, body) == (200, b"Hello World")
        assert headers["content-type"] == "text/html"
        assert headers.get("content-length") == "11"


def test_stream_example(tmp_path):
    with http_server(tmp_path, "--wsgi-file", EXAMPLES / "stream.py") as s:
        r = get(s.port, "/abc")
        assert r.status_code == 200
        assert r.content.startswith(b"<html><body><p>Hello WSGI!</p><p>PATH_INFO: /abc</p>")
        assert r.content.endswith(b"9999<br/>10000<br/></body></html>")
        assert r.content.count(b"<br/>") == 10001


def test_environ_over_http(tmp_path, probe):
    with http_server(tmp_path, "--wsgi-file", probe, "--master", "--processes", "2") as s:
        r = requests.post(f"http://127.0.0.1:{s.port}/env?x=%C3%A9", data=b"body-bytes",
                          headers={"X-Custom": "v1"}, timeout=20)
        env = r.json()
        assert env["REQUEST_METHOD"] == "POST" and env["PATH_INFO"] == "/env"
        assert env["QUERY_STRING"] == "x=%C3%A9" and env["SCRIPT_NAME"] == ""
        assert env["HTTP_X_CUSTOM"] == "v1" and env["CONTENT_LENGTH"] == "10"
        assert env["input"] == "body-bytes"
        assert env["wsgi.url_scheme"] == "http" and env["wsgi.version"] == [1, 0]
        assert env["wsgi.multiprocess"] is True and env["wsgi.multithread"] is False
        assert env["wsgi.run_once"] is False
        assert env["numproc"] == 2 and env["worker_id"] in (1, 2) and env["masterpid"] == s.pid
        assert "wsgi-file" in env["opt_keys"]


def test_chunked_request_body(tmp_path, probe):
    def gen():
        for i in range(50):
            yield b"piece-%02d;" % i
    with http_server(tmp_path, "--wsgi-file", probe) as s:
        r = requests.post(f"http://127.0.0.1:{s.port}/env", data=gen(), timeout=20)
        env = r.json()
        assert env["input"] == "".join("piece-%02d;" % i for i in range(50))
        assert env["wsgi.input_terminated"] is True


def check_validated(port):
    r = get(port, "/v/x?a=1")
    assert r.status_code == 200 and r.content == b"validated GET ", r.content
    r = requests.post(f"http://127.0.0.1:{port}/v", data=b"payload", timeout=20)
    assert r.status_code == 200 and r.content == b"validated POST payload", r.content
    r = requests.head(f"http://127.0.0.1:{port}/v/", timeout=20)
    assert r.status_code == 200 and r.content == b""


def test_wsgiref_validator_over_http(tmp_path):
    app = tmp_path / "validated.py"
    app.write_text(VALIDATED_APP)
    with http_server(tmp_path, "--wsgi-file", app) as s:
        check_validated(s.port)


def test_error_before_response_is_500_with_traceback(tmp_path, probe):
    with http_server(tmp_path, "--wsgi-file", probe) as s:
        r = get(s.port, "/fail")
        assert r.status_code == 500 and len(r.content) < 200
        assert get(s.port, "/env").status_code == 200          # the worker survived
        log = s.wait_log("RuntimeError: probe failure before the response")
        assert "Traceback" in log and "RuntimeError: probe failure before the response" in log


def test_bad_header_is_500_naming_it(tmp_path, probe):
    with http_server(tmp_path, "--wsgi-file", probe) as s:
        r = get(s.port, "/bad-header")
        assert r.status_code == 500 and b"CR, LF" in r.content


def test_error_after_headers_truncates_visibly(tmp_path, probe):
    with http_server(tmp_path, "--wsgi-file", probe) as s:
        conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=20)
        conn.request("GET", "/fail-late")
        resp = conn.getresponse()
        assert resp.status == 200
        with pytest.raises(http.client.IncompleteRead):
            resp.read()
        conn.close()
        s.wait_log("probe failure after the headers")


def test_file_wrapper_over_http(tmp_path, probe):
    with http_server(tmp_path, "--wsgi-file", probe) as s:
        r = get(s.port, "/file")
        assert r.content == probe.read_bytes()


def test_logvar(tmp_path, probe):
    with http_server(tmp_path, "--wsgi-file", probe, "--log-format", "LV %(probe) %(uri)") as s:
        assert get(s.port, "/logvar").content == b"logged-value"
        s.wait_log("LV logged-value /logvar")      # logged after the response


def test_import_error_exits_22(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text(BAD_IMPORT_APP)
    r = run_uwsgi(["--http-socket", f"127.0.0.1:{free_port()}", "--wsgi-file", bad])
    assert r.returncode == 22, r.stderr
    assert "No module named 'no_such_module_for_uwsgid_tests'" in r.stderr
    r = run_uwsgi(["--http-socket", f"127.0.0.1:{free_port()}", "--wsgi-file", tmp_path / "missing.py"])
    assert r.returncode == 22 and "missing.py: no such file" in r.stderr
    # --lazy-apps: the worker fails to load it and the whole instance stops with 22
    r = run_uwsgi(["--http-socket", f"127.0.0.1:{free_port()}", "--master", "--lazy-apps", "--wsgi-file", bad])
    assert r.returncode == 22, r.stderr
    assert "No module named 'no_such_module_for_uwsgid_tests'" in r.stderr


def test_no_app_is_503(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text(BAD_IMPORT_APP)
    with http_server(tmp_path, "--wsgi-file", bad, "--need-app=0") as s:
        assert get(s.port, "/").status_code == 503


# ---- frameworks under --mount / --manage-script-name --------------------------------------------

@pytest.fixture
def frameworks(tmp_path):
    (tmp_path / "flask_app.py").write_text(FLASK_APP)
    (tmp_path / "django_app.py").write_text(DJANGO_APP)
    (tmp_path / "validated.py").write_text(VALIDATED_APP)
    return tmp_path


def check_framework(port, prefix, name, app_dir):
    r = get(port, f"{prefix}/")
    assert r.status_code == 200 and r.text.startswith(f"{name} index")
    r = requests.post(f"http://127.0.0.1:{port}{prefix}/form", data={"name": "caf\xe9", "n": "3"}, timeout=20)
    assert r.status_code == 200 and r.text == "hello caf\xe9 n=3"
    data = os.urandom(300_000)
    r = requests.post(f"http://127.0.0.1:{port}{prefix}/upload", files={"file": ("blob.bin", data)}, timeout=20)
    assert r.status_code == 200
    assert r.text == f"blob.bin {len(data)} {hashlib.md5(data).hexdigest()}"
    r = get(port, f"{prefix}/go", allow_redirects=False)
    assert r.status_code == 302
    assert re.sub(r"^http://[^/]+", "", r.headers["Location"]) == f"{prefix}/"
    r = get(port, f"{prefix}/file")
    assert r.status_code == 200 and r.content == (app_dir / f"{'flask' if name == 'flask' else 'django'}_app.py").read_bytes()
    r = get(port, f"{prefix}/stream")
    assert r.status_code == 200 and r.content == b"".join(b"%d," % i for i in range(3000))


def test_flask_and_django_mounted(tmp_path, frameworks):
    with http_server(tmp_path, "--pythonpath", frameworks, "--master", "--processes", "2",
                     "--mount", f"/flask={frameworks / 'flask_app.py'}",
                     "--mount", "/dj=django_app", "--manage-script-name") as s:
        check_framework(s.port, "/flask", "flask", frameworks)
        check_framework(s.port, "/dj", "django", frameworks)
        r = get(s.port, "/flask/")
        assert r.text == "flask index script_name=/flask"


def test_threads(tmp_path, probe):
    with http_server(tmp_path, "--wsgi-file", probe, "--threads", "4") as s:
        results = []

        def one():
            try:
                results.append(get(s.port, "/block?2").content)
            except Exception as e:     # shown in the assertion below
                results.append(repr(e))
        t0 = time.monotonic()
        ts = [threading.Thread(target=one) for _ in range(4)]
        for t in ts:
            t.start()           # all at once: each connection must land on an idle thread
        for t in ts:
            t.join()
        elapsed = time.monotonic() - t0
        assert results == [b"multithread=True"] * 4, (results, s.log()[-3000:])
        assert 1.9 < elapsed < 6, elapsed      # serially it takes 8 s


def test_async_generator_with_async_sleep(tmp_path, probe):
    with http_server(tmp_path, "--wsgi-file", probe, "--async", "8") as s:
        results = []

        def one():
            results.append(get(s.port, "/sleep?2").content)
        t0 = time.monotonic()
        ts = [threading.Thread(target=one) for _ in range(4)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        elapsed = time.monotonic() - t0
        assert len(results) == 4 and all(re.fullmatch(rb"start core=\d done", r) for r in results), results
        assert len({r for r in results}) == 4                # four different cores
        assert 1.9 < elapsed < 6, elapsed                     # serially it takes 8 s
        # streaming still fine under async
        assert get(s.port, "/stream").content.count(b"\n") == 10001
        assert get(s.port, "/waitfd").content == b"ready=1 data=ping"


SLEEP_FIRST_APP = """
import uwsgi

def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    uwsgi.async_sleep(1)            # armed in the callable, before it returns its body
    return body()

def body():
    yield b"core=%d " % uwsgi.async_id()
    yield b"done"
"""


def test_a_wait_armed_in_the_callable_delays_the_body_on_its_core(tmp_path):
    app = tmp_path / "sleep_first.py"
    app.write_text(SLEEP_FIRST_APP)
    with http_server(tmp_path, "--wsgi-file", app, "--async", "2") as s:
        results = []
        t0 = time.monotonic()
        ts = [threading.Thread(target=lambda: results.append(get(s.port, "/").content)) for _ in range(2)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        elapsed = time.monotonic() - t0
        assert sorted(results) == [b"core=0 done", b"core=1 done"], results
        assert 0.9 < elapsed < 1.9, elapsed    # each slept 1 s, side by side on the two cores


# ---- uwsgidecorators ------------------------------------------------------------------------------

def test_uwsgidecorators(tmp_path):
    app = tmp_path / "deco.py"
    app.write_text(DECORATORS_APP)
    port = free_port()
    with Server(["--http-socket", f"127.0.0.1:{port}", "--master", "--processes", "2", "--wsgi-file", app],
                port, env={"PROBE_DIR": str(tmp_path)}, log_path=tmp_path / "uwsgi.log") as s:
        assert get(port, "/").content == b"hello world locked"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            ticks = (tmp_path / "ticks").read_text().split() if (tmp_path / "ticks").exists() else []
            if len(ticks) >= 2:
                break
            time.sleep(0.2)
        assert len(ticks) >= 2, s.log()
        assert (tmp_path / "postfork-1").exists() and (tmp_path / "postfork-2").exists()
        assert get(port, "/signal").content == b"raised"
        deadline = time.monotonic() + 10
        probe = tmp_path / "signal-17"     # opened by the handler, then written: wait for its text
        while time.monotonic() < deadline and not (probe.exists() and probe.read_text().strip()):
            time.sleep(0.1)
        assert probe.read_text().strip() in ("1", "2"), s.log()


# ---- behind nginx (uwsgi protocol, modifier1 0) -------------------------------------------------------

@pytest.mark.skipif(not NGINX_AVAILABLE, reason="nginx is not installed")
def test_behind_nginx_python_and_frameworks(tmp_path, frameworks):
    uport, hport = free_port(), free_port()
    conf = example_conf("nginx.conf", hport, uport)
    with Server(["--socket", f"127.0.0.1:{uport}", "--master", "--processes", "2", "--pythonpath", frameworks,
                 "--mount", f"/={EXAMPLES / 'hello.py'}", "--mount", f"/v={frameworks / 'validated.py'}",
                 "--mount", f"/flask={frameworks / 'flask_app.py'}",
                 "--mount", "/dj=django_app", "--manage-script-name"], uport, log_path=tmp_path / "uwsgi.log"):
        with Nginx(tmp_path / "nginx", conf, hport):
            r = get(hport, "/")
            assert r.status_code == 200 and r.content == b"Hello World"
            check_validated(hport)
            check_framework(hport, "/flask", "flask", frameworks)
            check_framework(hport, "/dj", "django", frameworks)


@pytest.mark.skipif(not NGINX_AVAILABLE, reason="nginx is not installed")
def test_dual_ini_lua_and_python_behind_nginx(tmp_path):
    uport, hport = free_port(), free_port()
    ini = tmp_path / "dual.ini"
    ini.write_text((EXAMPLES / "dual.ini").read_text().replace("127.0.0.1:3031", f"127.0.0.1:{uport}"))
    conf = example_conf("nginx.conf", hport, uport)
    with Server(["--ini", ini], uport, log_path=tmp_path / "uwsgi.log") as s:
        with Nginx(tmp_path / "nginx", conf, hport):
            r = get(hport, "/")
            assert r.status_code == 200 and r.content == b"Hello World", s.log()
            r = get(hport, "/lua/")
            assert r.status_code == 200 and b"Hello Wsapi!" in r.content, s.log()


# ---- _uwsgi, the REPL trick, the asyncio loop ------------------------------------------------------

CAPI_APP = r'''
import _uwsgi

def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    lib = _uwsgi.lib
    ffi = _uwsgi.ffi
    buf = ffi.new("char[]", b"foobar")
    return [b"%d %d %s" % (lib.uwsgi_endswith(b"foobar", b"bar"), lib.uwsgi_endswith(b"foobar", b"baz"),
                           ffi.string(buf))]
'''


def test_c_api_importable(tmp_path):
    app = tmp_path / "capi.py"
    app.write_text(CAPI_APP)
    with http_server(tmp_path, "--wsgi-file", app) as s:
        assert get(s.port, "/").content == b"1 0 foobar"


def _expect(fd, pattern: bytes, seen: bytearray, timeout: float = 30.0) -> bytes:
    """Read the pty until `pattern` (a regex) shows up; returns the match."""
    import select
    deadline = time.monotonic() + timeout
    rx = re.compile(pattern)
    while True:
        m = rx.search(seen)
        if m:
            out = m.group(0)
            del seen[:m.end()]
            return out
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"{pattern!r} not seen on the pty; got:\n{bytes(seen).decode(errors='replace')}")
        r, _, _ = select.select([fd], [], [], left)
        if r:
            try:
                data = os.read(fd, 65536)
            except OSError:
                data = b""
            if not data:
                raise AssertionError(f"pty closed before {pattern!r}; got:\n{bytes(seen).decode(errors='replace')}")
            seen += data


def test_repl_trick_through_a_pty():
    import pty
    import signal as sig

    from helpers import UWSGI
    port, hport = free_port(), free_port()
    master, slave = pty.openpty()
    proc = subprocess.Popen([str(UWSGI), "--socket", f"127.0.0.1:{port}", "--http-socket", f"127.0.0.1:{hport}",
                             "--wsgi-file", EXAMPLES / "hello.py",
                             "--cffi-eval", "import code; code.interact()", "--honour-stdin"],
                            stdin=slave, stdout=slave, stderr=slave, cwd=ROOT, start_new_session=True)
    os.close(slave)
    seen = bytearray()
    try:
        _expect(master, rb">>> ", seen)
        os.write(master, b"import uwsgi, _uwsgi\n")
        _expect(master, rb">>> ", seen)
        os.write(master, b"print('RESULT', uwsgi.version, uwsgi.numproc, _uwsgi.lib.uwsgi_endswith(b'foobar', b'bar'))\n")
        assert _expect(master, rb"RESULT b'[^']+' 1 1", seen)
        # EOF ends the REPL: the server goes on starting. Input typed before readline has set up
        # the terminal for the next prompt can be flushed (about every other run here): send the
        # ^D again until it lands; a spare one after the REPL has gone is read by nobody.
        for attempt in range(20):
            os.write(master, b"\x04")
            try:
                _expect(master, rb"spawned uWSGI worker 1", seen, timeout=3)
                break
            except AssertionError:
                if attempt == 19:
                    raise
        assert http_get(hport, "/")[2] == b"Hello World"
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, sig.SIGINT)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(proc.pid, sig.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        proc.wait(5)
        os.close(master)


def test_asyncio_loop_example(tmp_path):
    with http_server(tmp_path, "--master", "--processes", "2", "--pythonpath", EXAMPLES,
                     "--cffi-init", "asyncio_loop", "--wsgi-file", EXAMPLES / "hello.py") as s:
        with requests.Session() as sess:         # keep-alive: several requests on one connection
            for _ in range(3):
                r = sess.get(f"http://127.0.0.1:{s.port}/", timeout=20)
                assert r.content == b"Hello World"
        for _ in range(5):
            assert get(s.port, "/").content == b"Hello World"
        deadline = time.monotonic() + 15        # either worker may log after the first answers
        while time.monotonic() < deadline and not all(f"asyncio loop running in worker {n}" in s.log() for n in (1, 2)):
            time.sleep(0.1)
        log = s.log()
        assert "asyncio loop running in worker 1" in log and "asyncio loop running in worker 2" in log


# ---- loading variants -----------------------------------------------------------------------------

LAZY_APP = r'''
import os, sys
LOADED_IN = os.getpid()

def application(environ, start_response):
    print("to wsgi.errors", LOADED_IN, file=environ["wsgi.errors"])
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"%d %d" % (LOADED_IN, os.getpid())]
'''


def test_lazy_apps_load_in_each_worker(tmp_path):
    app = tmp_path / "lazy.py"
    app.write_text(LAZY_APP)
    with http_server(tmp_path, "--master", "--processes", "2", "--lazy-apps", "--wsgi-file", app) as s:
        loaded_in, pid = map(int, get(s.port, "/").content.split())
        assert loaded_in == pid and pid != s.pid
        s.wait_log(f"to wsgi.errors {loaded_in}")


def test_module_from_env_pythonpath_and_cffi_wsgi(tmp_path):
    pkg = tmp_path / "pp"
    (pkg / "webpkg").mkdir(parents=True)
    (pkg / "webpkg" / "__init__.py").write_text("")
    (pkg / "webpkg" / "wsgi.py").write_text(LAZY_APP + "\nother = application\n")
    with http_server(tmp_path, "--env", f"PYTHONPATH={pkg}", "--module", "webpkg.wsgi:other") as s:
        assert get(s.port, "/").status_code == 200
    with http_server(tmp_path, "--pythonpath", pkg, "--cffi-wsgi", "webpkg.wsgi") as s:
        assert get(s.port, "/").status_code == 200


def test_cffi_exec_and_post_fork_hook(tmp_path):
    boot = tmp_path / "boot.py"
    boot.write_text("import uwsgi, os\n"
                    "def hook():\n"
                    "    open(os.path.join(%r, 'hook-%%d' %% uwsgi.worker_id()), 'w').close()\n"
                    "uwsgi.post_fork_hook = hook\n" % str(tmp_path))
    with http_server(tmp_path, "--master", "--processes", "2", "--cffi-exec", boot,
                     "--cffi-eval-post-fork", "import uwsgi; uwsgi.log('post-fork eval in %d' % uwsgi.worker_id())",
                     "--wsgi-file", EXAMPLES / "hello.py") as s:
        assert get(s.port, "/").content == b"Hello World"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not ((tmp_path / "hook-1").exists() and (tmp_path / "hook-2").exists()):
            time.sleep(0.1)
        assert (tmp_path / "hook-1").exists() and (tmp_path / "hook-2").exists()
        log = s.log()
        assert "post-fork eval in 1" in log and "post-fork eval in 2" in log


STOP_APP = r'''
import os
import uwsgi

def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    if environ["PATH_INFO"] == "/workers":
        return [b"%d" % len(uwsgi.workers()), b" ", b",".join(b"%d" % w["id"] for w in uwsgi.workers())]
    if environ["PATH_INFO"] == "/pids":
        return [b"%d %d" % (os.getpid(), uwsgi.masterpid())]
    if environ["PATH_INFO"] == "/reload":
        uwsgi.reload()
        return [b"reloading"]
    uwsgi.stop()
    return [b"stopping"]
'''


def test_uwsgi_reload(tmp_path):
    app = tmp_path / "stop.py"
    app.write_text(STOP_APP)
    with http_server(tmp_path, "--master", "--processes", "1", "--wsgi-file", app) as s:
        worker, master = map(int, get(s.port, "/pids").content.split())
        assert master == s.pid
        assert get(s.port, "/reload").content == b"reloading"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                new_worker, new_master = map(int, get(s.port, "/pids").content.split())
            except requests.RequestException:
                new_worker = worker
            if new_worker != worker:
                break
            time.sleep(0.2)
        assert new_worker != worker and new_master == master, s.log()


def test_uwsgi_stop_and_workers(tmp_path):
    app = tmp_path / "stop.py"
    app.write_text(STOP_APP)
    with http_server(tmp_path, "--master", "--processes", "2", "--wsgi-file", app) as s:
        assert get(s.port, "/workers").content == b"2 1,2"
        assert get(s.port, "/stop").content == b"stopping"
        assert s.proc.wait(30) == 0
        assert "goodbye to uWSGI" in s.log()


# ---- the example ini files ---------------------------------------------------------------------

@pytest.mark.parametrize("name,path,expect", [
    ("hello.ini", "/", b"Hello World"),
    ("mount.ini", "/hello/", b"Hello World"),
    ("mount.ini", "/stream/x", b"<p>PATH_INFO: /x</p><p>SCRIPT_NAME: /stream</p>"),
])
def test_example_ini(tmp_path, name, path, expect):
    port = free_port()
    ini = tmp_path / name
    ini.write_text((EXAMPLES / name).read_text().replace("127.0.0.1:8080", f"127.0.0.1:{port}"))
    with Server(["--ini", ini], port, log_path=tmp_path / "uwsgi.log") as s:
        r = get(port, path)
        assert r.status_code == 200 and expect in r.content, s.log()


def test_py_autoreload(tmp_path):
    app = tmp_path / "dev.py"
    app.write_text("def application(e, s):\n    s('200 OK', [])\n    return [b'v1']\n")
    with http_server(tmp_path, "--master", "--py-autoreload", "1", "--wsgi-file", app) as s:
        assert get(s.port, "/").content == b"v1"
        app.write_text("def application(e, s):\n    s('200 OK', [])\n    return [b'v2']\n")
        st = app.stat()
        os.utime(app, (st.st_atime, st.st_mtime + 5))
        deadline = time.monotonic() + 30
        body = b""
        while time.monotonic() < deadline:
            try:
                body = get(s.port, "/").content
            except requests.RequestException:
                pass
            if body == b"v2":
                break
            time.sleep(0.3)
        assert body == b"v2", s.log()
        assert "dev.py has been modified" in s.log()


def test_behind_the_http_router(tmp_path, probe):
    port = free_port()
    with Server(["--http", f"127.0.0.1:{port}", "--master", "--processes", "2", "--wsgi-file", probe], port,
                log_path=tmp_path / "uwsgi.log") as s:
        r = requests.post(f"http://127.0.0.1:{port}/env?q=1", data=b"via-router", timeout=20)
        env = r.json()
        assert env["input"] == "via-router" and env["QUERY_STRING"] == "q=1", s.log()
        assert get(port, "/stream").content.count(b"\n") == 10001
