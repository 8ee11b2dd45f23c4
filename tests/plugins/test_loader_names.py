"""Plugin names from configs written for a packaged uWSGI (tests/data/real-configs): a plugin
given by path (`plugins = /usr/lib/uwsgi/python3`, uWSGI's DIR/NAME_plugin.so) maps like its
plain name; uWSGI's plugins whose feature is built in here (`plugins = http,python`) load
nothing and are no error; a name for a feature this server lacks is still refused."""

from __future__ import annotations

import pytest
from helpers import UWSGI, Server, free_port, http_get, run_uwsgi

from uwsgid.plugins import loader

needs_binary = pytest.mark.skipif(not UWSGI.exists(), reason="needs the ./uwsgi executable")

APP = ("def application(environ, start_response):\n"
       "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
       "    return [b'served']\n")


def _plugins_list(spec: str) -> list[str]:
    r = run_uwsgi(["--plugins", spec, "--plugins-list"])
    assert r.returncode == 0, r.stderr
    return [line.split(":", 1)[1].split("(")[0].strip() for line in r.stdout.splitlines()
            if line[:1].isdigit() and ": " in line]


@needs_binary
@pytest.mark.parametrize("spec", ["/usr/lib/uwsgi/python3", "/usr/lib/uwsgi/plugins/python3_plugin.so",
                                  "/opt/uwsgi/python311", "python3", "http,python", "corerouter,logfile",
                                  "/usr/lib/uwsgi/plugins/http", "syslog,rsyslog,logsocket,logpipe,rpc,signal"])
def test_packaged_names_map_to_what_is_built_in(spec):
    assert _plugins_list(spec) == ["lua", "cffi"]        # nothing more loaded, nothing refused


@needs_binary
@pytest.mark.parametrize("spec, message", [
    ("gevent", "uwsgi: plugin gevent not found: no gevent_plugin.so in "),
    ("/usr/lib/uwsgi/gevent", "uwsgi: plugin /usr/lib/uwsgi/gevent not found: no /usr/lib/uwsgi/gevent_plugin.so"),
    ("router_basicauth", "uwsgi: plugin router_basicauth not found"),
])
def test_features_we_lack_are_still_refused(spec, message):
    r = run_uwsgi(["--plugins", spec, "--http-socket", "127.0.0.1:0"])
    assert r.returncode == 1
    assert message in r.stderr.strip().splitlines()[-1]


@needs_binary
@pytest.mark.parametrize("plugins", ["/usr/lib/uwsgi/python3", "http,python"])
def test_a_config_naming_packaged_plugins_serves(tmp_path, plugins):
    (tmp_path / "app.py").write_text(APP)
    port = free_port()
    ini = tmp_path / "app.ini"
    ini.write_text(f"[uwsgi]\nstrict = true\nplugins = {plugins}\nhttp-socket = 127.0.0.1:{port}\n"
                   f"wsgi-file = {tmp_path / 'app.py'}\n")
    with Server(["--ini", ini], port, cwd=tmp_path, log_path=tmp_path / "server.log"):
        status, _, body = http_get(port)
        assert (status, body) == (200, b"served")


def test_loader_reads_a_path_as_uwsgi_does():
    embedded = {p.name for p in loader.embedded_plugins()}
    assert "cffi" in embedded
    assert loader.load_plugin("/usr/lib/uwsgi/python3").name == "cffi"
    assert loader.load_plugin("/x/python3.11_plugin.so").name == "cffi"
    assert loader.load_plugin("/x/http") is None and loader.load_plugin("http") is None
    assert loader.load_plugins("http,python") == [loader.load_plugin("python")]
    with pytest.raises(loader.PluginNotFound, match=r"no /x/stackless_plugin\.so"):
        loader.load_plugin("/x/stackless")
