"""README.md's "## Examples" run as written (issue 21): every example of its indented block (its
comment lines and the commands under them) is one test named after its commands. The test runs
each command from the project's root with its ports swapped for free ones (in the command, in a
copy of each ini file it names, and in the nginx config it starts nginx with), waits until every
address it listens on answers, asserts what the example's comment says it answers, and stops it
with Ctrl-C (SIGINT to its process group, as a terminal sends it), which must stop it.

An example this file has no check for fails and says so: add it to CHECKS below (keyed by its
commands), with the words of the README's comment that state its answer (`says`) and a function
that asserts that answer. A check whose command left the README fails too."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest
from helpers import ROOT, UWSGI, Server, free_port, http_get, uwsgi_http_get
from nginx import Nginx

README = ROOT / "README.md"
THIS = "tests/building/test_readme_examples.py"

pytestmark = pytest.mark.skipif(not UWSGI.exists(), reason="./uwsgi is not built (make build)")

PIPPO = (b"<html><body><p>Hello Wsapi!</p><p>PATH_INFO: %s</p>"
         b"<p>SCRIPT_NAME: </p></body></html>")
HELLO = b"Hello World"

# host:port or :port (not inside a longer word, number or address)
ADDR = re.compile(r"(?<![\w.:])((?:\d{1,3}\.){3}\d{1,3})?:(\d{2,5})\b")
NGINX_CMD = re.compile(r"^(\S*nginx) -p (\S+) -c \$PWD/(\S+) -e stderr$")


# ---- the README's examples ------------------------------------------------------------------

@dataclass
class Example:
    comment: list[str] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        """The commands, without trailing comments and with single spaces: CHECKS' key, test id."""
        return " ; ".join(" ".join(re.sub(r"\s#.*$", "", c).split()) for c in self.commands)


def readme_examples() -> list[Example]:
    """The examples of the indented block(s) of README.md's "## Examples" section: a paragraph
    (lines separated by blank lines or prose) is one example, its `#` lines its comment, the other
    lines its commands (a trailing backslash continues a command on the next line)."""
    text = README.read_text()
    m = re.search(r"^## Examples\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert m, "README.md has no '## Examples' section"
    out: list[Example] = []
    cur, pending = Example(), ""

    def close():
        nonlocal cur
        if cur.commands or cur.comment:
            out.append(cur)
        cur = Example()

    for line in m.group(1).splitlines():
        if not line.startswith("    ") or not line.strip():
            close()
            continue
        body = line[4:].strip()
        if body.startswith("#") and not pending:
            if cur.commands:
                close()
            cur.comment.append(body.lstrip("#").strip())
            continue
        body = f"{pending} {body}" if pending else body
        if body.endswith("\\"):
            pending = body[:-1].rstrip()
            continue
        pending = ""
        cur.commands.append(body)
    close()
    return out


EXAMPLES = readme_examples()


# ---- running one --------------------------------------------------------------------------

class Shell(Server):
    """A README command run by bash in its own session, from the project's root; stop() is Ctrl-C
    (SIGINT to the whole group) and records whether that stopped it, before Server.stop's
    clean-up by PID."""

    stopped_by_ctrl_c: bool | None = None

    def stop(self, sig=None, timeout: float = 20.0):
        if self.proc is not None and self.proc.returncode is None and self.stopped_by_ctrl_c is None:
            try:
                os.killpg(self.proc.pid, signal.SIGINT)
            except ProcessLookupError:
                pass
            self.stopped_by_ctrl_c = self._wait_unreaped(timeout)
        return super().stop(sig, timeout)


class Run:
    """One example being run in tmp_path: old port -> free port, the processes it started."""

    def __init__(self, tmp_path: Path):
        self.tmp = tmp_path
        self.tmpdir = tmp_path / "tmpdir"        # $TMPDIR of the commands (Sputnik's data dir)
        self.tmpdir.mkdir()
        self.ports: dict[int, int] = {}
        self.procs: list[tuple[str, Server]] = []

    def port(self, old: int) -> int:
        if old not in self.ports:
            self.ports[old] = free_port()
        return self.ports[old]

    def swap(self, text: str) -> str:
        return ADDR.sub(lambda m: f"{m.group(1) or ''}:{self.port(int(m.group(2)))}", text)

    def listened(self, text: str) -> list[int]:
        """The (new) ports of the addresses in `text` once swapped, in order."""
        return list(dict.fromkeys(int(m.group(2)) for m in ADDR.finditer(text)))

    def start(self, command: str) -> None:
        m = NGINX_CMD.match(" ".join(command.split()))
        if m:
            self._start_nginx(command, *m.groups())
        elif re.match(r"^\S*nginx\b", command):
            pytest.fail(f"README example command {command!r}: {THIS} runs nginx only as "
                        "`nginx -p DIR -c $PWD/examples/FILE.conf -e stderr`")
        else:
            self._start_shell(command)

    def _start_shell(self, command: str) -> None:
        listen_text = command
        for ini in dict.fromkeys(re.findall(r"(?<![\w/])examples/[\w.-]+\.ini\b", command)):
            text = (ROOT / ini).read_text()
            settings = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith((";", "#")))
            listen_text += "\n" + settings
            copy = self.tmp / Path(ini).name
            copy.write_text(re.sub(r"(?<![\w.])/tmp/", f"{self.tmpdir}/", self.swap(text)))
            command = re.sub(rf"(?<![\w/]){re.escape(ini)}\b", str(copy), command)
        command = self.swap(command)
        ports = self.listened(self.swap(listen_text))
        assert ports, f"README example command {command!r} listens on no address this test can see"
        srv = Shell(command=["bash", "-c", command], env={"TMPDIR": str(self.tmpdir)}, cwd=ROOT,
                    log_path=self.tmp / f"command-{len(self.procs)}.log")
        self.procs.append((command, srv))
        srv.start()
        for p in ports:
            srv.wait_port(p)

    def _start_nginx(self, command: str, binary: str, prefix: str, conf: str) -> None:
        assert shutil.which(binary), f"{command!r}: {binary} is not an executable"
        if prefix != "/tmp":
            pytest.fail(f"{command!r}: the README's nginx keeps its files under /tmp (-p /tmp), "
                        f"this test under its own dir in place of /tmp")
        text = self.swap((ROOT / conf).read_text())
        listen = [int(p) for p in re.findall(r"^\s*listen\s+(?:[\d.]+:)?(\d+)", text, re.M)]
        assert listen, f"{conf}: no listen directive"
        srv = Nginx(self.tmp / "nginx-prefix", text, listen[0])
        self.procs.append((command, srv))
        srv.start()

    def logs(self) -> str:
        return "\n".join(f"--- {cmd}\n{srv.log()}" for cmd, srv in self.procs)

    def stop(self) -> list[str]:
        """Stop everything (the last started first); the commands Ctrl-C did not stop."""
        stuck = []
        for cmd, srv in reversed(self.procs):
            srv.stop()
            if isinstance(srv, Shell) and not srv.stopped_by_ctrl_c:
                stuck.append(cmd)
        return stuck


