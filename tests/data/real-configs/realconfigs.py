"""Runs one real-world uWSGI config here: rewrites only what cannot run on this machine, starts a
server with it, sends one request, stops it by PID. Shared by tests/config/test_real_configs.py
(./uwsgi) and record_reference.py (Debian's /usr/bin/uwsgi with its python3 plugin and the plugins a
pip-installed uWSGI has built in).

What is rewritten (everything else is kept byte for byte):
- every listening address (socket, http, http-socket, stats, fastcgi-socket, ...): a free
  loopback port, or a unix path in the run's temporary directory when it was a path;
- the application: module/wsgi-file/mount/callable → a tiny WSGI app of ours; chdir and
  pythonpath → the temporary directory; home/virtualenv dropped; import/spooler-import → a
  tiny module of ours;
- the certificate and key of an https line → a self-signed pair made for the run;
- uid/gid/chown-socket/chroot/cap dropped; pidfiles, logto, log files, the master FIFO and the
  spooler directories → the temporary directory; daemonize → logto (stay in the foreground);
- commands from the public repositories are not run here: attach-daemon* → `sleep 30` (a smart
  daemon's writes its pidfile first, and is stopped through it after the run), cron commands
  and exec hooks → `true` (the options themselves stay, so they are exercised).
A config with no socket or no app gets one on the command line (a fragment of a Docker image).
"""

from __future__ import annotations

import atexit
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
MARKER = b"real-config-ok"
APP = f'''\
def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [{MARKER!r}]


app = application
'''

# listening addresses: HTTP ones are probed with HTTP, uwsgi ones with a uwsgi packet
HTTP_SOCKETS = {"http", "http-socket", "http11-socket", "https", "https-socket", "https2"}
UWSGI_SOCKETS = {"socket", "uwsgi-socket", "s"}
OTHER_SOCKETS = {"stats", "stats-server", "fastcgi-socket", "scgi-socket", "suwsgi-socket", "ssl-socket",
                 "raw-socket", "puwsgi-socket", "shared-socket", "zerg-server", "fastrouter",
                 "http-to", "carbon", "snmp", "udp"}
APP_MODULE = {"module", "wsgi", "w", "pymodule"}
APP_FILE = {"wsgi-file", "file"}
IMPORTS = {"import", "pyimport", "py-import", "python-import", "shared-import", "shared-pyimport",
           "shared-py-import", "shared-python-import", "spooler-import", "spooler-pyimport",
           "spooler-py-import", "spooler-python-import", "mule", "mules"}
DROP = {"uid", "gid", "chown-socket", "chroot", "cap", "home", "virtualenv", "venv", "pyhome",
        "pythonhome", "h", "logfile-chown", "emperor-tyrant", "immediate-uid", "immediate-gid"}
TMP_FILES = {"pidfile", "pidfile2", "safe-pidfile", "safe-pidfile2", "logto", "logto2", "log-backupname",
             "master-fifo", "spooler", "spooler-external", "req-logto"}
DAEMONS = {"attach-daemon", "attach-control-daemon", "legion-attach-daemon"}
SMART_DAEMONS = {"smart-attach-daemon", "smart-attach-daemon2", "legion-smart-attach-daemon"}
CRONS = {"cron", "unique-cron", "legion-cron", "cron-legion", "unique-legion-cron", "unique-cron-legion", "cron2"}
UNSAFE_HOOK_ACTIONS = ("exec:", "safeexec:", "mkdir:", "unlink:", "rmdir:", "write:", "create:", "exit:")


