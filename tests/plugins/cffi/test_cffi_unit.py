"""In-process unit tests of the cffi plugin: environ, wsgi.input, start_response, the response
paths and every error path, app loading and mounts, the `uwsgi` module. No server needed."""

from __future__ import annotations

import io
import os
import sys
import warnings
import wsgiref.validate

import pytest
from cffi_helpers import FakeRequest, ShortReads, make_plugin, run
from helpers import ROOT

from uwsgid.plugins import api

EXAMPLES = str(ROOT / "examples")


@pytest.fixture(autouse=True)
def _isolate():
    """configure() installs `uwsgi` and sets api.server, make_opts declares the cffi options:
    undo all of it after each test (other areas' in-process tests share this interpreter)."""
    from uwsgid.config import options as registry
    saved_server = api.server
    saved_path = list(sys.path)
    saved_options = (dict(registry._registry), list(registry._order))
    yield
    api.server = saved_server
    sys.modules.pop("uwsgi", None)
    sys.path[:] = saved_path
    registry._registry.clear()
    registry._registry.update(saved_options[0])
    registry._order[:] = saved_options[1]


def write_app(tmp_path, source, name="app.py"):
    path = tmp_path / name
    path.write_text(source)
    return str(path)


class AppHost:
    """A plugin serving one Python callable (given directly, no file)."""

    def __init__(self, app, validate=True, **options):
        self.plugin = make_plugin(**options)
        wrapped = wsgiref.validate.validator(app) if validate else app
        from cffi_plugin.loader import App
        self.plugin.apps.apps.append(App(0, "", wrapped, "test", 0))

    def __call__(self, *args, **kwargs):
        req = FakeRequest(*args, **kwargs)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            run(self.plugin, req)
        bad = [w for w in caught if issubclass(w.category, wsgiref.validate.WSGIWarning)]
        assert not bad, [str(w.message) for w in bad]
        return req


def capture_app(store):
    def app(environ, start_response):
        store.update(environ)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]
    return app


# ---- environ ---------------------------------------------------------------------------------

def test_environ_pep3333_keys():
    env = {}
    req = AppHost(capture_app(env))("/caf\xe9/x?a=1&b=%20", headers={"Host": "example.com", "X-Thing": "v\xe9"})
    assert req.status == b"200 OK" and req.body == b"ok"
    assert env["wsgi.version"] == (1, 0)
    assert env["wsgi.url_scheme"] == "http"
    assert env["PATH_INFO"] == "/caf\xe9/x" and type(env["PATH_INFO"]) is str
    assert env["QUERY_STRING"] == "a=1&b=%20"
    assert env["SCRIPT_NAME"] == ""
    assert env["HTTP_HOST"] == "example.com"
    assert env["HTTP_X_THING"] == "v\xe9"
    assert env["wsgi.run_once"] is False
    assert env["wsgi.multithread"] is False and env["wsgi.multiprocess"] is False
    assert env["uwsgi.version"] == env["uwsgi.node"].__class__(env["uwsgi.version"])
    assert all(type(v) is str for k, v in env.items() if "." not in k)


@pytest.mark.parametrize("vars_,scheme", [
    ({b"HTTPS": b"on"}, "https"), ({b"HTTPS": b"1"}, "https"), ({b"HTTPS": b"off"}, "http"),
    ({b"UWSGI_SCHEME": b"https"}, "https"), ({b"HTTPS": b"on", b"UWSGI_SCHEME": b"http"}, "http"),
    # uWSGI's rule (strncasecmp "on", or a leading "1"): any case, off/0/empty are http
    ({b"HTTPS": b"oN"}, "https"), ({b"HTTPS": b"OFF"}, "http"), ({b"HTTPS": b"0"}, "http"),
    ({b"HTTPS": b""}, "http"), ({b"HTTPS": b"TRUE"}, "https"),
])
def test_url_scheme(vars_, scheme):
    env = {}
    AppHost(capture_app(env))("/", vars=vars_)
    assert env["wsgi.url_scheme"] == scheme