# ---- what each example answers --------------------------------------------------------------

@dataclass
class Check:
    says: list[str]                 # words of the README comment that state the answer
    fn: Callable[[Run], None]
    needs: list[str] = field(default_factory=list)      # files that must exist (else skip)


CHECKS: dict[str, Check] = {}


def check(command: str, says: list[str], needs: tuple[str, ...] = ()):
    def register(fn):
        CHECKS[" ; ".join(" ".join(c.split()) for c in command.split(" ; "))] = Check(list(says), fn, list(needs))
        return fn
    return register


def _stats(port: int) -> dict:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return json.loads(data)


def _get(port: int, path: str = "/") -> bytes:
    status, _, body = http_get(port, path)
    assert status == 200, (status, body)
    return body


@check("./uwsgi --http-socket 127.0.0.1:8080 --http-socket-modifier1 6 --lua examples/pippo.lua --async 8",
       says=["http://127.0.0.1:8080/", "pippo.lua's page", "Hello Wsapi!"])
def _lua(run: Run):
    assert _get(run.port(8080)) == PIPPO % b"/"


@check("./uwsgi --http-socket 127.0.0.1:8080 -M -p 4 --wsgi-file examples/hello.py",
       says=["http://127.0.0.1:8080/", '"Hello World"', "master + 4 workers"])
def _wsgi(run: Run):
    assert _get(run.port(8080)) == HELLO
    log = run.procs[0][1].wait_log("spawned uWSGI worker 4")
    assert "spawned uWSGI master process" in log


@check("./uwsgi --ini examples/dual.ini ; /usr/sbin/nginx -p /tmp -c $PWD/examples/nginx.conf -e stderr",
       says=["nginx on 127.0.0.1:8080", "http://127.0.0.1:8080/lua/", "pippo.lua's page",
             'any other path hello.py\'s "Hello World"'],
       needs=("/usr/sbin/nginx", "/etc/nginx/uwsgi_params"))
def _dual(run: Run):
    port = run.port(8080)
    assert _get(port, "/lua/") == PIPPO % b"/lua/"
    assert _get(port, "/") == HELLO
    assert _get(port, "/any/other") == HELLO


@check("scripts/setup-sputnik.sh && ./uwsgi --http-socket 127.0.0.1:8080 --http-socket-modifier1 6 "
       "--lua examples/sputnik.ws --threads 20",
       says=["http://127.0.0.1:8080/", '"My New Wiki: Home Page"'],
       needs=("/usr/share/lua/5.1/sputnik/init.lua",))