@dataclass
class Rewriter:
    """Rewrites the key/value items of one config; remembers what to probe."""
    tmp: Path
    ports: list = field(default_factory=list)        # (protocol, address) to probe
    has_app: bool = False
    mountpoint: str = "/"
    http_protocol: bool = False                        # `protocol = http` on uwsgi sockets
    counter: int = 0

    def _tmp(self, stem: str) -> str:
        self.counter += 1
        return str(self.tmp / f"{stem}{self.counter}")

    def _address(self, value: str) -> str:
        addr, comma, rest = value.partition(",")
        if addr.startswith("@"):
            new = f"@uwsgid-real-{os.getpid()}-{self.counter}-{time.monotonic_ns()}"
        elif "/" in addr and not addr.startswith("fd://") or addr.endswith(".sock"):
            new = self._tmp("s") + ".sock"
        else:
            new = f"127.0.0.1:{free_port()}"
        return new + comma + rest

    def value(self, key: str, value: str):
        """The new value, None to drop the item, or a (new key, new value) pair."""
        k = key.strip().lower().replace("_", "-")
        if k in HTTP_SOCKETS or k in UWSGI_SOCKETS or k in OTHER_SOCKETS:
            new = self._address(value)
            if k.startswith("https") and new.count(",") >= 2:     # ADDR,CERT,KEY[,...]: a pair of ours
                addr, _cert, _key, *rest = new.split(",")
                new = ",".join([addr, *tls_pair(), *rest])
            if k in HTTP_SOCKETS and not k.startswith("https"):
                self.ports.append(("http", new.partition(",")[0]))
            elif k in UWSGI_SOCKETS:
                self.ports.append(("uwsgi", new.partition(",")[0]))
            return new
        if k in ("protocol", "socket-protocol") and value.strip().lower() == "http":
            self.http_protocol = True
            return value
        if k in APP_MODULE:
            self.has_app = True
            return "rc_app"
        if k in APP_FILE:
            self.has_app = True
            return str(self.tmp / "rc_app.py")
        if k == "mount":
            self.has_app = True
            point = value.partition("=")[0].strip()
            if point.startswith("/") and "%" not in point and "$" not in point:
                self.mountpoint = point
            return f"{point}={self.tmp / 'rc_app.py'}"
        if k == "callable":
            return "application"
        if k in ("chdir", "chdir2", "pythonpath", "python-path", "pp"):
            return str(self.tmp)
        if k in IMPORTS:
            return str(self.tmp / "rc_import.py") if value.strip().endswith(".py") or "/" in value else "rc_import"
        if k in DROP:
            return None
        if k in ("daemonize", "daemonize2"):
            return ("logto", self._tmp("daemon") + ".log")
        if k in TMP_FILES:
            return self._tmp(k) + (".log" if "log" in k else "")
        if k in ("logger", "req-logger", "logger-req") and "file:" in value:
            return re.sub(r"file:(logfile=)?[^,\s]+", lambda m: f"file:{m.group(1) or ''}{self._tmp('logger')}.log",
                          value)
        if k in DAEMONS:
            return "sleep 30"
        if k in SMART_DAEMONS:      # a daemon that writes its pidfile, as a smart daemon must
            pidfile = f"{self._tmp('smartdaemon')}.pid"
            return f"{pidfile} sh -c 'echo $$ > {pidfile}; exec sleep 30'"
        if k in CRONS:      # keep the schedule, swap the command
            fields = value.split()
            if k == "cron2":
                return re.sub(r"cmd=.*", "cmd=true", value) if "cmd=" in value else f"{fields[0]} true"
            return " ".join(fields[:6 if "legion" in k else 5] + ["true"])
        if k.startswith("exec-"):
            return "true"
        if k.startswith("hook-") and value.strip().startswith(UNSAFE_HOOK_ACTIONS):
            return "exec:true"
        return value


# --------------------------------------------------------------------------- formats

_INI_ITEM = re.compile(r"^(\s*)([^=;#\[\s][^=]*?)(\s*=\s*)(.*?)(\s*)$")
_YAML_ITEM = re.compile(r"^(\s+)([A-Za-z0-9_.-]+)(:\s*)(.*?)(\s*)$")


def _rewrite_lines(text: str, rw: Rewriter, pattern, sep: str, dropped: str) -> str:
    out = []
    for line in text.split("\n"):
        m = pattern.match(line)
        if not m:
            out.append(line)
            continue
        indent, key, eq, value, tail = m.groups()
        quoted = sep == ": " and len(value) > 1 and value[0] == value[-1] and value[0] in "'\""
        raw = value[1:-1] if quoted else value
        new = rw.value(key, raw)
        if new is None:
            out.append(f"{indent}{dropped} [real-configs] dropped: {key}")
            continue
        if isinstance(new, tuple):
            key, new = new
        if new != raw:
            new = json.dumps(new) if quoted else new
            out.append(f"{indent}{key}{eq}{new}{tail}")
        else:
            out.append(line)
    return "\n".join(out)