def test_multithread_multiprocess_tell_the_truth():
    env = {}
    AppHost(capture_app(env), threads=4, processes=2)("/")
    assert env["wsgi.multithread"] is True and env["wsgi.multiprocess"] is True


def test_environ_defaults_and_cleanup():
    env = {}
    req = FakeRequest("/")
    del req.vars[b"QUERY_STRING"], req.vars[b"PATH_INFO"]
    req.vars[b"SCRIPT_NAME"] = b"/"
    req.vars[b"HTTP_CONTENT_TYPE"] = b"x/y"
    req.vars[b"HTTP_CONTENT_LENGTH"] = b"3"
    host = AppHost(capture_app(env))
    run(host.plugin, req)
    assert req.status == b"200 OK", req.body
    assert env["QUERY_STRING"] == "" and env["PATH_INFO"] == "" and env["SCRIPT_NAME"] == ""
    assert "HTTP_CONTENT_TYPE" not in env and "HTTP_CONTENT_LENGTH" not in env


# ---- wsgi.input --------------------------------------------------------------------------------

def test_input_read_sizes():
    from cffi_plugin.wsgi_input import WSGIInput
    data = bytes(range(256)) * 1000
    inp = WSGIInput(ShortReads(data + b"EXTRA", 7000), len(data))
    assert inp.read(0) == b""
    assert inp.read(1) == data[:1]
    assert inp.read(10000) == data[1:10001]
    assert inp.read() == data[10001:]
    assert inp.read() == b"" and inp.read(5) == b""


def test_input_bounded_by_content_length():
    from cffi_plugin.wsgi_input import WSGIInput
    inp = WSGIInput(io.BytesIO(b"hello world"), 5)
    assert inp.read(100) == b"hello"
    assert inp.readline() == b""
    inp = WSGIInput(io.BytesIO(b"a\nb\nc\n"), 3)
    assert list(inp) == [b"a\n", b"b"]


def test_readline_across_chunk_boundaries():
    from cffi_plugin.wsgi_input import WSGIInput
    lines = [b"x" * n + b"\n" for n in (0, 1, 2, 5, 13, 70000, 3)] + [b"tail-no-newline"]
    data = b"".join(lines)
    for step in (1, 3, 4096, 65536, len(data)):
        inp = WSGIInput(ShortReads(data, step), len(data))
        assert [inp.readline() for _ in lines] == lines
        assert inp.readline() == b""


def test_readline_limit_readlines_iteration():
    from cffi_plugin.wsgi_input import WSGIInput
    data = b"abcdef\nghi\n\njkl"
    inp = WSGIInput(ShortReads(data, 2), len(data))
    assert inp.readline(3) == b"abc"
    assert inp.readline(0) == b""
    assert inp.readline(100) == b"def\n"
    assert inp.readline(None) == b"ghi\n"
    assert inp.readlines() == [b"\n", b"jkl"]
    inp = WSGIInput(io.BytesIO(data), len(data))
    assert inp.readlines(5) == [b"abcdef\n"]
    assert list(inp) == [b"ghi\n", b"\n", b"jkl"]


def test_chunked_input_reads_to_eof():
    body = b"chunk-one|" * 5000
    got = {}

    def app(environ, start_response):
        got["terminated"] = environ.get("wsgi.input_terminated")
        got["body"] = environ["wsgi.input"].read()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"%d" % len(got["body"])]

    req = AppHost(app, validate=False)("/up", method="POST", chunked=True, source=ShortReads(body, 999))
    assert b"CONTENT_LENGTH" not in req.vars
    assert got == {"terminated": True, "body": body}
    assert req.body == str(len(body)).encode()