def _sputnik(run: Run):
    assert b"<title>My New Wiki: Home Page</title>" in _get(run.port(8080))
    # the script set up the data dir the app uses (both under $TMPDIR, here the test's)
    assert [p.name for p in run.tmpdir.glob("uwsgid-sputnik-*/sputnik.db")] == ["sputnik.db"]


@check("./uwsgi --ini examples/services.ini",
       says=["uwsgi socket", "127.0.0.1:3031", "modifier1 6 is Lua, 0 Python", "127.0.0.1:9191",
             '"shared"', '"sessions"', "demo_ metrics"])
def _services(run: Run):
    lua, py, up = 6, 0, run.port(3031)
    stats = _stats(run.port(9191))
    assert [c["name"] for c in stats["caches"]] == ["shared", "sessions"]
    assert stats["caches"][1]["store"].startswith(str(run.tmpdir))      # the copy's store= path
    assert set(stats["metrics"]) >= {"demo_requests", "demo_temperature"}
    assert stats["metrics"]["demo_temperature"]["value"] == 20
    # the ini's comment: the Lua app's cache_set is the Python app's cache_get, and the reverse
    assert uwsgi_http_get(up, "/set?k=readme&v=from%20lua", lua) == (200, b"True")
    assert uwsgi_http_get(up, "/get?k=readme", py) == (200, b"from lua")
    assert uwsgi_http_get(up, "/set?k=readme2&v=from%20py", py) == (200, b"True")
    assert uwsgi_http_get(up, "/get?k=readme2", lua) == (200, b"from py")
    # RPC both ways, and the timers (every second: Python's in worker 1, Lua's in worker 2)
    assert uwsgi_http_get(up, "/call?f=lua_concat&a=x&a=y", py) == (200, b"x+y")
    assert uwsgi_http_get(up, "/call?f=py_upper&a=x", lua) == (200, b"X")
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        timers = (uwsgi_http_get(up, "/get?k=py_timer", lua), uwsgi_http_get(up, "/get?k=lua_timer", py))
        if timers == ((200, b"1:21"), (200, b"2:22")):
            break
        time.sleep(0.2)
    assert timers == ((200, b"1:21"), (200, b"2:22"))


@check("./uwsgi --http-socket :8080 --wsgi-file examples/hello.py -M --stats 127.0.0.1:9191",
       says=["http://127.0.0.1:8080/", '"Hello World"', "127.0.0.1:9191", "stats JSON",
             "curl -s telnet://127.0.0.1:9191"])
def _stats_server(run: Run):
    assert _get(run.port(8080)) == HELLO
    deadline = time.monotonic() + 10
    while True:     # the worker counts a request once its response is out: a moment after the client has it
        stats = _stats(run.port(9191))
        if stats["workers"] and stats["workers"][0]["requests"] or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert stats["version"].startswith("2.0.21")
    assert len(stats["workers"]) == 1 and stats["pid"] > 0
    assert stats["workers"][0]["requests"] == 1
    assert [s["name"].rpartition(":")[2] for s in stats["sockets"]] == [str(run.port(8080))]


# ---- the tests ----------------------------------------------------------------------------

@pytest.mark.parametrize("example", EXAMPLES, ids=[e.key for e in EXAMPLES])
def test_readme_example(example: Example, tmp_path):
    chk = CHECKS.get(example.key)
    if chk is None:
        pytest.fail(f"README.md's Examples has a command {THIS} does not know how to check:\n"
                    f"    {example.key}\nadd it to CHECKS there, with what it answers (and say that "
                    "in the README's comment above the command)")
    comment = " ".join(example.comment)
    missing = [w for w in chk.says if w not in comment]
    assert not missing, (f"the README's comment of `{example.key}` no longer says {missing} "
                         f"(what {THIS} checks); its comment: {comment!r}")
    for path in chk.needs:
        if not os.path.exists(path):
            pytest.skip(f"{path} is missing (make test's system step installs it)")
    run = Run(tmp_path)
    try:
        for command in example.commands:
            run.start(command)
        try:
            chk.fn(run)
        except AssertionError as e:
            raise AssertionError(f"{e}\n{run.logs()}") from None
    finally:
        stuck = run.stop()
    assert not stuck, f"Ctrl-C did not stop {stuck}:\n{run.logs()}"


def test_every_check_is_a_readme_example():
    stale = sorted(set(CHECKS) - {e.key for e in EXAMPLES})
    assert not stale, f"{THIS} checks commands README.md's Examples no longer has: {stale}"


def test_examples_were_found():
    assert len(EXAMPLES) >= 6 and all(e.commands for e in EXAMPLES), EXAMPLES


def test_readme_says_how_to_pick_the_make_run_address():
    readme, makefile = README.read_text(), (ROOT / "Makefile").read_text()
    assert "make run RUN_ADDR=" in readme
    assert re.search(r"^RUN_ADDR \?= 127\.0\.0\.1:8080$", makefile, re.M)
    assert "--http-socket $(RUN_ADDR)" in makefile        # test_build_make_run.py serves on one