def _rewrite_json(text: str, rw: Rewriter) -> str:
    try:
        data = json.loads(text)
    except ValueError:
        return text     # kept as is: uWSGI's verdict on a broken file is part of the record
    for section in data.values() if isinstance(data, dict) else ():
        if not isinstance(section, dict):
            continue
        for key in list(section):
            values = section[key] if isinstance(section[key], list) else [section[key]]
            new_values = []
            for v in values:
                if not isinstance(v, str) and (isinstance(v, bool) or not isinstance(v, (int, float))):
                    new_values.append(v)
                    continue
                new = rw.value(key, str(v))
                if new is None:
                    continue
                if isinstance(new, tuple):
                    section[new[0]] = new[1]
                    continue
                new_values.append(v if new == str(v) else new)
            if isinstance(section.get(key), list):
                section[key] = new_values
            elif new_values:
                section[key] = new_values[0]
            else:
                del section[key]
    return json.dumps(data, indent=2)


def rewrite(path: Path, tmp: Path) -> tuple[str, Rewriter]:
    text = path.read_bytes().decode("utf-8", errors="surrogateescape")
    rw = Rewriter(tmp)
    ext = path.suffix.lower()
    if ext == ".json":
        return _rewrite_json(text, rw), rw
    if ext in (".yaml", ".yml"):
        return _rewrite_lines(text, rw, _YAML_ITEM, ": ", "#"), rw
    return _rewrite_lines(text, rw, _INI_ITEM, " = ", ";"), rw


# --------------------------------------------------------------------------- running

_tls: tuple[str, str] | None = None
_lock = threading.Lock()


def tls_pair() -> tuple[str, str]:
    """A self-signed certificate and its key for `https = ADDR,CERT,KEY` lines, made once."""
    global _tls
    with _lock:
        if _tls is None:
            d = Path(tempfile.mkdtemp(prefix="uwsgid-real-tls-"))
            atexit.register(shutil.rmtree, d, True)
            cert, key = str(d / "cert.pem"), str(d / "key.pem")
            subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out",
                            cert, "-days", "2", "-subj", "/CN=localhost"], check=True, capture_output=True)
            _tls = cert, key
        return _tls


_handed_out: set[int] = set()


