"""Option audit: every declared option does something. A placeholder (declared, parsed, used by
nothing) fails test_every_option_is_used; the few compatibility-only flags are listed here and
their help must say so. Plus the behaviour of the options the audit implemented or moved:
--log-date, --autoload, --cheaper, --min-worker-lifetime, --shared-socket, --cffi-home (a core
option)."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from build_helpers import built, serve_and_get
from helpers import ROOT, free_port, run_uwsgi

import uwsgid.config.cli  # noqa: F401  (declares the core options)
from uwsgid.config import cli
from uwsgid.config.options import lookup
from uwsgid.util import log

# Flags uWSGI users have in their ini files whose behaviour is ours by design: accepted, and
# their help starts with "accepted for compatibility" and says why.
COMPATIBILITY_ONLY = {"enable-threads", "die-on-term", "enable-metrics",
                      "http-auto-chunked", "tcp-nodelay", "thunder-lock", "single-interpreter",
                      "disable-write-exception", "ignore-sigpipe"}
# (uwsgid/config/uwsgi_catalog.py declares these three: their effect is always on here)
COMPATIBILITY_ONLY |= {"close-on-exec", "py-call-uwsgi-fork-hooks", "py-call-osafterfork"}

_CODE_DIRS = ("uwsgid", "plugins", "core")
_SUFFIXES = (".py", ".lua", ".c", ".h")


_DUMP = """
import json, sys
sys.path[:0] = ["plugins/lua", "plugins/cffi"]
import uwsgid.main, uwsgid.config.logic  # main imports every module that declares options
import cffi_plugin.options, lua_plugin.options
from uwsgid.config.options import all_options
seen, out = set(), []
for o in [*all_options(), *lua_plugin.options.OPTIONS, *cffi_plugin.options.OPTIONS]:
    if o.name not in seen:
        seen.add(o.name)
        out.append({"name": o.name, "aliases": list(o.aliases), "kind": o.kind, "help": o.help})
print(json.dumps(out))
"""


def _declared():
    """Every option the code declares, from a fresh interpreter: in-process tests of other
    areas declare options of their own (fake plugins) in this one's registry."""
    import json
    import subprocess
    import sys
    import types
    out = subprocess.run([sys.executable, "-c", _DUMP], capture_output=True, text=True, cwd=ROOT, check=True)
    return [types.SimpleNamespace(**d, attr=d["name"].replace("-", "_")) for d in json.loads(out.stdout)]


def _code_lines():
    lines = []
    for d in _CODE_DIRS:
        for path in sorted((ROOT / d).rglob("*")):
            if path.suffix in _SUFFIXES and "__pycache__" not in path.parts and path.is_file():
                rel = path.relative_to(ROOT)
                lines += [(f"{rel}:{i}", line) for i, line in
                          enumerate(path.read_text(errors="replace").splitlines(), 1)]
    return lines


def _uses(opt, lines):
    """Lines reading the option: `.attr`, or its name (an alias, `--name`) quoted; the
    declaration itself (`O("name"` / `Option("name"`) does not count."""
    names = "|".join(re.escape(n) for n in (opt.name, *opt.aliases, opt.attr))
    use = re.compile(r"\." + re.escape(opt.attr) + r"\b|[\"'](?:--)?(?:" + names + r")[\"'=]")
    decl = re.compile(r"\bO(?:ption)?\(\s*[\"']" + re.escape(opt.name) + r"[\"']")
    return [where for where, line in lines if use.search(line) and not decl.search(line)]


def test_every_option_is_used():
    lines = _code_lines()
    unused = [o.name for o in _declared() if o.name not in COMPATIBILITY_ONLY and not _uses(o, lines)]
    assert not unused, f"declared but read by nothing (implement or remove them): {unused}"


def test_compatibility_only_flags_say_so():
    by_name = {o.name: o for o in _declared()}
    for name in sorted(COMPATIBILITY_ONLY):
        opt = by_name[name]
        assert opt.kind == "flag", name
        assert opt.help.startswith("accepted for compatibility: "), (name, opt.help)


def test_cffi_home_is_a_core_option():
    import cffi_plugin.options
    opt = lookup("cffi-home")
    assert opt is not None and opt.group == "core"
    assert "cffi-home" not in {o.name for o in cffi_plugin.options.OPTIONS}
    assert cli.parse(["--cffi-home", "/x", "--socket", ":0"], environ={}).cffi_home == "/x"