def test_post_form_through_validator():
    def app(environ, start_response):
        n = int(environ.get("CONTENT_LENGTH") or 0)
        data = environ["wsgi.input"].read(n)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [data.upper()]

    req = AppHost(app)("/f", method="POST", body=b"a=1&b=2", headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert req.body == b"A=1&B=2"


# ---- start_response and the body ----------------------------------------------------------------

def test_list_response_is_synchronous():
    req = AppHost(lambda e, s: (s("200 OK", [("Content-Type", "text/plain")]), [b"a", b"", b"b"])[1], validate=False)("/")
    assert req.status == b"200 OK" and req.body == b"ab" and req.yields == 0


def test_write_callable():
    def app(environ, start_response):
        write = start_response("201 Created", [("Content-Type", "text/plain")])
        write(b"one,")
        write(b"two,")
        return [b"three"]
    req = AppHost(app)("/")
    assert req.status == b"201 Created" and req.body == b"one,two,three"


def test_generator_app_calls_start_response_lazily():
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield b"x"
        yield b"y"
    req = AppHost(app)("/")
    assert req.body == b"xy" and req.yields == 0


def test_stream_example_is_stepped_in_slices():
    plugin = make_plugin(wsgi_file=os.path.join(EXAMPLES, "stream.py"))
    req = run(plugin, FakeRequest("/s"))
    assert req.status == b"200 OK"
    assert req.body.startswith(b"<html><body>") and req.body.endswith(b"10000<br/></body></html>")
    assert b"<p>PATH_INFO: /s</p>" in req.body
    # 10006 chunks: yielded to the core a few dozen times, not once per chunk
    assert 1 <= req.yields <= 100


def test_empty_chunk_and_armed_wait_yield_to_core():
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield b"a"
        yield b""                  # give up the turn
        yield b"b"
        api.async_sleep(0)        # a wait armed: the next chunk suspends too
        yield b"c"
        yield b"d"
    req = AppHost(app)("/")
    assert req.body == b"abcd"
    assert req.yields == 2


def test_suspend_makes_the_next_chunk_yield():
    def app(environ, start_response):
        import uwsgi
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield b"a"
        uwsgi.suspend()
        yield b"b"
        yield b"c"
    req = AppHost(app)("/")
    assert req.body == b"abc" and req.yields == 1


def test_wait_armed_before_the_first_yield_reaches_the_core():
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        api.async_sleep(5)
        yield b""
        yield b"after"

    plugin = AppHost(app, validate=False).plugin
    req = FakeRequest("/")
    api.set_current(req.core)
    gen = plugin.request(req)
    assert gen is not None
    # armed in request(): left on the core, which runs the first step once it fires
    wait = req.core.wait
    assert wait is not None and wait.timeout == 5
    req.core.wait = None            # what the worker does when it fires
    for _ in gen:
        assert req.core.wait is None
    assert req.body == b"after"
    api.set_current(None)


def test_exc_info_replaces_headers_before_body():
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        try:
            raise ValueError("boom")
        except ValueError:
            start_response("500 Oops", [("Content-Type", "text/plain")], sys.exc_info())
        return [b"sorry"]
    req = AppHost(app)("/")
    assert req.status == b"500 Oops" and req.body == b"sorry" and req.start_calls == 1


def test_exc_info_after_body_reraises_and_truncates():
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield b"partial"
        try:
            raise KeyError("late")
        except KeyError:
            start_response("500 Oops", [("Content-Type", "text/plain")], sys.exc_info())
        yield b"never"
    with pytest.raises(KeyError):        # the core logs it and cuts the body short
        AppHost(app, validate=False)("/")


def test_second_start_response_without_exc_info_is_500(capfd):
    def app(environ, start_response):
        start_response("200 OK", [])
        start_response("200 OK", [])
        return [b"x"]
    req = AppHost(app, validate=False)("/")
    assert req.status.startswith(b"500")
    assert b"second time" in req.body
    assert "second time" in capfd.readouterr().err


def test_close_is_always_called():
    closed = []

    class Body:
        def __init__(self, chunks, fail=False):
            self.chunks, self.fail = chunks, fail

        def __iter__(self):
            yield from self.chunks
            if self.fail:
                raise RuntimeError("mid-body")

        def close(self):
            closed.append(True)

    def app_ok(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Body([b"a", b"b"])
    assert AppHost(app_ok)("/").body == b"ab"
    assert closed == [True]

    def app_fail_before(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Body([b""], fail=True)
    req = AppHost(app_fail_before, validate=False)("/")
    assert req.status.startswith(b"500") and closed == [True, True]

    def app_fail_after(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Body([b"x" * 10], fail=True)
    with pytest.raises(RuntimeError):
        AppHost(app_fail_after, validate=False)("/")
    assert closed == [True, True, True]


# ---- error paths -----------------------------------------------------------------------------

def test_exception_before_response_is_500_with_traceback_logged(capfd):
    def app(environ, start_response):
        raise ZeroDivisionError("app bug")
    req = AppHost(app, validate=False)("/broken")
    assert req.status == b"500 Internal Server Error"
    assert req.body.startswith(b"500 Internal Server Error")
    assert b"app bug" not in req.body           # no details leak to the client
    err = capfd.readouterr().err
    assert "Traceback" in err and "ZeroDivisionError: app bug" in err and "/broken" in err


@pytest.mark.parametrize("status,headers,problem", [
    (200, [], b"invalid status 200"),
    (b"200 OK", [], b"invalid status b'200 OK'"),
    ("abc", [], b"invalid status 'abc'"),
    ("20 OK", [], b"invalid status '20 OK'"),
    ("200 OK\r\nX: y", [], b"invalid status"),
    ("200 OK", {"a": "b"}, b"list of (name, value)"),
    ("200 OK", [("X-A",)], b"invalid header"),
    ("200 OK", [(b"X-A", "v")], b"invalid header name b'X-A'"),
    ("200 OK", [("X A", "v")], b"invalid header name 'X A'"),
    ("200 OK", [("X-A", 5)], b"must be a str"),
    ("200 OK", [("X-A", "a\r\nSet-Cookie: evil")], b"CR, LF"),
    ("200 OK", [("X-A", "\u20ac")], b"latin-1"),
    ("200 OK", [("Transfer-Encoding", "chunked")], b"hop-by-hop header 'Transfer-Encoding'"),
    ("200 OK", [("Upgrade", "websocket")], b"hop-by-hop"),
    ("200 OK", [("Keep-Alive", "timeout=5")], b"hop-by-hop"),
])
def test_bad_status_or_header_is_500_naming_it(status, headers, problem, capfd):
    def app(environ, start_response):
        start_response(status, headers)
        return [b"body"]
    req = AppHost(app, validate=False)("/")
    assert req.status == b"500 Internal Server Error"
    assert problem in req.body, req.body
    assert "ResponseError" in capfd.readouterr().err


def test_connection_close_is_passed_to_the_core():
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain"), ("Connection", "close")])
        return [b"bye"]
    req = AppHost(app, validate=False)("/")
    assert req.status == b"200 OK" and req.header(b"Connection") == b"close"


@pytest.mark.parametrize("result,problem", [
    (["text"], b"must be bytes, not str"),
    ([None], b"must be bytes, not NoneType"),
    (b"raw bytes", b"returned bytes instead of an iterable"),
    (42, b"non-iterable int"),
])
def test_bad_body_is_500_naming_it(result, problem):
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return result
    req = AppHost(app, validate=False)("/")
    assert req.status == b"500 Internal Server Error" and problem in req.body, req.body


def test_no_start_response_is_500():
    req = AppHost(lambda e, s: [b"body"], validate=False)("/")
    assert req.status.startswith(b"500") and b"before calling start_response" in req.body
    req = AppHost(lambda e, s: [], validate=False)("/")
    assert req.status.startswith(b"500")


def test_abandoned_stream_still_closes_the_body():
    closed = []

    class Body:
        def __iter__(self):
            for i in range(100000):
                yield b"x" * 100

        def close(self):
            closed.append(True)

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Body()
    plugin = AppHost(app, validate=False).plugin
    req = FakeRequest("/")
    gen = plugin.request(req)
    assert gen is not None and not closed
    gen.close()                     # the client went away: the core closes the generator
    assert closed == [True]


def test_error_in_close_is_logged_not_fatal(capfd):
    class Body(list):
        def close(self):
            raise OSError("close failed")

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Body([b"fine"])
    req = AppHost(app, validate=False)("/")
    assert req.status == b"200 OK" and req.body == b"fine"
    assert "close failed" in capfd.readouterr().err


# ---- file_wrapper ------------------------------------------------------------------------------

def test_file_wrapper_uses_sendfile_for_real_files(tmp_path):
    path = tmp_path / "data.bin"
    path.write_bytes(b"0123456789" * 1000)

    def app(environ, start_response):
        f = open(path, "rb")
        f.seek(5)
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return environ["wsgi.file_wrapper"](f, 4096)
    req = AppHost(app, validate=False)("/")
    assert req.sendfiles and req.sendfiles[0][1:] == (5, 9995)
    assert req.header(b"Content-Length") == b"9995"
    assert req.body == (b"0123456789" * 1000)[5:]


def test_file_wrapper_iterates_other_filelikes():
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return environ["wsgi.file_wrapper"](io.BytesIO(b"abc" * 5000), 1000)
    req = AppHost(app)("/")
    assert req.body == b"abc" * 5000 and not req.sendfiles


# ---- app loading and mounts ----------------------------------------------------------------------

MOUNT_APP = '''
def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [("%s|%s|%s" % (NAME, environ["SCRIPT_NAME"], environ["PATH_INFO"])).encode()]
NAME = "@NAME@"
'''


def test_mounts_with_manage_script_name(tmp_path):
    a = write_app(tmp_path, MOUNT_APP.replace("@NAME@", "root"), "root.py")
    b = write_app(tmp_path, MOUNT_APP.replace("@NAME@", "app1"), "app1.wsgi")
    c = write_app(tmp_path, MOUNT_APP.replace("@NAME@", "deep"), "deep.py")
    p = make_plugin(mount=[f"/={a}", f"/app1={b}", f"/app1/deep={c}"], manage_script_name=True)
    body = lambda path: run(p, FakeRequest(path)).body
    assert body("/") == b"root||/"
    assert body("/app1") == b"app1|/app1|"
    assert body("/app1/x/y") == b"app1|/app1|/x/y"
    assert body("/app1/deep/z") == b"deep|/app1/deep|/z"
    assert body("/app10") == b"root||/app10"          # only at a path boundary
    assert [a["mountpoint"] for a in p.stats_apps()] == ["", "/app1", "/app1/deep"]
    assert p.stats_apps()[1]["requests"] == 2


def test_mounts_selected_by_script_name(tmp_path):
    a = write_app(tmp_path, MOUNT_APP.replace("@NAME@", "one"), "one.py")
    b = write_app(tmp_path, MOUNT_APP.replace("@NAME@", "two"), "two.py")
    p = make_plugin(mount=[f"/one={a}", f"/two={b}"])
    assert run(p, FakeRequest("/x", script_name=b"/two")).body == b"two|/two|/x"
    assert run(p, FakeRequest("/x", script_name=b"/one")).body == b"one|/one|/x"
    assert run(p, FakeRequest("/x")).body == b"one||/x"           # first app is the default
    assert run(p, FakeRequest("/x", vars={b"UWSGI_APPID": b"/two"})).body.startswith(b"two|")


def test_module_and_callable_forms(tmp_path):
    (tmp_path / "mypkg").mkdir()
    (tmp_path / "mypkg" / "__init__.py").write_text("")
    (tmp_path / "mypkg" / "web.py").write_text(
        "def application(e, s):\n    s('200 OK', [])\n    return [b'default']\n"
        "def other(e, s):\n    s('200 OK', [])\n    return [b'other']\n")
    p = make_plugin(pythonpath=str(tmp_path), module="mypkg.web")
    assert run(p, FakeRequest("/")).body == b"default"
    p = make_plugin(pythonpath=str(tmp_path), module="mypkg.web:other")
    assert run(p, FakeRequest("/")).body == b"other"
    p = make_plugin(pythonpath=str(tmp_path), cffi_wsgi="mypkg.web", callable="other")
    assert run(p, FakeRequest("/")).body == b"other"
    p = make_plugin(pythonpath=str(tmp_path), mount=["/m=mypkg.web:other"], manage_script_name=True)
    assert run(p, FakeRequest("/m/x")).body == b"other"
    # Django's usual "mysite.wsgi" is a module name, not a .wsgi file
    (tmp_path / "mypkg" / "wsgi.py").write_text("from mypkg.web import other as application\n")
    p = make_plugin(pythonpath=str(tmp_path), module="mypkg.wsgi")
    assert run(p, FakeRequest("/")).body == b"other"


def test_load_errors_are_one_line(tmp_path, capfd):
    from uwsgid.plugins.contract import AppLoadError
    with pytest.raises(AppLoadError, match="no such file"):
        make_plugin(wsgi_file=str(tmp_path / "missing.py"))
    bad = write_app(tmp_path, "import no_such_module_xyz\n", "bad.py")
    with pytest.raises(AppLoadError, match="ModuleNotFoundError: No module named 'no_such_module_xyz'"):
        make_plugin(wsgi_file=bad)
    assert "Traceback" in capfd.readouterr().err
    noapp = write_app(tmp_path, "x = 1\n", "noapp.py")
    with pytest.raises(AppLoadError, match="callable 'application'"):
        make_plugin(wsgi_file=noapp)
    with pytest.raises(AppLoadError, match="no_such_pkg"):
        make_plugin(module="no_such_pkg.web")
    with pytest.raises(AppLoadError, match="expected MOUNTPOINT=APP"):
        make_plugin(mount=["/x"])
    # --need-app=0: the bad app is skipped, the good one still loads
    good = write_app(tmp_path, MOUNT_APP.replace("@NAME@", "good"), "good.py")
    p = make_plugin(mount=[f"/bad={bad}", f"/good={good}"], need_app=False)
    assert p.has_app() and run(p, FakeRequest("/")).body == b"good||/"


def test_wsgi_errors_goes_to_the_log(capfd):
    def app(environ, start_response):
        err = environ["wsgi.errors"]
        print("line one", file=err)
        err.write("partial ")
        err.writelines(["line two\n"])
        err.write("tail")
        err.flush()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]
    AppHost(app)("/")
    out = capfd.readouterr().err
    assert "line one\n" in out and "partial line two\n" in out and "tail\n" in out


def test_no_app_means_no_has_app():
    p = make_plugin()
    assert not p.has_app()


def test_lazy_apps_load_after_fork(tmp_path):
    a = write_app(tmp_path, MOUNT_APP.replace("@NAME@", "lazy"), "lazy.py")
    p = make_plugin(wsgi_file=a, lazy_apps=True)
    assert not p.has_app()
    p.post_fork(None)
    assert p.has_app() and run(p, FakeRequest("/")).body == b"lazy||/"


# ---- eval / exec / init / the uwsgi module --------------------------------------------------------

def test_eval_exec_and_post_fork(tmp_path):
    script = tmp_path / "boot.py"
    script.write_text("import uwsgi\nEXECED = uwsgi.version\n")
    post = tmp_path / "post.py"
    post.write_text("import uwsgi\nuwsgi.post_fork_hook = lambda: ORDER.append('hook')\nORDER.append('exec-post')\n")
    p = make_plugin(cffi_eval=["ORDER = ['eval']"], cffi_exec=[str(script)],
                    cffi_eval_post_fork=["ORDER.append('eval-post')"], cffi_exec_post_fork=[str(post)])
    main = sys.modules["__main__"].__dict__
    assert main["ORDER"] == ["eval"] and main["EXECED"] == b"2.0.21-test"
    p.post_fork(None)
    assert main["ORDER"] == ["eval", "eval-post", "exec-post", "hook"]
    for k in ("ORDER", "EXECED"):
        main.pop(k, None)


def test_eval_error_is_load_error():
    from uwsgid.plugins.contract import AppLoadError
    with pytest.raises(AppLoadError, match="cffi-eval.*NameError"):
        make_plugin(cffi_eval=["undefined_name_xyz"])


def test_cffi_init_imports_module(tmp_path):
    (tmp_path / "my_init_mod.py").write_text("import uwsgi\nuwsgi.magic_table['init'] = b'yes'\n")
    p = make_plugin(pythonpath=str(tmp_path), cffi_init=["my_init_mod"])
    assert sys.modules["uwsgi"].magic_table["init"] == b"yes"
    sys.modules.pop("my_init_mod", None)


def test_uwsgi_module_basics():
    p = make_plugin(processes=3, socket=[":3031", ":3032"], master=True, buffer_size=8192)
    import uwsgi
    assert uwsgi.version == b"2.0.21-test"
    assert uwsgi.numproc == 3 and uwsgi.buffer_size == 8192
    assert uwsgi.opt["master"] is True
    assert uwsgi.opt["processes"] == b"3"
    assert uwsgi.opt["socket"] == [b":3031", b":3032"]
    assert isinstance(uwsgi.hostname, bytes)
    assert uwsgi.masterpid() == 0            # FakeServer: no master
    assert uwsgi.worker_id() == 0 and callable(uwsgi.mule_id)
    assert len(uwsgi.workers()) == 3
    got = {}

    def app(environ, start_response):
        uwsgi.set_logvar("who", "me")
        got["logvar"] = uwsgi.get_logvar("who")
        got["core"] = uwsgi.async_id()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"x"]
    host = AppHost(app)
    req = host("/")
    assert req.logvars == {"who": "me"} and got == {"logvar": b"me", "core": 0}


def test_uwsgi_module_has_the_shared_services():
    pytest.importorskip("uwsgid.services.api")
    make_plugin()
    import uwsgi
    for name in ("cache_get", "cache_set", "register_rpc", "rpc", "call", "register_signal", "signal",
                 "add_timer", "add_rb_timer", "add_cron", "add_file_monitor", "lock", "unlock",
                 "signal_registered"):
        assert callable(getattr(uwsgi, name, None)), name


def test_home_import_and_pyargv(tmp_path):
    ver = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    site_dir = tmp_path / "venv" / "lib" / ver / "site-packages"
    site_dir.mkdir(parents=True)
    (site_dir / "venv_only_mod_xyz.py").write_text("import uwsgi\nuwsgi.magic_table['imported'] = b'1'\n")
    saved_argv = list(sys.argv)
    try:
        make_plugin(home=str(tmp_path / "venv"), pyargv="--one 'two three'", **{"import": ["venv_only_mod_xyz"]})
        import uwsgi
        assert uwsgi.magic_table["imported"] == b"1"
        assert sys.argv == ["uwsgi", "--one", "two three"]
    finally:
        sys.argv[:] = saved_argv
        sys.modules.pop("venv_only_mod_xyz", None)


def test_import_error_is_load_error():
    from uwsgid.plugins.contract import AppLoadError
    with pytest.raises(AppLoadError, match="--import no_such_mod_xyz: ModuleNotFoundError"):
        make_plugin(**{"import": ["no_such_mod_xyz"]})