def free_port() -> int:
    """A loopback port nothing listens on, never the same twice in a run (the configs of one run
    take theirs at once and bind them later)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        with _lock:
            if port not in _handed_out:
                _handed_out.add(port)
                return port


def _connect(address: str, timeout: float) -> socket.socket:
    if address.startswith(("/", "@")):
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(timeout)
        s.connect("\0" + address[1:] if address.startswith("@") else address)
        return s
    host, port = address.rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=timeout)


def _uwsgi_packet(path: str) -> bytes:
    import struct
    env = {"REQUEST_METHOD": "GET", "REQUEST_URI": path, "PATH_INFO": path, "QUERY_STRING": "",
           "SCRIPT_NAME": "", "SERVER_NAME": "localhost", "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1",
           "REMOTE_ADDR": "127.0.0.1", "HTTP_HOST": "localhost"}
    data = b"".join(struct.pack("<H", len(k)) + k.encode() + struct.pack("<H", len(v)) + v.encode()
                    for k, v in env.items())
    return struct.pack("<BHB", 0, len(data), 0) + data


def probe(protocol: str, address: str, path: str, timeout: float = 10.0) -> tuple[int | None, bytes]:
    """One GET: (status or None, body)."""
    s = _connect(address, timeout)
    try:
        if protocol == "http":
            s.sendall(f"GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n".encode())
        else:
            s.sendall(_uwsgi_packet(path))
        chunks = []
        while True:
            try:
                d = s.recv(65536)
            except (ConnectionResetError, socket.timeout):
                break
            if not d:
                break
            chunks.append(d)
    finally:
        s.close()
    answer = b"".join(chunks)
    head, _, body = answer.partition(b"\r\n\r\n")
    m = re.match(rb"HTTP/\d\.\d (\d{3})", head)
    return (int(m.group(1)) if m else None), body


@dataclass
class Result:
    name: str
    started: bool = False
    served: bool = False
    status: int | None = None
    app_reached: bool = False
    exit_code: int | None = None
    log: str = ""

    def summary(self) -> dict:
        d = asdict(self)
        d.pop("log")
        d.pop("name")
        return d


def _running(proc) -> bool:
    try:
        return os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None
    except ChildProcessError:
        return False


def _stop_smart_daemons(tmp: Path) -> None:
    """Smart daemons outlive the instance by design (uWSGI's too: they are found again through
    their pidfile after a restart): ours are stopped by the PID they wrote."""
    for pidfile in tmp.glob("smartdaemon*.pid"):
        try:
            os.kill(int(pidfile.read_text().strip()), signal.SIGKILL)
        except (ValueError, OSError):
            pass


def run(config: Path, binary: list[str], start_timeout: float = 25.0, env_extra=None) -> Result:
    """Rewrite, start, probe, stop. Never raises for a server failure: the Result says."""
    res = Result(config.name)
    with tempfile.TemporaryDirectory(prefix="uwsgid-real-") as d:
        tmp = Path(d)
        (tmp / "rc_app.py").write_text(APP)
        (tmp / "rc_import.py").write_text("# imported by the config's import/spooler-import lines\n")
        text, rw = rewrite(config, tmp)
        cfg = tmp / config.name
        cfg.write_bytes(text.encode("utf-8", errors="surrogateescape"))
        kind = {".json": "--json", ".yaml": "--yaml", ".yml": "--yaml"}.get(config.suffix.lower(), "--ini")
        argv = [*binary, kind, str(cfg)]
        targets = [("http" if rw.http_protocol and p == "uwsgi" else p, a) for p, a in rw.ports]
        if not targets:
            addr = f"127.0.0.1:{free_port()}"
            argv += ["--http-socket", addr]
            targets = [("http", addr)]
        if not rw.has_app:
            argv += ["--wsgi-file", str(tmp / "rc_app.py")]
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp), "LANG": "C.UTF-8",
               "PYTHONDONTWRITEBYTECODE": "1", **(env_extra or {})}
        log_path = tmp / "server.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    cwd=tmp, env=env, start_new_session=True)
        try:
            deadline = time.monotonic() + start_timeout
            ready = None
            while ready is None and time.monotonic() < deadline and _running(proc):
                for target in targets:
                    try:
                        _connect(target[1], 1.0).close()
                        ready = target
                        break
                    except OSError:
                        pass
                else:
                    time.sleep(0.1)
            if ready is not None:
                res.started = True
                path = rw.mountpoint if rw.mountpoint.endswith("/") else rw.mountpoint + "/"
                for attempt in range(3):
                    try:
                        res.status, body = probe(*ready, path)
                    except OSError:
                        res.status, body = None, b""
                    if res.status is not None and res.status < 500:
                        break
                    time.sleep(0.5)    # a worker still loading: uWSGI answers 502/503 meanwhile
                res.served = res.status is not None and res.status < 500
                res.app_reached = MARKER in body
        finally:
            if _running(proc):
                os.kill(proc.pid, signal.SIGINT)
                end = time.monotonic() + 10
                while _running(proc) and time.monotonic() < end:
                    time.sleep(0.05)
            try:    # the session we started (workers a crashed master left behind), by its leader's PID
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            res.exit_code = proc.wait(10)
            _stop_smart_daemons(tmp)
            logs = [log_path.read_text(errors="replace")]
            logs += [p.read_text(errors="replace") for p in sorted(tmp.glob("*.log")) if p != log_path]
            res.log = "\n".join(logs).replace(str(tmp), "<tmp>")
    return res


# --------------------------------------------------------------------------- the log

_ISSUE = re.compile(r"unknown option|unknown config directive|unrecognized option|ignoring|is not supported",
                    re.I)


def issues(log: str, config: Path | None = None) -> list[str]:
    """Lines saying an option was not understood or is not honoured. A key the original config
    used as a %(placeholder) is no finding when only our rewriting of the app or the socket left
    it unreferenced (`base = /srv` ... `socket = %(base)/app.sock`)."""
    refs = set(re.findall(r"%\(([A-Za-z0-9_.-]+)\)", config.read_text(errors="replace"))) if config else set()
    out = []
    for line in log.splitlines():
        if not _ISSUE.search(line):
            continue
        m = re.search(r"ignoring unknown option (\S+)", line)
        if m and m.group(1) in refs:
            continue
        out.append(line.strip())
    return out


def cause(result: Result, config: Path) -> str:
    """Why a run failed, in a few words: the options named by the log, else its last error line."""
    names = []
    for line in issues(result.log, config):
        m = re.search(r"(?:option|directive:?) --?([A-Za-z0-9_.-]+)|--([A-Za-z0-9_.-]+) is not supported"
                      r"|ignoring unknown option (\S+)|option '--?([A-Za-z0-9_.-]+)'", line)
        name = next((g for g in m.groups() if g), None) if m else None
        if name and name not in names:
            names.append(name)
    if names:
        return "options: " + ", ".join(names)
    lines = [line for line in result.log.strip().splitlines() if line.strip()]
    return (lines[-1] if lines else "no output")[:200]


def configs() -> list[Path]:
    return sorted(p for p in HERE.iterdir() if re.match(r"\d{3}-", p.name))