# ---- --log-date -----------------------------------------------------------------------------

CTIME = r"[A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \d{4}"


@pytest.fixture
def date_format():
    yield log.set_date_format
    log.set_date_format(None)


@pytest.mark.parametrize("value,prefix", [
    (None, ""), ("false", ""), ("0", ""),
    ("", CTIME + " - "), ("true", CTIME + " - "), ("1", CTIME + " - "),
    ("%Y-%m", r"\d{4}-\d\d - "),
])
def test_log_date_prefixes_server_messages(date_format, capfd, value, prefix):
    date_format(value)
    log.log("hello")
    log.log_request(b"[pid: 1|app: 0|req: 1/1] a request line")
    err = capfd.readouterr().err.splitlines()
    assert re.fullmatch(prefix + "hello", err[0]), err
    assert err[1] == "[pid: 1|app: 0|req: 1/1] a request line"    # request lines: never dated


def test_log_date_strftime_in_ini(tmp_path):
    # %% in an ini file is a literal % (uWSGI's magic); the year then dates each server line
    ini = tmp_path / "d.ini"
    ini.write_text("[uwsgi]\nlog-date = %%Y\nprint = printed\n")
    r = run_uwsgi(["--ini", ini, "--http-socket", f"127.0.0.1:{free_port()}", "--lua", tmp_path / "none.lua"])
    assert r.returncode == 22, r.stderr
    year = time.strftime("%Y")
    assert f"\n{year} - printed\n" in r.stderr
    assert f"{year} - *** Starting uWSGI" in r.stderr


def test_log_date_default_is_ctime():
    r = run_uwsgi(["--log-date", "--print", "printed", "--http-socket", f"127.0.0.1:{free_port()}",
                   "--lua", "/nonexistent.lua"])
    assert r.returncode == 22, r.stderr
    assert re.search(r"^" + CTIME + r" - printed$", r.stderr, re.M), r.stderr


# ---- --autoload (a build with lua_plugin.so in its build/plugins) ------------------------------

@pytest.fixture(scope="module")
def luap() -> Path:
    return built("luap")


def test_autoload_finds_the_plugin_of_an_option(luap):
    exe = luap / "uwsgi"
    port = free_port()
    args = ["--http-socket", f"127.0.0.1:{port}", "--http-socket-modifier1", "6",
            "--lua", ROOT / "examples" / "pippo.lua"]
    r = run_uwsgi(args, binary=exe)
    assert r.returncode == 1 and "unknown option --lua" in r.stderr
    status, body, out = serve_and_get(exe, ["--autoload", *args], port)
    assert status == 200 and b"Hello Wsapi!" in body, out
    assert f'option "lua" found in plugin {luap / "build" / "plugins" / "lua_plugin.so"}' in out


def test_autoload_from_an_ini_file_skips_placeholders(luap, tmp_path):
    exe = luap / "uwsgi"
    ini = tmp_path / "a.ini"
    ini.write_text("[uwsgi]\nautoload = true\nmyname = placeholder\nprint = %(myname)\n")
    r = run_uwsgi(["--ini", ini, "--plugins-list"], binary=exe)
    assert r.returncode == 0, r.stderr
    assert "found in plugin" not in r.stderr and "lua" not in r.stdout    # nothing probed
    ini.write_text("[uwsgi]\nautoload = true\nlua-gc-freq = 2\n")
    r = run_uwsgi(["--ini", ini, "--plugins-list"], binary=exe)
    assert r.returncode == 0, r.stderr
    assert 'option "lua-gc-freq" found in plugin' in r.stderr and "6: lua" in r.stdout


# ---- --cheaper (uWSGI's spare algorithm) ----------------------------------------------------------

class _FakeMaster:
    """What uwsgid.server.cheaper.Cheaper uses of the master: workers, their busy state, spawn, curse."""

    class _Child:
        def __init__(self, wid, spawned_at):
            self.wid, self.spawned_at, self.cursed_at = wid, spawned_at, None

    def __init__(self, numproc, **opts):
        import types

        from uwsgid.config.options import Options
        self.opts = Options()
        for name, value in opts.items():
            self.opts.set(lookup(name.replace("_", "-")), value)
        self.busy: set[int] = set()
        self.children: dict[int, _FakeMaster._Child] = {}
        self.clock = 0
        self.server = types.SimpleNamespace(numproc=numproc, scoreboard=types.SimpleNamespace(
            busy_cores=lambda wid: [(0, 1, b"/")] if wid in self.busy else [],
            worker=lambda wid: {"last_spawn": 0}))
        self.spawned: list[int] = []
        self.cursed: list[int] = []

    def _workers(self):
        return list(self.children.values())

    def spawn_worker(self, wid, respawn=False):
        self.clock += 1
        self.children[wid] = self._Child(wid, self.clock)
        self.spawned.append(wid)

    def _curse(self, child, sig):
        child.cursed_at = 1.0
        self.cursed.append(child.wid)

    def exit(self, wid):
        del self.children[wid]


def _cheaper(numproc=4, **opts):
    from uwsgid.server.cheaper import Cheaper
    m = _FakeMaster(numproc, **opts)
    c = Cheaper(m)
    for wid in c.initial_wids():
        m.spawn_worker(wid)
    m.spawned.clear()
    return m, c


def test_cheaper_spawns_when_all_busy_and_cheaps_when_idle():
    m, c = _cheaper(4, cheaper=1, cheaper_overload=2, cheaper_step=2)
    assert list(m.children) == [1] and c.cheaped == {2, 3, 4}
    m.busy = {1}
    for _ in range(2):
        c.tick()
    assert m.spawned == []                      # overload 2 is not over --cheaper-overload 2
    c.tick()
    assert m.spawned == [2, 3]                  # --cheaper-step 2
    m.busy = {1, 2, 3}
    for _ in range(3):
        c.tick()
    assert m.spawned == [2, 3, 4]               # only one cheaped worker was left

    def settle():
        for _ in range(20):
            c.tick()
            for wid in list(m.cursed):          # a cursed worker exits: the master buries it
                m.cursed.remove(wid)
                m.exit(wid)
                assert c.buried(type("C", (), {"wid": wid})())

    m.busy = {3}                                # load going: the oldest idle ones go first...
    settle()
    assert sorted(m.children) == [3, 4]         # ...down to one spare worker beside the busy one
    m.busy = set()
    settle()
    assert sorted(m.children) == [4]            # all idle: down to --cheaper
    assert c.cheaped == {1, 2, 3}


def test_cheaper_keeps_one_spare_worker():
    m, c = _cheaper(4, cheaper=1, cheaper_initial=3, cheaper_overload=1)
    m.busy = {1, 2}                             # exactly one idle: the stable state
    for _ in range(10):
        c.tick()
    assert m.cursed == [] and m.spawned == []


def test_cheaper_does_not_respawn_a_worker_still_stopping():
    m, c = _cheaper(2, cheaper=1, cheaper_initial=2, cheaper_overload=1)
    for _ in range(5):
        c.tick()
    assert m.cursed == [1]                      # the oldest idle one
    m.busy = {2}
    for _ in range(5):
        c.tick()                                # overloaded, but worker 1 has not exited yet
    assert m.spawned == []
    m.exit(1)
    for _ in range(3):
        c.tick()
    assert m.spawned == [1]


@pytest.mark.parametrize("args,message", [
    (["--processes", "2", "--cheaper", "2"], "--cheaper 2: must be at least 1 and less than --processes (2)"),
    (["--processes", "3", "--cheaper", "1", "--cheaper-initial", "4"],
     "--cheaper-initial 4: must be between --cheaper (1) and --processes (3)"),
])
def test_cheaper_bad_values(tmp_path, args, message):
    app = tmp_path / "app.py"
    app.write_text(_SLOW_APP)
    r = run_uwsgi(["--master", *args, "--http-socket", f"127.0.0.1:{free_port()}", "--wsgi-file", app])
    assert r.returncode == 1 and f"uwsgi: {message}" in r.stderr, r.stderr


_SLOW_APP = '''
import time
def application(env, start_response):
    if env["PATH_INFO"] == "/slow":
        time.sleep(1.5)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]
'''


def test_cheaper_adapts_the_running_workers(tmp_path):
    import json
    import threading

    from helpers import Server, http_get
    from master_helpers import read_stats

    app = tmp_path / "app.py"
    app.write_text(_SLOW_APP)
    port, stats = free_port(), free_port()
    args = ["--master", "--processes", "3", "--cheaper", "1", "--cheaper-overload", "1",
            "--http-socket", f"127.0.0.1:{port}", "--wsgi-file", app, "--stats", f"127.0.0.1:{stats}"]

    def statuses():
        return [w["status"] for w in json.loads(read_stats(stats))["workers"]]

    with Server(args, port) as s:
        s.wait_log("spawned uWSGI worker 1")
        assert statuses()[1:] == ["cheap", "cheap"]
        stop = threading.Event()

        def load():
            while not stop.is_set():
                http_get(port, "/slow")
        threads = [threading.Thread(target=load) for _ in range(4)]
        for t in threads:
            t.start()
        try:
            s.wait_log("spawned uWSGI worker 2")
        finally:
            stop.set()
            for t in threads:
                t.join()
        log_text = s.wait_log("uWSGI worker 2 cheaped.", timeout=60) if "spawned uWSGI worker 3" not in s.log() \
            else s.wait_log("cheaped.", timeout=60, count=2)
        assert "cheaped." in log_text
        deadline = time.monotonic() + 30
        while statuses().count("cheap") < 2 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert statuses().count("cheap") == 2
        assert http_get(port, "/")[0] == 200


# ---- --min-worker-lifetime (uWSGI's: no recycling of a young worker) --------------------------------

def test_min_worker_lifetime_defers_max_requests(tmp_path):
    from helpers import Server, http_get
    app = tmp_path / "app.py"
    app.write_text(_SLOW_APP)
    port = free_port()
    args = ["--master", "-p", "1", "--max-requests", "1", "--http-socket", f"127.0.0.1:{port}", "--wsgi-file", app]
    with Server([*args, "--min-worker-lifetime", "60"], port) as s:
        for _ in range(3):
            assert http_get(port, "/")[0] == 200
        time.sleep(0.5)
        assert "Seeya" not in s.log() and "Respawned" not in s.log()     # younger than 60 s
    port = free_port()
    args[args.index("--http-socket") + 1] = f"127.0.0.1:{port}"
    with Server([*args, "--min-worker-lifetime", "0"], port) as s:
        assert http_get(port, "/")[0] == 200
        s.wait_log("Respawned uWSGI worker 1")
        assert "(max requests 1). Seeya!" in s.log()


# ---- --shared-socket (=N names) -------------------------------------------------------------------

PIPPO = ROOT / "examples" / "pippo.lua"


@pytest.mark.parametrize("kind", ["--http-socket", "--http"])
def test_shared_socket_named_by_number(kind):
    from helpers import Server, http_get
    port = free_port()
    args = ["--shared-socket", "127.0.0.1:1", "--shared-socket", f"127.0.0.1:{port}", kind, "=1",
            "--http-socket-modifier1", "6", "--http-modifier1", "6", "--lua", PIPPO]
    with Server(args, port) as s:
        status, _, body = http_get(port, "/")
        assert status == 200 and b"Hello Wsapi!" in body
        assert f"127.0.0.1:{port}" in s.log()


@pytest.mark.parametrize("kind", ["--socket", "--http"])
def test_shared_socket_bad_number(kind):
    r = run_uwsgi(["--shared-socket", f"127.0.0.1:{free_port()}", kind, "=1", "--lua", PIPPO])
    assert r.returncode == 1
    assert "=1: there is no --shared-socket 1 (1 declared, numbered from 0)" in r.stderr, r.stderr


def test_http_keepalive_takes_an_optional_value():
    # uWSGI's --http-keepalive takes an optional number (plugins/http/http.c, uwsgi_opt_set_int):
    # given alone it is 1 (on); 0 is off; N > 1 is on, with an N-second idle timeout in the router
    from uwsgid.net.protocols import keepalive_seconds

    def parsed(*args):
        return keepalive_seconds(cli.parse([*args, "--socket", ":0"], environ={}).http_keepalive)
    assert parsed("--http-keepalive") == 1
    assert parsed("--http-keepalive=0") == 0
    assert parsed() == 1
    assert parsed("--http-keepalive=30") == 30
    assert parsed("--http-keepalive=false") == 0


def test_cffi_home_known_without_the_cffi_plugin(luap):
    r = run_uwsgi(["--cffi-home", ROOT / ".venv", "--version"], binary=luap / "uwsgi")
    assert r.returncode == 0 and r.stdout.strip(), r.stderr
